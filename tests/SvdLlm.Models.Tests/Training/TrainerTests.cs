using System.Text.Json.Nodes;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Tokenizers;
using SvdLlm.Models.Training;

namespace SvdLlm.Models.Tests.Training;

/// <summary>End-to-end training of a micro model on a generated corpus: learning, determinism, resume, atomic output.</summary>
public class TrainerTests
{
    /// <summary>A deterministic toy language: subject–verb–object sentences from small word lists, so a 2-layer model learns it in seconds.</summary>
    internal static string GeneratedText(int seed, int sentences)
    {
        string[] subjects = ["the cat", "a dog", "the old man", "my sister", "the whale", "a sailor"];
        string[] verbs = ["sees", "likes", "follows", "finds", "hears"];
        string[] objects = ["the sea", "a ship", "the harbour", "an island", "the moon", "a small boat"];
        var rng = new Random(seed);
        var sb = new System.Text.StringBuilder();
        for (int i = 0; i < sentences; i++)
        {
            sb.Append(subjects[rng.Next(subjects.Length)]).Append(' ').Append(verbs[rng.Next(verbs.Length)]).Append(' ')
              .Append(objects[rng.Next(objects.Length)]).Append(". ");
            if (i % 8 == 7) sb.Append('\n');
        }
        return sb.ToString();
    }

    internal static TrainConfig MicroConfig(int steps = 60) => new()
    {
        Name = "micro",
        Seed = 7,
        Corpora = ["toy"],
        Tokenizer = new TrainConfig.TokenizerSection { VocabSize = 300 },
        Model = new TrainConfig.ModelSection { HiddenSize = 32, IntermediateSize = 64, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2, MaxPositionEmbeddings = 64 },
        Training = new TrainConfig.TrainingSection
        {
            SeqLen = 32, BatchSize = 8, Steps = steps, Lr = 1e-2, MinLr = 1e-3, WarmupSteps = 5, EvalEvery = 30, EvalWindows = 4, CheckpointEvery = 20,
        },
    };

    internal static TrainingCorpus[] ToyCorpus() => [new("toy", GeneratedText(1, 3000), GeneratedText(2, 300), GeneratedText(3, 300))];

