using SvdLlm.Compression;
using SvdLlm.Compression.Calibration;
using SvdLlm.Compression.Recovery;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Checkpoints;
using SvdLlm.Models.Tests;
using SvdLlm.Models.Tests.Reference;

namespace SvdLlm.Compression.Tests;

/// <summary>
/// SVD-LLM's LoRA recovery end to end on a tiny LLaMA: it lowers the loss it trains on, changes only the factors (every
/// other tensor is written back bit for bit), repeats bit for bit, and reads its settings like every recipe parameter.
/// </summary>
public class LoraRecoveryTests
{
    private const int SeqLen = 16, Samples = 16;

    private static (string Svd, CalibrationWindows Windows) Compressed(TempDirectory dir)
    {
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Llama2, seed: 9);
        using var model = ModelLoader.Load(ckpt.Directory);
        var windows = new CalibrationWindows(RandomWindows.Sample(model.VocabSize, Samples, SeqLen, 4), SeqLen);
        using var stats = Calibrator.Collect(model, windows.Tokens, SeqLen);
        string svd = Path.Combine(dir.Path, "svd");
        MethodRecipe.Plain("svdllm").CompressToDirectory(model, stats, windows, 0.5, svd, _ => { });
        return (svd, windows);
    }

    [Fact]
    public void Recovery_lowers_the_training_loss_changes_only_the_factors_and_repeats_bit_for_bit()
    {
        using var dir = new TempDirectory();
        var (svd, windows) = Compressed(dir);
        var options = new LoraOptions { Rank = 2, LearningRate = 1e-2, Epochs = 3, BatchSize = 4 };
        string outA = Path.Combine(dir.Path, "a"), outB = Path.Combine(dir.Path, "b");
        var stages = LoraRecovery.Run(svd, windows, options, outA, _ => { });
        LoraRecovery.Run(svd, windows, options, outB, _ => { });

        Assert.Equal([Models.Training.LoraTarget.U, Models.Training.LoraTarget.V], stages.Select(s => s.Target));
        Assert.All(stages, s => Assert.Equal(3 * (Samples / 4), s.Steps));
        Assert.All(stages, s => Assert.All(s.Loss, l => Assert.True(double.IsFinite(l))));
        double before = RandomWindows.MeanLoss(svd, windows), after = RandomWindows.MeanLoss(outA, windows);
        Assert.True(after < before - 0.01, $"loss on the recovery windows {before:F4} → {after:F4}");

        using var original = CheckpointReader.Open(svd);
        using var a = CheckpointReader.Open(outA);
        using var b = CheckpointReader.Open(outB);
        Assert.Equal(original.TensorNames.Order(), a.TensorNames.Order());
        int factorsChanged = 0;
        foreach (string name in original.TensorNames)
        {
            var o = original.ReadAsFloat32(name);
            var x = a.ReadAsFloat32(name);
            Assert.Equal(x, b.ReadAsFloat32(name)); // deterministic: same seed and threads, same bits
            Assert.Equal(original.GetInfo(name).DType, a.GetInfo(name).DType);
            bool factor = name.EndsWith("_u_proj.weight", StringComparison.Ordinal) || name.EndsWith("_v_proj.weight", StringComparison.Ordinal);
            if (!factor) Assert.Equal(o, x);
            else if (!o.SequenceEqual(x)) factorsChanged++;
        }
        // Both factors of every linear moved: U in the first stage, V in the second (2 layers × 7 linears × 2 factors).
        Assert.Equal(original.TensorNames.Count(n => n.EndsWith("_u_proj.weight") || n.EndsWith("_v_proj.weight")), factorsChanged);
        Assert.Equal(File.ReadAllText(Path.Combine(svd, "config.json")), File.ReadAllText(Path.Combine(outA, "config.json")));
    }

    [Fact]
    public void The_recipe_runs_recovery_after_truncation_and_reports_its_curves()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Llama3, seed: 2);
        using var model = ModelLoader.Load(ckpt.Directory);
        var windows = new CalibrationWindows(RandomWindows.Sample(model.VocabSize, 8, SeqLen, 1), SeqLen);
        using var stats = Calibrator.Collect(model, windows.Tokens, SeqLen);
        var recipe = MethodRecipe.Parse("svdllm-v2", new Dictionary<string, string> { ["recover"] = "lora", ["lora_epochs"] = "1", ["lora_batch"] = "4" });
        Assert.True(recipe.NeedsWindows);
        string outDir = Path.Combine(dir.Path, "out");
        var report = recipe.CompressToDirectory(model, stats, windows, 0.5, outDir, _ => { });
        var stages = report.Recovery!["stages"]!.AsArray();
        Assert.Equal(["u", "v"], stages.Select(s => s!["factor"]!.GetValue<string>()));
        Assert.Equal(["lora_u", "lora_v"], report.TrainingCurves.Keys.Order());
        Assert.All(report.TrainingCurves.Values, c => Assert.Equal(2, c.Count));
        Assert.True(report.StageSeconds["recovery"] > 0);
        Assert.Equal("SVD-LLM V2 + LoRA 1 ep b4", recipe.Label);
        // The written report is the returned one, and nothing is left beside the output.
        Assert.Contains("\"recovery\"", File.ReadAllText(Path.Combine(outDir, "compression-report.json")));
        Assert.Equal(["m", "out"], Directory.GetDirectories(dir.Path).Select(Path.GetFileName).Order());
    }

    [Fact]
    public void Recovery_parameters_have_one_spelling_and_clear_errors()
    {
        var a = MethodRecipe.Parse("svdllm", new Dictionary<string, string> { ["recover"] = "lora", ["lora_rank"] = "8", ["lora_lr"] = "0.0003" });
        Assert.Equal(new SortedDictionary<string, string> { ["recover"] = "lora" }, a.Canonical());
        var b = MethodRecipe.Parse("svdllm", new Dictionary<string, string> { ["recover"] = "lora", ["lora_rank"] = "16", ["quantize"] = "rtn", ["bits"] = "4" });
        Assert.Equal("16", b.Canonical()["lora_rank"]);
        Assert.Equal("SVD-LLM + LoRA r16 + RTN 4-bit", b.Label);
        Assert.Null(MethodRecipe.Plain("svdllm").Recovery);

        var e1 = Assert.Throws<ArgumentException>(() => MethodRecipe.Parse("svdllm", new Dictionary<string, string> { ["lora_rank"] = "4" }));
        Assert.Contains("params.lora_rank applies to recovery: give params.recover lora", e1.Message);
        var e2 = Assert.Throws<ArgumentException>(() => MethodRecipe.Parse("svdllm", new Dictionary<string, string> { ["recover"] = "qlora" }));
        Assert.Contains("'qlora' is not a recovery", e2.Message);
        var e3 = Assert.Throws<ArgumentException>(() => MethodRecipe.Parse("svdllm", new Dictionary<string, string> { ["recover"] = "lora", ["lora_rank"] = "0" }, p => "--" + p.Replace('_', '-')));
        Assert.Contains("--lora-rank 0 must be at least 1", e3.Message);
        var e4 = Assert.Throws<ArgumentException>(() => MethodRecipe.Parse("gptq", new Dictionary<string, string> { ["recover"] = "lora", ["bits"] = "4" }));
        Assert.Contains("recover", e4.Message);
    }

    [Fact]
    public void Memory_check_refuses_a_7b_shaped_recovery_on_this_machine_unless_forced()
    {
        var l7 = new LlamaConfig
        {
            Architecture = "LlamaForCausalLM", ModelType = "llama", TieWordEmbeddings = false, QkvBias = false, OutputBias = false, MlpBias = false,
            VocabSize = 32000, HiddenSize = 4096, IntermediateSize = 11008, NumHiddenLayers = 32, NumAttentionHeads = 32, NumKeyValueHeads = 32,
            HeadDim = 128, MaxPositionEmbeddings = 4096, RmsNormEps = 1e-5, RopeTheta = 10000,
        };
        // 7B at 20 %: 5.4 B parameters, 21.6 GB in float32; a batch of 8 × 511 positions keeps 32 layers × 336 M floats of
        // activations (43 GB), dominated by the MLP's three [N, 11008] buffers and the attention probabilities.
        long parameters = 5_390_000_000;
        var e = Assert.Throws<InsufficientResourcesException>(() => LoraRecovery.CheckMemory(l7, parameters, 512, 8, force: false, available: 24L << 30));
        Assert.Contains("LoRA recovery", e.Message);
        Assert.InRange(LoraRecovery.EstimateBytes(l7, parameters, 512, 8) / 1e9, 21.6 + 43.0, 21.6 + 43.0 + 2);
        LoraRecovery.CheckMemory(l7, parameters, 512, 8, force: true, available: 24L << 30);
    }
}
