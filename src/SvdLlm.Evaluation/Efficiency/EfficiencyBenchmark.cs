using System.Diagnostics;
using SvdLlm.Models.Architectures;
using SvdLlm.Numerics;

namespace SvdLlm.Evaluation.Efficiency;

/// <summary>
/// Measures a model's size and speed: parameters and weight bytes from its checkpoint, prefill and
/// decode throughput with a KV cache at stated settings, and peak resident memory. Low-rank linears run
/// as two GEMMs (x·Vᵀ)·Uᵀ, so a compressed checkpoint's speed-up is measured, not assumed.
/// </summary>
public static class EfficiencyBenchmark
{
    /// <summary>
    /// One untimed warm-up (JIT, page faults, weight conversion), then <see cref="EfficiencyOptions.Repeats"/>
    /// timed runs of: prefill of the synthetic prompt into an empty cache; GenLen greedy decode steps.
    /// </summary>
    public static EfficiencyResult Measure(CausalLanguageModel model, EfficiencyOptions options)
    {
        options.Validate();
        if (options.Threads is int threads) NumericsRuntime.SetThreads(threads);
        var total = Stopwatch.StartNew();
        bool reset = PeakMemory.TryResetPeak();
        var counts = WeightCounts.FromCheckpoint(model.Reader);
        model.LoadAll();

        int batch = options.Batch, promptLen = options.PromptLen, genLen = options.GenLen;
        var prompt = SyntheticPrompt.Create(options.Seed, batch, promptLen, model.VocabSize);
        using var cache = model.CreateKvCache(batch, promptLen + genLen);
        using var logits = Tensor<float>.Uninitialized(batch, model.VocabSize);
        var next = new int[batch];

        Run(model, cache, prompt, logits, next, Math.Min(genLen, 2));
        var prefillSeconds = new double[options.Repeats];
        var decodeSeconds = new double[options.Repeats];
        for (int r = 0; r < options.Repeats; r++)
            (prefillSeconds[r], decodeSeconds[r]) = Run(model, cache, prompt, logits, next, genLen);

        return new EfficiencyResult
        {
            Model = Path.GetFullPath(model.Directory),
            Architecture = model.Architecture,
            Parameters = counts.Parameters,
            WeightBytes = counts.StoredBytes,
            WeightBytesFloat32 = counts.Float32Bytes,
            LinearParameters = model.LinearParameterCount,
            Linears = model.Linears.Count,
            LowRankLinears = model.Linears.Count(l => l.IsLowRank),
            Batch = batch,
            PromptLen = promptLen,
            GenLen = genLen,
            Repeats = options.Repeats,
            Threads = NumericsRuntime.Threads,
            Seed = options.Seed,
            Blas = NumericsRuntime.BlasConfig,
            PrefillSeconds = prefillSeconds,
            DecodeSeconds = decodeSeconds,
            PrefillTokensPerSecond = (double)batch * promptLen / Median(prefillSeconds),
            DecodeTokensPerSecond = (double)batch * genLen / Median(decodeSeconds),
            KvCacheBytes = cache.Bytes,
            PeakRssBytes = PeakMemory.PeakResidentBytes(),
            PeakRssReset = reset,
            Seconds = total.Elapsed.TotalSeconds,
        };
    }

    /// <summary>Prefill then <paramref name="steps"/> greedy decode steps; returns the seconds of each phase.</summary>
    private static (double Prefill, double Decode) Run(CausalLanguageModel model, KvCache cache, int[] prompt, Tensor<float> logits, int[] next, int steps)
    {
        cache.Reset();
        var clock = Stopwatch.StartNew();
        using (var last = model.Prefill(prompt, cache.Batch, prompt.Length / cache.Batch, cache))
        {
            double prefill = clock.Elapsed.TotalSeconds;
            Greedy(last, next);
            clock.Restart();
            for (int s = 0; s < steps; s++)
            {
                model.DecodeStep(next, cache, logits);
                Greedy(logits, next);
            }
            return (prefill, clock.Elapsed.TotalSeconds);
        }
    }

    /// <summary>The argmax of each row (the first on ties), so generation is deterministic.</summary>
    private static void Greedy(Tensor<float> logits, int[] next)
    {
        for (int b = 0; b < next.Length; b++)
            next[b] = System.Numerics.Tensors.TensorPrimitives.IndexOfMax(logits.Row(b));
    }

    internal static double Median(IReadOnlyList<double> values)
    {
        var sorted = values.Order().ToArray();
        int n = sorted.Length;
        return n % 2 == 1 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
    }
}
