using System.Text.Json.Nodes;
using SvdLlm.Compression.Calibration;
using SvdLlm.Compression.Delta;
using SvdLlm.Compression.Quantization;
using SvdLlm.Compression.Recovery;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Checkpoints;
using SvdLlm.Models.Tests;
using SvdLlm.Models.Tests.Architectures;
using SvdLlm.Models.Tests.Reference;

namespace SvdLlm.Compression.Tests;

/// <summary>
/// The compressors on a structurally pruned model (MoDeGPT's per-layer widths): they treat linears by their own shapes,
/// so SVD methods and quantization run, the written checkpoint keeps the per-layer lists and the int32 kept-pairs tensors
/// and loads; SVD-LLM V2's allocation keeps the parameter budget when a group's members differ in shape; everything that
/// needs the training model refuses such a model by name.
/// </summary>
public class ReducedDimsCompressionTests
{
    private const int SeqLen = 16, Samples = 8;
    private static readonly string[] Lists = ["intermediate_sizes", "qk_head_dims", "v_head_dims"];

    /// <summary>Llama3 (head_dim 16, intermediate 96), three layers: prunes everything in 0, keeps every pair in 1, permutes the pairs in 2.</summary>
    private static (string Directory, int[] Windows) Pruned(TempDirectory dir, (int, int?, int)[]? amounts = null, int seed = 7)
    {
        var config = TinyConfig.Preset(TinyArch.Llama3) with { NumLayers = 3 };
        var plan = ReducedDims.RandomPlan(config, seed: 43, amounts ?? [(40, 5, 12), (96, null, 7), (17, 8, 16)]);
        var full = TinyCheckpoint.Create(dir.Sub("full"), config, seed);
        string path = ReducedDims.Reduced(full, plan).Write(dir.Sub("pruned"));
        return (path, RandomWindows.Sample(config.VocabSize, Samples, SeqLen, 3));
    }

