using System.Globalization;
using System.Text.Json;

namespace SvdLlm.Experiments.Reports;

public enum Better { Lower, Higher, None }

/// <param name="Task">the metrics task, or null for a derived column (the average)</param>
public sealed record TableColumn(string Key, string Header, TaskKind Kind, Better Better, string? Task, string Metric)
{
    public string Format(double v) => Kind == TaskKind.Perplexity ? NumberFormat.Perplexity(v) : NumberFormat.Accuracy(v);
}

public sealed record TableValue(double Value, double? Stderr, long? N, string? Protocol);

/// <param name="IsBaseline">the uncompressed model's row, which is never bold</param>
public sealed record TableRow(string Method, string Label, bool IsBaseline, string CellKey, string CalibrationLabel, IReadOnlyList<TableValue?> Values);

/// <summary>One paper-layout table: one model at one ratio, methods as rows, perplexities then accuracies and their average as columns.</summary>
public sealed record ResultTable(string Id, string Model, double Ratio, IReadOnlyList<TableColumn> Columns, IReadOnlyList<TableRow> Rows, IReadOnlyList<string> Notes)
{
    public string Title => Ratio != 0 ? $"{Model} at {NumberFormat.Percent(Ratio)} compression"
        : Rows.Any(r => !r.IsBaseline) ? $"{Model}: full rank (quantized)" : $"{Model}: uncompressed";

    /// <summary>
    /// Rows that hold the best value of a column among the compressed methods (the papers bold those, not the original).
    /// Compared as printed, so that two values that print the same are both bold.
    /// </summary>
    public IReadOnlySet<int> BestRows(int column)
    {
        var col = Columns[column];
        var candidates = Rows.Select((r, i) => (r, i)).Where(x => !x.r.IsBaseline && x.r.Values[column] is { } v && !double.IsNaN(v.Value)).ToList();
        if (col.Better == Better.None || candidates.Count == 0)
            return new HashSet<int>();
        double best = col.Better == Better.Lower ? candidates.Min(x => x.r.Values[column]!.Value) : candidates.Max(x => x.r.Values[column]!.Value);
        string printed = col.Format(best);
        return candidates.Where(x => col.Format(x.r.Values[column]!.Value) == printed).Select(x => x.i).ToHashSet();
    }
}

/// <summary>A plain table (compression statistics, efficiency, timings, provenance): display strings, plus raw values for CSV.</summary>
public sealed record SimpleTable(string Id, string Title, IReadOnlyList<string> Headers, IReadOnlyList<bool> Numeric,
    IReadOnlyList<IReadOnlyList<string>> Rows, IReadOnlyList<string> CsvHeaders, IReadOnlyList<IReadOnlyList<string>> CsvRows, IReadOnlyList<string> Notes);

/// <summary>One model as the report groups it: by name, and by weights when two models share a name.</summary>
public sealed record ModelGroup(string Name, string ModelKey, string Display, string Slug, IReadOnlyList<CellRow> Cells);

/// <summary>The snapshot indexed the way tables and plots need it.</summary>
public sealed class ReportData
{
    public ResultsSnapshot Snapshot { get; }
    public IReadOnlyList<ModelGroup> Models { get; }
    private readonly Dictionary<(string Cell, string Task, string Metric), MetricRow> _metrics;
    private readonly Dictionary<string, CompressionRow> _compression;
    private readonly Dictionary<string, List<MatrixStatRow>> _matrixStats;
    private readonly Dictionary<string, List<TimingRow>> _timings;
    private readonly Dictionary<string, List<TrainingCurveRow>> _curves;

