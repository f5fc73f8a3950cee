using System.Reflection;
using System.Text.Json.Nodes;
using SvdLlm.Evaluation.Perplexity;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Data;
using SvdLlm.Models.Tokenizers;
using SvdLlm.Models.Training;

namespace SvdLlm.Experiments;

/// <summary>
/// Trains a model from a <see cref="TrainConfig"/> into the content-addressed model cache (or any directory),
/// with the held-out evaluation written into training.json. <c>svdllm train</c> and the experiment pipeline
/// (which trains the default model on demand) both go through here, so both produce the same directory.
/// </summary>
public static class ModelTraining
{
    /// <summary>The matrix's name for the embedded default model.</summary>
    public const string DefaultModel = "default";

    /// <summary>
    /// experiments/models/default-model.yaml, compiled into this assembly so that a matrix can say
    /// <c>default</c> from any working directory; it is the same file TrainDefaultModel trains, so both
    /// land in the same cache entry.
    /// </summary>
    public static TrainConfig DefaultConfig()
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream("default-model.yaml")
            ?? throw new InvalidOperationException("the embedded default-model.yaml resource is missing from SvdLlm.Experiments");
        using var reader = new StreamReader(stream);
        return TrainConfig.Parse(reader.ReadToEnd(), "embedded experiments/models/default-model.yaml");
    }

    /// <summary>
    /// The cache key of a training config: its canonical JSON, the corpus source checksums and the trainer version.
    /// </summary>
    public static string CacheKey(TrainConfig config) =>
        config.CacheKey(config.Corpora.SelectMany(c => Corpora.SourceChecksums(c)).ToDictionary(kv => kv.Key, kv => kv.Value));

    /// <summary>The directory the model of <paramref name="config"/> is cached in (whether or not it exists yet).</summary>
    public static string CachedDirectory(TrainConfig config, string? cacheRoot = null) =>
        Path.Combine(cacheRoot ?? AssetCache.Root, "models", $"{config.Name}-{CacheKey(config)[..16]}");

    /// <summary>A finished model directory: training.json is written last, just before the rename.</summary>
    public static bool IsComplete(string modelDirectory) => File.Exists(Path.Combine(modelDirectory, "training.json"));

    /// <summary>
    /// Trains into <paramref name="outDir"/> (resuming a checkpoint in outDir.partial when there is one). Holds
    /// the directory's <see cref="Cache.ArtifactLock"/>, so concurrent callers (two shards on a fresh machine)
    /// train once: the second waits and gets null, the model being there.
    /// </summary>
    public static TrainSummary? Train(TrainConfig config, string outDir, Action<TrainProgress>? progress, Action<string>? log, CancellationToken cancellation)
    {
        outDir = Path.GetFullPath(outDir);
        using var held = Cache.ArtifactLock.Acquire(outDir, cancellation, () => log?.Invoke($"waiting for another process training {outDir}"));
        if (IsComplete(outDir)) return null;
        var corpora = config.Corpora.Select(name => new TrainingCorpus(name,
            Corpora.ReadSplit(name, CorpusSplit.Train), Corpora.ReadSplit(name, CorpusSplit.Validation), Corpora.ReadSplit(name, CorpusSplit.Test))).ToList();
        var checksums = config.Corpora.SelectMany(c => Corpora.SourceChecksums(c)).ToList();
        var checksumJson = new JsonObject();
        foreach (var (k, v) in checksums.OrderBy(kv => kv.Key, StringComparer.Ordinal)) checksumJson[k] = v;
        var provenance = new JsonObject
        {
            ["corpus_checksums"] = checksumJson,
            ["cache_key"] = CacheKey(config),
            ["machine"] = Environment.MachineName,
            ["os"] = System.Runtime.InteropServices.RuntimeInformation.OSDescription,
            ["dotnet"] = Environment.Version.ToString(),
        };
        var options = new Trainer.Options
        {
            Cancellation = cancellation,
            Provenance = provenance,
            Log = log,
            Progress = progress,
            Finalize = (staging, _, training) => training["held_out"] = HeldOut(staging, corpora, config.Training.SeqLen, log),
        };
        return Trainer.Run(config, corpora, outDir, options);
    }

    /// <summary>Model and unigram perplexity on each corpus's test split, same tokens and chunks for both.</summary>
    private static JsonObject HeldOut(string modelDir, IReadOnlyList<TrainingCorpus> corpora, int seqLen, Action<string>? log)
    {
        var tokenizer = HfTokenizer.Load(modelDir);
        using var model = ModelLoader.Load(modelDir);
        model.LoadAll();
        var trainIds = corpora.SelectMany(c => tokenizer.Encode(c.Train, addSpecialTokens: true)).ToArray();
        var unigram = new UnigramBaseline(trainIds, tokenizer.VocabSize);
        var result = new JsonObject();
        foreach (var c in corpora)
        {
            var ids = tokenizer.Encode(c.Test, addSpecialTokens: true);
            var ppl = PerplexityEvaluator.Evaluate(model, ids, seqLen, batchSize: 8);
            double unigramPpl = unigram.Perplexity(ids, seqLen);
            result[c.Name] = new JsonObject
            {
                ["model_ppl"] = Math.Round(ppl.Ppl, 4),
                ["unigram_ppl"] = Math.Round(unigramPpl, 4),
                ["predicted_tokens"] = ppl.Tokens,
                ["chunks"] = ppl.Chunks,
                ["seq_len"] = seqLen,
                ["protocol"] = ppl.Protocol,
            };
            log?.Invoke($"held-out {c.Name}: model ppl {ppl.Ppl:F2}, unigram ppl {unigramPpl:F2} ({ppl.Tokens:N0} tokens)");
        }
        return result;
    }
}
