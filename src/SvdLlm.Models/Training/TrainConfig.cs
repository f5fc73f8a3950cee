using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using YamlDotNet.Core;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace SvdLlm.Models.Training;

/// <summary>A training config file is malformed; the message names the file, the position or field, and what was expected.</summary>
public sealed class TrainConfigException(string message) : UserInputException(message);

/// <summary>
/// Everything that determines a trained model: corpora, tokenizer, architecture and optimisation,
/// plus the seed. Read from YAML (snake_case keys; unknown keys are errors). Its canonical JSON
/// (<see cref="CanonicalJson"/>) is what the model cache key hashes, together with the corpus checksums.
/// </summary>
public sealed class TrainConfig
{
    public string Name { get; set; } = "svdllm-tiny-llama";
    public int Seed { get; set; } = 1234;
    public List<string> Corpora { get; set; } = ["moby-dick", "sotu", "brown"];
    public TokenizerSection Tokenizer { get; set; } = new();
    public ModelSection Model { get; set; } = new();
    public TrainingSection Training { get; set; } = new();

    public sealed class TokenizerSection
    {
        public int VocabSize { get; set; } = 4096;
        public int MinFrequency { get; set; } = 2;
    }

    public sealed class ModelSection
    {
        public int HiddenSize { get; set; } = 256;
        public int IntermediateSize { get; set; } = 704;
        public int NumHiddenLayers { get; set; } = 4;
        public int NumAttentionHeads { get; set; } = 8;
        public int NumKeyValueHeads { get; set; } = 2;
        public int MaxPositionEmbeddings { get; set; } = 1024;
        public double RopeTheta { get; set; } = 10000;
        public double RmsNormEps { get; set; } = 1e-5;
        public bool TieWordEmbeddings { get; set; } = true;
    }

    public sealed class TrainingSection
    {
        public int SeqLen { get; set; } = 128;
        public int BatchSize { get; set; } = 16;
        public int GradAccum { get; set; } = 1;
        public int Steps { get; set; } = 2000;
        public double Lr { get; set; } = 3e-3;
        public double MinLr { get; set; } = 3e-4;
        public int WarmupSteps { get; set; } = 100;
        public double WeightDecay { get; set; } = 0.1;
        public double Beta1 { get; set; } = 0.9;
        public double Beta2 { get; set; } = 0.95;
        public double GradClip { get; set; } = 1.0;
        public double InitStd { get; set; } = 0.02;
        public int EvalEvery { get; set; } = 250;
        public int EvalWindows { get; set; } = 32;
        public int CheckpointEvery { get; set; } = 250;
    }

    public static TrainConfig Load(string path)
    {
        if (!File.Exists(path)) throw new TrainConfigException($"{path}: file not found");
        return Parse(File.ReadAllText(path), path);
    }

    /// <summary>A config from YAML text (an embedded resource, say); <paramref name="source"/> names it in errors.</summary>
    public static TrainConfig Parse(string yaml, string source)
    {
        var deserializer = new DeserializerBuilder().WithNamingConvention(UnderscoredNamingConvention.Instance).Build();
        TrainConfig config;
        try
        {
            config = deserializer.Deserialize<TrainConfig>(yaml) ?? new TrainConfig();
        }
        catch (YamlException e)
        {
            string inner = e.InnerException?.Message ?? e.Message;
            throw new TrainConfigException($"{source}:{e.Start.Line}:{e.Start.Column}: {inner}");
        }
        config.Validate(source);
        return config;
    }

