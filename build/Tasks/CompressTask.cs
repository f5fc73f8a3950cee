using SvdLlm.Build.Support;

namespace SvdLlm.Build.Tasks;

[TaskName("Compress")]
[TaskDescription("Compressed model of every cell not fully evaluated yet, into the cache (--matrix, --db, --dry-run, --shard=I/N, --threads)")]
[IsDependentOn(typeof(CalibrateTask))]
public sealed class CompressTask : FrostingTask
{
    public override void Run(BuildContext context)
    {
        if (!MatrixRun.SkipForDryRun(context, "Compress")) MatrixRun.Stage(context, "compress");
    }
}
