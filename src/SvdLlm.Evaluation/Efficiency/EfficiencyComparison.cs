using SvdLlm.Evaluation.Tasks;

namespace SvdLlm.Evaluation.Efficiency;

/// <summary>
/// Compressed ÷ original for every efficiency figure: below 1 for sizes and memory means smaller,
/// above 1 for throughputs means faster. Only results measured with the same settings are compared.
/// </summary>
public sealed record EfficiencyComparison(
    double ParamsRatio,
    double WeightBytesRatio,
    double LinearParamsRatio,
    double PrefillThroughputRatio,
    double DecodeThroughputRatio,
    double? PeakRssRatio,
    double? PeakRssIncreaseRatio)
{
    public static EfficiencyComparison Compare(EfficiencyResult compressed, EfficiencyResult original)
    {
        var a = compressed;
        var b = original;
        if (a.Batch != b.Batch || a.PromptLen != b.PromptLen || a.GenLen != b.GenLen || a.Threads != b.Threads || a.Seed != b.Seed)
            throw new ArgumentException(
                $"efficiency results measured with different settings cannot be compared: batch {a.Batch}/{b.Batch}, prompt {a.PromptLen}/{b.PromptLen}, " +
                $"gen {a.GenLen}/{b.GenLen}, threads {a.Threads}/{b.Threads}, seed {a.Seed}/{b.Seed}");
        return new EfficiencyComparison(
            (double)a.Parameters / b.Parameters,
            (double)a.WeightBytes / b.WeightBytes,
            (double)a.LinearParameters / b.LinearParameters,
            a.PrefillTokensPerSecond / b.PrefillTokensPerSecond,
            a.DecodeTokensPerSecond / b.DecodeTokensPerSecond,
            a.PeakRssBytes is long ra && b.PeakRssBytes is long rb ? (double)ra / rb : null,
            a.PeakRssIncreaseBytes is long ia && b.PeakRssIncreaseBytes is long ib && ib > 0 ? (double)ia / ib : null);
    }

    /// <summary>The ratios as metrics (names are the absolute metrics' names with "_ratio").</summary>
    public IReadOnlyList<TaskMetric> ToMetrics()
    {
        var metrics = new List<TaskMetric>
        {
            new("params_ratio", ParamsRatio, null),
            new("weight_bytes_ratio", WeightBytesRatio, null),
            new("linear_params_ratio", LinearParamsRatio, null),
            new("prefill_tokens_per_s_ratio", PrefillThroughputRatio, null),
            new("decode_tokens_per_s_ratio", DecodeThroughputRatio, null),
        };
        if (PeakRssRatio is double r) metrics.Add(new("peak_rss_bytes_ratio", r, null));
        if (PeakRssIncreaseRatio is double i) metrics.Add(new("peak_rss_increase_bytes_ratio", i, null));
        return metrics;
    }
}
