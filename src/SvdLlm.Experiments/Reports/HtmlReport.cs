using System.Globalization;
using System.Text;

namespace SvdLlm.Experiments.Reports;

/// <summary>Everything about one model that the report shows.</summary>
public sealed record ModelReport(ModelGroup Model, IReadOnlyList<ResultTable> Tables, SimpleTable? Memory, SimpleTable? Compression, SimpleTable? Efficiency, SimpleTable? Timings, IReadOnlyList<PlotFile> Plots);

/// <summary>
/// The single-file HTML report: CSS in a style element, SVG plots inline, no scripts, fonts, images or links that
/// leave the file, so it opens the same from a CI artifact, an e-mail or a laptop without network.
/// </summary>
public static class HtmlReport
{
    /// <summary>The page background outside main, which the Chromium check looks for in the screenshot's corner.</summary>
    public const int BodyBackground = 0xf6f6f4;

    private const string Css = """
        body { margin: 0; background: #f6f6f4; color: #1d1d1d; font: 14px/1.45 "DejaVu Sans", Helvetica, Arial, sans-serif; }
        main { box-sizing: border-box; max-width: 1220px; margin: 0 auto; padding: 18px 28px 40px; background: #ffffff; }
        h1 { font-size: 26px; margin: 6px 0 4px; }
        h2 { font-size: 21px; margin: 34px 0 8px; padding-top: 10px; border-top: 2px solid #d8d8d8; }
        h3 { font-size: 16px; margin: 22px 0 6px; }
        p.meta { color: #555555; margin: 0 0 12px; }
        p.note { color: #555555; font-size: 12px; margin: 4px 0; max-width: 1100px; }
        p.empty { font-size: 17px; padding: 18px; background: #fff6dd; border: 1px solid #e5c66b; }
        nav ul { margin: 4px 0 0; padding-left: 20px; columns: 2; }
        table { border-collapse: collapse; margin: 6px 0 4px; font-size: 13px; }
        th, td { padding: 3px 9px; border-bottom: 1px solid #e2e2e2; text-align: right; white-space: nowrap; }
        th { border-bottom: 2px solid #444444; font-weight: 600; white-space: normal; vertical-align: bottom; }
        table.plain td { white-space: normal; max-width: 340px; overflow-wrap: anywhere; }
        table.plain td.num, table.plain td:first-child { white-space: nowrap; }
        th.group { text-align: center; border-bottom: 1px solid #888888; }
        td.method, th.method, table.plain th, table.plain td { text-align: left; }
        table.plain td.num, table.plain th.num { text-align: right; }
        tr.baseline td { background: #f1f1ee; font-style: italic; }
        td.missing { color: #aaaaaa; }
        strong { font-weight: 700; }
        .plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 14px; }
        figure { margin: 0; padding: 8px; border: 1px solid #e2e2e2; }
        figure svg { max-width: 100%; height: auto; display: block; margin: 0 auto; }
        figcaption { font-size: 12px; color: #555555; margin-top: 4px; }
        .scroll { overflow-x: auto; }
        code { background: #f0f0f0; padding: 0 3px; }
        footer { margin-top: 36px; color: #666666; font-size: 12px; }
        """;

