using System.Diagnostics;
using SvdLlm.Models.Architectures;
using SvdLlm.Numerics;
using SvdLlm.Numerics.Backends;

namespace SvdLlm.Evaluation.Efficiency;

/// <summary>
/// Measures a model's size and speed: parameters and weight bytes from its checkpoint, prefill and
/// decode throughput with a KV cache at stated settings, and peak resident memory. Low-rank linears run
/// as two GEMMs (x·Vᵀ)·Uᵀ, so a compressed checkpoint's speed-up is measured, not assumed.
/// One timed run is: prefill of the synthetic prompt into an empty cache (including the last position's
/// logits), then GenLen greedy decode steps; the two phases are timed separately.
/// </summary>
public static class EfficiencyBenchmark
{
    /// <summary>
    /// Untimed warm-up runs for <see cref="EfficiencyOptions.WarmupSeconds"/> (JIT tiering, page faults),
    /// then <see cref="EfficiencyOptions.Repeats"/> timed runs. The peak RSS is reset first, so it is this
    /// measurement's peak (of the whole process: anything else alive counts too).
    /// </summary>
    public static EfficiencyResult Measure(CausalLanguageModel model, EfficiencyOptions options)
    {
        options.Validate();
        if (options.Threads is int threads) NumericsRuntime.SetThreads(threads);
        var total = Stopwatch.StartNew();
        bool reset = PeakMemory.TryResetPeak();
        long? before = PeakMemory.ResidentBytes();
        using var session = new Session(model, options);
        session.WarmUp(options.WarmupSeconds);
        for (int r = 0; r < options.Repeats; r++) session.TimedRun(r);
        return session.Result(new PeakRss(PeakMemory.PeakResidentBytes(), before, reset), total.Elapsed.TotalSeconds);
    }

    /// <summary>
    /// Measures a model and its baseline (the original of a compressed model) for a ratio: the timed runs
    /// alternate (model, baseline, model, …) with both loaded, so that a machine whose load changes during
    /// the measurement slows both alike, and neither is measured with a colder JIT than the other. Peak
    /// memory comes from a first pass that loads and runs each model alone.
    /// </summary>
    public static (EfficiencyResult Model, EfficiencyResult Baseline, EfficiencyComparison Ratios) MeasurePair(
        string modelDirectory, string baselineDirectory, EfficiencyOptions options, IComputeBackend? backend = null)
    {
        options.Validate();
        if (options.Threads is int threads) NumericsRuntime.SetThreads(threads);
        // A discarded first pass: the first model run in a process also pays for JIT code and runtime
        // structures, which would count in whichever model's memory increase came first.
        PeakAlone(baselineDirectory, options, backend);
        var peakA = PeakAlone(modelDirectory, options, backend);
        var peakB = PeakAlone(baselineDirectory, options, backend);

        var total = Stopwatch.StartNew();
        using var a = ModelLoader.Load(modelDirectory, backend);
        using var b = ModelLoader.Load(baselineDirectory, backend);
        using var sa = new Session(a, options);
        using var sb = new Session(b, options);
        var warm = Stopwatch.StartNew();
        do
        {
            sa.WarmUp(0);
            sb.WarmUp(0);
        }
        while (warm.Elapsed.TotalSeconds < 2 * options.WarmupSeconds);
        for (int r = 0; r < options.Repeats; r++)
        {
            sa.TimedRun(r);
            sb.TimedRun(r);
        }
        double seconds = total.Elapsed.TotalSeconds;
        var ra = sa.Result(peakA, seconds);
        var rb = sb.Result(peakB, seconds);
        return (ra, rb, EfficiencyComparison.Compare(ra, rb));
    }

    /// <summary>Peak RSS of loading <paramref name="directory"/> alone and running it once.</summary>
    private static PeakRss PeakAlone(string directory, EfficiencyOptions options, IComputeBackend? backend)
    {
        // Finalizable tensors of earlier work are released first, so the reset starts from a low resident size.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        bool reset = PeakMemory.TryResetPeak();
        long? before = PeakMemory.ResidentBytes();
        using (var model = ModelLoader.Load(directory, backend))
        using (var session = new Session(model, options))
            session.WarmUp(0);
        return new PeakRss(PeakMemory.PeakResidentBytes(), before, reset);
    }

