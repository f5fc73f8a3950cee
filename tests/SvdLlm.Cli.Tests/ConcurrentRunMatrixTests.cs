using System.Diagnostics;
using System.Text.RegularExpressions;
using Microsoft.Data.Sqlite;
using SvdLlm.Models.Tests;
using SvdLlm.Models.Tests.Reference;
using SvdLlm.Models.Training;

namespace SvdLlm.Cli.Tests;

/// <summary>Two real <c>svdllm run-matrix</c> processes on one database and one cache, started together.</summary>
public class ConcurrentRunMatrixTests
{
    [Fact]
    public async Task Two_processes_on_one_database_compute_each_artifact_once_and_leave_one_row_per_result()
    {
        using var dir = new TempDirectory();
        var rng = new Random(5);
        string[] words = ["the", "whale", "ship", "sea", "captain", "and", "of", "a", "to", "in", "was", "upon"];
        string text = string.Join(" ", Enumerable.Range(0, 3000).Select(i => words[rng.Next(words.Length)] + (i % 11 == 10 ? "." : "")));
        string textFile = dir.File("text.txt");
        File.WriteAllText(textFile, text);
        string model = TinyModelWithTokenizer.Create(dir.Sub("model"), text, vocabSize: 300, seed: 2);
        string matrix = dir.File("m.yaml");
        File.WriteAllText(matrix, $$"""
            models: [{{model}}]
            calibration: {dataset: {{textFile}}, samples: 8, seq_len: 16, seed: 3}
            methods: [svd, svdllm]
            ratios: [0.3, 0.6]
            tasks: [{name: wikitext2, data: {{textFile}}, seq_len: 16}]
            run: {cache_dir: {{dir.Sub("cache")}}, threads: 1}
            """);
        string db = dir.File("results.db");

        // Both start before either has written anything; each would do all the work alone.
        var runs = new[] { Start(matrix, db), Start(matrix, db) };
        var outputs = await Task.WhenAll(runs.Select(Finish));
        for (int i = 0; i < runs.Length; i++)
            Assert.True(runs[i].ExitCode == 0, $"process {i} exited {runs[i].ExitCode}: {outputs[i]}");

        // Every artifact (statistics, compressed models, evaluations) is locked and re-checked against the
        // database once the lock is held, so each is computed by exactly one of the two processes.
        var totals = outputs.Select(Summary).ToArray();
        string both = string.Join("\n=====\n", outputs);
        Assert.True(1 == totals.Sum(t => t.Calibration), both);
        Assert.True(4 == totals.Sum(t => t.Compressed), both);
        Assert.True(5 == totals.Sum(t => t.Evaluation), both);

        using var c = new SqliteConnection($"Data Source={db};Mode=ReadOnly;Pooling=False");
        c.Open();
        Assert.Equal("ok", Scalar(c, "PRAGMA integrity_check"));
        Assert.Equal(5L, Scalar(c, "SELECT count(*) FROM cells"));          // 2 methods × 2 ratios + original
        Assert.Equal(5L, Scalar(c, "SELECT count(*) FROM evaluations"));
        Assert.Equal(5L, Scalar(c, "SELECT count(*) FROM metrics WHERE metric = 'ppl'"));
        Assert.Equal(4L, Scalar(c, "SELECT count(*) FROM compression"));
        Assert.Equal(2L, Scalar(c, "SELECT count(*) FROM runs WHERE status = 'finished'"));
        c.Close();

        // A third run finds everything.
        var third = Start(matrix, db);
        string thirdOut = await Finish(third);
        Assert.Equal(0, third.ExitCode);
        var t3 = Summary(thirdOut);
        Assert.Equal((0, 0, 0), (t3.Calibration, t3.Compressed, t3.Evaluation));
    }

    private static Process Start(string matrix, string db)
    {
        string cli = Path.Combine(AppContext.BaseDirectory, "svdllm.dll");
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in new[] { cli, "run-matrix", "--matrix", matrix, "--db", db, "--quiet" }) info.ArgumentList.Add(a);
        return Process.Start(info) ?? throw new InvalidOperationException("could not start dotnet");
    }

    /// <summary>Both streams of a finished process (read concurrently, so neither pipe can fill and block it).</summary>
    private static async Task<string> Finish(Process p)
    {
        var output = p.StandardOutput.ReadToEndAsync();
        var error = p.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        try
        {
            await p.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail("run-matrix did not finish within 120 s");
        }
        return await output + await error;
    }

    /// <summary>The counts of the runner's closing line "finished in … model M (…), calibration C (…), compressed K (…), evaluation E (…)".</summary>
    private static (int Calibration, int Compressed, int Evaluation) Summary(string output)
    {
        var m = Regex.Match(output, @"calibration (\d+) \([^)]*\), compressed (\d+) \([^)]*\), evaluation (\d+)");
        Assert.True(m.Success, $"no summary line in: {output}");
        return (int.Parse(m.Groups[1].Value), int.Parse(m.Groups[2].Value), int.Parse(m.Groups[3].Value));
    }

    private static object? Scalar(SqliteConnection c, string sql)
    {
        using var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        return cmd.ExecuteScalar();
    }
}