    public ReportData(ResultsSnapshot snapshot)
    {
        Snapshot = snapshot;
        _metrics = snapshot.Metrics.ToDictionary(m => (m.CellKey, m.Task, m.Metric));
        _compression = snapshot.Compression.ToDictionary(c => c.CellKey);
        _matrixStats = snapshot.MatrixStats.GroupBy(s => s.CellKey).ToDictionary(g => g.Key, g => g.ToList());
        _timings = snapshot.Timings.GroupBy(s => s.CellKey).ToDictionary(g => g.Key, g => g.ToList());
        _curves = snapshot.TrainingCurves.GroupBy(s => s.CellKey).ToDictionary(g => g.Key, g => g.ToList());

        DeltaCells = snapshot.Cells.Where(IsDelta).ToList();
        var groups = snapshot.Cells.Where(c => !IsDelta(c)).GroupBy(c => (c.Model, c.ModelKey)).OrderBy(g => g.Key.Model, StringComparer.Ordinal).ThenBy(g => g.Key.ModelKey, StringComparer.Ordinal).ToList();
        var nameCounts = groups.GroupBy(g => g.Key.Model).ToDictionary(g => g.Key, g => g.Count());
        var models = new List<ModelGroup>();
        var usedSlugs = new HashSet<string>();
        foreach (var g in groups)
        {
            string display = nameCounts[g.Key.Model] > 1 ? $"{g.Key.Model} [{Short(g.Key.ModelKey)}]" : g.Key.Model;
            string slug = Escape.Slug(display);
            for (int i = 2; !usedSlugs.Add(slug); i++) slug = Escape.Slug(display) + "-" + i.ToString(CultureInfo.InvariantCulture);
            models.Add(new ModelGroup(g.Key.Model, g.Key.ModelKey, display, slug, g.ToList()));
        }
        Models = models;
    }

    /// <summary>Delta-compression cells (methods delta-*): reported in their own tables, beside their base and fine-tuned models, not among the SVD cells.</summary>
    public IReadOnlyList<CellRow> DeltaCells { get; }

    public static bool IsDelta(CellRow c) => SvdLlm.Compression.Delta.DeltaCheckpoint.IsMethodName(c.Method);

    public MetricRow? Metric(string cell, string task, string metric) => _metrics.GetValueOrDefault((cell, task, metric));
    public CompressionRow? Compression(string cell) => _compression.GetValueOrDefault(cell);
    public IReadOnlyList<MatrixStatRow> MatrixStats(string cell) => _matrixStats.GetValueOrDefault(cell) ?? [];
    public IReadOnlyList<TimingRow> Timings(string cell) => _timings.GetValueOrDefault(cell) ?? [];

    /// <summary>The cell's training loss per step, ordered by stage then step (LoRA recovery's lora_u, then lora_v).</summary>
    public IReadOnlyList<TrainingCurveRow> TrainingCurve(string cell) => _curves.GetValueOrDefault(cell) ?? [];
    public IEnumerable<MetricRow> MetricsOf(string cell) => Snapshot.Metrics.Where(m => m.CellKey == cell);

    public static string Short(string key) => key.Length <= 8 ? key : key[..8];

    /// <summary>Ratios are REAL in the database; two cells at "the same" ratio are grouped at 1e-9.</summary>
    public static double RatioKey(double ratio) => Math.Round(ratio, 9);

    /// <summary>"wikitext2, 256×2048, seed 3" from the calibration JSON, whatever spelling of the fields the writer used.</summary>
    public static string CalibrationLabel(CellRow cell)
    {
        if (cell.CalibrationJson is null) return "";
        try
        {
            using var doc = JsonDocument.Parse(cell.CalibrationJson);
            if (doc.RootElement.ValueKind != JsonValueKind.Object) return Short(cell.CalibrationKey ?? "");
            string? Field(params string[] names)
            {
                foreach (string n in names)
                    if (doc.RootElement.TryGetProperty(n, out var p))
                        return p.ValueKind == JsonValueKind.String ? p.GetString() : p.GetRawText();
                return null;
            }
            var parts = new List<string>();
            if (Field("dataset", "data") is { } d) parts.Add(d);
            string? samples = Field("samples", "nsamples", "n_samples");
            string? seqLen = Field("seq_len", "seqlen", "sequence_length");
            if (samples is not null && seqLen is not null) parts.Add($"{samples}×{seqLen}");
            else if (samples is not null) parts.Add($"{samples} samples");
            if (Field("seed") is { } seed) parts.Add($"seed {seed}");
            return parts.Count > 0 ? string.Join(", ", parts) : Short(cell.CalibrationKey ?? "");
        }
        catch (JsonException)
        {
            return Short(cell.CalibrationKey ?? "");
        }
    }

