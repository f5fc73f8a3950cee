namespace SvdLlm.Experiments.Reports;

/// <summary>A method as tables and plots show it; <see cref="Order"/> is the papers' row order.</summary>
public sealed record MethodInfo(string Name, string Display, int Order);

/// <summary>How methods are named and ordered in reports: baselines first, SVD-LLM, then V2 and its ablations (V2 paper, Tables 2 and 4).</summary>
public static class MethodCatalog
{
    public const string Original = "original";

    private static readonly MethodInfo[] Known =
    [
        new(Original, "Original", 0),
        new("svd", "SVD", 1),
        new("fwsvd", "FWSVD", 2),
        new("asvd", "ASVD", 3),
        new("asvd-search", "ASVD (rank search)", 4),
        new("svdllm", "SVD-LLM", 5),
        new("svdllm-update", "SVD-LLM (update)", 6),
        new("svdllm-v2-alloc", "SVD-LLM V2 (allocation only)", 7),
        new("svdllm-v2-trunc", "SVD-LLM V2 (truncation only)", 8),
        new("svdllm-v2", "SVD-LLM V2", 9),
    ];

    /// <summary>An unknown method (a future one, or a typo in an old database) still shows, after the known ones.</summary>
    public static MethodInfo Get(string name) => Known.FirstOrDefault(m => m.Name == name) ?? new MethodInfo(name, name, 100);

    /// <summary>Methods sorted in paper order, unknown ones by name after them.</summary>
    public static IEnumerable<string> Sort(IEnumerable<string> names) =>
        names.Distinct().OrderBy(n => Get(n).Order).ThenBy(n => n, StringComparer.Ordinal);

    /// <summary>A fixed colour slot per method, so the same method has the same colour in every chart.</summary>
    public static int ColorIndex(string name) => Get(name) is { Order: < 100 } m ? m.Order : 10 + Math.Abs(StableHash(name) % 10);

    private static int StableHash(string s)
    {
        int h = 17;
        foreach (char c in s) h = unchecked(h * 31 + c);
        return h;
    }
}

public enum TaskKind { Perplexity, Accuracy, Efficiency, Other }

/// <summary>A task as tables show it; <see cref="Order"/> is the papers' column order.</summary>
public sealed record TaskInfo(string Name, string Display, TaskKind Kind, int Order);

/// <summary>Column names and order: WikiText-2, PTB, C4 (or the demo perplexity sets), then the zero-shot tasks as the V2 paper lists them.</summary>
public static class TaskCatalog
{
    public const string Efficiency = "efficiency";

    private static readonly TaskInfo[] Known =
    [
        new("wikitext2", "WikiText-2", TaskKind.Perplexity, 0),
        new("ptb", "PTB", TaskKind.Perplexity, 1),
        new("c4", "C4", TaskKind.Perplexity, 2),
        new("demo_ppl_moby_dick", "Moby-Dick", TaskKind.Perplexity, 10),
        new("demo_ppl_sotu", "SOTU", TaskKind.Perplexity, 11),
        new("demo_ppl_brown", "Brown", TaskKind.Perplexity, 12),
        new("openbookqa", "OpenbookQA", TaskKind.Accuracy, 20),
        new("arc_easy", "ARC-e", TaskKind.Accuracy, 21),
        new("arc_challenge", "ARC-c", TaskKind.Accuracy, 22),
        new("winogrande", "WinoGrande", TaskKind.Accuracy, 23),
        new("hellaswag", "HellaSwag", TaskKind.Accuracy, 24),
        new("piqa", "PIQA", TaskKind.Accuracy, 25),
        new("mathqa", "MathQA", TaskKind.Accuracy, 26),
        new("demo_next_sentence", "Next sentence", TaskKind.Accuracy, 30),
        new("demo_cloze", "Cloze", TaskKind.Accuracy, 31),
        new(Efficiency, "Efficiency", TaskKind.Efficiency, 40),
    ];

    /// <summary>The metric each kind of task is tabulated by (acc_norm and the rest stay in the long CSV).</summary>
    public const string PerplexityMetric = "ppl";
    public const string AccuracyMetric = "acc";

    /// <summary>A task this catalog does not know is classified by the metrics it has.</summary>
    public static TaskInfo Get(string name, IEnumerable<string> metrics)
    {
        if (Known.FirstOrDefault(t => t.Name == name) is { } known)
            return known;
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