    /// <summary>The process's peak RSS during a measurement and its resident size when the measurement began.</summary>
    private sealed record PeakRss(long? Peak, long? Before, bool Reset);

    /// <summary>One model with its cache, prompt and buffers, and the seconds of its timed runs.</summary>
    private sealed class Session : IDisposable
    {
        private readonly CausalLanguageModel _model;
        private readonly EfficiencyOptions _options;
        private readonly WeightCounts _counts;
        private readonly int[] _prompt, _next;
        private readonly KvCache _cache;
        private readonly Tensor<float> _logits;
        private readonly double[] _prefillSeconds, _decodeSeconds;
        private int _warmupRuns;

        public Session(CausalLanguageModel model, EfficiencyOptions options)
        {
            _model = model;
            _options = options;
            _counts = WeightCounts.FromCheckpoint(model.Reader);
            model.LoadAll();
            _prompt = SyntheticPrompt.Create(options.Seed, options.Batch, options.PromptLen, model.VocabSize);
            _next = new int[options.Batch];
            _cache = model.CreateKvCache(options.Batch, options.PromptLen + options.GenLen);
            _logits = Tensor<float>.Uninitialized(options.Batch, model.VocabSize);
            _prefillSeconds = new double[options.Repeats];
            _decodeSeconds = new double[options.Repeats];
        }

        /// <summary>Untimed full runs, at least one, until <paramref name="seconds"/> have passed.</summary>
        public void WarmUp(double seconds)
        {
            var clock = Stopwatch.StartNew();
            do
            {
                Run();
                _warmupRuns++;
            }
            while (clock.Elapsed.TotalSeconds < seconds);
        }

        public void TimedRun(int repeat) => (_prefillSeconds[repeat], _decodeSeconds[repeat]) = Run();

        /// <summary>Prefill, then GenLen greedy decode steps; the seconds of each phase.</summary>
        private (double Prefill, double Decode) Run()
        {
            _cache.Reset();
            var clock = Stopwatch.StartNew();
            using (var last = _model.Prefill(_prompt, _options.Batch, _options.PromptLen, _cache))
            {
                double prefill = clock.Elapsed.TotalSeconds;
                Greedy(last, _next);
                clock.Restart();
                for (int s = 0; s < _options.GenLen; s++)
                {
                    _model.DecodeStep(_next, _cache, _logits);
                    Greedy(_logits, _next);
                }
                return (prefill, clock.Elapsed.TotalSeconds);
            }
        }

        public EfficiencyResult Result(PeakRss rss, double seconds) => new()
        {
            Model = Path.GetFullPath(_model.Directory),
            Architecture = _model.Architecture,
            Parameters = _counts.Parameters,
            WeightBytes = _counts.StoredBytes,
            WeightBytesFloat32 = _counts.Float32Bytes,
            LinearParameters = _model.LinearParameterCount,
            Linears = _model.Linears.Count,
            LowRankLinears = _model.Linears.Count(l => l.IsLowRank),
            Batch = _options.Batch,
            PromptLen = _options.PromptLen,
            GenLen = _options.GenLen,
            Repeats = _options.Repeats,
            Threads = NumericsRuntime.Threads,
            Seed = _options.Seed,
            WarmupRuns = _warmupRuns,
            Blas = NumericsRuntime.BlasConfig,
            PrefillSeconds = _prefillSeconds,
            DecodeSeconds = _decodeSeconds,
            PrefillTokensPerSecond = (double)_options.Batch * _options.PromptLen / Median(_prefillSeconds),
            DecodeTokensPerSecond = (double)_options.Batch * _options.GenLen / Median(_decodeSeconds),
            KvCacheBytes = _cache.Bytes,
            PeakRssBytes = rss.Peak,
            RssBeforeBytes = rss.Before,
            PeakRssReset = rss.Reset,
            Seconds = seconds,
        };

        public void Dispose()
        {
            _cache.Dispose();
            _logits.Dispose();
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
