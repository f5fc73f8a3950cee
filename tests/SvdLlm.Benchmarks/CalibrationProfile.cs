using System.Diagnostics;
using SvdLlm.Compression.Calibration;
using SvdLlm.Models.Architectures;
using SvdLlm.Numerics;

namespace SvdLlm.Benchmarks;

/// <summary>
/// A measured run: where calibration time goes on one decoder layer of a checkpoint (the scale benchmark's 7B-shape one):
/// the forward pass alone, the forward pass with Gram accumulation, and the whole CollectToFile, per token and layer,
/// beside sgemm and dsyrk rates measured in the same process on the layer's shapes.
/// Usage: dotnet run --project tests/SvdLlm.Benchmarks -c Release -- --calibration-profile MODEL_DIR [--samples 8] [--seq-len 512]
/// </summary>
public static class CalibrationProfile
{
    public static int Run(string[] args)
    {
        string model = args[Array.IndexOf(args, "--calibration-profile") + 1];
        int samples = Arg(args, "--samples", 8), seqLen = Arg(args, "--seq-len", 512), batch = Arg(args, "--batch", 4);
        Console.WriteLine($"calibration profile: {model}, {samples} × {seqLen} tokens, batch {batch}; {NumericsRuntime.Describe()}");
        using var m = ModelLoader.Load(model);
        var load = Stopwatch.StartNew();
        m.LoadAll();
        Console.WriteLine($"loading the weights (BF16 → float32): {load.Elapsed.TotalSeconds:F2} s");
        var rng = new Random(3);
        var windows = Enumerable.Range(0, samples * seqLen).Select(_ => rng.Next(m.VocabSize)).ToArray();
        int rows = batch * seqLen, h = m.HiddenSize;
        using var x0 = m.Embed(windows.AsSpan(0, rows), batch, seqLen);
        using var x = x0.Clone();
        double tokens = rows;

        double Forward(ILinearObserver? observer)
        {
            m.Observer = observer;
            (observer as TimingObserver)?.BeginCall();
            x0.Span.CopyTo(x.Span);
            var sw = Stopwatch.StartNew();
            m.ForwardLayer(0, x, batch, seqLen);
            m.Observer = null;
            return sw.Elapsed.TotalSeconds;
        }
        Console.WriteLine($"first forward (JIT, page faults): {Forward(null):F2} s; first with Grams: {Forward(new TimingObserver()):F2} s");
        double plain = Enumerable.Range(0, 3).Min(_ => Forward(null));
        var counting = new TimingObserver();
        double observed = Enumerable.Range(0, 3).Min(_ => Forward(counting));
        Console.WriteLine($"forward, one layer: {plain / tokens * 1e3:F3} ms/token; with Gram accumulation: {observed / tokens * 1e3:F3} ms/token");
        Console.WriteLine($"  inside the observer (conversion + dsyrk, per call of {rows} rows): {counting.Seconds / counting.Calls * 1e3:F1} ms avg over {counting.Calls} calls; " +
                          $"{counting.Seconds / counting.Calls * counting.CallsPerForward / tokens * 1e3:F3} ms/token");

        // Rates on the same shapes, same process, warm (buffers touched once before timing; the best of 3).
        var layer0 = m.Linears.Where(l => l.Name.Contains(".layers.0.", StringComparison.Ordinal)).ToList();
        var inputs = layer0.GroupBy(l => l.InputKey).Select(g => g.First().InFeatures).ToList();
        double Best(Action a) { a(); return Enumerable.Range(0, 3).Min(_ => { var c = Stopwatch.StartNew(); a(); return c.Elapsed.TotalSeconds; }); }
        double sgemm = 0, dsyrk = 0, ssyrk = 0;
        long gemmFlops = 0, syrkFlops = 0;
        foreach (var l in layer0)
        {
            using var a = Tensor<float>.Zeros(rows, l.InFeatures);
            using var c = Tensor<float>.Zeros(rows, l.OutFeatures);
            using var w = Tensor<float>.Zeros(l.OutFeatures, l.InFeatures);
            sgemm += Best(() => Blas.Sgemm(Transpose.No, Transpose.Yes, rows, l.OutFeatures, l.InFeatures, 1f, a.Span, l.InFeatures, w.Span, l.InFeatures, 0f, c.Span, l.OutFeatures));
            gemmFlops += 2L * rows * l.OutFeatures * l.InFeatures;
        }
        foreach (int n in inputs)
        {
            using var d = Tensor<double>.Zeros(rows, n);
            using var gd = Tensor<double>.Zeros(n, n);
            dsyrk += Best(() => Blas.Dsyrk(lower: true, Transpose.Yes, n, rows, 1.0, d.Span, n, 1.0, gd.Span, n));
            using var f = Tensor<float>.Zeros(rows, n);
            using var gf = Tensor<float>.Zeros(n, n);
            ssyrk += Best(() => Blas.Ssyrk(lower: true, Transpose.Yes, n, rows, 1f, f.Span, n, 1f, gf.Span, n));
            syrkFlops += (long)n * n * rows;
        }
        Console.WriteLine($"sgemm on the layer's linear shapes: {gemmFlops / sgemm / 1e9:F1} GFLOP/s, {sgemm / tokens * 1e3:F3} ms/token (the forward's matmul floor)");
        Console.WriteLine($"dsyrk on the layer's inputs: {syrkFlops / dsyrk / 1e9:F1} GFLOP/s, {dsyrk / tokens * 1e3:F3} ms/token (the Gram floor in float64)");
        Console.WriteLine($"ssyrk on the layer's inputs: {syrkFlops / ssyrk / 1e9:F1} GFLOP/s, {ssyrk / tokens * 1e3:F3} ms/token (the Gram floor in float32)");

        // The whole collection (weights streamed from the checkpoint, hidden states, Grams written to the statistics file)
        // at two sizes: the slope is the cost per token, the intercept the fixed cost per layer (weights, allocation, file).
        if (args.Contains("--collect"))
        {
            m.Observer = null;
            var points = new List<(double Tokens, double Seconds)>();
            foreach (int s in new[] { samples, 4 * samples })
            {
                using var fresh = ModelLoader.Load(model);
                var ids = Enumerable.Range(0, s * seqLen).Select(_ => rng.Next(m.VocabSize)).ToArray();
                string file = Path.Combine(Path.GetTempPath(), $"svdllm-profile-{Environment.ProcessId}.svdstats");
                var clock = Stopwatch.StartNew();
                Calibrator.CollectToFile(fresh, ids, seqLen, file, new Dictionary<string, string>(), batchSize: batch);
                double seconds = clock.Elapsed.TotalSeconds;
                File.Delete(file);
                points.Add((s * seqLen * (double)fresh.NumLayers, seconds));
                Console.WriteLine($"CollectToFile {s} × {seqLen} tokens × {fresh.NumLayers} layer(s): {seconds:F1} s, {seconds / (s * seqLen * (double)fresh.NumLayers) * 1e3:F3} ms/token/layer");
            }
            double slope = (points[1].Seconds - points[0].Seconds) / (points[1].Tokens - points[0].Tokens);
            double intercept = points[0].Seconds - slope * points[0].Tokens;
            Console.WriteLine($"marginal {slope * 1e3:F3} ms/token/layer, fixed {intercept / m.NumLayers:F1} s/layer; " +
                              $"the paper's 256 × 2048 tokens through 32 layers ≈ {(slope * 524288 + intercept / m.NumLayers) * 32 / 3600:F1} h");
        }
        return 0;
    }

