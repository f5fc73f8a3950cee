using SvdLlm.Build.Support;
using SvdLlm.Models.Tests;

namespace SvdLlm.Build.Tests;

/// <summary>
/// The job scripts Submit plans, run by bash against a stand-in build.sh that records its arguments, which are then
/// read back with the host's own parser: what a job would run, not what the script text looks like.
/// </summary>
public class SlurmPlanTests
{
    private const string Recorder = """
        #!/bin/bash
        # Stand-in for build.sh: one line per invocation, its arguments separated by a unit separator.
        (IFS=$'\x1f'; echo "$*") >> "$RECORD"
        """;

    private static List<CommandLine> Execute(string root, string script, IReadOnlyDictionary<string, string> environment)
    {
        string record = Path.Combine(root, "record.txt");
        File.Delete(record);
        string stub = Path.Combine(root, "build.sh");
        File.WriteAllText(stub, Recorder.ReplaceLineEndings("\n") + "\n");
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(stub, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string scriptFile = Path.Combine(root, "job.sbatch");
        File.WriteAllText(scriptFile, script);
        var (exit, output, error) = HostRunner.Run("bash", [scriptFile], root, new Dictionary<string, string>(environment) { ["RECORD"] = record });
        Assert.True(exit == 0, output + error);
        return File.ReadAllLines(record).Select(l => CommandLine.Parse(l.Split('\x1f'))).ToList();
    }

    [Fact]
    public void Array_task_i_runs_shard_i_of_n_into_its_own_database_and_the_merge_reads_exactly_those()
    {
        using var dir = new TempDirectory();
        const string matrix = "experiments/my matrix's.yaml";   // a space and a quote: the scripts must quote it
        var jobs = SlurmPlan.Plan(new SlurmRequest(dir.Path, 3, matrix, "out/run.db", Threads: "4", Out: "out/report"));

        var shardDatabases = new List<string>();
        for (int i = 1; i <= 3; i++)
        {
            var calls = Execute(dir.Path, jobs.ShardsScript, new Dictionary<string, string> { ["SLURM_ARRAY_TASK_ID"] = i.ToString() });
            var call = Assert.Single(calls);
            Assert.Equal("RunMatrix", call.Get("target"));
            Assert.Equal($"{i}/3", call.Get("shard"));
            Assert.Equal(matrix, call.Get("matrix"));
            Assert.Equal("4", call.Get("threads"));
            Assert.True(call.Flag("no-build"));
            shardDatabases.Add(call.Get("db")!);
        }
        Assert.Equal(3, shardDatabases.Distinct().Count());
        Assert.DoesNotContain("out/run.db", shardDatabases);
        Assert.All(shardDatabases, db => Assert.StartsWith("out/", db, StringComparison.Ordinal));
        Assert.Equal(shardDatabases, jobs.ShardDatabases);

        var merge = Execute(dir.Path, jobs.MergeScript, new Dictionary<string, string>());
        Assert.Equal(new string?[] { "MergeResults", "Report" }, merge.Select(c => c.Get("target")));
        Assert.Equal(shardDatabases, merge[0].Get("from")!.Split(','));
        Assert.All(merge, c => Assert.Equal("out/run.db", c.Get("db")));
        Assert.All(merge, c => Assert.True(c.Flag("no-build")));
        Assert.Equal("out/report", merge[1].Get("out"));
    }

    [Fact]
    public void Sbatch_directives_carry_the_array_the_partition_the_time_and_the_working_directory()
    {
        var jobs = SlurmPlan.Plan(new SlurmRequest("/repo", 5, "m.yaml", "results/results.db", Partition: "gpu", Time: "1-02:00:00", Threads: "8"));
        var shards = Directives(jobs.ShardsScript);
        Assert.Contains("--array=1-5", shards);
        Assert.Contains("--cpus-per-task=8", shards);
        var merge = Directives(jobs.MergeScript);
        foreach (var d in new[] { shards, merge })
        {
            Assert.Contains("--partition=gpu", d);
            Assert.Contains("--time=1-02:00:00", d);
            Assert.Contains("--chdir=/repo", d);
            // Each job's log goes beside the scripts, in a directory Submit creates (sbatch does not).
            Assert.Single(d, x => x.StartsWith($"--output={jobs.ScriptDirectory}/", StringComparison.Ordinal));
        }
        Assert.DoesNotContain(merge, d => d.StartsWith("--array", StringComparison.Ordinal));

        var bare = SlurmPlan.Plan(new SlurmRequest("/repo", 1, "m.yaml", "r.db"));
        Assert.DoesNotContain(Directives(bare.ShardsScript), d => d.StartsWith("--partition", StringComparison.Ordinal) || d.StartsWith("--time", StringComparison.Ordinal) || d.StartsWith("--cpus", StringComparison.Ordinal));
        Assert.Contains("--array=1-1", Directives(bare.ShardsScript));
        Assert.Equal("slurm/r-shards.sbatch", bare.ShardsScriptPath);
    }

    [Fact]
    public void The_merge_job_waits_for_every_task_of_the_array_and_job_ids_are_read_from_parsable_output()
    {
        var jobs = SlurmPlan.Plan(new SlurmRequest("/repo", 2, "m.yaml", "results/results.db"));
        Assert.Equal(["--parsable", jobs.ShardsScriptPath], SlurmPlan.SubmitShards(jobs));
        Assert.Equal(["--parsable", "--dependency=afterok:4711", jobs.MergeScriptPath], SlurmPlan.SubmitMerge(jobs, "4711"));
        Assert.Equal("4711", SlurmPlan.ParseJobId("4711\n"));
        Assert.Equal("12", SlurmPlan.ParseJobId("12;cluster-a\n"));
        Assert.Throws<FormatException>(() => SlurmPlan.ParseJobId("Submitted batch job 12"));
        Assert.Throws<FormatException>(() => SlurmPlan.ParseJobId(""));
    }

    [Fact]
    public void Bad_submit_options_are_refused_with_the_option_and_what_was_expected()
    {
        Assert.Contains("--shards must be a positive integer, not '0'", Assert.Throws<UsageException>(() => CommandLine.Parse(["--shards=0"])).Message, StringComparison.Ordinal);
        Assert.Contains("--shards must be a positive integer, not 'x'", Assert.Throws<UsageException>(() => CommandLine.Parse(["--shards=x"])).Message, StringComparison.Ordinal);
        Assert.Contains("--scheduler must be one of slurm, not 'pbs'", Assert.Throws<UsageException>(() => CommandLine.Parse(["--scheduler=pbs"])).Message, StringComparison.Ordinal);
        Assert.Contains("--time must be a Slurm time limit", Assert.Throws<UsageException>(() => CommandLine.Parse(["--time=2h"])).Message, StringComparison.Ordinal);
        Assert.Contains("--partition must be a partition name", Assert.Throws<UsageException>(() => CommandLine.Parse(["--partition=a b"])).Message, StringComparison.Ordinal);
        Assert.Equal("slurm", CommandLine.Parse(["--scheduler=SLURM"]).Get("scheduler"));
        foreach (string ok in new[] { "30", "30:00", "2:00:00", "1-0", "1-12:30", "7-00:00:00" })
            Assert.True(SlurmPlan.IsTimeLimit(ok), ok);
        foreach (string bad in new[] { "", "2h", "1:2:3:4", "-1", "1-", "a:00" })
            Assert.False(SlurmPlan.IsTimeLimit(bad), bad);
        Assert.Throws<ArgumentException>(() => SlurmPlan.Plan(new SlurmRequest("/repo", 0, "m.yaml", "r.db")));
        Assert.Contains("whitespace", Assert.Throws<ArgumentException>(() => SlurmPlan.Plan(new SlurmRequest("/repo", 2, "m.yaml", "my results/r.db"))).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Submit_dry_run_prints_both_scripts_and_writes_and_submits_nothing()
    {
        using var dir = new TempDirectory();
        string db = dir.File("r.db");
        var (exit, output, error) = HostRunner.BuildSh(null, "--target=Submit", "--exclusive", "--scheduler=slurm", "--shards=2", "--dry-run", "--db=" + db, "--partition=p1");
        Assert.True(exit == 0, output + error);
        var jobs = SlurmPlan.Plan(new SlurmRequest(HostRunner.Root, 2, MatrixRun.DefaultMatrix, db, Partition: "p1"));
        Assert.Contains(jobs.ShardsScript, output, StringComparison.Ordinal);
        Assert.Contains(jobs.MergeScript, output, StringComparison.Ordinal);
        Assert.Contains("--dependency=afterok:", output, StringComparison.Ordinal);
        Assert.False(Directory.Exists(dir.File("slurm")), "the dry run wrote the scripts");

        var (bad, _, badError) = HostRunner.BuildSh(null, "--target=Submit", "--exclusive", "--scheduler=slurm", "--shards=2", "--shard=1/2", "--dry-run");
        Assert.Equal(1, bad);
        Assert.Contains("not --shard=1/2", badError, StringComparison.Ordinal);
        var (missing, _, missingError) = HostRunner.BuildSh(null, "--target=Submit", "--exclusive", "--scheduler=slurm", "--dry-run");
        Assert.Equal(1, missing);
        Assert.Contains("Submit needs --shards=N", missingError, StringComparison.Ordinal);
    }

    private static List<string> Directives(string script) =>
        script.Split('\n').Where(l => l.StartsWith("#SBATCH ", StringComparison.Ordinal)).Select(l => l["#SBATCH ".Length..]).ToList();
}
