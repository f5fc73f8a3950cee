using System.Text.Json.Nodes;
using SvdLlm.Compression.Calibration;
using SvdLlm.Compression.Modegpt;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Checkpoints;
using SvdLlm.Models.Tests;
using SvdLlm.Models.Tests.Reference;

namespace SvdLlm.Compression.Tests;

/// <summary>
/// MoDeGPT end to end on a tiny GQA LLaMA: the checkpoint it writes loads with per-layer widths, removes at least the
/// asked fraction of the decoder linears' parameters (counted from the written shapes, not from its report), keeps
/// every block's width at a vanishing ratio with the original's logits, and is refused for what it cannot do.
/// </summary>
public class ModegptCompressorTests
{
    private const int SeqLen = 16, Samples = 16;

    private static (CalibrationWindows Windows, CalibrationStatistics Stats) Calibrate(CausalLanguageModel model)
    {
        var windows = new CalibrationWindows(RandomWindows.Sample(model.VocabSize, Samples, SeqLen, 5), SeqLen);
        return (windows, Calibrator.Collect(model, windows.Tokens, SeqLen));
    }

    private static long DecoderLinearParams(string dir)
    {
        using var r = CheckpointReader.Open(dir);
        return r.TensorNames.Where(n => n.StartsWith("model.layers.", StringComparison.Ordinal) && n.EndsWith("_proj.weight", StringComparison.Ordinal))
            .Sum(n => r.GetInfo(n).ElementCount);
    }

