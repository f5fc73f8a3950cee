using SvdLlm.Evaluation.Efficiency;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Checkpoints;
using SvdLlm.Models.Tests;
using SvdLlm.Models.Tests.Reference;

namespace SvdLlm.Evaluation.Tests;

/// <summary>
/// Sizes against counts made from the tiny checkpoints' shapes (kept by the test-side writer, not read
/// back through the production reader); speeds only for being recorded, positive and finite (timings
/// are not asserted: they belong to benchmarks).
/// </summary>
public class EfficiencyTests
{
    private static readonly EfficiencyOptions Small = new(Batch: 2, PromptLen: 8, GenLen: 4, Repeats: 2, Seed: 5, WarmupSeconds: 0);

    private static long Elements(int[] shape) => shape.Aggregate(1L, (p, d) => p * d);

    [Theory]
    [InlineData(TinyArch.Llama3, "F32")]
    [InlineData(TinyArch.Llama3, "BF16")]
    [InlineData(TinyArch.Opt, "F16")]
    public void Sizes_match_the_checkpoint_shapes_and_settings_are_recorded(TinyArch arch, string dtype)
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), arch, seed: 3, dtype);
        using var model = ModelLoader.Load(ckpt.Directory);
        var result = EfficiencyBenchmark.Measure(model, Small);

        long parameters = ckpt.Shapes.Values.Sum(Elements);
        long linear = ckpt.Shapes.Where(kv => kv.Key.Contains(".layers.") && (kv.Key.Contains("_proj.") || kv.Key.Contains(".fc"))).Sum(kv => Elements(kv.Value));
        Assert.Equal(parameters, result.Parameters);
        Assert.Equal(parameters * TinyCheckpoint.ElementSize(dtype), result.WeightBytes);
        Assert.Equal(parameters * 4, result.WeightBytesFloat32);
        Assert.Equal(linear, result.LinearParameters);
        Assert.Equal(0, result.LowRankLinears);

        Assert.Equal((2, 8, 4, 2, 5), (result.Batch, result.PromptLen, result.GenLen, result.Repeats, result.Seed));
        Assert.True(result.Threads > 0);
        Assert.Equal(2, result.PrefillSeconds.Count);
        Assert.Equal(2, result.DecodeSeconds.Count);
        Assert.All(result.PrefillSeconds.Concat(result.DecodeSeconds), s => Assert.True(s > 0 && double.IsFinite(s)));
        Assert.True(result.PrefillTokensPerSecond > 0 && double.IsFinite(result.PrefillTokensPerSecond));
        Assert.True(result.DecodeTokensPerSecond > 0 && double.IsFinite(result.DecodeTokensPerSecond));
        // K and V × layers × batch × (prompt + gen) positions × kv width × 4 bytes.
        int kvWidth = ckpt.NumKvHeads * ckpt.HeadDim;
        Assert.Equal(2L * ckpt.NumLayers * 2 * 12 * kvWidth * 4, result.KvCacheBytes);
        if (OperatingSystem.IsLinux()) Assert.True(result.PeakRssBytes > 0);

        var metrics = result.ToMetrics().ToDictionary(m => m.Name, m => m.Value);
        Assert.Equal(parameters, metrics["params"]);
        Assert.Equal(result.WeightBytes, metrics["weight_bytes"]);
        Assert.Equal(result.PrefillTokensPerSecond, metrics["prefill_tokens_per_s"]);
        Assert.Equal(result.DecodeTokensPerSecond, metrics["decode_tokens_per_s"]);
        var task = result.ToTaskResult();
        Assert.Equal("efficiency", task.Task);
        Assert.Equal(2 * 12, task.N);
        Assert.Contains("batch 2, prompt 8, gen 4", task.Protocol);
    }

    [Fact]
    public void Compressed_to_original_ratios_follow_the_factor_shapes()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("dense"), TinyArch.Llama3, seed: 4);
        const int rank = 4;
        string lowRank = LowRankCopy.Write(ckpt, dir.Sub("low"), rank);

        // Independently: a linear [m, n] stored as U [m, k] and V [k, n] holds k·(m + n) parameters.
        long dense = ckpt.Shapes.Values.Sum(Elements);
        long compressed = ckpt.Shapes.Sum(kv => IsLayerLinear(kv.Key) ? (long)rank * (kv.Value[0] + kv.Value[1]) : Elements(kv.Value));
        long denseLinear = ckpt.Shapes.Where(kv => IsLayerLinear(kv.Key)).Sum(kv => Elements(kv.Value));
        long compressedLinear = ckpt.Shapes.Where(kv => IsLayerLinear(kv.Key)).Sum(kv => (long)rank * (kv.Value[0] + kv.Value[1]));

        var (a, b, ratio) = EfficiencyBenchmark.MeasurePair(lowRank, ckpt.Directory, Small);
        Assert.Equal(7 * ckpt.NumLayers, a.LowRankLinears);
        Assert.Equal(0, b.LowRankLinears);
        Assert.Equal(compressed, a.Parameters);
        Assert.Equal(dense, b.Parameters);
        Assert.All(new[] { a, b }, r => Assert.Equal((2, 8, 4, 2), (r.Batch, r.PromptLen, r.GenLen, r.PrefillSeconds.Count)));
        Assert.All(new[] { a, b }, r => Assert.True(r.WarmupRuns >= 1));
        if (OperatingSystem.IsLinux()) Assert.True(a.PeakRssBytes > 0 && b.PeakRssBytes > 0 && ratio.PeakRssRatio > 0);
        Assert.Equal(ratio, EfficiencyComparison.Compare(a, b));

        Assert.Equal((double)compressed / dense, ratio.ParamsRatio, 12);
        Assert.Equal((double)compressed / dense, ratio.WeightBytesRatio, 12); // both stored as F32
        Assert.Equal((double)compressedLinear / denseLinear, ratio.LinearParamsRatio, 12);
        Assert.True(ratio.PrefillThroughputRatio > 0 && double.IsFinite(ratio.PrefillThroughputRatio));
        Assert.True(ratio.DecodeThroughputRatio > 0 && double.IsFinite(ratio.DecodeThroughputRatio));
        Assert.Contains(ratio.ToMetrics(), m => m.Name == "decode_tokens_per_s_ratio" && m.Value == ratio.DecodeThroughputRatio);

        var e = Assert.Throws<ArgumentException>(() => EfficiencyComparison.Compare(a, b with { GenLen = 5 }));
        Assert.Contains("gen 4/5", e.Message);
    }

    [Fact]
    public void Synthetic_prompt_is_seeded_and_inside_the_vocabulary()
    {
        var a = SyntheticPrompt.Create(7, 3, 50, 99);
        Assert.Equal(150, a.Length);
        Assert.Equal(a, SyntheticPrompt.Create(7, 3, 50, 99));
        Assert.NotEqual(a, SyntheticPrompt.Create(8, 3, 50, 99));
        Assert.All(a, t => Assert.InRange(t, 0, 98));
        Assert.True(a.Distinct().Count() > 50, "uniform ids over 99 values should not repeat much in 150 draws");
        Assert.Throws<ArgumentException>(() => SyntheticPrompt.Create(7, 0, 50, 99));
    }

    [Fact]
    public void Bad_settings_are_refused_before_measuring()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Opt, seed: 1);
        using var model = ModelLoader.Load(ckpt.Directory);
        Assert.Throws<ArgumentException>(() => EfficiencyBenchmark.Measure(model, Small with { Repeats = 0 }));
        Assert.Throws<ArgumentException>(() => EfficiencyBenchmark.Measure(model, Small with { Batch = -1 }));
        // OPT's learned positions end at 64: a prompt of 60 plus 8 generated tokens does not fit.
        var e = Assert.Throws<ArgumentException>(() => EfficiencyBenchmark.Measure(model, Small with { PromptLen = 60, GenLen = 8 }));
        Assert.Contains("68", e.Message);
    }

    [Fact]
    public void Proc_status_lines_are_parsed_in_kilobytes()
    {
        string[] status = ["Name:\tdotnet", "VmPeak:\t  812345 kB", "VmHWM:\t   20480 kB", "VmRSS:\t   10240 kB"];
        Assert.Equal(20480, PeakMemory.ParseStatusKilobytes(status, "VmHWM:"));
        Assert.Equal(10240, PeakMemory.ParseStatusKilobytes(status, "VmRSS:"));
        Assert.Null(PeakMemory.ParseStatusKilobytes(status, "VmSwap:"));
        Assert.Throws<FormatException>(() => PeakMemory.ParseStatusKilobytes(["VmHWM:\t 12 MB"], "VmHWM:"));
        if (OperatingSystem.IsLinux())
        {
            long rss = PeakMemory.ResidentBytes()!.Value;
            Assert.True(PeakMemory.PeakResidentBytes() >= rss);
        }
    }

    // Weights only: biases are not factorised, so they count as they are.
    private static bool IsLayerLinear(string name) => LowRankCopy.IsLayerLinear(name) && name.EndsWith(".weight", StringComparison.Ordinal);
}