    private static void AssertKeepsTheArchitecture(string source, string compressed)
    {
        using var a = CheckpointReader.Open(source);
        using var b = CheckpointReader.Open(compressed);
        var pairs = a.TensorNames.Where(n => n.EndsWith(".self_attn.rope_pairs", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, pairs.Count);
        foreach (string name in pairs)
        {
            Assert.Equal(SafeTensorsDType.I32, b.GetInfo(name).DType);
            Assert.Equal(a.GetInfo(name).Shape, b.GetInfo(name).Shape);
            Assert.Equal(a.ReadInt32(name), b.ReadInt32(name));
        }
        var ca = JsonNode.Parse(File.ReadAllText(Path.Combine(source, "config.json")))!;
        var cb = JsonNode.Parse(File.ReadAllText(Path.Combine(compressed, "config.json")))!;
        foreach (string field in Lists) Assert.Equal(ca[field]!.ToJsonString(), cb[field]!.ToJsonString());
    }

    [Theory]
    [InlineData("svd", false)]
    [InlineData("svdllm", true)]
    [InlineData("svdllm-v2", false)]
    [InlineData("svdllm-v2", true)]
    public void Svd_methods_compress_a_pruned_model_into_a_checkpoint_that_keeps_its_widths_and_pairs(string method, bool streamed)
    {
        using var dir = new TempDirectory();
        var (pruned, windows) = Pruned(dir);
        const double ratio = 0.4;
        string outDir = Path.Combine(dir.Path, "compressed");
        CompressionReport report;
        using (var model = ModelLoader.Load(pruned))
        {
            using var stats = Calibrator.Collect(model, windows, SeqLen);
            if (streamed)
            {
                report = Compressor.CompressToDirectory(model, stats, method, ratio, outDir);
            }
            else
            {
                report = Compressor.Compress(model, stats, method, ratio);
                CompressedCheckpoint.Write(model, outDir, report);
            }
        }
        Assert.True(report.AchievedLinearRatio >= ratio - 1e-9, $"{method}: removed {report.AchievedLinearRatio}");
        if (method == "svdllm-v2")
        {
            // Groups whose members differ in shape (down_proj [64, I_l], q_proj [4·d_qk, 64], …) keep the parameter budget:
            // Σ r_i·m_i·n_i = R·Σ m_i·n_i, not a mean ratio of R.
            Assert.Contains(report.Matrices.GroupBy(x => x.Group), g => g.Select(x => (x.Shape[0], x.Shape[1])).Distinct().Count() > 1);
            foreach (var g in report.Matrices.GroupBy(x => x.Group))
            {
                double size = g.Sum(x => (double)x.Shape[0] * x.Shape[1]);
                Assert.Equal(ratio, g.Sum(x => x.AllocatedRatio * x.Shape[0] * x.Shape[1]) / size, 9);
            }
        }
        AssertKeepsTheArchitecture(pruned, outDir);

        using var reloaded = ModelLoader.Load(outDir);
        Assert.All(reloaded.Linears, l => Assert.True(l.IsLowRank, l.Name));
        Assert.Equal(17, reloaded.GetLinear("model.layers.2.mlp.down_proj").InFeatures);
        Assert.Equal(2 * 5 * 2, reloaded.GetLinear("model.layers.0.self_attn.k_proj").OutFeatures);

        // The reloaded checkpoint computes what the compressed model computed in memory (in-memory compression of a fresh copy).
        using var fresh = ModelLoader.Load(pruned);
        using (var stats = Calibrator.Collect(fresh, windows, SeqLen)) Compressor.Compress(fresh, stats, method, ratio);
        var tokens = windows[..SeqLen];
        using var expected = fresh.Logits(tokens, 1, SeqLen);
        using var actual = reloaded.Logits(tokens, 1, SeqLen);
        for (int i = 0; i < expected.Length; i++) Assert.Equal(expected.Span[i], actual.Span[i], 1e-5f);
    }

    [Fact]
    public void Rtn_quantizes_a_pruned_model_and_the_checkpoint_keeps_its_pairs()
    {
        using var dir = new TempDirectory();
        // The GPTQ layout packs in runs of 32: MLP widths 32 and 64, attention unpruned but with permuted pairs in layers 0 and 2.
        var (pruned, _) = Pruned(dir, [(32, 8, 16), (64, null, 16), (96, 8, 16)]);
        string outDir = Path.Combine(dir.Path, "rtn");
        using (var model = ModelLoader.Load(pruned))
            QuantizedCheckpoint.Write(model, MatrixQuantizer.Rtn(new GptqOptions { Bits = 8, GroupSize = 32 }), null, outDir);
        AssertKeepsTheArchitecture(pruned, outDir);
        using var reloaded = ModelLoader.Load(outDir);
        Assert.All(reloaded.Linears, l => Assert.Equal(8, l.QuantizedBits));
        Assert.Equal(32, reloaded.GetLinear("model.layers.0.mlp.gate_proj").OutFeatures);

        // 8-bit round-to-nearest barely moves the model: the pairs were applied in both.
        using var original = ModelLoader.Load(pruned);
        var tokens = RandomWindows.Sample(original.VocabSize, 1, SeqLen, 5);
        using var a = original.Logits(tokens, 1, SeqLen);
        using var b = reloaded.Logits(tokens, 1, SeqLen);
        double scale = 1, diff = 0;
        for (int i = 0; i < a.Length; i++)
        {
            scale = Math.Max(scale, Math.Abs(a.Span[i]));
            diff = Math.Max(diff, Math.Abs(a.Span[i] - b.Span[i]));
        }
        Assert.True(diff / scale < 0.05, $"8-bit RTN moved the logits by {diff / scale:E2} of the largest");
    }

    [Fact]
    public void Delta_compression_of_a_pruned_pair_copies_the_pairs_and_refuses_a_pair_that_kept_different_ones()
    {
        using var dir = new TempDirectory();
        var config = TinyConfig.Preset(TinyArch.Llama3) with { NumLayers = 3 };
        var plan = ReducedDims.RandomPlan(config, seed: 43, (40, 5, 12), (96, null, 7), (17, 8, 16));
        var full = TinyCheckpoint.Create(dir.Sub("full"), config, seed: 7);
        var parts = ReducedDims.Reduced(full, plan);
        string baseDir = parts.Write(dir.Sub("base"));
        // A "fine-tuned" model: every decoder linear moved a little, the pairs the same.
        var rng = new Random(2);
        var moved = parts.Floats.Select(t => t.Name.Contains("_proj.weight")
            ? (t.Name, t.Shape, t.Data.Select(x => x + 0.01f * (float)(rng.NextDouble() - 0.5)).ToArray()) : t).ToList();
        string ftDir = (parts with { Floats = moved }).Write(dir.Sub("ft"));
        string outDir = Path.Combine(dir.Path, "delta");
        DeltaCheckpoint.Write(baseDir, ftDir, new DeltaOptions(DeltaMethod.Svd, 4), outDir, _ => { });
        AssertKeepsTheArchitecture(ftDir, outDir);
        using (var reloaded = ModelLoader.Load(outDir)) Assert.Equal(17, reloaded.GetLinear("model.layers.2.mlp.up_proj").OutFeatures);

        // The other key/value head's pairs in layer 0: the two models' q/k rows no longer mean the same thing.
        var (name, shape, data) = parts.Ints[0];
        int m = (int)shape[1];
        var swapped = parts.Ints.Select(t => t.Name == name ? (name, shape, (int[])[.. data[m..], .. data[..m]]) : t).ToList();
        string otherDir = (parts with { Floats = moved, Ints = swapped }).Write(dir.Sub("other"));
        var e = Assert.Throws<ArgumentException>(() => DeltaCheckpoint.Write(baseDir, otherDir, new DeltaOptions(DeltaMethod.Svd, 4), Path.Combine(dir.Path, "delta2"), _ => { }));
        Assert.Contains(name, e.Message);
        Assert.False(Directory.Exists(Path.Combine(dir.Path, "delta2")));
    }

    [Fact]
    public void Everything_that_trains_refuses_a_pruned_model_before_estimating_its_memory()
    {
        using var dir = new TempDirectory();
        var (pruned, windows) = Pruned(dir);
        var calibration = new CalibrationWindows(windows, SeqLen);
        using var model = ModelLoader.Load(pruned);
        using var stats = Calibrator.Collect(model, windows, SeqLen);
        void Refused(Action run, string? directory = null)
        {
            var e = Assert.Throws<ModelConfigException>(run);
            Assert.Contains("per-layer reduced dimensions (MoDeGPT", e.Message);
            Assert.Contains("training supports uniform LLaMA shapes", e.Message);
            Assert.Contains(Path.Combine(directory ?? pruned, "config.json"), e.Message);
        }
        // The plan check refuses them before estimating memory from the config's uniform shapes; plain SVD is estimated.
        foreach (string method in new[] { "fwsvd", "gfwsvd", "dobi-svd" })
            Refused(() => Preflight.Estimate(model, CompressionMethod.Get(method), 0.4, Samples, SeqLen, statisticsCached: false));
        Assert.True(Preflight.Estimate(model, CompressionMethod.Get("svd"), 0.4, Samples, SeqLen, statisticsCached: false).CompressionMemoryBytes > 0);
        Refused(() => FisherCollector.Collect(model, windows, SeqLen, stats)); // fwsvd's statistics
        Refused(() => FineTuning.Run(pruned, calibration, new FineTuneOptions { Steps = 1, BatchSize = 2 }, Path.Combine(dir.Path, "ft"), _ => { }));
        Refused(() => Compressor.Compress(model, stats, "dobi-svd", 0.4, windows: calibration));
        string svd = Path.Combine(dir.Path, "svd");
        using (var again = ModelLoader.Load(pruned))
        using (var s = Calibrator.Collect(again, windows, SeqLen))
            Compressor.CompressToDirectory(again, s, "svd", 0.4, svd);
        Refused(() => LoraRecovery.Run(svd, calibration, new LoraOptions { Rank = 2, Epochs = 1, BatchSize = 2 }, Path.Combine(dir.Path, "lora"), _ => { }), svd);
    }

    [Fact]
    public void Theoretical_loss_allocation_keeps_the_parameter_budget_over_members_of_different_shapes()
    {
        const double ratio = 0.5;
        double[] losses = [3.0, 8.0, 20.0, 5.0];
        // One shape: the paper's rule r_i = |g|·R·ℓ_i / Σ ℓ_j, computed here directly.
        var same = Enumerable.Range(0, 4).Select(i => new MatrixTarget($"l{i}.down_proj", 64, 96, "down_proj")).ToList();
        var a = TheoreticalLossAllocation.Allocate(same, ratio, (t, _) => losses[same.IndexOf(t)]);
        var ell = losses.Select(l => 1 / Math.Log(l)).ToArray();
        for (int i = 0; i < 4; i++) Assert.Equal(4 * ratio * ell[i] / ell.Sum(), a[i].Ratio, 12);

        // Pruned widths: r_i = c·ℓ_i with Σ r_i m_i n_i = R Σ m_i n_i.
        var mixed = new[] { 96, 40, 17, 64 }.Select((n, i) => new MatrixTarget($"l{i}.down_proj", 64, n, "down_proj")).ToList();
        var b = TheoreticalLossAllocation.Allocate(mixed, ratio, (t, _) => losses[mixed.IndexOf(t)]);
        double size = mixed.Sum(t => (double)t.M * t.N);
        Assert.Equal(ratio, b.Select((x, i) => x.Ratio * mixed[i].M * mixed[i].N).Sum() / size, 12);
        for (int i = 1; i < 4; i++) Assert.Equal(ell[i] / ell[0], b[i].Ratio / b[0].Ratio, 12); // still proportional to ℓ
        Assert.All(b, x => Assert.Null(x.Note));
    }
}