    public static string Render(ReportData data, IReadOnlyList<ModelReport> models, SimpleTable provenance, IReadOnlyList<SimpleTable>? deltas = null, IReadOnlyList<PlotFile>? deltaPlots = null)
    {
        var s = data.Snapshot;
        var b = new StringBuilder();
        b.Append("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
        b.Append("<title>SVD-LLM experiment report</title>\n<style>\n").Append(Css).Append("\n</style>\n</head>\n<body>\n<main>\n");
        b.Append("<h1>SVD-LLM experiment report</h1>\n");
        string? lastEnd = s.Runs.Select(r => r.EndedUtc).OfType<string>().Order(StringComparer.Ordinal).LastOrDefault();
        b.Append("<p class=\"meta\">From <code>").Append(Escape.Html(s.DatabaseName)).Append("</code> (schema v").Append(s.SchemaVersion.ToString(CultureInfo.InvariantCulture)).Append("): ")
            .Append(Count(data.Models.Count, "model")).Append(", ").Append(Count(s.Cells.Count, "cell")).Append(", ").Append(Count(s.Metrics.Count, "metric"))
            .Append(", ").Append(Count(s.Runs.Count, "run")).Append(lastEnd is null ? "; no run has ended yet" : "; last run ended " + Escape.Html(lastEnd) + " UTC").Append(".</p>\n");

        if (s.IsEmpty)
        {
            b.Append("<p class=\"empty\">No results yet: the database has no cells. Run <code>./build.sh --target=RunMatrix</code> (or a single stage) to fill it, then regenerate this report with <code>svdllm report</code>.</p>\n");
        }
        else
        {
            b.Append("<nav><strong>Contents</strong>\n<ul>\n");
            foreach (var m in models)
                b.Append("<li><a href=\"#model-").Append(m.Model.Slug).Append("\">").Append(Escape.Html(m.Model.Display)).Append("</a> (")
                    .Append(Count(m.Tables.Count, "table")).Append(", ").Append(Count(m.Plots.Count, "plot")).Append(")</li>\n");
            if (deltas is { Count: > 0 }) b.Append("<li><a href=\"#delta\">Delta compression</a> (").Append(Count(deltas.Count, "table")).Append(")</li>\n");
            b.Append("<li><a href=\"#provenance\">Provenance</a></li>\n</ul>\n</nav>\n");
            foreach (var m in models) Model(b, m);
            if (deltas is { Count: > 0 })
            {
                b.Append("<h2 id=\"delta\">Delta compression</h2>\n");
                foreach (var t in deltas) b.Append("<div class=\"scroll\">\n").Append(TableRenderers.Html(t)).Append("</div>\n");
                if (deltaPlots is { Count: > 0 })
                {
                    b.Append("<div class=\"plots\">\n");
                    foreach (var p in deltaPlots)
                        b.Append("<figure>\n").Append(p.Svg).Append("<figcaption>").Append(Escape.Html(p.Caption)).Append(" (<code>plots/").Append(Escape.Html(p.Name)).Append(".svg, .png</code>)</figcaption>\n</figure>\n");
                    b.Append("</div>\n");
                }
            }
        }

        b.Append("<h2 id=\"provenance\">Provenance</h2>\n");
        if (provenance.Rows.Count == 0) b.Append("<p class=\"note\">No runs recorded.</p>\n");
        else b.Append("<div class=\"scroll\">\n").Append(TableRenderers.Html(provenance)).Append("</div>\n");
        b.Append("<footer>Generated by <code>svdllm report</code> from the results database alone; every table is also in <code>tables/</code> (Markdown, LaTeX, CSV) and every plot in <code>plots/</code>.</footer>\n");
        b.Append("</main>\n</body>\n</html>\n");
        return b.ToString();
    }

    private static void Model(StringBuilder b, ModelReport m)
    {
        b.Append("<h2 id=\"model-").Append(m.Model.Slug).Append("\">Model: ").Append(Escape.Html(m.Model.Display)).Append("</h2>\n");
        b.Append("<p class=\"meta\">Model key <code>").Append(Escape.Html(ReportData.Short(m.Model.ModelKey))).Append("</code>; ").Append(Count(m.Model.Cells.Count, "cell")).Append(".</p>\n");
        if (m.Tables.Count == 0) b.Append("<p class=\"note\">No accuracy or perplexity results for this model yet.</p>\n");
        foreach (var t in m.Tables)
        {
            b.Append("<h3>").Append(Escape.Html(t.Ratio != 0 ? "Compression ratio " + NumberFormat.Percent(t.Ratio) : t.Rows.Any(r => !r.IsBaseline) ? "Full rank (quantized)" : "Uncompressed")).Append("</h3>\n");
            b.Append("<div class=\"scroll\">\n").Append(TableRenderers.Html(t)).Append("</div>\n");
        }
        if (m.Plots.Count > 0)
        {
            b.Append("<h3>Plots</h3>\n<div class=\"plots\">\n");
            foreach (var p in m.Plots)
                b.Append("<figure>\n").Append(p.Svg).Append("<figcaption>").Append(Escape.Html(p.Caption)).Append(" (<code>plots/").Append(Escape.Html(p.Name)).Append(".svg, .png</code>)</figcaption>\n</figure>\n");
            b.Append("</div>\n");
        }
        foreach (var (title, table) in new[] { ("By memory", m.Memory), ("Compression statistics", m.Compression), ("Efficiency", m.Efficiency), ("Wall time by stage", m.Timings) })
        {
            if (table is null) continue;
            b.Append("<h3>").Append(title).Append("</h3>\n<div class=\"scroll\">\n").Append(TableRenderers.Html(table)).Append("</div>\n");
        }
    }

    private static string Count(int n, string noun) => n.ToString(CultureInfo.InvariantCulture) + " " + noun + (n == 1 ? "" : "s");
}
