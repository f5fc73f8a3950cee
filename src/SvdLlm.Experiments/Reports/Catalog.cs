using SvdLlm.Compression;
using SvdLlm.Evaluation.Tasks;

namespace SvdLlm.Experiments.Reports;

/// <summary>A method as tables and plots show it; <see cref="Order"/> is the papers' row order.</summary>
public sealed record MethodInfo(string Name, string Display, int Order);

/// <summary>How methods are named and ordered in reports, from <see cref="CompressionMethod"/>: baselines first, SVD-LLM, then V2 and its ablations (V2 paper, Tables 2 and 4).</summary>
public static class MethodCatalog
{
    public const string Original = "original";

    /// <summary>An unknown method (a future one, or a typo in an old database) still shows, after the known ones.</summary>
    public static MethodInfo Get(string name) =>
        name == Original ? new MethodInfo(Original, "Original", 0)
        : name switch
        {
            "delta-impart" => new MethodInfo(name, "ImPart Δ", 90),
            "delta-impart-qt" => new MethodInfo(name, "ImPart-Qt Δ", 93),
            "delta-svd" => new MethodInfo(name, "Low-rank Δ", 91),
            "delta-dare" => new MethodInfo(name, "DARE Δ", 92),
            _ => null,
        } is { } delta ? delta
        : CompressionMethod.All.FirstOrDefault(m => m.Name == name) is { } m ? new MethodInfo(m.Name, m.Display, m.Order)
        : new MethodInfo(name, name, 100);

    /// <summary>
    /// The method with its parameters, as a row or a curve is named: "GPTQ 4-bit g128", "SVD-LLM V2 + GPTQ 3-bit"; the
    /// display name alone when the cell has no parameters. Parameters this build cannot read (an older or newer
    /// database) still show, as name=value.
    /// </summary>
    public static string Label(CellRow cell)
    {
        string display = Get(cell.Method).Display;
        if (cell.Method == Original) return display;
        var parameters = new SortedDictionary<string, string>(StringComparer.Ordinal);
        try
        {
            if (System.Text.Json.Nodes.JsonNode.Parse(cell.ConfigJson)?["params"] is System.Text.Json.Nodes.JsonObject p)
                foreach (var (k, v) in p) parameters[k] = v?.ToString() ?? "";
        }
        catch (System.Text.Json.JsonException)
        {
            return display;
        }
        if (parameters.Count == 0) return display;
        try
        {
            return MethodRecipe.Parse(cell.Method, parameters).Label;
        }
        catch (ArgumentException)
        {
            return $"{display} ({string.Join(", ", parameters.Select(kv => $"{kv.Key}={kv.Value}"))})";
        }
    }

    /// <summary>Methods sorted in paper order, unknown ones by name after them.</summary>
    public static IEnumerable<string> Sort(IEnumerable<string> names) =>
        names.Distinct().OrderBy(n => Get(n).Order).ThenBy(n => n, StringComparer.Ordinal);
}

public enum TaskKind { Perplexity, Accuracy, Efficiency, Other }

/// <summary>A task as tables show it; <see cref="Order"/> is the papers' column order.</summary>
public sealed record TaskInfo(string Name, string Display, TaskKind Kind, int Order);

/// <summary>
/// Column names and order, from <see cref="TaskDefinitions"/>: WikiText-2, PTB, C4 (or the demo perplexity sets), then
/// the zero-shot tasks as the V2 paper lists them. A task this build does not define (an old or newer database) is
/// still shown, classified by its metrics.
/// </summary>
public static class TaskCatalog
{
    public const string Efficiency = SvdLlm.Evaluation.Efficiency.EfficiencyResult.TaskName;

    /// <summary>The metric each kind of task is tabulated by (acc_norm and the rest stay in the long CSV).</summary>
    public const string PerplexityMetric = "ppl";
    public const string AccuracyMetric = "acc";

    public static TaskInfo Get(string name, IEnumerable<string> metrics)
    {
        if (TaskDefinitions.Find(name) is { } t)
            return new TaskInfo(t.Name, t.Display, t.Kind switch
            {
                SvdLlm.Evaluation.Tasks.TaskKind.Perplexity => TaskKind.Perplexity,
                SvdLlm.Evaluation.Tasks.TaskKind.MultipleChoice => TaskKind.Accuracy,
                _ => TaskKind.Efficiency,
            }, t.Order);
        var set = metrics.ToHashSet();
        var kind = set.Contains(PerplexityMetric) ? TaskKind.Perplexity : set.Contains(AccuracyMetric) ? TaskKind.Accuracy : TaskKind.Other;
        return new TaskInfo(name, name, kind, 100);
    }

    public static TaskInfo Get(string name) => Get(name, []);
}

/// <summary>Efficiency metric names in table order, and how they read.</summary>
public static class EfficiencyCatalog
{
    public static readonly (string Metric, string Display, bool HigherIsBetter)[] Known =
    [
        ("params", "Params", false),
        ("weight_bytes", "Weights (MiB)", false),
        ("prefill_tokens_per_s", "Prefill tok/s", true),
        ("decode_tokens_per_s", "Decode tok/s", true),
        ("peak_rss_bytes", "Peak RSS (MiB)", false),
    ];

    public static int Order(string metric)
    {
        int i = Array.FindIndex(Known, k => k.Metric == metric);
        return i < 0 ? 100 : i;
    }

    public static string Display(string metric) => Known.FirstOrDefault(k => k.Metric == metric).Display ?? metric;
}
