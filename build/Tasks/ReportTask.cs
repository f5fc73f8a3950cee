using SvdLlm.Build.Support;

namespace SvdLlm.Build.Tasks;

[TaskName("Report")]
[TaskDescription("Tables, plots and report.html in results/, regenerated from the database alone (--db)")]
[IsDependentOn(typeof(BuildTask))]
public sealed class ReportTask : FrostingTask
{
    public override void Run(BuildContext context)
    {
        if (MatrixRun.DryRun(context))
        {
            context.Info("Report: skipped (--dry-run)");
            return;
        }
        context.Run("dotnet", [context.CliDll, "report", "--db", MatrixRun.Database(context), "--out", context.FromRoot(MatrixRun.ResultsDirectory)]);
    }
}
