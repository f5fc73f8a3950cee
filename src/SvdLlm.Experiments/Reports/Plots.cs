using System.Globalization;
using SvdLlm.Experiments.Reports.Charts;

namespace SvdLlm.Experiments.Reports;

/// <summary>
/// One figure of the report: plots/NAME.svg (also inlined in report.html) and plots/NAME.png, and the text shown with it.
/// The SVG is drawn once here; the PNG when the report is written, at the dpi asked for.
/// </summary>
public sealed record PlotFile(string Name, Chart Chart, string Caption)
{
    public string Title => Chart.Title;
    public string SvgFile => Name + ".svg";
    public string PngFile => Name + ".png";

    /// <summary>Ids start with the figure's name, so they stay unique among the figures inlined in one page.</summary>
    public string Svg { get; } = ChartOutput.ToSvg(Chart, "fig-" + Name);
}

/// <summary>The report's plots, built from the database snapshot; one method keeps one colour and marker throughout.</summary>
public static class Plots
{
    private static readonly string[] MatrixTypeOrder = ["q_proj", "k_proj", "v_proj", "o_proj", "out_proj", "gate_proj", "up_proj", "down_proj", "fc1", "fc2"];

    /// <summary>Methods whose matrix_stats hold a V2 theoretical-loss allocation.</summary>
    public static readonly string[] AllocatingMethods = ["svdllm-v2", "svdllm-v2-alloc"];

    private static string Percent(double v) => NumberFormat.Percent(v);

    /// <summary>Training curves are drawn as the mean over this many steps either side of each step.</summary>
    private const int SmoothingHalfWidth = 4;

    /// <summary>
    /// Per fine-tuned model with delta cells and per perplexity task: perplexity against the CR achieved (log axis), one
    /// curve per delta method, the base and the fine-tuned model as dashed lines, so how much of the fine-tune each
    /// method keeps at each budget reads off directly, on the fine-tuning text and off it.
    /// </summary>
    public static IReadOnlyList<PlotFile> ForDeltas(ReportData data)
    {
        var plots = new List<PlotFile>();
        foreach (var g in data.DeltaCells.GroupBy(c => (c.Model, c.ModelKey)).OrderBy(g => g.Key.Model, StringComparer.Ordinal))
        {
            var (baseCell, ftCell) = SupportTables.DeltaReferences(data, g.Key.Model, g.Key.ModelKey, g.First());
            var tasks = g.SelectMany(c => data.MetricsOf(c.CellKey)).Where(m => m.Metric == TaskCatalog.PerplexityMetric).Select(m => m.Task).Distinct()
                .Select(t => TaskCatalog.Get(t, [TaskCatalog.PerplexityMetric])).OrderBy(t => t.Order).ThenBy(t => t.Name, StringComparer.Ordinal).ToList();
            foreach (var task in tasks)
            {
                var series = new List<Series>();
                var variants = new Dictionary<string, int>(StringComparer.Ordinal);
                foreach (var method in g.GroupBy(MethodCatalog.Label).OrderBy(m => MethodCatalog.Get(m.First().Method).Order).ThenBy(m => m.Key, StringComparer.Ordinal))
                {
                    var points = method.Select(c => (Comp: data.Compression(c.CellKey), Y: data.Metric(c.CellKey, task.Name, TaskCatalog.PerplexityMetric)?.Value))
                        .Where(p => SupportTables.DeltaAchievedRatio(p.Comp) is not null && p.Y is double y && double.IsFinite(y) && y > 0)
                        .Select(p => (SupportTables.DeltaAchievedRatio(p.Comp)!.Value, p.Y!.Value)).OrderBy(p => p.Item1).ToList();
                    string name = method.First().Method;
                    int variant = variants.GetValueOrDefault(name);
                    variants[name] = variant + 1;
                    if (points.Count > 0) series.Add(new Series(method.Key, points, ChartStyle.ForVariant(name, variant)));
                }
                if (series.Count == 0) continue;
                var refs = new[] { (baseCell, "base"), (ftCell, "fine-tuned") }
                    .Select(x => (x.Item2, x.Item1 is null ? null : data.Metric(x.Item1.CellKey, task.Name, TaskCatalog.PerplexityMetric)))
                    .Where(x => x.Item2 is { Value: > 0 } m && double.IsFinite(m.Value))
                    .Select(x => new ReferenceLine($"{x.Item1} ({NumberFormat.Perplexity(x.Item2!.Value)})", x.Item2!.Value)).ToList();
                var chart = new XYChart
                {
                    Title = $"{g.Key.Model}: {task.Display} perplexity vs delta compression ratio",
                    XAxis = new Axis("CR achieved (delta float16 bytes / bytes stored)", ScaleKind.Log10, Format: v => NumberFormat.Fixed(v, 0)),
                    // Linear: a delta method moves perplexity between the fine-tuned and the base values, a few percent
                    // apart, which a log axis spanning decades would flatten.
                    YAxis = new Axis($"{task.Display} perplexity", ScaleKind.Linear, Format: v => NumberFormat.Fixed(v, 1)),
                    Series = series,
                    References = refs,
                };
                plots.Add(new PlotFile($"delta_{Escape.Slug(g.Key.Model)}_{Escape.Slug(task.Name)}", chart,
                    $"{task.Display} perplexity (lower is better) of the base plus each compressed delta, against the CR achieved; dashed: the base and the fine-tuned model."));
            }
        }
        return plots;
    }