    [Fact]
    public void Training_a_micro_model_lowers_the_loss_and_writes_a_loadable_hf_directory()
    {
        using var dir = new TempDirectory();
        string outDir = Path.Combine(dir.Path, "model");
        var summary = Trainer.Run(MicroConfig(), ToyCorpus(), outDir, new Trainer.Options());

        var training = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "training.json")))!;
        var curve = training["loss_curve"]!.AsArray();
        double first = (double)curve[0]![1]!;
        // Initial loss ≈ ln(vocab 300) ≈ 5.7; the toy language has ~2.6 bits of choice per word, so a
        // model that learned it is far below. Stated margin: at least 2.5 nats lower after 60 steps.
        Assert.True(first > 5.0, $"initial loss {first}");
        Assert.True(summary.FinalLoss < first - 2.5, $"loss went from {first} to {summary.FinalLoss}");
        Assert.True(summary.ValidationLoss["toy"] < first - 2.5);
        Assert.False(Directory.Exists(outDir + ".partial"));

        using var model = ModelLoader.Load(outDir);
        var tokenizer = HfTokenizer.Load(outDir);
        Assert.Equal(model.VocabSize, tokenizer.VocabSize);
        var ids = tokenizer.Encode("the cat sees the sea. ");
        Assert.Equal(tokenizer.BosTokenId, ids[0]);
        var nll = model.TokenNll(ids, 1, ids.Length);
        Assert.True(nll.Average() < first - 2.5, $"held-out sentence NLL {nll.Average()}");
        Assert.Equal("the cat sees the sea. ", tokenizer.Decode(ids, skipSpecialTokens: true));
    }

    [Fact]
    public void Same_config_and_seed_give_byte_identical_weights_and_resume_equals_an_uninterrupted_run()
    {
        using var dir = new TempDirectory();
        var config = MicroConfig(steps: 40);
        string a = Path.Combine(dir.Path, "a"), b = Path.Combine(dir.Path, "b"), c = Path.Combine(dir.Path, "c");
        Trainer.Run(config, ToyCorpus(), a, new Trainer.Options());
        Trainer.Run(config, ToyCorpus(), b, new Trainer.Options());
        byte[] wa = File.ReadAllBytes(Path.Combine(a, "model.safetensors"));
        Assert.Equal(wa, File.ReadAllBytes(Path.Combine(b, "model.safetensors")));

        // Interrupt after step 25 (a checkpoint exists at 20; the interruption saves another at 25), then resume.
        using var cts = new CancellationTokenSource();
        var options = new Trainer.Options { Cancellation = cts.Token, Progress = p => { if (p.Step == 25) cts.Cancel(); } };
        Assert.ThrowsAny<OperationCanceledException>(() => Trainer.Run(config, ToyCorpus(), c, options));
        Assert.False(Directory.Exists(c), "an interrupted run must not leave the output directory");
        Assert.True(Directory.Exists(c + ".partial"));
        Trainer.Run(config, ToyCorpus(), c, new Trainer.Options());
        Assert.Equal(wa, File.ReadAllBytes(Path.Combine(c, "model.safetensors")));
        var curve = JsonNode.Parse(File.ReadAllText(Path.Combine(c, "training.json")))!["loss_curve"]!.AsArray();
        Assert.Equal(40, curve.Count);
    }

    [Fact]
    public void Refuses_to_overwrite_and_validates_the_config()
    {
        using var dir = new TempDirectory();
        string existing = dir.Sub("taken");
        Assert.Throws<IOException>(() => Trainer.Run(MicroConfig(), ToyCorpus(), existing, new Trainer.Options()));
        var bad = MicroConfig();
        bad.Model.NumKeyValueHeads = 3;
        bad.Training.SeqLen = 100;
        var e = Assert.Throws<TrainConfigException>(() => bad.Validate("micro.yaml"));
        Assert.Contains("'model.num_key_value_heads' = 3 must divide", e.Message);
        Assert.Contains("'training.seq_len' = 100 exceeds", e.Message);
    }

    [Fact]
    public void Yaml_config_rejects_unknown_keys_with_a_position()
    {
        using var dir = new TempDirectory();
        string path = dir.File("c.yaml");
        File.WriteAllText(path, "name: x\nseed: 3\nmodel:\n  hidden_size: 64\n  hiden_layers: 2\n");
        var e = Assert.Throws<TrainConfigException>(() => TrainConfig.Load(path));
        Assert.Contains("c.yaml:5:", e.Message);
        File.WriteAllText(path, "name: x\nseed: 3\nmodel:\n  hidden_size: 64\n  num_attention_heads: 4\n");
        var ok = TrainConfig.Load(path);
        Assert.Equal(64, ok.Model.HiddenSize);
        Assert.Equal(3, ok.Seed);
    }

    [Fact]
    public void Cache_key_changes_with_every_input()
    {
        var sums = new Dictionary<string, string> { ["a.txt"] = "00ff" };
        string k = MicroConfig().CacheKey(sums);
        Assert.Equal(k, MicroConfig().CacheKey(new Dictionary<string, string> { ["a.txt"] = "00ff" }));
        var seed = MicroConfig(); seed.Seed++;
        var vocab = MicroConfig(); vocab.Tokenizer.VocabSize++;
        var dims = MicroConfig(); dims.Model.IntermediateSize++;
        var lr = MicroConfig(); lr.Training.Lr *= 2;
        foreach (var other in new[] { seed, vocab, dims, lr }) Assert.NotEqual(k, other.CacheKey(sums));
        Assert.NotEqual(k, MicroConfig().CacheKey(new Dictionary<string, string> { ["a.txt"] = "00fe" }));
    }
}
