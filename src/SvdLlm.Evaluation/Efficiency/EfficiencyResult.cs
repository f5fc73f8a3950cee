using System.Globalization;
using SvdLlm.Evaluation.Tasks;

namespace SvdLlm.Evaluation.Efficiency;

/// <summary>
/// One efficiency measurement of one model, with every setting it depends on. Throughputs are tokens
/// per second of wall-clock time from the median of <see cref="Repeats"/> timed runs:
/// prefill = Batch·PromptLen / t(prefill), decode = Batch·GenLen / t(GenLen decode steps).
/// </summary>
public sealed record EfficiencyResult
{
    public const string TaskName = "efficiency";

    public required string Model { get; init; }
    public required string Architecture { get; init; }

    /// <summary>Elements of every tensor in the checkpoint files.</summary>
    public required long Parameters { get; init; }
    /// <summary>Bytes of those tensors in their stored dtype.</summary>
    public required long WeightBytes { get; init; }
    /// <summary>Bytes of those tensors as float32, the dtype the model computes in.</summary>
    public required long WeightBytesFloat32 { get; init; }
    /// <summary>Parameters of the decoder linears (the part compression reduces).</summary>
    public required long LinearParameters { get; init; }
    public required int Linears { get; init; }
    public required int LowRankLinears { get; init; }

    public required int Batch { get; init; }
    public required int PromptLen { get; init; }
    public required int GenLen { get; init; }
    public required int Repeats { get; init; }
    public required int Threads { get; init; }
    public required int Seed { get; init; }
    /// <summary>Untimed full runs made before timing.</summary>
    public int WarmupRuns { get; init; }
    public required string Blas { get; init; }

    /// <summary>Seconds of each timed prefill (prompt through the model into the KV cache, plus the last position's logits).</summary>
    public required IReadOnlyList<double> PrefillSeconds { get; init; }
    /// <summary>Seconds of each timed run of <see cref="GenLen"/> greedy decode steps.</summary>
    public required IReadOnlyList<double> DecodeSeconds { get; init; }
    public required double PrefillTokensPerSecond { get; init; }
    public required double DecodeTokensPerSecond { get; init; }

    /// <summary>Bytes of the preallocated KV cache (PromptLen + GenLen positions).</summary>
    public required long KvCacheBytes { get; init; }

    /// <summary>Process-wide peak resident memory (VmHWM) at the end of the measurement; null without /proc.</summary>
    public long? PeakRssBytes { get; init; }
    /// <summary>Resident size of the process just before the model's weights were loaded (runtime, earlier allocations).</summary>
    public long? RssBeforeBytes { get; init; }
    /// <summary>Peak minus the resident size before: what loading and running this model added, the figure to compare.</summary>
    public long? PeakRssIncreaseBytes => PeakRssBytes is long p && RssBeforeBytes is long b && PeakRssReset ? p - b : null;
    /// <summary>Whether the peak was reset just before this model was loaded (else it may include earlier work).</summary>
    public bool PeakRssReset { get; init; }

    public double Seconds { get; init; }

    /// <summary>How the numbers were made, for result rows.</summary>
    public string Protocol => string.Create(CultureInfo.InvariantCulture,
        $"synthetic prompt seed {Seed}; batch {Batch}, prompt {PromptLen}, gen {GenLen} (greedy, KV cache); median of {Repeats}; threads {Threads}; peak RSS process-wide");

    /// <summary>The result as metric name/value pairs (names as the results database keys them).</summary>
    public IReadOnlyList<TaskMetric> ToMetrics()
    {
        var metrics = new List<TaskMetric>
        {
            new("params", Parameters, null),
            new("weight_bytes", WeightBytes, null),
            new("weight_bytes_f32", WeightBytesFloat32, null),
            new("linear_params", LinearParameters, null),
            new("prefill_tokens_per_s", PrefillTokensPerSecond, null),
            new("decode_tokens_per_s", DecodeTokensPerSecond, null),
            new("kv_cache_bytes", KvCacheBytes, null),
        };
        if (PeakRssBytes is long rss) metrics.Add(new("peak_rss_bytes", rss, null));
        if (PeakRssIncreaseBytes is long increase) metrics.Add(new("peak_rss_increase_bytes", increase, null));
        return metrics;
    }

    /// <summary>The result as the task result the experiment pipeline records (task "efficiency", n = tokens processed per run).</summary>
    public TaskResult ToTaskResult() => new(TaskName, Protocol, (long)Batch * (PromptLen + GenLen), ToMetrics(), Seconds);
}