    private static int Arg(string[] args, string name, int fallback)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1]) : fallback;
    }

    /// <summary>Times what Calibrator's observer does per call: the float→double copy with |x| sums, then dsyrk.</summary>
    private sealed class TimingObserver : ILinearObserver
    {
        private readonly HashSet<string> _seen = [];
        private readonly Dictionary<string, Tensor<double>> _grams = [];
        private Tensor<double>? _scratch;
        public int Calls, CallsPerForward;
        public double Seconds;

        public void BeginCall() => _seen.Clear();

        public void OnInput(Linear linear, ReadOnlySpan<float> x, int rows)
        {
            if (!_seen.Add(linear.InputKey)) return;
            var sw = Stopwatch.StartNew();
            int n = linear.InFeatures;
            if (!_grams.TryGetValue(linear.InputKey, out var g)) _grams[linear.InputKey] = g = Tensor<double>.Zeros(n, n);
            if (_scratch is null || _scratch.Length < (long)rows * n) { _scratch?.Dispose(); _scratch = Tensor<double>.Uninitialized(rows, n); }
            var d = _scratch.Span[..(rows * n)];
            for (int i = 0; i < d.Length; i++) d[i] = x[i];
            Blas.Dsyrk(lower: true, Transpose.Yes, n, rows, 1.0, d, n, 1.0, g.Span, n);
            Seconds += sw.Elapsed.TotalSeconds;
            Calls++;
            CallsPerForward = Math.Max(CallsPerForward, _seen.Count);
        }
    }
}