    [Theory]
    [InlineData(TinyArch.Llama3)]
    [InlineData(TinyArch.Mistral)]
    [InlineData(TinyArch.Qwen2)]
    public void At_30_percent_the_model_loads_with_per_layer_widths_and_loses_at_least_30_percent_of_its_linear_parameters(TinyArch arch)
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), arch, seed: 3);
        using var model = ModelLoader.Load(ckpt.Directory);
        var (windows, stats) = Calibrate(model);
        using var _ = stats;
        string outDir = Path.Combine(dir.Path, "modegpt");
        var report = ModegptCompressor.CompressToDirectory(model, stats, windows, 0.3, outDir, _ => { });

        double removed = 1 - (double)DecoderLinearParams(outDir) / DecoderLinearParams(ckpt.Directory);
        Assert.True(removed >= 0.3, $"removed {removed:P2} of the decoder linears' parameters");
        Assert.Equal(removed, 1 - (double)report.LinearParamsAfter / report.LinearParamsBefore, 12);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "config.json")))!;
        int layers = config["num_hidden_layers"]!.GetValue<int>();
        Assert.Equal(layers, config["intermediate_sizes"]!.AsArray().Count);
        Assert.All(config["qk_head_dims"]!.AsArray(), x => Assert.Equal(0, x!.GetValue<int>() % 2));
        using var compressed = ModelLoader.Load(outDir);
        using var logits = compressed.Logits(windows.Tokens.AsSpan(0, SeqLen), 1, SeqLen);
        Assert.All(logits.Span.ToArray(), v => Assert.True(float.IsFinite(v)));
        Assert.Equal(7 * layers, report.Matrices.Count);
    }

    /// <remarks>Qwen2 checks the attention biases: q/k biases follow their rows, the value bias is refitted on the kept subspace (exact at full width).</remarks>
    [Theory]
    [InlineData(TinyArch.Llama3)]
    [InlineData(TinyArch.Qwen2)]
    public void At_a_vanishing_ratio_every_width_is_kept_and_the_logits_are_the_originals(TinyArch arch)
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), arch, seed: 4);
        using var model = ModelLoader.Load(ckpt.Directory);
        var (windows, stats) = Calibrate(model);
        using var _ = stats;
        string outDir = Path.Combine(dir.Path, "modegpt");
        ModegptCompressor.CompressToDirectory(model, stats, windows, 1e-9, outDir, _ => { });
        Assert.Equal(DecoderLinearParams(ckpt.Directory), DecoderLinearParams(outDir));
        using var compressed = ModelLoader.Load(outDir);
        using var a = model.Logits(windows.Tokens.AsSpan(0, SeqLen), 1, SeqLen);
        using var b = compressed.Logits(windows.Tokens.AsSpan(0, SeqLen), 1, SeqLen);
        // Full widths: the MLP and Q/K are the same weights; V/O is refitted as U_k and U_kᵀ W_O W_V, the same product
        // in float64, so only float32 rounding of the refitted factors (about 1e-6 of a logit) separates the two.
        float scale = a.Span.ToArray().Max(Math.Abs);
        for (int i = 0; i < a.Span.Length; i++) Assert.True(Math.Abs(a.Span[i] - b.Span[i]) <= 1e-4f * scale, $"logit {i}: {a.Span[i]} vs {b.Span[i]}");
    }

    [Fact]
    public void A_bfloat16_model_is_written_in_bfloat16_and_its_reported_bytes_are_those_of_the_written_linears()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Llama3, seed: 3, dtype: "BF16");
        using var model = ModelLoader.Load(ckpt.Directory);
        var (windows, stats) = Calibrate(model);
        using var _ = stats;
        string outDir = Path.Combine(dir.Path, "modegpt");
        var report = ModegptCompressor.CompressToDirectory(model, stats, windows, 0.3, outDir, _ => { });
        using var r = CheckpointReader.Open(outDir);
        var linears = r.TensorNames.Where(n => n.StartsWith("model.layers.", StringComparison.Ordinal) && n.EndsWith("_proj.weight", StringComparison.Ordinal)).ToList();
        Assert.All(linears, n => Assert.Equal(SafeTensorsDType.BF16, r.GetInfo(n).DType));
        Assert.Equal(linears.Sum(n => 2 * r.GetInfo(n).ElementCount), report.LinearBytesAfter);
    }

    [Fact]
    public void Matrix_parameters_are_read_checked_and_spelled_once()
    {
        var uniform = MethodRecipe.Parse("modegpt", new Dictionary<string, string> { ["smoothing"] = "1e9" });
        Assert.Equal("MoDeGPT uniform", uniform.Label);
        Assert.Equal(1e9, uniform.Modegpt!.Smoothing);
        Assert.Equal("1000000000", uniform.Canonical()["smoothing"]);
        Assert.Empty(MethodRecipe.Plain("modegpt").Canonical()); // defaults left out: one cell, one key
        Assert.True(MethodRecipe.Plain("modegpt").NeedsWindows && MethodRecipe.Plain("modegpt").NeedsStatistics && MethodRecipe.Plain("modegpt").TakesRatio);
        Assert.Contains("params.max_sparsity", Assert.Throws<ArgumentException>(() => MethodRecipe.Parse("modegpt", new Dictionary<string, string> { ["max_sparsity"] = "2" })).Message);
        Assert.Contains("unknown parameter", Assert.Throws<ArgumentException>(() => MethodRecipe.Parse("modegpt", new Dictionary<string, string> { ["bits"] = "4" })).Message);
    }

    [Fact]
    public void Models_it_cannot_compress_and_bad_ratios_are_refused_writing_nothing()
    {
        using var dir = new TempDirectory();
        var llama = TinyCheckpoint.Create(dir.Sub("l"), TinyArch.Llama3, seed: 3);
        using var lm = ModelLoader.Load(llama.Directory);
        var (windows, stats) = Calibrate(lm);
        using var _ = stats;
        string outDir = Path.Combine(dir.Path, "out");
        var opt = TinyCheckpoint.Create(dir.Sub("o"), TinyArch.Opt, seed: 3);
        using (var om = ModelLoader.Load(opt.Directory))
            Assert.Contains("LLaMA family", Assert.Throws<NotSupportedException>(() => ModegptCompressor.CompressToDirectory(om, stats, windows, 0.3, outDir, _ => { })).Message);
        Assert.Contains("(0, 1)", Assert.Throws<ArgumentException>(() => ModegptCompressor.CompressToDirectory(lm, stats, windows, 1.0, outDir, _ => { })).Message);
        Assert.False(Directory.Exists(outDir));
    }
}