    public static IReadOnlyList<PlotFile> ForModel(ReportData data, ModelGroup model)
    {
        var plots = new List<PlotFile>();
        var columns = data.Columns(model);
        var compressed = model.Cells.Where(c => c.Method != MethodCatalog.Original).ToList();
        var originals = model.Cells.Where(c => c.Method == MethodCatalog.Original).ToList();
        var labels = ReportData.RowLabelsPerRatio(compressed);
        var originalLabels = ReportData.RowLabels(originals);
        var seriesKeys = SeriesKeys(compressed);

        foreach (var col in columns.Where(c => c.Kind == TaskKind.Perplexity))
        {
            var series = BuildSeries(seriesKeys, cell => data.Metric(cell.CellKey, col.Task!, col.Metric)?.Value, logAxis: true);
            if (series.Count == 0) continue;
            var refs = originals.Select(o => (o, data.Metric(o.CellKey, col.Task!, col.Metric)))
                .Where(x => x.Item2 is { Value: > 0 } m && double.IsFinite(m.Value))
                .Select(x => new ReferenceLine($"{originalLabels[x.o.CellKey]} ({NumberFormat.Perplexity(x.Item2!.Value)})", x.Item2!.Value)).ToList();
            var chart = new XYChart
            {
                Title = $"{model.Display}: {col.Header} perplexity vs compression ratio",
                XAxis = new Axis("Compression ratio (fraction of parameters removed)", Format: Percent, Include: [0.0]),
                YAxis = new Axis($"{col.Header} perplexity", ScaleKind.Log10),
                Series = series,
                References = refs,
            };
            plots.Add(new PlotFile($"{model.Slug}_ppl_{Escape.Slug(col.Task!)}", chart,
                $"{col.Header} perplexity (log scale, lower is better) per method; dashed: the uncompressed model."));
        }

        // The same perplexities against the bytes the decoder linears take, where SVD and quantization meet.
        var bytes = LinearBytes(data, model);
        if (bytes.Count > 0 && compressed.Any(c => bytes.ContainsKey(c.CellKey)))
            foreach (var col in columns.Where(c => c.Kind == TaskKind.Perplexity))
            {
                var series = new List<Series>();
                foreach (var key in seriesKeys)
                {
                    var points = key.Cells.Where(c => bytes.ContainsKey(c.CellKey)).Select(c => (X: bytes[c.CellKey] / (double)(1 << 20), Y: data.Metric(c.CellKey, col.Task!, col.Metric)?.Value))
                        .Where(p => p.Y is double v && double.IsFinite(v) && v > 0).Select(p => (p.X, p.Y!.Value)).OrderBy(p => p.X).ToList();
                    if (points.Count > 0) series.Add(new Series(key.Label, points, key.Style));
                }
                if (series.Count == 0) continue;
                var refs = originals.Where(o => bytes.ContainsKey(o.CellKey)).Select(o => (o, data.Metric(o.CellKey, col.Task!, col.Metric)))
                    .Where(x => x.Item2 is { Value: > 0 } m && double.IsFinite(m.Value))
                    .Select(x => new ReferenceLine($"{originalLabels[x.o.CellKey]} ({NumberFormat.Perplexity(x.Item2!.Value)}, {NumberFormat.Fixed(bytes[x.o.CellKey] / (double)(1 << 20), 1)} MiB)", x.Item2!.Value)).ToList();
                var chart = new XYChart
                {
                    Title = $"{model.Display}: {col.Header} perplexity vs decoder-linear memory",
                    XAxis = new Axis("Decoder linears' stored weights (MiB)", Format: v => NumberFormat.Fixed(v, 1), Include: [0.0]),
                    YAxis = new Axis($"{col.Header} perplexity", ScaleKind.Log10),
                    Series = series,
                    References = refs,
                };
                plots.Add(new PlotFile($"{model.Slug}_ppl_bytes_{Escape.Slug(col.Task!)}", chart,
                    $"{col.Header} perplexity (log scale) against the bytes the decoder linears are stored in (factors, codes, scales and zeros): methods compared at equal memory; dashed: the uncompressed model."));
            }

        if (columns.FirstOrDefault(c => c.Kind == TaskKind.Accuracy && c.Task is null) is not null || columns.Count(c => c.Kind == TaskKind.Accuracy) == 1)
        {
            var accColumns = columns.Where(c => c.Kind == TaskKind.Accuracy && c.Task is not null).ToList();
            string what = accColumns.Count == 1 ? accColumns[0].Header + " accuracy" : $"average accuracy ({accColumns.Count} tasks)";
            var series = BuildSeries(seriesKeys, cell => data.AverageAccuracy(cell.CellKey, columns), logAxis: false);
            if (series.Count > 0)
            {
                var refs = originals.Select(o => (o, data.AverageAccuracy(o.CellKey, columns))).Where(x => x.Item2 is double)
                    .Select(x => new ReferenceLine($"{originalLabels[x.o.CellKey]} ({NumberFormat.Accuracy(x.Item2!.Value)})", x.Item2!.Value)).ToList();
                var chart = new XYChart
                {
                    Title = $"{model.Display}: {what} vs compression ratio",
                    XAxis = new Axis("Compression ratio (fraction of parameters removed)", Format: Percent, Include: [0.0]),
                    YAxis = new Axis(char.ToUpperInvariant(what[0]) + what[1..]),
                    Series = series,
                    References = refs,
                };
                plots.Add(new PlotFile($"{model.Slug}_accuracy", chart,
                    $"{char.ToUpperInvariant(what[0]) + what[1..]} per method (higher is better; {string.Join(", ", accColumns.Select(c => c.Header))}); dashed: the uncompressed model."));
            }
        }

        var usedNames = new HashSet<string>();
        foreach (var cell in compressed.Where(c => AllocatingMethods.Contains(c.Method))
                     .OrderBy(c => ReportData.RatioKey(c.Ratio)).ThenBy(c => MethodCatalog.Get(c.Method).Order).ThenBy(c => c.CellKey, StringComparer.Ordinal))
        {
            var stats = data.MatrixStats(cell.CellKey);
            if (stats.Count == 0) continue;
            string label = labels[cell.CellKey];
            string baseName = $"{model.Slug}_alloc_{Escape.Slug(cell.Method)}_r{NumberFormat.PercentNumber(cell.Ratio)}";
            string name = baseName;
            for (int i = 2; !usedNames.Add(name); i++) name = baseName + "-" + i.ToString(CultureInfo.InvariantCulture);
            var types = stats.Select(s => s.MatrixType).Distinct().OrderBy(TypeOrder).ThenBy(t => t, StringComparer.Ordinal).ToList();
            var series = types.Select((t, i) => new Series(t, stats.Where(s => s.MatrixType == t).OrderBy(s => s.Layer).Select(s => ((double)s.Layer, s.Ratio)).ToList(), ChartStyle.Slot(i))).ToList();
            var line = new XYChart
            {
                Title = $"{model.Display}, {label} at {Percent(cell.Ratio)}: allocated ratio per layer",
                XAxis = new Axis("Decoder layer", IntegerTicks: true),
                YAxis = new Axis("Allocated ratio (fraction removed)", Format: Percent),
                Series = series,
                References = [new ReferenceLine($"uniform target {Percent(cell.Ratio)}", cell.Ratio)],
            };
            plots.Add(new PlotFile(name, line,
                "Ratio removed from each matrix by the theoretical-loss allocation, one line per matrix type (its group); dashed: the uniform target the group mean keeps."));
            var layers = stats.Select(s => s.Layer).Distinct().Order().ToList();
            var heat = new Heatmap
            {
                Title = $"{model.Display}, {label} at {Percent(cell.Ratio)}: allocation",
                XLabel = "Decoder layer",
                YLabel = "Matrix type",
                Columns = layers.Select(l => l.ToString(CultureInfo.InvariantCulture)).ToList(),
                Rows = types,
                Values = types.Select(t => (IReadOnlyList<double?>)layers.Select(l => stats.FirstOrDefault(s => s.MatrixType == t && s.Layer == l)?.Ratio).ToList()).ToList(),
                Format = v => NumberFormat.Fixed(v, 2),
                ColorLabel = "ratio removed",
            };
            plots.Add(new PlotFile(name + "_heatmap", heat, "The same allocation as a heatmap (matrix type × layer)."));
        }

        var lossSeries = new List<Series>();
        foreach (var key in seriesKeys)
        {
            var points = key.Cells.SelectMany(c => data.MatrixStats(c.CellKey))
                .Where(s => s.TheoreticalLoss is > 0 && s.MeasuredLoss is > 0 && double.IsFinite(s.TheoreticalLoss.Value) && double.IsFinite(s.MeasuredLoss.Value))
                .Select(s => (s.TheoreticalLoss!.Value, s.MeasuredLoss!.Value)).ToList();
            if (points.Count > 0) lossSeries.Add(new Series(key.Label, points, key.Style));
        }
        if (lossSeries.Count > 0)
        {
            var scatter = new XYChart
            {
                Title = $"{model.Display}: theoretical vs measured truncation loss",
                XAxis = new Axis("Theoretical loss", ScaleKind.Log10),
                YAxis = new Axis("Measured loss ‖WX − W′X‖_F", ScaleKind.Log10),
                Series = lossSeries,
                References = [new ReferenceLine("y = x", null)],
                Lines = false,
            };
            plots.Add(new PlotFile($"{model.Slug}_loss", scatter,
                "Each point is one compressed matrix; on the dashed line the theoretical loss predicts the measured one exactly (SVD-LLM V2's Theorem 3.1)."));
        }

        // Training while compressing (LoRA recovery, Dobi-SVD's γ): the loss of every step, the stages one after another.
        var curves = new List<Series>();
        var stageLengths = new List<string>();
        foreach (var key in seriesKeys)
            foreach (var (cell, i) in key.Cells.OrderBy(c => ReportData.RatioKey(c.Ratio)).ThenBy(c => c.CellKey, StringComparer.Ordinal).Select((c, i) => (c, i)))
            {
                var rows = data.TrainingCurve(cell.CellKey);
                if (rows.Count == 0) continue;
                // Each step's batch differs, so the raw loss is mostly batch-to-batch noise: the curve is the mean of the
                // steps within ±4 of each step in the same stage (the raw values are in tables/training_curves.csv).
                var points = new List<(double X, double Y)>();
                long offset = 0;
                foreach (var stage in rows.GroupBy(r => r.Stage))
                {
                    var losses = stage.OrderBy(r => r.Step).Select(r => r.Loss).ToArray();
                    for (int t = 0; t < losses.Length; t++)
                    {
                        int lo = Math.Max(0, t - SmoothingHalfWidth), hi = Math.Min(losses.Length - 1, t + SmoothingHalfWidth);
                        double mean = 0;
                        for (int j = lo; j <= hi; j++) mean += losses[j];
                        points.Add((offset + t + 1, mean / (hi - lo + 1)));
                    }
                    offset += losses.Length;
                }
                curves.Add(new Series($"{key.Label} at {Percent(cell.Ratio)}", points, key.Style with { Marker = ChartStyle.Marker(i) }));
                stageLengths.Add(string.Join(" + ", rows.GroupBy(r => r.Stage).Select(g => $"{g.Key} {g.Count()}")));
            }
        if (curves.Count > 0)
        {
            var chart = new XYChart
            {
                Title = $"{model.Display}: training loss while compressing, per step",
                XAxis = new Axis("Optimizer step (stages one after another)", IntegerTicks: true),
                YAxis = new Axis($"Training loss, mean of {2 * SmoothingHalfWidth + 1} neighbouring steps"),
                Series = curves,
            };
            plots.Add(new PlotFile($"{model.Slug}_training", chart,
                $"The next-token cross-entropy of the training batches while compressing, each point the mean of up to {2 * SmoothingHalfWidth + 1} neighbouring steps of its stage (raw values: tables/training_curves.csv) (LoRA recovery: adapters on every W_u, merged, then on every W_v; Dobi-SVD: stage 1's γ training; steps: {string.Join("; ", stageLengths.Distinct())})."));
        }
        return plots;
    }

