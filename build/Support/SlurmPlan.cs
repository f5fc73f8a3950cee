using System.Text;
using System.Text.RegularExpressions;

namespace SvdLlm.Build.Support;

/// <summary>What Submit was asked for, with paths as the user gave them (relative ones are from the repository root).</summary>
public sealed record SlurmRequest(
    string RootDirectory,
    int Shards,
    string Matrix,
    string Database,
    string? Partition = null,
    string? Time = null,
    string? Threads = null,
    string? Out = null);

/// <summary>The two batch scripts, where they go (relative to the root) and the shard databases the merge reads.</summary>
public sealed record SlurmJobs(
    string ScriptDirectory,
    string ShardsScriptPath,
    string ShardsScript,
    string MergeScriptPath,
    string MergeScript,
    IReadOnlyList<string> ShardDatabases);

/// <summary>
/// Plans a Slurm submission of a sharded matrix run, without touching anything: a job array whose task i runs
/// <c>./build.sh --target=RunMatrix --shard=i/N</c> into its own database, and a job that merges those databases and
/// regenerates the report, submitted with <c>--dependency=afterok:</c> on the array. Array indices are 1…N because
/// <c>--shard=I/N</c> is 1-based. Every job passes <c>--no-build</c>: Submit has built the checkout, and N jobs
/// building one shared checkout at once would race.
/// </summary>
public static partial class SlurmPlan
{
    public static SlurmJobs Plan(SlurmRequest request)
    {
        if (request.Shards < 1)
            throw new ArgumentException($"--shards must be a positive integer, not {request.Shards}");
        string database = Slashes(request.Database);
        string directory = Path.GetDirectoryName(database) is { Length: > 0 } d ? d : ".";
        string stem = Path.GetFileNameWithoutExtension(database);
        string scriptDirectory = Join(directory, "slurm");
        var shardDatabases = Enumerable.Range(1, request.Shards).Select(i => ShardDatabase(directory, stem, i.ToString())).ToList();

        // #SBATCH lines are split on whitespace by sbatch itself, so paths that appear in them cannot hold any.
        foreach (var (what, path) in new[] { ("the repository root", request.RootDirectory), ("--db", database) })
        {
            if (path.Any(char.IsWhiteSpace))
                throw new ArgumentException($"{what} '{path}' contains whitespace, which #SBATCH lines cannot carry; use a path without spaces");
        }

        string shards = Script(request, $"svdllm-{stem}-shards", Join(scriptDirectory, $"{stem}-shard-%A_%a.out"),
            [$"--array=1-{request.Shards}", .. request.Threads is { } t ? new[] { $"--cpus-per-task={t}" } : []],
            [
                $"# Shard $SLURM_ARRAY_TASK_ID of {request.Shards}: the cells of the matrix whose key falls in that shard, into its own database.",
                "i=\"$SLURM_ARRAY_TASK_ID\"",
                "exec " + string.Join(' ', new[]
                {
                    "./build.sh", "--target=RunMatrix", "--no-build", Word("--matrix=" + Slashes(request.Matrix)),
                    $"--shard=\"$i\"/{request.Shards}",
                    ShardDatabase(directory, stem, "\"$i\"", quote: true),
                }.Concat(request.Threads is { } th ? [Word("--threads=" + th)] : [])),
            ]);

        List<string> report = ["./build.sh", "--target=Report", "--no-build", Word("--db=" + database)];
        if (request.Out is { } o) report.Add(Word("--out=" + Slashes(o)));
        string merge = Script(request, $"svdllm-{stem}-merge", Join(scriptDirectory, $"{stem}-merge-%j.out"), [],
            [
                $"# Runs once every shard job has succeeded (afterok): merges their {request.Shards} database(s) into {database}, then the report.",
                string.Join(' ', "./build.sh", "--target=MergeResults", "--no-build", Word("--from=" + string.Join(',', shardDatabases)), Word("--db=" + database)),
                string.Join(' ', report),
            ]);

        return new SlurmJobs(scriptDirectory, Join(scriptDirectory, $"{stem}-shards.sbatch"), shards,
            Join(scriptDirectory, $"{stem}-merge.sbatch"), merge, shardDatabases);
    }

    /// <summary>sbatch's arguments for the job array.</summary>
    public static IReadOnlyList<string> SubmitShards(SlurmJobs jobs) => ["--parsable", jobs.ShardsScriptPath];

    /// <summary>sbatch's arguments for the merge job, which waits for every task of the array to succeed.</summary>
    public static IReadOnlyList<string> SubmitMerge(SlurmJobs jobs, string shardsJobId) =>
        ["--parsable", $"--dependency=afterok:{shardsJobId}", jobs.MergeScriptPath];

    /// <summary>The job id in <c>sbatch --parsable</c>'s output: <c>ID</c> or <c>ID;CLUSTER</c>.</summary>
    public static string ParseJobId(string output)
    {
        string id = output.Trim().Split(';')[0];
        if (id.Length == 0 || !id.All(char.IsAsciiDigit))
            throw new FormatException($"sbatch --parsable printed '{output.Trim()}', not a job id");
        return id;
    }

    /// <summary>Slurm's time-limit formats: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.</summary>
    public static bool IsTimeLimit(string value) => TimeLimit().IsMatch(value);

    [GeneratedRegex(@"^(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d{1,2}|\d+-\d{1,2}:\d{1,2}|\d+-\d{1,2}:\d{1,2}:\d{1,2})$")]
    private static partial Regex TimeLimit();

    private static string Script(SlurmRequest request, string jobName, string output, IEnumerable<string> extra, IEnumerable<string> body)
    {
        var s = new StringBuilder();
        s.Append("#!/bin/bash\n");
        s.Append("# Written by ./build.sh --target=Submit --scheduler=slurm; submitted by it with sbatch --parsable.\n");
        foreach (string option in new[] { $"--job-name={jobName}", $"--chdir={request.RootDirectory}", $"--output={output}" }
                     .Concat(request.Partition is { } p ? [$"--partition={p}"] : [])
                     .Concat(request.Time is { } t ? [$"--time={t}"] : [])
                     .Concat(extra))
            s.Append("#SBATCH ").Append(option).Append('\n');
        s.Append("set -euo pipefail\n");
        foreach (string line in body)
            s.Append(line).Append('\n');
        return s.ToString();
    }

    /// <summary>The database of shard <paramref name="index"/>, beside the merged one: DIR/STEM-shard-I.db.</summary>
    private static string ShardDatabase(string directory, string stem, string index, bool quote = false) =>
        quote ? Word("--db=" + Join(directory, $"{stem}-shard-")) + index + Word(".db") : Join(directory, $"{stem}-shard-{index}.db");

    private static string Join(string directory, string name) => directory == "." ? name : directory.TrimEnd('/') + "/" + name;

    private static string Slashes(string path) => path.Replace('\\', '/');

    private static string Word(string s) => ProcessRunner.Quote(s);
}
