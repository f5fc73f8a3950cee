using SvdLlm.Compression.Truncation;
using System.Text.Json.Nodes;
using SvdLlm.Compression;
using SvdLlm.Compression.Calibration;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Checkpoints;
using SvdLlm.Models.Tests;
using SvdLlm.Models.Tests.Reference;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Tests;

/// <summary>Calibration, every method end to end, compressed checkpoints and the statistics cache, on tiny random checkpoints.</summary>
public class CompressorTests
{
    private const int SeqLen = 16, Samples = 12;

    private static int[] Windows(int vocab, int seed = 1) => RandomWindows.Sample(vocab, Samples, SeqLen, seed);

    [Fact]
    public void Layer_by_layer_grams_equal_those_of_a_full_forward_pass_and_layer_0_matches_rmsnorm_of_embeddings()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Llama3, seed: 3);
        using var model = ModelLoader.Load(ckpt.Directory);
        var windows = Windows(model.VocabSize);
        using var stats = Calibrator.Collect(model, windows, SeqLen, batchSize: 5);

        // Independent: every linear input seen during ordinary full forward passes of the original model.
        var sums = new Dictionary<string, double[,]>();
        var observer = new FullForwardObserver(sums);
        using var fresh = ModelLoader.Load(ckpt.Directory);
        fresh.Observer = observer;
        for (int s = 0; s < Samples; s++) fresh.Logits(windows.AsSpan(s * SeqLen, SeqLen), 1, SeqLen).Dispose();
        Assert.Equal(sums.Keys.OrderBy(k => k), stats.Inputs.Keys.OrderBy(k => k));
        foreach (var (key, c) in sums)
        {
            var g = stats.Inputs[key].Gram;
            double scale = Enumerable.Range(0, g.Rows).Max(i => Math.Abs(g[i, i]));
            for (int i = 0; i < g.Rows; i++)
                for (int j = 0; j < g.Cols; j++)
                    Assert.True(Math.Abs(g[i, j] - c[i, j]) <= 1e-5 * scale, $"{key}[{i},{j}]: {g[i, j]} vs {c[i, j]}");
            Assert.Equal(Samples * SeqLen, stats.Inputs[key].Tokens);
        }

        // Layer 0's attention input is RMSNorm(embedding) — computed here from the stored weights alone.
        var embed = ckpt.Weights["model.embed_tokens.weight"];
        var norm = ckpt.Weights["model.layers.0.input_layernorm.weight"];
        int h = norm.Length;
        var expected = new double[h, h];
        foreach (int tok in windows)
        {
            var x = Enumerable.Range(0, h).Select(i => embed[tok * h + i]).ToArray();
            double rs = 1 / Math.Sqrt(x.Sum(v => v * v) / h + ckpt.Config.RmsNormEps);
            var y = x.Select((v, i) => v * rs * norm[i]).ToArray();
            for (int i = 0; i < h; i++) for (int j = 0; j < h; j++) expected[i, j] += y[i] * y[j];
        }
        var g0 = stats.Inputs["model.layers.0.self_attn.input"].Gram;
        for (int i = 0; i < h; i++) for (int j = 0; j < h; j++) Assert.Equal(expected[i, j], g0[i, j], 1e-3);
    }

    private sealed class FullForwardObserver(Dictionary<string, double[,]> sums) : ILinearObserver
    {
        private string? _last;
        public void OnInput(Linear linear, ReadOnlySpan<float> x, int rows)
        {
            if (linear.InputKey == _last) return;
            _last = linear.InputKey;
            int n = linear.InFeatures;
            if (!sums.TryGetValue(linear.InputKey, out var c)) sums[linear.InputKey] = c = new double[n, n];
            for (int r = 0; r < rows; r++)
                for (int i = 0; i < n; i++)
                    for (int j = 0; j < n; j++) c[i, j] += (double)x[r * n + i] * x[r * n + j];
        }
    }

    public static TheoryData<string, double> MethodsAndRatios()
    {
        var data = new TheoryData<string, double>();
        foreach (var m in CompressionMethod.LowRank)
            foreach (double r in new[] { 0.2, 0.4, 0.6, 0.8 }) data.Add(m.Name, r);
        return data;
    }

    [Theory, MemberData(nameof(MethodsAndRatios))]
    public void Every_method_compresses_to_the_ratio_and_round_trips_through_a_checkpoint(string method, double ratio)
    {
        using var dir = new TempDirectory();
        // Hidden 64 with GQA: ranks stay ≥ 1 at 80% for every matrix (k_proj 32×64 keeps ⌊32·64·0.2/96⌋ = 4).
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Llama3, seed: 5);
        using var model = ModelLoader.Load(ckpt.Directory);
        var windows = Windows(model.VocabSize);
        using var stats = Calibrator.Collect(model, windows, SeqLen);
        var m = CompressionMethod.Get(method);
        if (m.NeedsFisher) FisherCollector.Collect(model, windows, SeqLen, stats);
        long linearBefore = model.LinearParameterCount;
        var report = Compressor.Compress(model, stats, method, ratio, windows: new CalibrationWindows(windows, SeqLen));

        // Parameter reduction matches R: ranks are rounded down, so removed ≥ R, and by less than one rank per matrix.
        Assert.Equal(linearBefore, report.LinearParamsBefore);
        Assert.True(report.AchievedLinearRatio >= ratio - 1e-9, $"{method}@{ratio}: removed {report.AchievedLinearRatio}");
        double slack = model.Linears.Sum(l => (double)(l.InFeatures + l.OutFeatures)) / linearBefore;
        // The sensitivity search moves in steps of whole candidate ratios: one threshold step can move one
        // matrix from kept 0.9 to 0.1, so it may overshoot R by up to 0.8 of the largest matrix.
        if (m.Allocation == AllocationKind.Sensitivity)
            slack += 0.8 * model.Linears.Max(l => (double)l.InFeatures * l.OutFeatures) / linearBefore;
        Assert.True(report.AchievedLinearRatio <= ratio + slack, $"{method}@{ratio}: removed {report.AchievedLinearRatio}, slack {slack}");
        Assert.All(model.Linears, l => Assert.True(l.IsLowRank));
        Assert.All(report.Matrices, x => Assert.True(double.IsFinite(x.MeasuredLoss) && x.Rank >= 1));
        if (m.Truncation == TruncationKind.EigenWhitening || (m.Name == "svdllm" && !report.Notes.Any(n => n.Contains("not positive definite"))))
            Assert.All(report.Matrices, x => Assert.True(Math.Abs(x.MeasuredLoss - x.TheoreticalLoss) <= 1e-6 * Math.Max(1, x.TheoreticalLoss),
                $"{x.Name}: measured {x.MeasuredLoss}, theoretical {x.TheoreticalLoss}"));
        if (m.Allocation == AllocationKind.TheoreticalLoss)
            foreach (var g in report.Matrices.GroupBy(x => x.Group))
                Assert.Equal(ratio, g.Average(x => x.AllocatedRatio), 9);

        var tokens = windows[..SeqLen];
        using var inMemory = model.Logits(tokens, 1, SeqLen);
        string outDir = Path.Combine(dir.Path, "compressed");
        CompressedCheckpoint.Write(model, outDir, report);
        using var reloaded = ModelLoader.Load(outDir);
        using var fromDisk = reloaded.Logits(tokens, 1, SeqLen);
        for (int i = 0; i < inMemory.Length; i++) Assert.Equal(inMemory.Span[i], fromDisk.Span[i], 1e-5f);
        Assert.Equal(model.LinearParameterCount, reloaded.LinearParameterCount);

        // The tensor names a compressed checkpoint holds: factors under the reference's names, no dense weight.
        using var reader = CheckpointReader.Open(outDir);
        Assert.True(reader.Contains("model.layers.0.self_attn.q_u_proj.weight"));
        Assert.True(reader.Contains("model.layers.1.mlp.down_v_proj.weight"));
        Assert.False(reader.Contains("model.layers.0.self_attn.q_proj.weight"));
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "config.json")))!;
        Assert.Equal(method, (string)config["svd_compression"]!["method"]!);
        Assert.Equal(reloaded.GetLinear("model.layers.0.mlp.up_proj").Rank, (int)config["svd_compression"]!["ranks"]!["model.layers.0.mlp.up_proj"]!);
        Assert.True(File.Exists(Path.Combine(outDir, "compression-report.json")));
    }

    [Fact]
    public void Whitening_methods_lose_less_on_the_calibration_outputs_than_plain_svd()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Qwen2, seed: 8);
        var windows = Windows(99);
        double Total(string method)
        {
            using var model = ModelLoader.Load(ckpt.Directory);
            using var stats = Calibrator.Collect(model, windows, SeqLen);
            return Compressor.Compress(model, stats, method, 0.4).Matrices.Sum(x => x.MeasuredLoss * x.MeasuredLoss);
        }
        double svd = Total("svd"), v1 = Total("svdllm"), v2t = Total("svdllm-v2-trunc");
        Assert.True(v2t <= v1 * (1 + 1e-6), $"V2 truncation {v2t} vs SVD-LLM {v1}");
        Assert.True(v1 < svd, $"SVD-LLM {v1} vs SVD {svd}");
    }

    [Fact]
    public void Statistics_cache_hits_on_the_same_inputs_and_misses_on_any_change()
    {
        using var dir = new TempDirectory();
        var a = TinyCheckpoint.Create(dir.Sub("a"), TinyArch.Llama2, seed: 1);
        var b = TinyCheckpoint.Create(dir.Sub("b"), TinyArch.Llama2, seed: 2);
        string text = dir.File("calib.txt");
        File.WriteAllText(text, "some calibration text");
        string cache = dir.Sub("cache");
        var request = new CalibrationRequest(a.Directory, text, Samples, SeqLen, 1, false);
        var windows = Windows(99);
        using var model = ModelLoader.Load(a.Directory);
        var first = CalibrationCache.GetOrCollect(model, new CalibrationWindows(windows, SeqLen), request, cacheDirectory: cache);
        first.Stats.Dispose();
        Assert.False(first.Hit);
        var second = CalibrationCache.GetOrCollect(model, new CalibrationWindows(windows, SeqLen), request, cacheDirectory: cache);
        Assert.True(second.Hit);
        Assert.Equal(first.Key, second.Key);
        var g = second.Stats.Input("model.layers.1.mlp.input");
        Assert.Equal(Samples * SeqLen, g.Tokens);
        second.Stats.Dispose();

        Assert.NotEqual(first.Key, CalibrationCache.Key(request with { ModelDirectory = b.Directory }));
        Assert.NotEqual(first.Key, CalibrationCache.Key(request with { Seed = 2 }));
        Assert.NotEqual(first.Key, CalibrationCache.Key(request with { Samples = Samples + 1 }));
        Assert.NotEqual(first.Key, CalibrationCache.Key(request with { SeqLen = SeqLen + 1 }));
        Assert.NotEqual(first.Key, CalibrationCache.Key(request with { Fisher = true }));
        File.AppendAllText(text, ".");
        Assert.NotEqual(first.Key, CalibrationCache.Key(request));
    }

    [Fact]
    public void Statistics_file_round_trips_and_rejects_foreign_files()
    {
        using var dir = new TempDirectory();
        using var stats = new CalibrationStatistics();
        var s = stats.GetOrAdd("x", 3);
        for (int i = 0; i < 9; i++) s.Gram.Span[i] = Math.Max(i / 3, i % 3) * 1.5 + Math.Min(i / 3, i % 3) * 0.5 + 1e-17; // symmetric, as Grams are
        s.AbsSum[1] = 2.25;
        s.Tokens = 7;
        stats.Fisher["w"] = [1, 2, 6];
        stats.Metadata["seed"] = "3";
        string path = dir.File("s.svdstats");
        stats.Save(path);
        using var back = CalibrationStatistics.Load(path);
        Assert.Equal(s.Gram.Span.ToArray(), back.Inputs["x"].Gram.Span.ToArray());
        Assert.Equal(2.25, back.Inputs["x"].AbsSum[1]);
        Assert.Equal(7, back.Inputs["x"].Tokens);
        Assert.Equal(6.0, back.Fisher["w"][2]);
        Assert.Equal("3", back.Metadata["seed"]);
        File.WriteAllText(dir.File("junk.svdstats"), "not a statistics file");
        Assert.Throws<InvalidDataException>(() => CalibrationStatistics.Load(dir.File("junk.svdstats")));
    }

    /// <summary>
    /// gfwsvd in the compressor equals the pieces run by hand: each linear's 16 mini-batch gradients of the original
    /// model, their nearest Kronecker factors and the closed-form truncation at the uniform rank.
    /// </summary>
    [Fact]
    public void Gfwsvd_compresses_each_linear_with_the_kronecker_factors_of_its_gradient_samples()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Llama3, seed: 6);
        using var model = ModelLoader.Load(ckpt.Directory);
        var tokens = RandomWindows.Sample(model.VocabSize, 32, SeqLen, 8);
        using var stats = Calibrator.Collect(model, tokens, SeqLen);
        // K = 8 gradient samples of 4 windows each (the default K is 16).
        var report = Compressor.Compress(model, stats, "gfwsvd", 0.4, windows: new CalibrationWindows(tokens, SeqLen), gfwsvd: new GfwsvdOptions(GradientSamples: 8));
        Assert.Contains(report.Notes, n => n == "GFWSVD: K = 8 gradient samples per linear, each the mean over 4 calibration window(s); at most 50 power iterations");
        Assert.True(report.StageSeconds["gradients"] > 0);

        using var original = ModelLoader.Load(ckpt.Directory);
        var samples = GradientSamples.Collect(original, tokens, SeqLen, 4);
        foreach (var l in model.Linears)
        {
            var o = original.Linears.Single(x => x.Name == l.Name);
            using var w = Compressor.Weight(original, o);
            using var kron = KroneckerFisher.Nearest(samples[l.Name]);
            using var expected = new GfwsvdTruncation().Truncate(w, l.Rank!.Value, new TruncationInputs { Kronecker = kron });
            using var product = expected.Product();
            int k = l.Rank!.Value;
            using var u = DenseMath.ToDouble(l.U.Span, l.OutFeatures, k);
            using var v = DenseMath.ToDouble(l.V.Span, k, l.InFeatures);
            using var got = DenseMath.MatMul(u, false, v, false);
            double scale = product.Span.ToArray().Max(Math.Abs);
            for (int i = 0; i < product.Length; i++)
                Assert.True(Math.Abs(product.Span[i] - got.Span[i]) <= 1e-4 * scale, $"{l.Name}[{i}]: {got.Span[i]} vs {product.Span[i]}");
        }
        foreach (var list in samples.Values) foreach (var g in list) g.Dispose();
    }

    [Fact]
    public void Unknown_method_bad_ratio_and_double_compression_are_errors()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Llama2, seed: 1);
        using var model = ModelLoader.Load(ckpt.Directory);
        using var stats = Calibrator.Collect(model, Windows(99), SeqLen);
        Assert.Contains("did you mean 'svdllm-v2'", Assert.Throws<ArgumentException>(() => Compressor.Compress(model, stats, "svdllm-v3", 0.2)).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => Compressor.Compress(model, stats, "svd", 1.0));
        Assert.Throws<ArgumentException>(() => Compressor.Compress(model, stats, "fwsvd", 0.2));
        // Methods that run the model on the windows are refused before any work when the windows are missing.
        foreach (var m in CompressionMethod.LowRank.Where(m => m.NeedsCalibrationWindows))
            Assert.Contains("calibration windows", Assert.Throws<ArgumentException>(() => Compressor.Compress(model, stats, m.Name, 0.2)).Message);
        Assert.DoesNotContain(model.Linears, l => l.IsLowRank);
        Assert.Throws<ArgumentException>(() => new CalibrationWindows(new int[SeqLen + 1], SeqLen));
        Compressor.Compress(model, stats, "svd", 0.5);
        Assert.Throws<InvalidOperationException>(() => Compressor.Compress(model, stats, "svd", 0.5));
    }
}
