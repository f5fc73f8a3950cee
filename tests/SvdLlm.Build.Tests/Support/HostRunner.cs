using System.Diagnostics;

namespace SvdLlm.Build.Tests;

/// <summary>Runs programs the way a user would, from the repository root, for their exit code and output.</summary>
internal static class HostRunner
{
    public static string Root { get; } = RepositoryRoot.Find();

    /// <summary><c>./build.sh ARGS</c> in the repository root.</summary>
    public static (int Exit, string Out, string Err) BuildSh(IReadOnlyDictionary<string, string>? environment, params string[] args) =>
        Run(Path.Combine(Root, "build.sh"), args, Root, environment, TimeSpan.FromMinutes(5));

    public static (int Exit, string Out, string Err) Run(string fileName, IEnumerable<string> args, string? workingDirectory = null,
        IReadOnlyDictionary<string, string>? environment = null, TimeSpan? timeout = null)
    {
        var info = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? Root,
        };
        foreach (string a in args) info.ArgumentList.Add(a);
        foreach (var (k, v) in environment ?? new Dictionary<string, string>()) info.Environment[k] = v;
        using var p = Process.Start(info) ?? throw new InvalidOperationException($"could not start {fileName}");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout ?? TimeSpan.FromMinutes(2)))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{fileName} {string.Join(' ', args)} did not finish in time; output so far: {stdout.Result}{stderr.Result}");
        }
        p.WaitForExit();
        return (p.ExitCode, stdout.Result, stderr.Result);
    }
}
