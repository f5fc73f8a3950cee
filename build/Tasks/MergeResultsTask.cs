using SvdLlm.Build.Support;

namespace SvdLlm.Build.Tasks;

[TaskName("MergeResults")]
[TaskDescription("Merge shard databases into --db (default results/results.db): --from=A.db,B.db")]
[IsDependentOn(typeof(BuildTask))]
public sealed class MergeResultsTask : FrostingTask
{
    public override void Run(BuildContext context)
    {
        string from = context.Option("from") ?? throw new BuildFailedException("MergeResults needs --from=A.db,B.db (the shard databases to merge into --db)");
        var sources = from.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(f => context.FromRoot(f));
        context.Run("dotnet", [context.CliDll, "merge-results", "--into", MatrixRun.Database(context), "--from", string.Join(',', sources)]);
    }
}
