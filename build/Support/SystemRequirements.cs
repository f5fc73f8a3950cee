using System.Runtime.InteropServices;

namespace SvdLlm.Build.Support;

/// <summary>Something the build needs from the operating system, and the Debian package that provides it.</summary>
/// <param name="Name">What is looked for, as named in messages (a library soname, a program).</param>
/// <param name="Package">The apt package that provides it.</param>
/// <param name="Locate">Its path on this machine, or null when it is missing.</param>
/// <param name="OptionalFor">null when the build cannot work without it; otherwise what is skipped without it
/// (installed when root like the others, but a non-root user without it gets a warning, not a failure).</param>
public sealed record SystemRequirement(string Name, string Package, Func<string?> Locate, string? OptionalFor = null);

public static class SystemRequirements
{
    /// <summary>The one list of system packages; a target that needs another one (chromium, say) adds it here.</summary>
    public static readonly SystemRequirement[] All =
    [
        new("libopenblas.so.0", "libopenblas0-pthread", () => SharedLibrary.Find("libopenblas.so.0")),
        // The report's figures are drawn in DejaVu Sans, named explicitly so that the PNGs do not depend on the machine's default font.
        new("DejaVu Sans", "fonts-dejavu-core", () => new[] { "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf" }.FirstOrDefault(File.Exists)),
        // The Report target renders report.html in headless Chromium to check that it displays.
        new("chromium", "chromium", () => ProgramOnPath.Find("chromium"), OptionalFor: "the headless-browser check of results/report.html"),
    ];
}

public static class ProgramOnPath
{
    public static string? Find(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(directory => Path.Combine(directory, program))
            .FirstOrDefault(File.Exists);
}

public static class SharedLibrary
{
    /// <summary>
    /// Looks in the multiarch directory first (where Debian's packages put it), then asks the dynamic
    /// linker's cache, which also knows any directory added through /etc/ld.so.conf.d.
    /// </summary>
    public static string? Find(string soname)
    {
        string triplet = RuntimeInformation.OSArchitecture == Architecture.Arm64 ? "aarch64-linux-gnu" : "x86_64-linux-gnu";
        string[] directories = [$"/usr/lib/{triplet}", $"/lib/{triplet}", "/usr/lib64", "/usr/lib", "/usr/local/lib"];
        foreach (string directory in directories)
        {
            string path = Path.Combine(directory, soname);
            if (File.Exists(path))
                return path;
        }
        return FromLinkerCache(soname);
    }

    private static string? FromLinkerCache(string soname)
    {
        // ldconfig lives in /sbin, which is not on an ordinary user's PATH on Debian.
        string? cache = ProcessRunner.Capture("ldconfig", "-p") ?? ProcessRunner.Capture("/sbin/ldconfig", "-p");
        if (cache is null)
            return null;
        // Lines look like: "\tlibopenblas.so.0 (libc6,x86-64) => /lib/x86_64-linux-gnu/libopenblas.so.0"
        return cache.Split('\n')
            .Select(line => line.Trim())
            .Where(line => line.StartsWith(soname + " ", StringComparison.Ordinal) && line.Contains("=>", StringComparison.Ordinal))
            .Select(line => line[(line.IndexOf("=>", StringComparison.Ordinal) + 2)..].Trim())
            .FirstOrDefault(File.Exists);
    }
}