    /// <summary>
    /// Row labels for a set of cells: the method's display name, plus the calibration, the matrix or the cell key
    /// when two rows would otherwise read the same.
    /// </summary>
    public static Dictionary<string, string> RowLabels(IReadOnlyList<CellRow> cells)
    {
        var labels = new Dictionary<string, string>();
        foreach (var byMethod in cells.GroupBy(MethodCatalog.Label))
        {
            string display = byMethod.Key;
            var list = byMethod.ToList();
            if (list.Count == 1) { labels[list[0].CellKey] = display; continue; }
            Func<CellRow, string>[] distinguishers = [CalibrationLabel, c => c.MatrixName, c => Short(c.CellKey)];
            var chosen = distinguishers.FirstOrDefault(f => list.Select(f).Distinct().Count() == list.Count) ?? (c => c.CellKey);
            foreach (var c in list) labels[c.CellKey] = $"{display} ({chosen(c)})";
        }
        return labels;
    }

    /// <summary>Row labels for tables that list every ratio with a ratio column: names only need to differ within one ratio.</summary>
    public static Dictionary<string, string> RowLabelsPerRatio(IReadOnlyList<CellRow> cells) =>
        cells.GroupBy(c => RatioKey(c.Ratio)).SelectMany(g => RowLabels(g.ToList())).ToDictionary(kv => kv.Key, kv => kv.Value);

    /// <summary>The model's table columns: every perplexity task it has, then every accuracy task, then their average.</summary>
    public IReadOnlyList<TableColumn> Columns(ModelGroup model)
    {
        var keys = model.Cells.Select(c => c.CellKey).ToHashSet();
        var tasks = Snapshot.Metrics.Where(m => keys.Contains(m.CellKey)).GroupBy(m => m.Task)
            .Select(g => TaskCatalog.Get(g.Key, g.Select(m => m.Metric)))
            .OrderBy(t => t.Order).ThenBy(t => t.Name, StringComparer.Ordinal).ToList();
        var columns = new List<TableColumn>();
        foreach (var t in tasks.Where(t => t.Kind == TaskKind.Perplexity))
            columns.Add(new TableColumn(t.Name + "_" + TaskCatalog.PerplexityMetric, t.Display, TaskKind.Perplexity, Better.Lower, t.Name, TaskCatalog.PerplexityMetric));
        var acc = tasks.Where(t => t.Kind == TaskKind.Accuracy && Snapshot.Metrics.Any(m => m.Task == t.Name && m.Metric == TaskCatalog.AccuracyMetric && keys.Contains(m.CellKey))).ToList();
        foreach (var t in acc)
            columns.Add(new TableColumn(t.Name + "_" + TaskCatalog.AccuracyMetric, t.Display, TaskKind.Accuracy, Better.Higher, t.Name, TaskCatalog.AccuracyMetric));
        if (acc.Count >= 2)
            columns.Add(new TableColumn("average_acc", "Avg.", TaskKind.Accuracy, Better.Higher, null, TaskCatalog.AccuracyMetric));
        return columns;
    }

    /// <summary>Mean accuracy over the accuracy columns, or null if the cell lacks any of them (an average over fewer tasks would not compare).</summary>
    public double? AverageAccuracy(string cell, IReadOnlyList<TableColumn> columns)
    {
        var tasks = columns.Where(c => c.Kind == TaskKind.Accuracy && c.Task is not null).ToList();
        if (tasks.Count == 0) return null;
        double sum = 0;
        foreach (var c in tasks)
        {
            if (Metric(cell, c.Task!, c.Metric) is not { } m) return null;
            sum += m.Value;
        }
        return sum / tasks.Count;
    }

    /// <summary>Compressed ratios of a model, ascending; a model with only its original still gets one table (ratio 0).</summary>
    public static IReadOnlyList<double> Ratios(ModelGroup model)
    {
        var ratios = model.Cells.Where(c => c.Method != MethodCatalog.Original).Select(c => RatioKey(c.Ratio)).Distinct().Order().ToList();
        return ratios.Count > 0 ? ratios : [0.0];
    }

