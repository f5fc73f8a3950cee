using System.Diagnostics;
using System.Text.RegularExpressions;
using Microsoft.Data.Sqlite;
using SvdLlm.Cli.Tests;
using SvdLlm.Models.Tests;

namespace SvdLlm.Build.Tests;

/// <summary>Runs as root on Linux (installing slurm-wlm and munge with apt-get when missing); skipped, saying why, elsewhere.</summary>
public sealed class SlurmFactAttribute : FactAttribute
{
    public SlurmFactAttribute()
    {
        if (!OperatingSystem.IsLinux())
            Skip = "the Slurm test needs Linux";
        else if (!SingleNodeSlurm.IsRoot)
            Skip = SingleNodeSlurm.MissingPrograms() is { Count: > 0 } missing
                ? $"the Slurm test needs {string.Join(", ", missing)} (sudo apt-get install -y slurm-wlm munge), which only root may install, and root to run slurmd"
                : "the Slurm test needs root: its slurmd runs the jobs as root (SlurmUser=root)";
    }
}

/// <summary>
/// <c>./build.sh --target=Submit --scheduler=slurm</c> against a real one-node Slurm: the array's shards and the
/// merge + report job run as Slurm jobs, and the merged database holds what one unsharded run computes.
/// </summary>
public class SlurmSubmitTests
{
    private static readonly string[] Terminal = ["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL", "DEADLINE"];

    [SlurmFact]
    public void Three_shards_submitted_to_slurm_merge_into_the_database_of_an_unsharded_run()
    {
        var clock = Stopwatch.StartNew();
        SingleNodeSlurm.InstallIfMissing();
        using var dir = new TempDirectory();
        using var cluster = SingleNodeSlurm.Start(dir.Sub("slurm"));
        var clusterUp = clock.Elapsed;

        // The tiny matrix of the concurrency test: 2 methods × 2 ratios + the original, so 5 cells over 3 shards.
        var rng = new Random(5);
        string[] words = ["the", "whale", "ship", "sea", "captain", "and", "of", "a", "to", "in", "was", "upon"];
        string text = string.Join(" ", Enumerable.Range(0, 3000).Select(i => words[rng.Next(words.Length)] + (i % 11 == 10 ? "." : "")));
        string textFile = dir.File("text.txt");
        File.WriteAllText(textFile, text);
        string model = TinyModelWithTokenizer.Create(dir.Sub("model"), text, vocabSize: 300, seed: 2);
        string Matrix(string name, string cache)
        {
            string path = dir.File(name);
            File.WriteAllText(path, $$"""
                models: [{{model}}]
                calibration: {dataset: {{textFile}}, samples: 8, seq_len: 16, seed: 3}
                methods: [svd, svdllm]
                ratios: [0.3, 0.6]
                tasks: [{name: wikitext2, data: {{textFile}}, seq_len: 16}]
                run: {cache_dir: {{dir.Sub(cache)}}, threads: 1}
                """);
            return path;
        }
        // The unsharded run has a cache of its own, so it computes everything itself rather than reading the shards' work.
        string sharded = Matrix("sharded.yaml", "cache-sharded");
        string whole = Matrix("whole.yaml", "cache-whole");
        string merged = Path.Combine(dir.Sub("results"), "merged.db");
        string reportDir = dir.File("report");

        var submit = HostRunner.BuildSh(cluster.Environment, "--target=Submit", "--no-build", "--scheduler=slurm", "--shards=3",
            "--matrix=" + sharded, "--db=" + merged, "--out=" + reportDir, "--threads=1", "--time=10");
        Assert.True(submit.Exit == 0, $"Submit exited {submit.Exit}:\n{submit.Out}{submit.Err}\n{cluster.Logs()}");
        var ids = Regex.Match(submit.Out, @"Submitted shards as job (\d+) \(array 1-3\) and merge \+ report as job (\d+) \(--dependency=afterok:(\d+)\)");
        Assert.True(ids.Success, submit.Out);
        string shardsJob = ids.Groups[1].Value, mergeJob = ids.Groups[2].Value;
        Assert.Equal(shardsJob, ids.Groups[3].Value);

        // While Slurm works: the same matrix in one process, straight through the CLI.
        string wholeDb = dir.File("whole.db");
        var unsharded = HostRunner.Run("dotnet", [Path.Combine(HostRunner.Root, "src", "SvdLlm.Cli", "bin", "Release", "net10.0", "svdllm.dll"),
            "run-matrix", "--matrix", whole, "--db", wholeDb, "--quiet"], dir.Path, null, TimeSpan.FromMinutes(3));
        Assert.True(unsharded.Exit == 0, unsharded.Out + unsharded.Err);

        string logs = Path.Combine(Path.GetDirectoryName(merged)!, "slurm");
        string mergeState = WaitForJob(cluster, mergeJob, TimeSpan.FromMinutes(3), () => JobLogs(logs) + cluster.Logs());
        var shardStates = States(cluster, shardsJob);
        Assert.True(shardStates.Count == 3 && shardStates.All(s => s == "COMPLETED"), $"shard tasks: {string.Join(", ", shardStates)}\n{JobLogs(logs)}");
        Assert.True(mergeState == "COMPLETED", $"merge job {mergeJob}: {mergeState}\n{JobLogs(logs)}\n{cluster.Logs()}");

        // Each shard ran its own part (together every cell once), and the merge holds the unsharded run's numbers.
        var expected = Values(wholeDb);
        Assert.Equal(["5"], Strings(wholeDb, "SELECT CAST(count(DISTINCT cell_key) AS TEXT) FROM metrics"));
        var perShard = Enumerable.Range(1, 3).Select(i => Values(Path.Combine(Path.GetDirectoryName(merged)!, $"merged-shard-{i}.db"))).ToList();
        Assert.Equal(expected.Order(), perShard.SelectMany(v => v).Order());
        Assert.True(perShard.Count(v => v.Count > 0) >= 2, "the cells did not spread over the shards");
        Assert.Equal(expected, Values(merged));
        Assert.Equal(["1/3", "2/3", "3/3"], Strings(merged, "SELECT DISTINCT shard FROM runs ORDER BY shard"));
        Assert.True(File.Exists(Path.Combine(reportDir, "report.html")), "the merge job wrote no report.html into --out");

        Console.WriteLine($"Slurm test: cluster up in {clusterUp.TotalSeconds:0.0} s, everything in {clock.Elapsed.TotalSeconds:0.0} s");
    }

