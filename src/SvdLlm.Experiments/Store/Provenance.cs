using System.Diagnostics;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text.Json.Nodes;

namespace SvdLlm.Experiments.Store;

/// <summary>Where and with what a run happened: git state, machine, runtime, package versions.</summary>
public static class Provenance
{
    /// <summary>The commit of the repository holding <paramref name="directory"/>, and whether tracked files differ from it; ("unknown", false) without git.</summary>
    public static (string Commit, bool Dirty) Git(string directory)
    {
        string? commit = Capture(directory, "rev-parse", "HEAD")?.Trim();
        if (string.IsNullOrEmpty(commit)) return ("unknown", false);
        string? status = Capture(directory, "status", "--porcelain", "--untracked-files=no");
        return (commit, status is null || status.Trim().Length > 0);
    }

    /// <summary>Versions of the packages and our own assemblies as loaded (informational version when present).</summary>
    public static string PackagesJson()
    {
        Assembly[] assemblies =
        [
            typeof(YamlDotNet.Serialization.Deserializer).Assembly,
            typeof(Microsoft.Data.Sqlite.SqliteConnection).Assembly,
            typeof(SQLitePCL.raw).Assembly,
            typeof(SvdLlm.Numerics.NumericsRuntime).Assembly,
            typeof(SvdLlm.Models.Architectures.ModelLoader).Assembly,
            typeof(SvdLlm.Compression.Compressor).Assembly,
            typeof(SvdLlm.Evaluation.Tasks.TaskRegistry).Assembly,
            typeof(Provenance).Assembly,
        ];
        var o = new JsonObject();
        foreach (var a in assemblies.Distinct().OrderBy(a => a.GetName().Name, StringComparer.Ordinal))
        {
            string version = a.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? a.GetName().Version?.ToString() ?? "unknown";
            o[a.GetName().Name ?? "?"] = version;
        }
        o["sqlite"] = SQLitePCL.raw.sqlite3_libversion().utf8_to_string();
        return o.ToJsonString();
    }

    public static string Os => RuntimeInformation.OSDescription;

    public static string DotNet => RuntimeInformation.FrameworkDescription;

    private static string? Capture(string directory, params string[] args)
    {
        try
        {
            var info = new ProcessStartInfo("git") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = directory };
            foreach (string a in args) info.ArgumentList.Add(a);
            using var p = Process.Start(info);
            if (p is null) return null;
            var err = p.StandardError.ReadToEndAsync();
            string output = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            err.Wait();
            return p.ExitCode == 0 ? output : null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }
}
