using SvdLlm.Build.Support;

namespace SvdLlm.Build.Tasks;

[TaskName("Calibrate")]
[TaskDescription("Calibration statistics for every (model, calibration) of the matrix (--matrix, --db, --dry-run, --shard=I/N, --threads)")]
[IsDependentOn(typeof(SetupTask))]
[IsDependentOn(typeof(TrainDefaultModelTask))]
public sealed class CalibrateTask : FrostingTask
{
    public override void Run(BuildContext context)
    {
        if (!MatrixRun.SkipForDryRun(context, "Calibrate")) MatrixRun.Stage(context, "calibrate");
    }
}