    /// <summary>Polls scontrol until the job reaches a final state (no slurmdbd here, so no sacct).</summary>
    private static string WaitForJob(SingleNodeSlurm cluster, string job, TimeSpan timeout, Func<string> diagnostics)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var states = States(cluster, job);
            if (states.Count == 1 && Terminal.Contains(states[0]))
                return states[0];
            if (clock.Elapsed > timeout)
                Assert.Fail($"job {job} still {string.Join(", ", states)} after {timeout.TotalSeconds:0} s\n{cluster.Client("squeue").Out}\n{diagnostics()}");
            Thread.Sleep(1000);
        }
    }

    /// <summary>JobState of each line of <c>scontrol show job -o ID</c> (one line per task of an array).</summary>
    private static List<string> States(SingleNodeSlurm cluster, string job)
    {
        var (exit, output, error) = cluster.Client("scontrol", "show", "job", "-o", job);
        Assert.True(exit == 0, $"scontrol show job {job}: {error}");
        return output.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(line => Regex.Match(line, @"\bJobState=(\S+)").Groups[1].Value).ToList();
    }

    private static string JobLogs(string directory) =>
        !Directory.Exists(directory) ? $"(no {directory})" :
        string.Join('\n', Directory.GetFiles(directory, "*.out").Order().Select(f => $"--- {Path.GetFileName(f)}\n{string.Join('\n', File.ReadLines(f).TakeLast(40))}"));

    /// <summary>Every metric of every cell, the numbers compared exactly (the same code on the same inputs).</summary>
    private static List<string> Values(string db) =>
        Strings(db, "SELECT cell_key || ' ' || task || ' ' || metric || ' ' || printf('%.17g', value) || ' ' || n FROM metrics ORDER BY cell_key, task, metric");

    private static List<string> Strings(string db, string sql)
    {
        using var c = new SqliteConnection($"Data Source={db};Mode=ReadOnly;Pooling=False");
        c.Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        using var r = cmd.ExecuteReader();
        var rows = new List<string>();
        while (r.Read()) rows.Add(r.GetString(0));
        return rows;
    }
}
