using System.Text.Json.Nodes;
using SvdLlm.Compression.Calibration;
using SvdLlm.Compression.Recovery;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Checkpoints;
using SvdLlm.Models.Tests;
using SvdLlm.Models.Tests.Reference;

namespace SvdLlm.Compression.Tests;

/// <summary>
/// <c>train --init</c>'s fine-tuning on a tiny LLaMA: it lowers the loss of the text it trains on as measured by the
/// inference forward (a separate implementation from the training model), moves every weight matrix and nothing that
/// is not a parameter, repeats bit for bit, and refuses what it cannot train.
/// </summary>
public class FineTuningTests
{
    private const int SeqLen = 16, Samples = 16;

    [Fact]
    public void Fine_tuning_lowers_the_loss_on_its_text_moves_every_weight_and_repeats_bit_for_bit()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("base"), TinyArch.Llama2, seed: 5);
        CalibrationWindows windows;
        using (var model = ModelLoader.Load(ckpt.Directory))
            windows = new CalibrationWindows(RandomWindows.Sample(model.VocabSize, Samples, SeqLen, 8), SeqLen);
        var options = new FineTuneOptions { Steps = 12, LearningRate = 3e-3, BatchSize = 4, Seed = 2 };
        string a = Path.Combine(dir.Path, "a"), b = Path.Combine(dir.Path, "b");
        var result = FineTuning.Run(ckpt.Directory, windows, options, a, _ => { });
        FineTuning.Run(ckpt.Directory, windows, options, b, _ => { });

        Assert.Equal(12, result.Loss.Length);
        double before = RandomWindows.MeanLoss(ckpt.Directory, windows), after = RandomWindows.MeanLoss(a, windows);
        Assert.True(after < before - 0.05, $"loss on the training windows {before:F4} → {after:F4}");
        // The training loop's first loss is the untouched model's loss on its first batch: the training forward and the
        // inference forward agree on it within float32 rounding of a few hundred terms.
        Assert.InRange(result.Loss[0], before - 0.5, before + 0.5);

        using var original = CheckpointReader.Open(ckpt.Directory);
        using var ra = CheckpointReader.Open(a);
        using var rb = CheckpointReader.Open(b);
        Assert.Equal(original.TensorNames.Order(), ra.TensorNames.Order());
        foreach (string name in original.TensorNames)
        {
            var x = ra.ReadAsFloat32(name);
            Assert.Equal(x, rb.ReadAsFloat32(name)); // same seed and threads: same bits
            Assert.Equal(original.GetInfo(name).DType, ra.GetInfo(name).DType);
            if (name.EndsWith("proj.weight", StringComparison.Ordinal))
                Assert.False(original.ReadAsFloat32(name).SequenceEqual(x), $"{name} did not move");
        }
        var record = JsonNode.Parse(File.ReadAllText(Path.Combine(a, "fine-tuning.json")))!;
        Assert.Equal(12, record["steps"]!.GetValue<int>());
        Assert.Equal(12, record["loss"]!.AsArray().Count);
        Assert.Equal(File.ReadAllText(Path.Combine(ckpt.Directory, "config.json")), File.ReadAllText(Path.Combine(a, "config.json")));

        // Another seed orders the windows differently, so the weights differ.
        string c = Path.Combine(dir.Path, "c");
        FineTuning.Run(ckpt.Directory, windows, options with { Seed = 3 }, c, _ => { });
        using var rc = CheckpointReader.Open(c);
        Assert.False(ra.ReadAsFloat32("model.layers.0.mlp.down_proj.weight").SequenceEqual(rc.ReadAsFloat32("model.layers.0.mlp.down_proj.weight")));
    }

    [Fact]
    public void Fine_tuning_refuses_a_low_rank_model_an_existing_output_and_bad_settings_writing_nothing()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("base"), TinyArch.Llama2, seed: 5);
        CalibrationWindows windows;
        string svd = Path.Combine(dir.Path, "svd");
        using (var model = ModelLoader.Load(ckpt.Directory))
        {
            windows = new CalibrationWindows(RandomWindows.Sample(model.VocabSize, Samples, SeqLen, 8), SeqLen);
            using var stats = Calibrator.Collect(model, windows.Tokens, SeqLen);
            MethodRecipe.Plain("svdllm").CompressToDirectory(model, stats, windows, 0.5, svd, _ => { });
        }
        string outDir = Path.Combine(dir.Path, "out");
        var e = Assert.Throws<ArgumentException>(() => FineTuning.Run(svd, windows, new FineTuneOptions { Steps = 1 }, outDir, _ => { }));
        Assert.Contains("low-rank", e.Message);
        Assert.Contains("steps", Assert.Throws<ArgumentException>(() => FineTuning.Run(ckpt.Directory, windows, new FineTuneOptions { Steps = 0 }, outDir, _ => { })).Message);
        Assert.Contains("--lr", Assert.Throws<ArgumentException>(() => FineTuning.Run(ckpt.Directory, windows, new FineTuneOptions { LearningRate = double.NaN }, outDir, _ => { })).Message);
        Assert.False(Directory.Exists(outDir));
        Assert.Throws<IOException>(() => FineTuning.Run(ckpt.Directory, windows, new FineTuneOptions { Steps = 1 }, svd, _ => { }));
    }

    [Fact]
    public void The_memory_check_counts_gradients_and_both_adam_moments()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("base"), TinyArch.Llama2, seed: 5);
        using var model = (LlamaForCausalLM)ModelLoader.Load(ckpt.Directory);
        long p = model.ParameterCount;
        long need = FineTuning.EstimateBytes(model.Config, p, SeqLen, 4);
        // Weights, gradients and AdamW's m and v: four float32 copies at least.
        Assert.True(need >= 16 * p, $"estimate {need} below 16 bytes × {p} parameters");
        Assert.Throws<InsufficientResourcesException>(() => FineTuning.CheckMemory(model.Config, p, SeqLen, 4, force: false, available: need - 1));
        FineTuning.CheckMemory(model.Config, p, SeqLen, 4, force: true, available: need - 1);
        FineTuning.CheckMemory(model.Config, p, SeqLen, 4, force: false, available: need);
    }
}
