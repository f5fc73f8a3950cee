using System.CommandLine;
using SvdLlm.Experiments.Reports;
using SvdLlm.Experiments.Reports.Charts;

namespace SvdLlm.Cli.Commands;

/// <summary>
/// <c>svdllm report --db PATH --out DIR [--dpi N] [--check-html]</c>: regenerates tables, plots (SVG and PNG) and report.html from the results
/// database alone; <c>--check-html</c> then renders the page in headless Chromium and checks the screenshot.
/// </summary>
internal static class ReportCommand
{
    public static Command Create()
    {
        var db = new Option<string>("--db") { Description = "results database", DefaultValueFactory = _ => Path.Combine("results", "results.db") };
        var output = new Option<string>("--out") { Description = "output directory (tables/, plots/, report.html)", DefaultValueFactory = _ => "results" };
        var dpi = new Option<int>("--dpi") { Description = $"resolution of the PNG figures in plots/ (96: screen size; 300 for slides and papers; {ChartOutput.MinDpi}-{ChartOutput.MaxDpi})", DefaultValueFactory = _ => ChartOutput.ScreenDpi };
        var checkHtml = new Option<bool>("--check-html") { Description = "render report.html in headless Chromium and check the screenshot (report-screenshot.png)" };
        var command = new Command("report", "Regenerate the results tables (Markdown, LaTeX, CSV), plots (SVG and PNG) and report.html from the results database.")
        {
            db, output, dpi, checkHtml,
        };
        command.SetAction(parse => CliErrors.Run(() => Run(parse.GetValue(db)!, parse.GetValue(output)!, parse.GetValue(dpi), parse.GetValue(checkHtml))));
        return command;
    }

    private static int Run(string db, string output, int dpi, bool checkHtml)
    {
        var summary = ReportGenerator.Generate(db, output, dpi);
        if (summary.Empty)
            Console.WriteLine($"report: no results yet in {db}; wrote an empty report to {summary.HtmlPath}");
        else
            Console.WriteLine($"report: {summary.Models} model(s), {summary.Cells} cells, {summary.Metrics} metrics -> {summary.Tables} tables, {summary.Plots} plots, {summary.Files.Count} files; {summary.HtmlPath}");
        if (checkHtml)
        {
            string png = Path.Combine(Path.GetDirectoryName(summary.HtmlPath)!, "report-screenshot.png");
            var shot = HtmlCheck.Check(summary.HtmlPath, png);
            Console.WriteLine($"check-html: {png} {shot.Width}x{shot.Height}, {shot.DistinctColors} colours, {shot.BackgroundFraction:P1} background: ok");
        }
        return 0;
    }
}