    /// <summary>
    /// Stored bytes of the decoder linears per cell: a compressed cell's from its compression row, the original's from
    /// the "before" of any cell compressed from the same model (null bytes: compressed before the store kept them).
    /// </summary>
    public static Dictionary<string, long> LinearBytes(ReportData data, ModelGroup model)
    {
        var bytes = new Dictionary<string, long>();
        long? before = null;
        foreach (var c in model.Cells)
            if (data.Compression(c.CellKey) is { LinearBytesAfter: long after } row)
            {
                bytes[c.CellKey] = after;
                before ??= row.LinearBytesBefore;
            }
        if (before is long b)
            foreach (var o in model.Cells.Where(c => c.Method == MethodCatalog.Original)) bytes[o.CellKey] = b;
        return bytes;
    }

    private static int TypeOrder(string type) => Array.IndexOf(MatrixTypeOrder, type) is int i && i >= 0 ? i : 100;

    /// <summary>One series per method, or per (method, calibration, …) when a model has several of a method; the colour follows the method.</summary>
    private sealed record SeriesKey(string Label, SeriesStyle Style, IReadOnlyList<CellRow> Cells);

    private static List<SeriesKey> SeriesKeys(IReadOnlyList<CellRow> compressed)
    {
        // A label names a row within one ratio; across ratios the same method and calibration form one curve.
        // A method with other parameters ("GPTQ 4-bit", "GPTQ 3-bit") is another curve, in the method's colour.
        var byCurve = compressed.GroupBy(c => (c.Method, Label: MethodCatalog.Label(c), Calibration: c.CalibrationKey ?? "", c.MatrixName)).ToList();
        bool ambiguous = byCurve.GroupBy(g => g.Key.Label).Any(g => g.Count() > 1);
        var keys = new List<SeriesKey>();
        var variants = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var g in byCurve.OrderBy(g => MethodCatalog.Get(g.Key.Method).Order).ThenBy(g => g.Key.Method, StringComparer.Ordinal).ThenBy(g => g.Key.Label, StringComparer.Ordinal)
                     .ThenBy(g => g.Key.Calibration, StringComparer.Ordinal).ThenBy(g => g.Key.MatrixName, StringComparer.Ordinal))
        {
            string display = g.Key.Label;
            var siblings = byCurve.Where(o => o.Key.Label == g.Key.Label).ToList();
            if (ambiguous && siblings.Count > 1)
            {
                bool byCalibration = siblings.Select(o => ReportData.CalibrationLabel(o.First())).Distinct().Count() == siblings.Count;
                display += $" ({(byCalibration ? ReportData.CalibrationLabel(g.First()) : g.Key.MatrixName)})";
            }
            int variant = variants.GetValueOrDefault(g.Key.Method);
            variants[g.Key.Method] = variant + 1;
            keys.Add(new SeriesKey(display, ChartStyle.ForVariant(g.Key.Method, variant), g.OrderBy(c => c.Ratio).ToList()));
        }
        return keys;
    }

    private static List<Series> BuildSeries(IReadOnlyList<SeriesKey> keys, Func<CellRow, double?> value, bool logAxis)
    {
        var series = new List<Series>();
        foreach (var key in keys)
        {
            var points = key.Cells.Select(c => (c.Ratio, value(c))).Where(p => p.Item2 is double v && double.IsFinite(v) && (!logAxis || v > 0))
                .Select(p => (p.Ratio, p.Item2!.Value)).ToList();
            if (points.Count > 0) series.Add(new Series(key.Label, points, key.Style));
        }
        return series;
    }
}
