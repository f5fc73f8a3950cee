using System.Globalization;
using System.Text;
using System.Text.Json;

namespace SvdLlm.Experiments.Reports;

/// <summary>The tables beside the paper-layout ones: compression statistics, efficiency, timings, provenance, and the long CSV of every metric.</summary>
public static class SupportTables
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    private static IEnumerable<CellRow> Ordered(IEnumerable<CellRow> cells) =>
        cells.OrderBy(c => ReportData.RatioKey(c.Ratio)).ThenBy(c => MethodCatalog.Get(c.Method).Order).ThenBy(c => c.Method, StringComparer.Ordinal)
            .ThenBy(ReportData.CalibrationLabel, StringComparer.Ordinal).ThenBy(c => c.CellKey, StringComparer.Ordinal);

    private static string Opt(double? v, Func<double, string> f) => v is double d ? f(d) : TableRenderers.Missing;
    private static string Raw(double? v) => v is double d ? NumberFormat.RoundTrip(d) : "";

    /// <summary>What each compressed cell achieved: ratios (linear and whole model, since papers mix them), parameters, the slowest SVD.</summary>
    public static SimpleTable? Compression(ReportData data, ModelGroup model)
    {
        var cells = Ordered(model.Cells).Where(c => data.Compression(c.CellKey) is not null).ToList();
        if (cells.Count == 0) return null;
        var labels = ReportData.RowLabelsPerRatio(cells);
        var rows = new List<IReadOnlyList<string>>();
        var csv = new List<IReadOnlyList<string>>();
        foreach (var cell in cells)
        {
            var c = data.Compression(cell.CellKey)!;
            double compressSeconds = data.Timings(cell.CellKey).Where(t => !t.Stage.StartsWith("eval", StringComparison.Ordinal)).Sum(t => t.Seconds);
            bool hasTimings = data.Timings(cell.CellKey).Any(t => !t.Stage.StartsWith("eval", StringComparison.Ordinal));
            string notes = c.NotesJson.Trim() is "{}" or "[]" or "" or "null" ? "" : c.NotesJson.Trim();
            rows.Add([labels[cell.CellKey], NumberFormat.Percent(cell.Ratio), NumberFormat.Fixed(c.AchievedLinearRatio * 100, 2) + "%", NumberFormat.Fixed(c.AchievedModelRatio * 100, 2) + "%",
                $"{NumberFormat.Integer(c.LinearParamsAfter)} / {NumberFormat.Integer(c.LinearParamsBefore)}", $"{NumberFormat.Integer(c.ModelParamsAfter)} / {NumberFormat.Integer(c.ModelParamsBefore)}",
                c.LargestSvd ?? TableRenderers.Missing, Opt(c.LargestSvdSeconds, NumberFormat.Duration), hasTimings ? NumberFormat.Duration(compressSeconds) : TableRenderers.Missing,
                notes.Length > 80 ? notes[..77] + "..." : notes]);
            csv.Add([model.Display, cell.Method, NumberFormat.RoundTrip(cell.Ratio), cell.CellKey, NumberFormat.RoundTrip(c.AchievedLinearRatio), NumberFormat.RoundTrip(c.AchievedModelRatio),
                c.LinearParamsBefore.ToString(Inv), c.LinearParamsAfter.ToString(Inv), c.ModelParamsBefore.ToString(Inv), c.ModelParamsAfter.ToString(Inv),
                c.LargestSvd ?? "", Raw(c.LargestSvdSeconds), hasTimings ? NumberFormat.RoundTrip(compressSeconds) : "", c.NotesJson]);
        }
        return new SimpleTable($"{model.Slug}_compression", $"{model.Display}: compression statistics",
            ["Method", "Target", "Achieved (linear)", "Achieved (model)", "Linear params after / before", "Model params after / before", "Largest SVD", "Largest SVD time", "Compression time", "Notes"],
            [false, true, true, true, true, true, false, true, true, false], rows,
            ["model", "method", "target_ratio", "cell_key", "achieved_linear_ratio", "achieved_model_ratio", "linear_params_before", "linear_params_after",
             "model_params_before", "model_params_after", "largest_svd", "largest_svd_seconds", "compression_seconds", "notes_json"], csv,
            ["Ratios are fractions of parameters removed: of the compressed linears, and of the whole model (embeddings and lm_head are never compressed).",
             "Compression time sums the cell's non-evaluation stages (calibration statistics are shared between cells, so they count where they were computed)."]);
    }

    /// <summary>
    /// One table per fine-tuned model with delta cells: its base and itself uncompressed, then every delta method at each
    /// CR, with the CR achieved and each task's value (perplexity, or accuracy). Tasks on the fine-tuning text and off
    /// it sit side by side, so the table shows what each method keeps of the fine-tune and what it gives back.
    /// </summary>
    /// <summary>
    /// The CR a delta cell achieved: the deltas' float16 bytes over the bytes stored, which is dense over stored values
    /// for float16 values and ImPart-Qt's CR_qt (bits relative to float16) for quantized codes; values when no bytes
    /// were recorded.
    /// </summary>
    public static double? DeltaAchievedRatio(CompressionRow? c) =>
        c is { LinearBytesBefore: > 0, LinearBytesAfter: > 0 } ? (double)c.LinearBytesBefore.Value / c.LinearBytesAfter.Value
        : c is { LinearParamsAfter: > 0 } ? (double)c.LinearParamsBefore / c.LinearParamsAfter : null;

    public static IReadOnlyList<SimpleTable> Delta(ReportData data)
    {
        var tables = new List<SimpleTable>();
        foreach (var g in data.DeltaCells.GroupBy(c => (c.Model, c.ModelKey)).OrderBy(g => g.Key.Model, StringComparer.Ordinal))
        {
            var (baseCell, ftCell) = DeltaReferences(data, g.Key.Model, g.Key.ModelKey, g.First());
            string? baseName = baseCell?.Model ?? BaseName(g.First());
            var rowsCells = new List<(string Label, CellRow Cell, bool Delta)>();
            if (baseCell is not null) rowsCells.Add(($"{baseCell.Model} (base)", baseCell, false));
            if (ftCell is not null) rowsCells.Add(($"{ftCell.Model} (fine-tuned)", ftCell, false));
            foreach (var c in g.OrderBy(c => MethodCatalog.Get(c.Method).Order).ThenBy(c => MethodCatalog.Label(c), StringComparer.Ordinal).ThenBy(c => c.Ratio))
                rowsCells.Add((MethodCatalog.Label(c), c, true));
            var tasks = rowsCells.SelectMany(r => data.MetricsOf(r.Cell.CellKey)).GroupBy(m => m.Task)
                .Select(t => (Info: TaskCatalog.Get(t.Key, t.Select(m => m.Metric)), Metrics: t.Select(m => m.Metric).ToHashSet()))
                .Where(t => t.Info.Kind is TaskKind.Perplexity or TaskKind.Accuracy)
                .OrderBy(t => t.Info.Kind).ThenBy(t => t.Info.Order).ThenBy(t => t.Info.Name, StringComparer.Ordinal).ToList();
            var rows = new List<IReadOnlyList<string>>();
            var csv = new List<IReadOnlyList<string>>();
            foreach (var (label, cell, delta) in rowsCells)
            {
                var comp = delta ? data.Compression(cell.CellKey) : null;
                double? achieved = DeltaAchievedRatio(comp);
                var row = new List<string> { label, delta ? NumberFormat.Fixed(cell.Ratio, 0) : "", achieved is double a ? NumberFormat.Fixed(a, 2) : "" };
                var csvRow = new List<string> { g.Key.Model, label, cell.Method, delta ? NumberFormat.RoundTrip(cell.Ratio) : "", achieved is double a2 ? NumberFormat.RoundTrip(a2) : "", cell.CellKey };
                foreach (var t in tasks)
                {
                    string metric = t.Info.Kind == TaskKind.Perplexity ? TaskCatalog.PerplexityMetric : TaskCatalog.AccuracyMetric;
                    var m = data.Metric(cell.CellKey, t.Info.Name, metric);
                    row.Add(m is null ? TableRenderers.Missing : t.Info.Kind == TaskKind.Perplexity ? NumberFormat.Perplexity(m.Value) : NumberFormat.Accuracy(m.Value));
                    csvRow.Add(m is null ? "" : NumberFormat.RoundTrip(m.Value));
                }
                rows.Add(row);
                csv.Add(csvRow);
            }
            string slug = Escape.Slug(g.Key.Model);
            tables.Add(new SimpleTable($"delta_{slug}", $"{g.Key.Model}: delta compression over {baseName ?? "its base"}",
                ["Model / method", "CR", "CR achieved", .. tasks.Select(t => t.Info.Display + (t.Info.Kind == TaskKind.Perplexity ? " ppl" : " acc"))],
                [false, true, true, .. tasks.Select(_ => true)], rows,
                ["finetuned_model", "row", "method", "target_cr", "achieved_cr", "cell_key", .. tasks.Select(t => t.Info.Name)], csv,
                ["CR is ImPart's: the fine-tuning deltas' dense values over the values stored (kept entries of U and V, or of ΔW for DARE; singular values and indices not counted), for ImPart-Qt their float16 bits over the codes' bits (CR_qt; scales and zero points not counted); every decoder linear is the base's weight plus the compressed delta, everything else the fine-tuned model's.",
                 "Lower perplexity is better; the fine-tuned row is what a perfect delta method would give, the base row what dropping the delta gives."]));
        }
        return tables;
    }

    private static string? BaseName(CellRow deltaCell) => DeltaBase(deltaCell).Name;

    private static (string? Name, string? Key) DeltaBase(CellRow deltaCell)
    {
        try
        {
            var d = System.Text.Json.Nodes.JsonNode.Parse(deltaCell.ConfigJson)?["delta"];
            return (d?["base"]?.GetValue<string>(), d?["base_key"]?.GetValue<string>());
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException)
        {
            return (null, null);
        }
    }

    /// <summary>The uncompressed cells a delta table and plot compare against: the base model's and the fine-tuned model's originals (null when not evaluated).</summary>
    public static (CellRow? Base, CellRow? FineTuned) DeltaReferences(ReportData data, string model, string modelKey, CellRow anyDeltaCell)
    {
        var (baseName, baseKey) = DeltaBase(anyDeltaCell);
        var all = data.Snapshot.Cells;
        return (all.FirstOrDefault(c => c.Method == MethodCatalog.Original && c.Model == baseName && (baseKey is null || c.ModelKey == baseKey)),
            all.FirstOrDefault(c => c.Method == MethodCatalog.Original && c.Model == model && c.ModelKey == modelKey));
    }

    /// <summary>
    /// Every cell of a model placed by the bytes its decoder linears are stored in (factors, or codes with scales and
    /// zeros), smallest first, with its perplexities and average accuracy: "SVD at 40 %", "GPTQ 4-bit" and
    /// "V2 20 % + GPTQ 4-bit" side by side at equal memory.
    /// </summary>
    public static SimpleTable? Memory(ReportData data, ModelGroup model)
    {
        var bytes = Plots.LinearBytes(data, model);
        var cells = Ordered(model.Cells).Where(c => bytes.ContainsKey(c.CellKey)).OrderBy(c => bytes[c.CellKey]).ThenBy(c => MethodCatalog.Get(c.Method).Order).ToList();
        if (!cells.Any(c => c.Method != MethodCatalog.Original)) return null;
        // Perplexities and the average accuracy (or the one accuracy task), which averages over every accuracy column.
        var all = data.Columns(model);
        var columns = all.Where(c => c.Kind == TaskKind.Perplexity || c.Task is null || all.Count(x => x.Kind == TaskKind.Accuracy) == 1).ToList();
        var labels = ReportData.RowLabelsPerRatio(cells);
        long? original = cells.Where(c => c.Method == MethodCatalog.Original).Select(c => (long?)bytes[c.CellKey]).FirstOrDefault()
            ?? cells.Select(c => data.Compression(c.CellKey)?.LinearBytesBefore).FirstOrDefault(b => b is not null);
        var rows = new List<IReadOnlyList<string>>();
        var csv = new List<IReadOnlyList<string>>();
        foreach (var cell in cells)
        {
            long b = bytes[cell.CellKey];
            long dense = data.Compression(cell.CellKey)?.LinearParamsBefore ?? model.Cells.Select(c => data.Compression(c.CellKey)?.LinearParamsBefore).FirstOrDefault(x => x is not null) ?? 0;
            double? bitsPerWeight = dense > 0 ? 8.0 * b / dense : null;
            double? share = original is long o && o > 0 ? (double)b / o : null;
            var row = new List<string>
            {
                labels[cell.CellKey], cell.Method == MethodCatalog.Original || cell.Ratio == 0 ? TableRenderers.Missing : NumberFormat.Percent(cell.Ratio),
                NumberFormat.Mebibytes(b), Opt(bitsPerWeight, v => NumberFormat.Fixed(v, 2)), Opt(share, v => NumberFormat.Fixed(v * 100, 1) + "%"),
            };
            var csvRow = new List<string> { model.Display, cell.Method, MethodCatalog.Label(cell), NumberFormat.RoundTrip(cell.Ratio), cell.CellKey, b.ToString(Inv), Raw(bitsPerWeight) };
            foreach (var col in columns)
            {
                double? v = col.Task is null ? data.AverageAccuracy(cell.CellKey, all) : data.Metric(cell.CellKey, col.Task, col.Metric)?.Value;
                row.Add(Opt(v, col.Format));
                csvRow.Add(Raw(v));
            }
            rows.Add(row);
            csv.Add(csvRow);
        }
        return new SimpleTable($"{model.Slug}_memory", $"{model.Display}: methods by decoder-linear memory",
            ["Method", "Ratio", "Linear weights (MiB)", "Bits / weight", "Of original", .. columns.Select(c => c.Header + (c.Better == Better.Lower ? " ↓" : " ↑"))],
            [false, true, true, true, true, .. columns.Select(_ => true)], rows,
            ["model", "method", "label", "ratio", "cell_key", "linear_bytes", "bits_per_weight", .. columns.Select(c => c.Key)], csv,
            ["Linear weights: the bytes the checkpoint stores for the decoder linears (dense weights, or low-rank factors, or GPTQ-layout codes with their scales, zeros and g_idx); embeddings and lm_head are excluded.",
             "Bits / weight: those bytes × 8 over the dense linears' parameter count, so a 40 % SVD of a float16 model is ≈ 9.6 and GPTQ 4-bit g128 ≈ 4.2."]);
    }

    public static SimpleTable? Efficiency(ReportData data, ModelGroup model)
    {
        var cells = Ordered(model.Cells).Where(c => data.MetricsOf(c.CellKey).Any(m => m.Task == TaskCatalog.Efficiency)).ToList();
        if (cells.Count == 0) return null;
        var keys = cells.Select(c => c.CellKey).ToHashSet();
        var metrics = data.Snapshot.Metrics.Where(m => m.Task == TaskCatalog.Efficiency && keys.Contains(m.CellKey) && !m.Metric.EndsWith(RatioSuffix, StringComparison.Ordinal))
            .Select(m => m.Metric).Distinct().OrderBy(EfficiencyCatalog.Order).ThenBy(m => m, StringComparer.Ordinal).ToList();
        var labels = ReportData.RowLabelsPerRatio(cells);
        // The papers report compressed ÷ original, not absolutes alone: a ratio column per headline metric. The
        // ratio the pipeline measured as a pair (<metric>_ratio) is used where stored; otherwise the quotient of the
        // two cells' own measurements.
        var original = cells.FirstOrDefault(c => c.Method == MethodCatalog.Original);
        var relative = original is null ? [] : metrics.Where(m => RatioMetrics.Contains(m) && data.Metric(original.CellKey, TaskCatalog.Efficiency, m) is { Value: > 0 }).ToList();
        bool anyQuotient = false;
        var rows = new List<IReadOnlyList<string>>();
        var csv = new List<IReadOnlyList<string>>();
        foreach (var cell in cells)
        {
            var row = new List<string> { labels[cell.CellKey], cell.Method == MethodCatalog.Original ? TableRenderers.Missing : NumberFormat.Percent(cell.Ratio) };
            var csvRow = new List<string> { model.Display, cell.Method, NumberFormat.RoundTrip(cell.Ratio), cell.CellKey };
            foreach (string metric in metrics)
            {
                var m = data.Metric(cell.CellKey, TaskCatalog.Efficiency, metric);
                row.Add(m is null ? TableRenderers.Missing : FormatEfficiency(metric, m.Value));
                csvRow.Add(m is null ? "" : NumberFormat.RoundTrip(m.Value));
            }
            foreach (string metric in relative)
            {
                var m = data.Metric(cell.CellKey, TaskCatalog.Efficiency, metric);
                var paired = data.Metric(cell.CellKey, TaskCatalog.Efficiency, metric + RatioSuffix);
                double? ratio = cell == original ? 1.0 : paired?.Value ?? (m is null ? null : m.Value / data.Metric(original!.CellKey, TaskCatalog.Efficiency, metric)!.Value);
                if (cell != original && paired is null && m is not null) anyQuotient = true;
                row.Add(ratio is double r ? NumberFormat.Fixed(r, 2) + "×" : TableRenderers.Missing);
                csvRow.Add(ratio is double r2 ? NumberFormat.RoundTrip(r2) : "");
            }
            rows.Add(row);
            csv.Add(csvRow);
        }
        var protocols = data.Snapshot.Metrics.Where(m => m.Task == TaskCatalog.Efficiency && keys.Contains(m.CellKey)).Select(m => m.Protocol).Distinct().Order(StringComparer.Ordinal).ToList();
        var notes = new List<string>();
        if (protocols.Count > 0) notes.Add("Protocol: " + string.Join("; ", protocols) + ".");
        if (relative.Count > 0)
            notes.Add(anyQuotient
                ? "× columns: compressed ÷ original. Where the pipeline measured the pair (timed runs alternating) that ratio is shown; otherwise the quotient of two separate measurements, which JIT warm-up and machine load skew."
                : "× columns: compressed ÷ original, measured as a pair (timed runs alternating between the two models).");
        return new SimpleTable($"{model.Slug}_efficiency", $"{model.Display}: efficiency",
            ["Method", "Ratio", .. metrics.Select(EfficiencyCatalog.Display), .. relative.Select(m => EfficiencyCatalog.Display(m) + " ×")],
            [false, true, .. metrics.Select(_ => true), .. relative.Select(_ => true)], rows,
            ["model", "method", "ratio", "cell_key", .. metrics, .. relative.Select(m => m + "_vs_original")], csv, notes);
    }

    private const string RatioSuffix = "_ratio";

    /// <summary>The metrics whose compressed ÷ original ratio the papers report.</summary>
    private static readonly HashSet<string> RatioMetrics = ["params", "weight_bytes", "prefill_tokens_per_s", "decode_tokens_per_s", "peak_rss_bytes"];

    private static string FormatEfficiency(string metric, double v) => metric switch
    {
        "params" => NumberFormat.Integer((long)Math.Round(v)),
        "weight_bytes" or "peak_rss_bytes" => NumberFormat.Mebibytes(v),
        _ when metric.EndsWith("_per_s", StringComparison.Ordinal) => NumberFormat.Fixed(v, 1),
        _ => v.ToString("G6", Inv),
    };

    /// <summary>Wall time per stage and cell: compression stages by name, evaluation summed.</summary>
    public static SimpleTable? Timings(ReportData data, ModelGroup model)
    {
        var cells = Ordered(model.Cells).Where(c => data.Timings(c.CellKey).Count > 0).ToList();
        if (cells.Count == 0) return null;
        static bool IsEval(string stage) => stage.StartsWith("eval", StringComparison.Ordinal);
        string[] order = ["calibration", "allocation", "truncation", "update", "write"];
        var stages = cells.SelectMany(c => data.Timings(c.CellKey)).Select(t => t.Stage).Where(s => !IsEval(s)).Distinct()
            .OrderBy(s => Array.IndexOf(order, s) is int i && i >= 0 ? i : 100).ThenBy(s => s, StringComparer.Ordinal).ToList();
        var labels = ReportData.RowLabelsPerRatio(cells);
        var rows = new List<IReadOnlyList<string>>();
        var csv = new List<IReadOnlyList<string>>();
        foreach (var cell in cells)
        {
            var t = data.Timings(cell.CellKey).ToDictionary(x => x.Stage, x => x.Seconds);
            var evals = t.Where(kv => IsEval(kv.Key)).ToList();
            var row = new List<string> { labels[cell.CellKey], cell.Method == MethodCatalog.Original ? TableRenderers.Missing : NumberFormat.Percent(cell.Ratio) };
            row.AddRange(stages.Select(s => t.TryGetValue(s, out double sec) ? NumberFormat.Duration(sec) : TableRenderers.Missing));
            row.Add(evals.Count > 0 ? NumberFormat.Duration(evals.Sum(kv => kv.Value)) : TableRenderers.Missing);
            row.Add(NumberFormat.Duration(t.Values.Sum()));
            rows.Add(row);
            var csvRow = new List<string> { model.Display, cell.Method, NumberFormat.RoundTrip(cell.Ratio), cell.CellKey };
            csvRow.AddRange(stages.Select(s => t.TryGetValue(s, out double sec) ? NumberFormat.RoundTrip(sec) : ""));
            csvRow.Add(evals.Count > 0 ? NumberFormat.RoundTrip(evals.Sum(kv => kv.Value)) : "");
            csvRow.Add(NumberFormat.RoundTrip(t.Values.Sum()));
            csv.Add(csvRow);
        }
        return new SimpleTable($"{model.Slug}_timings", $"{model.Display}: wall time by stage",
            ["Method", "Ratio", .. stages, "Evaluation", "Total"], [false, true, .. stages.Select(_ => true), true, true], rows,
            ["model", "method", "ratio", "cell_key", .. stages.Select(s => s + "_seconds"), "evaluation_seconds", "total_seconds"], csv, []);
    }

    public static SimpleTable Provenance(ReportData data)
    {
        var rows = new List<IReadOnlyList<string>>();
        var csv = new List<IReadOnlyList<string>>();
        foreach (var r in data.Snapshot.Runs)
        {
            string commit = (r.GitCommit.Length > 12 ? r.GitCommit[..12] : r.GitCommit) + (r.GitDirty ? " (dirty)" : "");
            string sha = r.MatrixSha256.Length > 12 ? r.MatrixSha256[..12] : r.MatrixSha256;
            rows.Add([r.RunId.ToString(Inv), r.Status, r.StartedUtc, r.EndedUtc ?? TableRenderers.Missing, commit, r.Machine, r.Os, r.Dotnet,
                r.Threads.ToString(Inv), r.Blas, $"{r.MatrixPath} ({sha})", r.Shard, Packages(r.PackagesJson)]);
            csv.Add([r.RunId.ToString(Inv), r.Status, r.StartedUtc, r.EndedUtc ?? "", r.GitCommit, r.GitDirty ? "1" : "0", r.Machine, r.Os, r.Dotnet,
                r.Threads.ToString(Inv), r.Blas, r.MatrixPath, r.MatrixSha256, r.Shard, r.PackagesJson]);
        }
        return new SimpleTable("provenance", "Provenance: runs that wrote these results",
            ["Run", "Status", "Started (UTC)", "Ended (UTC)", "Git commit", "Machine", "OS", ".NET", "Threads", "BLAS", "Matrix", "Shard", "Packages"],
            [true, false, false, false, false, false, false, false, true, false, false, false, false], rows,
            ["run_id", "status", "started_utc", "ended_utc", "git_commit", "git_dirty", "machine", "os", "dotnet", "threads", "blas", "matrix_path", "matrix_sha256", "shard", "packages_json"], csv, []);
    }

    /// <summary>"Microsoft.Data.Sqlite 9.0.23, YamlDotNet 16.3.0" from the run's JSON object, sorted by name.</summary>
    public static string Packages(string json)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            if (doc.RootElement.ValueKind != JsonValueKind.Object) return json;
            return string.Join(", ", doc.RootElement.EnumerateObject().OrderBy(p => p.Name, StringComparer.Ordinal)
                .Select(p => p.Name + " " + (p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString() : p.Value.GetRawText())));
        }
        catch (JsonException)
        {
            return json;
        }
    }

    /// <summary>Every metric of every cell, one per line, at full precision: the table to load into pandas or R.</summary>
    public static string LongCsv(ReportData data)
    {
        var b = new StringBuilder();
        b.Append("model,model_key,matrix,method,ratio,calibration,calibration_key,cell_key,task,metric,value,stderr,n,protocol,run_id\r\n");
        foreach (var model in data.Models)
        {
            foreach (var cell in Ordered(model.Cells))
            {
                foreach (var m in data.MetricsOf(cell.CellKey).OrderBy(m => TaskCatalog.Get(m.Task).Order).ThenBy(m => m.Task, StringComparer.Ordinal).ThenBy(m => m.Metric, StringComparer.Ordinal))
                {
                    string[] fields = [model.Display, cell.ModelKey, cell.MatrixName, cell.Method, NumberFormat.RoundTrip(cell.Ratio), ReportData.CalibrationLabel(cell), cell.CalibrationKey ?? "",
                        cell.CellKey, m.Task, m.Metric, NumberFormat.RoundTrip(m.Value), Raw(m.Stderr), m.N.ToString(Inv), m.Protocol, m.RunId.ToString(Inv)];
                    b.Append(string.Join(",", fields.Select(Escape.Csv))).Append("\r\n");
                }
            }
        }
        return b.ToString();
    }

    /// <summary>
    /// Every training step any cell took while compressing (LoRA recovery's stages, Dobi-SVD's γ training), one row per
    /// step with its loss, for plotting elsewhere; empty but for the header when no method trained.
    /// </summary>
    public static string TrainingCsv(ReportData data)
    {
        var b = new StringBuilder();
        b.Append("model,method,label,ratio,cell_key,stage,step,loss\r\n");
        foreach (var model in data.Models)
            foreach (var cell in Ordered(model.Cells))
                foreach (var r in data.TrainingCurve(cell.CellKey))
                {
                    string[] fields = [model.Display, cell.Method, MethodCatalog.Label(cell), NumberFormat.RoundTrip(cell.Ratio), cell.CellKey, r.Stage,
                        r.Step.ToString(Inv), NumberFormat.RoundTrip(r.Loss)];
                    b.Append(string.Join(",", fields.Select(Escape.Csv))).Append("\r\n");
                }
        return b.ToString();
    }
}