    /// <summary>Checks every value; throws with all problems listed, each naming its field.</summary>
    public void Validate(string source = "config")
    {
        var errors = new List<string>();
        void Positive(string field, double v) { if (!(v > 0)) errors.Add($"'{field}' = {v} must be positive"); }
        if (string.IsNullOrWhiteSpace(Name) || Name.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0) errors.Add($"'name' = \"{Name}\" must be a non-empty file-name-safe string");
        if (Corpora.Count == 0) errors.Add("'corpora' must list at least one corpus");
        if (Tokenizer.VocabSize < 258) errors.Add($"'tokenizer.vocab_size' = {Tokenizer.VocabSize} must be at least 258");
        var m = Model;
        Positive("model.hidden_size", m.HiddenSize);
        Positive("model.intermediate_size", m.IntermediateSize);
        Positive("model.num_hidden_layers", m.NumHiddenLayers);
        Positive("model.num_attention_heads", m.NumAttentionHeads);
        Positive("model.num_key_value_heads", m.NumKeyValueHeads);
        if (m.NumAttentionHeads > 0 && m.HiddenSize % m.NumAttentionHeads != 0)
            errors.Add($"'model.hidden_size' = {m.HiddenSize} is not a multiple of 'model.num_attention_heads' = {m.NumAttentionHeads}");
        else if (m.NumAttentionHeads > 0 && m.HiddenSize / m.NumAttentionHeads % 2 != 0)
            errors.Add($"head dim {m.HiddenSize / m.NumAttentionHeads} must be even (rotary pairs)");
        if (m.NumKeyValueHeads > 0 && m.NumAttentionHeads % m.NumKeyValueHeads != 0)
            errors.Add($"'model.num_key_value_heads' = {m.NumKeyValueHeads} must divide 'model.num_attention_heads' = {m.NumAttentionHeads}");
        var t = Training;
        Positive("training.seq_len", t.SeqLen);
        Positive("training.batch_size", t.BatchSize);
        Positive("training.grad_accum", t.GradAccum);
        Positive("training.steps", t.Steps);
        Positive("training.lr", t.Lr);
        if (t.MinLr < 0 || t.MinLr > t.Lr) errors.Add($"'training.min_lr' = {t.MinLr} must be in [0, lr = {t.Lr}]");
        if (t.WarmupSteps < 0) errors.Add($"'training.warmup_steps' = {t.WarmupSteps} must be ≥ 0");
        if (t.Beta1 is < 0 or >= 1) errors.Add($"'training.beta1' = {t.Beta1} must be in [0, 1)");
        if (t.Beta2 is < 0 or >= 1) errors.Add($"'training.beta2' = {t.Beta2} must be in [0, 1)");
        if (t.WeightDecay < 0) errors.Add($"'training.weight_decay' = {t.WeightDecay} must be ≥ 0");
        if (t.GradClip < 0) errors.Add($"'training.grad_clip' = {t.GradClip} must be ≥ 0 (0 disables clipping)");
        Positive("training.init_std", t.InitStd);
        Positive("training.eval_every", t.EvalEvery);
        Positive("training.eval_windows", t.EvalWindows);
        Positive("training.checkpoint_every", t.CheckpointEvery);
        if (t.SeqLen > m.MaxPositionEmbeddings) errors.Add($"'training.seq_len' = {t.SeqLen} exceeds 'model.max_position_embeddings' = {m.MaxPositionEmbeddings}");
        if (errors.Count > 0) throw new TrainConfigException($"{source}: invalid training config:\n  " + string.Join("\n  ", errors));
    }

    /// <summary>Deterministic JSON of every field (property order fixed by the type), for hashing and for training.json.</summary>
    public string CanonicalJson() => JsonSerializer.Serialize(this, new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower });

    /// <summary>
    /// The model cache key: SHA-256 over the trainer's code version, the canonical config and the checksums
    /// of every source file of the corpora (so a changed corpus, tokenizer size, dimension, schedule or seed
    /// is a different model).
    /// </summary>
    public string CacheKey(IReadOnlyDictionary<string, string> corpusChecksums)
    {
        var sb = new StringBuilder();
        sb.Append("trainer-v").Append(Trainer.CodeVersion).Append('\n').Append(CanonicalJson()).Append('\n');
        foreach (var (file, sha) in corpusChecksums.OrderBy(kv => kv.Key, StringComparer.Ordinal)) sb.Append(file).Append(' ').Append(sha).Append('\n');
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString())));
    }
}