    public IReadOnlyList<ResultTable> ResultTables(ModelGroup model)
    {
        var columns = Columns(model);
        var tables = new List<ResultTable>();
        if (columns.Count == 0) return tables;
        var originals = model.Cells.Where(c => c.Method == MethodCatalog.Original).ToList();
        foreach (double ratio in Ratios(model))
        {
            var cells = originals.Concat(model.Cells.Where(c => c.Method != MethodCatalog.Original && RatioKey(c.Ratio) == ratio))
                .OrderBy(c => MethodCatalog.Get(c.Method).Order).ThenBy(c => c.Method, StringComparer.Ordinal).ThenBy(MethodCatalog.Label, StringComparer.Ordinal)
                .ThenBy(CalibrationLabel, StringComparer.Ordinal).ThenBy(c => c.CellKey, StringComparer.Ordinal).ToList();
            var labels = RowLabels(cells);
            var rows = new List<TableRow>();
            foreach (var cell in cells)
            {
                var values = new List<TableValue?>();
                foreach (var col in columns)
                {
                    if (col.Task is null)
                        values.Add(AverageAccuracy(cell.CellKey, columns) is double avg ? new TableValue(avg, null, null, null) : null);
                    else
                        values.Add(Metric(cell.CellKey, col.Task, col.Metric) is { } m ? new TableValue(m.Value, m.Stderr, m.N, m.Protocol) : null);
                }
                rows.Add(new TableRow(cell.Method, labels[cell.CellKey], cell.Method == MethodCatalog.Original, cell.CellKey, CalibrationLabel(cell), values));
            }
            // Ratios 1e-9 apart are different tables but print alike; the id (a file name) must still be unique.
            string id = $"{model.Slug}_r{NumberFormat.PercentNumber(ratio)}";
            for (int i = 2; tables.Any(t => t.Id == id); i++) id = $"{model.Slug}_r{NumberFormat.PercentNumber(ratio)}-{i.ToString(CultureInfo.InvariantCulture)}";
            tables.Add(new ResultTable(id, model.Display, ratio, columns, rows, Notes(columns, rows)));
        }
        return tables;
    }

    private static List<string> Notes(IReadOnlyList<TableColumn> columns, IReadOnlyList<TableRow> rows)
    {
        var notes = new List<string>();
        int accTasks = columns.Count(c => c.Kind == TaskKind.Accuracy && c.Task is not null);
        if (columns.Any(c => c.Kind == TaskKind.Perplexity))
            notes.Add("Perplexity: lower is better.");
        if (accTasks > 0)
            notes.Add($"Accuracy: `acc` as a fraction, higher is better" + (columns.Any(c => c.Task is null) ? $"; Avg. is the mean over the {accTasks} accuracy columns (blank when a task is missing)." : "."));
        notes.Add("Bold: best compressed method per column, compared as printed; the original is not ranked.");
        var parts = new List<string>();
        for (int i = 0; i < columns.Count; i++)
        {
            var col = columns[i];
            if (col.Task is null) continue;
            var present = rows.Select(r => r.Values[i]).OfType<TableValue>().ToList();
            if (present.Count == 0) continue;
            long nMin = present.Min(v => v.N ?? 0), nMax = present.Max(v => v.N ?? 0);
            string n = nMin == nMax ? NumberFormat.Integer(nMin) : $"{NumberFormat.Integer(nMin)}–{NumberFormat.Integer(nMax)}";
            string unit = col.Kind == TaskKind.Perplexity ? "tokens" : "items";
            string part = $"{col.Header}: n = {n} {unit}";
            var stderrs = present.Where(v => v.Stderr is not null).Select(v => v.Stderr!.Value).ToList();
            if (stderrs.Count > 0)
                part += $", stderr ≤ {(col.Kind == TaskKind.Perplexity ? NumberFormat.Perplexity(stderrs.Max()) : NumberFormat.AccuracyStderr(stderrs.Max()))}";
            var protocols = present.Select(v => v.Protocol).OfType<string>().Distinct().Order(StringComparer.Ordinal).ToList();
            if (protocols.Count > 0) part += $" ({string.Join("; ", protocols)})";
            parts.Add(part);
        }
        if (parts.Count > 0) notes.Add(string.Join(". ", parts) + ".");
        return notes;
    }
}
