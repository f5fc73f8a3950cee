namespace SvdLlm.Build.Tasks;

[TaskName("RunMatrix")]
[TaskDescription("The whole matrix: Setup → TrainDefaultModel → Calibrate → Compress → Evaluate → Report (--matrix, default experiments/default.yaml; --db, default results/results.db; --dry-run; --shard=I/N; --threads=T)")]
[IsDependentOn(typeof(EvaluateTask))]
[IsDependentOn(typeof(ReportTask))]
public sealed class RunMatrixTask : FrostingTask
{
    public override void Run(BuildContext context) =>
        context.Info(context.Option("shard") is { } shard
            ? $"RunMatrix: shard {shard} done; results in {Support.MatrixRun.Database(context)} (MergeResults, then Report, once every shard is done)"
            : "RunMatrix: done; results in " + Support.MatrixRun.Database(context) + " and " + Support.MatrixRun.ReportDirectory(context));
}
