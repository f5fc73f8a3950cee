using SvdLlm.Build.Support;

namespace SvdLlm.Build.Tasks;

[TaskName("Report")]
[TaskDescription("Tables, plots (SVG and PNG, --dpi=N) and report.html in results/, regenerated from the database alone (--db)")]
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
        List<string> arguments = [context.CliDll, "report", "--db", MatrixRun.Database(context), "--out", context.FromRoot(MatrixRun.ResultsDirectory)];
        // The PNG figures' resolution (the CLI's default 96 when not given; 300 for slides and papers).
        if (context.Option("dpi") is { } dpi) arguments.AddRange(["--dpi", dpi]);
        // The headless-browser check of report.html runs wherever Chromium is installed (Setup installs it as root).
        if (ProgramOnPath.Find("chromium") is not null) arguments.Add("--check-html");
        else context.Info("Report: chromium not found, report.html is not checked in a browser (sudo apt-get install -y chromium)");
        context.Run("dotnet", arguments);
    }
}
