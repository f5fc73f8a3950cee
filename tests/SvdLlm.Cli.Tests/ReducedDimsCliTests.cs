using System.Text.Json;
using SvdLlm.Models.Tests;
using SvdLlm.Models.Tests.Architectures;
using SvdLlm.Models.Tests.Reference;
using SvdLlm.Models.Training;

namespace SvdLlm.Cli.Tests;

/// <summary><c>inspect</c> and <c>compress</c> on a structurally pruned model (MoDeGPT's per-layer widths).</summary>
public class ReducedDimsCliTests
{
    [Fact]
    public void Inspect_shows_the_per_layer_widths_compress_works_and_fwsvd_is_refused_as_a_user_error()
    {
        using var dir = new TempDirectory();
        string text = string.Join(' ', Enumerable.Range(0, 600).Select(i => "word" + (i * 7 % 29)));
        string textFile = dir.File("calib.txt");
        File.WriteAllText(textFile, text);
        var bpe = ByteLevelBpeTrainer.Train([text], 280);
        var config = TinyConfig.Preset(TinyArch.Llama3) with { NumLayers = 3, VocabSize = bpe.VocabSize, BosTokenId = bpe.BosId, EosTokenId = bpe.EosId };
        var full = TinyCheckpoint.Create(dir.Sub("full"), config, seed: 1);
        var plan = ReducedDims.RandomPlan(config, seed: 5, (40, 5, 12), (96, null, 7), (17, 8, 16));
        string pruned = ReducedDims.Reduced(full, plan).Write(dir.Sub("pruned"));
        File.WriteAllText(Path.Combine(pruned, "tokenizer.json"), ByteLevelBpeTrainer.ToTokenizerJson(bpe));

        var r = CliRunner.Run("inspect", "--model", pruned, "--json");
        Assert.True(r.Exit == 0, r.Err);
        var root = JsonDocument.Parse(r.Out).RootElement;
        Assert.Equal([40, 96, 17], root.GetProperty("intermediate_sizes").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal([10, 16, 16], root.GetProperty("qk_head_dims").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal([12, 7, 16], root.GetProperty("v_head_dims").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(2, root.GetProperty("layers_with_rope_pairs").GetInt32());
        // Every float tensor is a parameter; the int32 pairs are not.
        using (var reader = SvdLlm.Models.Checkpoints.CheckpointReader.Open(pruned))
            Assert.Equal(reader.TensorNames.Where(n => !n.EndsWith("rope_pairs")).Sum(n => reader.GetInfo(n).ElementCount), root.GetProperty("parameters_total").GetInt64());
        r = CliRunner.Run("inspect", "--model", pruned);
        Assert.True(r.Exit == 0, r.Err);
        Assert.Contains(r.Out.Split('\n'), line => line.StartsWith("intermediate_sizes") && line.TrimEnd().EndsWith(" 40 96 17"));

        string outDir = Path.Combine(dir.Path, "v2");
        r = CliRunner.Run("compress", "--model", pruned, "--method", "svdllm-v2", "--ratio", "0.4", "--text-file", textFile, "--samples", "4", "--seq-len", "16",
            "--out", outDir, "--json");
        Assert.True(r.Exit == 0, r.Err);
        var ppl = CliRunner.Run("ppl", "--model", outDir, "--text-file", textFile, "--seq-len", "16", "--json");
        Assert.True(ppl.Exit == 0, ppl.Err);
        Assert.True(double.IsFinite(JsonDocument.Parse(ppl.Out.Trim()).RootElement.GetProperty("ppl").GetDouble()));

        r = CliRunner.Run("compress", "--model", pruned, "--method", "fwsvd", "--ratio", "0.4", "--text-file", textFile, "--samples", "4", "--seq-len", "16",
            "--out", Path.Combine(dir.Path, "fwsvd"));
        Assert.Equal(1, r.Exit);
        Assert.Contains("training supports uniform LLaMA shapes", r.Err);
        Assert.False(Directory.Exists(Path.Combine(dir.Path, "fwsvd")));
    }
}
