using System.Text.RegularExpressions;
using SvdLlm.Cli.Tests;
using SvdLlm.Experiments.Store;
using SvdLlm.Models.Tests;

namespace SvdLlm.Build.Tests;

/// <summary>
/// <c>./build.sh --target=Pack</c> (on the binaries the suite was built with), then <c>dotnet tool install</c> from
/// the package: the installed <c>svdllm</c> runs from outside the repository, with its managed dependencies, SQLite's
/// native library and the system's OpenBLAS.
/// </summary>
public class PackToolTests
{
    [Fact]
    public void The_packed_tool_installs_and_runs_outside_the_repository()
    {
        using var dir = new TempDirectory();
        string packages = dir.File("nupkg");
        var pack = HostRunner.BuildSh(null, "--target=Pack", "--no-build", "--out=" + packages);
        Assert.True(pack.Exit == 0, pack.Out + pack.Err);
        string package = Assert.Single(Directory.GetFiles(packages), f => f.EndsWith(".nupkg", StringComparison.Ordinal));
        var name = Regex.Match(Path.GetFileName(package), @"^SvdLlm\.Cli\.(\d+\.\d+\.\d+.*)\.nupkg$");
        Assert.True(name.Success, package);
        Assert.Empty(Directory.GetDirectories(packages));   // the staging directory is gone

        string tools = dir.File("tools");
        var install = HostRunner.Run("dotnet", ["tool", "install", "--tool-path", tools, "--add-source", packages, "SvdLlm.Cli"], dir.Path, null, TimeSpan.FromMinutes(3));
        Assert.True(install.Exit == 0, install.Out + install.Err);
        string svdllm = Path.Combine(tools, "svdllm");
        Assert.True(File.Exists(svdllm), $"no {svdllm} after install: {install.Out}");

        string work = dir.Sub("elsewhere");
        var help = HostRunner.Run(svdllm, ["--help"], work);
        Assert.True(help.Exit == 0, help.Out + help.Err);
        Assert.Contains("run-matrix", help.Out, StringComparison.Ordinal);
        var version = HostRunner.Run(svdllm, ["--version"], work);
        Assert.StartsWith(name.Groups[1].Value, version.Out.Trim(), StringComparison.Ordinal);

        // BLAS through the forward pass, and SQLite's native library through a merge.
        string text = string.Join(" ", Enumerable.Range(0, 400).Select(i => "w" + i % 23 + (i % 9 == 8 ? "." : "")));
        File.WriteAllText(Path.Combine(work, "text.txt"), text);
        string model = TinyModelWithTokenizer.Create(Path.Combine(work, "model"), text, vocabSize: 280, seed: 1);
        var ppl = HostRunner.Run(svdllm, ["ppl", "--model", model, "--text-file", "text.txt", "--seq-len", "16", "--max-chunks", "2", "--json"], work);
        Assert.True(ppl.Exit == 0, ppl.Out + ppl.Err);
        Assert.Contains("\"ppl\"", ppl.Out, StringComparison.Ordinal);
        ResultStore.Open(Path.Combine(work, "a.db")).Dispose();
        var merge = HostRunner.Run(svdllm, ["merge-results", "--into", "merged.db", "--from", "a.db"], work);
        Assert.True(merge.Exit == 0, merge.Out + merge.Err);
        Assert.True(File.Exists(Path.Combine(work, "merged.db")));
    }
}
