using SvdLlm.Build.Support;

namespace SvdLlm.Build.Tasks;

[TaskName("Report")]
[TaskDescription("Tables, plots (SVG and PNG, --dpi=N) and report.html in results/ (--out=DIR), regenerated from the database alone (--db)")]
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
        // A shard's database holds part of the matrix, and N shards writing one results/ at once would race:
        // RunMatrix --shard leaves the report to the run after MergeResults.
        if (context.Option("shard") is { } shard && !"Report".Equals(context.Option("target"), StringComparison.OrdinalIgnoreCase))
        {
            context.Info($"Report: skipped (--shard={shard}: run Report on the merged database after MergeResults)");
            return;
        }
        List<string> arguments = [context.CliDll, "report", "--db", MatrixRun.Database(context), "--out", MatrixRun.ReportDirectory(context)];
        // The PNG figures' resolution (the CLI's default 96 when not given; 300 for slides and papers).
        if (context.Option("dpi") is { } dpi) arguments.AddRange(["--dpi", dpi]);
        // The headless-browser check of report.html runs wherever Chromium is installed (Setup installs it as root).
        if (ProgramOnPath.Find("chromium") is not null) arguments.Add("--check-html");
        else context.Info("Report: chromium not found, report.html is not checked in a browser (sudo apt-get install -y chromium)");
        context.Run("dotnet", arguments);
    }
}
