namespace SvdLlm.Build.Support;

/// <summary>The options the matrix targets share, turned into `svdllm run-matrix` / `report` / `merge-results` arguments.</summary>
public static class MatrixRun
{
    public const string DefaultMatrix = "experiments/default.yaml";
    public const string DefaultDatabase = "results/results.db";
    public const string ResultsDirectory = "results";

    public static string Matrix(BuildContext context) => context.FromRoot(context.Option("matrix") ?? DefaultMatrix);

    public static string Database(BuildContext context) => context.FromRoot(context.Option("db") ?? DefaultDatabase);

    /// <summary>Where Report writes tables/, plots/ and report.html: --out, or results/.</summary>
    public static string ReportDirectory(BuildContext context) => context.FromRoot(context.Option("out") ?? ResultsDirectory);

    public static bool DryRun(BuildContext context) => context.HasFlag("dry-run");

    /// <summary>
    /// With --dry-run, only the target named on the command line lists its plan: RunMatrix's chain would
    /// otherwise print the same cells three times (once per stage).
    /// </summary>
    public static bool SkipForDryRun(BuildContext context, string taskName)
    {
        if (!DryRun(context)) return false;
        string target = context.Option("target") ?? "Build";
        bool mine = target.Equals(taskName, StringComparison.OrdinalIgnoreCase)
            || (taskName == "Evaluate" && target.Equals("RunMatrix", StringComparison.OrdinalIgnoreCase));
        if (!mine) context.Info($"{taskName}: skipped (--dry-run lists the plan in {(target.Equals("RunMatrix", StringComparison.OrdinalIgnoreCase) ? "Evaluate" : target)})");
        return !mine;
    }

    /// <summary>Runs one stage of the matrix.</summary>
    public static void Stage(BuildContext context, string stage)
    {
        List<string> arguments = [context.CliDll, "run-matrix", "--matrix", Matrix(context), "--db", Database(context), "--stage", stage];
        if (DryRun(context)) arguments.Add("--dry-run");
        if (context.Option("shard") is { } shard) arguments.AddRange(["--shard", shard]);
        if (context.Option("threads") is { } threads) arguments.AddRange(["--threads", threads]);
        if (context.Quiet || Environment.GetEnvironmentVariable("CI") is not null) arguments.Add("--quiet");
        context.Run("dotnet", arguments);
    }
}
