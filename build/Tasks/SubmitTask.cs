using SvdLlm.Build.Support;

namespace SvdLlm.Build.Tasks;

[TaskName("Submit")]
[TaskDescription("Submits the matrix to a batch scheduler: --scheduler=slurm --shards=N [--partition=P] [--time=T] [--matrix] [--db] [--threads] [--out] [--dry-run]; a job array of N RunMatrix shards, then a MergeResults + Report job after them (afterok)")]
[IsDependentOn(typeof(BuildTask))]
public sealed class SubmitTask : FrostingTask
{
    public override void Run(BuildContext context)
    {
        string scheduler = context.Option("scheduler") ?? throw new BuildFailedException("Submit needs --scheduler=slurm (the only scheduler it knows).");
        if (scheduler != "slurm")
            throw new BuildFailedException($"Submit: unknown --scheduler '{scheduler}'; expected slurm.");
        string shards = context.Option("shards") ?? throw new BuildFailedException("Submit needs --shards=N: how many shard jobs to split the matrix into.");
        if (context.Option("shard") is { } shard)
            throw new BuildFailedException($"Submit takes --shards=N (how many jobs), not --shard={shard} (which one a job runs: Submit passes that to each job).");

        SlurmJobs jobs;
        try
        {
            jobs = SlurmPlan.Plan(new SlurmRequest(
                context.RootDirectory, int.Parse(shards), context.Option("matrix") ?? MatrixRun.DefaultMatrix, context.Option("db") ?? MatrixRun.DefaultDatabase,
                context.Option("partition"), context.Option("time"), context.Option("threads"), context.Option("out")));
        }
        catch (ArgumentException e)
        {
            throw new BuildFailedException("Submit: " + e.Message);
        }

        if (MatrixRun.DryRun(context))
        {
            // Printed even with --verbosity=quiet: the scripts are what was asked for.
            Console.WriteLine($"# {jobs.ShardsScriptPath}");
            Console.Write(jobs.ShardsScript);
            Console.WriteLine();
            Console.WriteLine($"# {jobs.MergeScriptPath}");
            Console.Write(jobs.MergeScript);
            Console.WriteLine();
            Console.WriteLine("# would run:");
            Console.WriteLine(ProcessRunner.Format("sbatch", SlurmPlan.SubmitShards(jobs)));
            Console.WriteLine(ProcessRunner.Format("sbatch", SlurmPlan.SubmitMerge(jobs, "<shards job id>")));
            Console.WriteLine("Submit: --dry-run, nothing written or submitted.");
            return;
        }

        if (ProgramOnPath.Find("sbatch") is null)
            throw new BuildFailedException("Submit: sbatch not found on PATH; run Submit on a Slurm login node (or add --dry-run to see the job scripts).");
        // sbatch does not create the directory of a job's --output file; the scripts live beside the logs.
        Directory.CreateDirectory(context.FromRoot(jobs.ScriptDirectory));
        WriteScript(context.FromRoot(jobs.ShardsScriptPath), jobs.ShardsScript);
        WriteScript(context.FromRoot(jobs.MergeScriptPath), jobs.MergeScript);

        string shardsJob = SubmitOne(context, SlurmPlan.SubmitShards(jobs));
        string mergeJob = SubmitOne(context, SlurmPlan.SubmitMerge(jobs, shardsJob));
        Console.WriteLine($"Submitted shards as job {shardsJob} (array 1-{shards}) and merge + report as job {mergeJob} (--dependency=afterok:{shardsJob}).");
        Console.WriteLine($"Logs: {jobs.ScriptDirectory}/; squeue -j {shardsJob},{mergeJob} shows them waiting or running.");
    }

    private static string SubmitOne(BuildContext context, IReadOnlyList<string> arguments)
    {
        string output = context.Capture("sbatch", arguments);
        try
        {
            return SlurmPlan.ParseJobId(output);
        }
        catch (FormatException e)
        {
            throw new BuildFailedException($"Submit: {e.Message} ({ProcessRunner.Format("sbatch", arguments)})");
        }
    }

    /// <summary>Through a temporary file and a rename, so a job never starts from a half-written script.</summary>
    private static void WriteScript(string path, string text)
    {
        string temporary = path + ".tmp-" + Environment.ProcessId;
        File.WriteAllText(temporary, text);
        if (!OperatingSystem.IsWindows())
            File.SetUnixFileMode(temporary, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        File.Move(temporary, path, overwrite: true);
    }
}
