using SvdLlm.Build.Support;

namespace SvdLlm.Build.Tasks;

[TaskName("Evaluate")]
[TaskDescription("Every (cell, task) evaluation not in the database yet (--matrix, --db, --dry-run, --shard=I/N, --threads)")]
[IsDependentOn(typeof(CompressTask))]
public sealed class EvaluateTask : FrostingTask
{
    public override void Run(BuildContext context)
    {
        if (!MatrixRun.SkipForDryRun(context, "Evaluate")) MatrixRun.Stage(context, "evaluate");
    }
}
