using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Checkpoints;
using SvdLlm.Models.Data;
using SvdLlm.Models.Tokenizers;
using SvdLlm.Numerics;

namespace SvdLlm.Models.Training;

/// <summary>One corpus's text, already split (see SvdLlm.Models.Data.Corpora for the rule).</summary>
public sealed record TrainingCorpus(string Name, string Train, string Validation, string Test);

/// <summary>Progress of a training run, reported after every optimizer step.</summary>
public sealed record TrainProgress(int Step, int Steps, double Loss, double GradNorm, double LearningRate, double TokensPerSecond, TimeSpan Elapsed, TimeSpan Eta);

/// <summary>What a finished run measured (also written to training.json).</summary>
public sealed record TrainSummary(double FinalLoss, double TokensPerSecond, double FlopsPerToken, long TrainTokens, double Seconds,
    IReadOnlyDictionary<string, double> ValidationLoss);

/// <summary>
/// Trains the embedded default model (or any LLaMA-architecture model from a <see cref="TrainConfig"/>):
/// a byte-level BPE tokenizer on the training splits, then AdamW with warm-up + cosine decay on random
/// windows of the concatenated training token stream. Deterministic: window positions of step s come
/// from a generator seeded by (seed, s), so a run resumed from a checkpoint draws the same batches as
/// an uninterrupted one. Output goes to "OUT.partial/" and is renamed to OUT only when complete, so an
/// interrupted run never leaves a half-written model directory; its checkpoint stays in OUT.partial for resuming.
/// </summary>
public static class Trainer
{
    /// <summary>Bump when a change to the trainer changes the weights it produces (part of the cache key).</summary>
    public const int CodeVersion = 1;

    public sealed class Options
    {
        public Action<TrainProgress>? Progress { get; init; }
        public Action<string>? Log { get; init; }
        public CancellationToken Cancellation { get; init; }
        /// <summary>Extra fields for training.json (corpus checksums, git commit…).</summary>
        public JsonObject? Provenance { get; init; }
        /// <summary>Runs on the finished staging directory before it is renamed into place (held-out evaluation).</summary>
        public Action<string, TrainSummary, JsonObject>? Finalize { get; init; }
    }

    public static TrainSummary Run(TrainConfig config, IReadOnlyList<TrainingCorpus> corpora, string outDir, Options options)
    {
        config.Validate();
        outDir = Path.GetFullPath(outDir);
        if (Directory.Exists(outDir)) throw new IOException($"{outDir} already exists; refusing to overwrite a trained model (delete it or choose another --out)");
        string staging = outDir + ".partial";
        Directory.CreateDirectory(staging);
        var log = options.Log ?? (_ => { });
        var clock = Stopwatch.StartNew();

        // 1. Tokenizer (trained once; a resumed run reuses the staged file).
        string tokenizerPath = Path.Combine(staging, "tokenizer.json");
        if (!File.Exists(tokenizerPath))
        {
            log($"training a byte-level BPE tokenizer, vocab {config.Tokenizer.VocabSize}, on {corpora.Sum(c => c.Train.Length):N0} characters");
            var bpe = ByteLevelBpeTrainer.Train(corpora.Select(c => c.Train), config.Tokenizer.VocabSize, config.Tokenizer.MinFrequency);
            AtomicFile.WriteAllText(tokenizerPath, ByteLevelBpeTrainer.ToTokenizerJson(bpe));
            AtomicFile.WriteAllText(Path.Combine(staging, "tokenizer_config.json"), ByteLevelBpeTrainer.ToTokenizerConfigJson(config.Model.MaxPositionEmbeddings));
        }
        var tokenizer = HfTokenizer.Load(tokenizerPath);
        int bos = tokenizer.BosTokenId ?? throw new InvalidOperationException("trained tokenizer has no BOS token");

        // 2. Token streams: every corpus's training split, each starting with BOS.
        var train = new List<int>();
        foreach (var c in corpora) train.AddRange(tokenizer.Encode(c.Train, addSpecialTokens: true));
        var validation = corpora.ToDictionary(c => c.Name, c => tokenizer.Encode(c.Validation, addSpecialTokens: true));
        var t = config.Training;
        if (train.Count < t.SeqLen + 2) throw new ArgumentException($"the training splits hold {train.Count} tokens, fewer than one window of {t.SeqLen + 1}");
        log($"training stream: {train.Count:N0} tokens ({string.Join(", ", corpora.Select(c => c.Name))})");

        // 3. Model, optimizer, and (if present) the checkpoint to resume from.
        var llama = ToLlamaConfig(config, tokenizer.VocabSize, bos, tokenizer.TokenToId(ByteLevelBpeTrainer.EosToken));
        using var model = new LlamaTrainingModel(llama);
        model.InitializeRandom(config.Seed, (float)t.InitStd);
        using var adam = new AdamW(model.Parameters) { Beta1 = (float)t.Beta1, Beta2 = (float)t.Beta2, WeightDecay = (float)t.WeightDecay };
        var curve = new JsonArray();
        var evals = new JsonArray();
        string checkpointDir = Path.Combine(staging, "checkpoint");
        int start = TrainingCheckpoint.TryLoad(checkpointDir, config, model, adam, curve, evals);
        if (start > 0) log($"resuming from the checkpoint at step {start}");

        double flopsPerToken = FlopsPerToken(llama, t.SeqLen);
        var tokens = train.ToArray();
        int b = t.BatchSize, T = t.SeqLen;
        var inputs = new int[b * T];
        var targets = new int[b * T];
        double loss = double.NaN, lastNorm = 0;
        var runClock = Stopwatch.StartNew();
        long tokensThisRun = 0;
        for (int step = start; step < t.Steps; step++)
        {
            if (options.Cancellation.IsCancellationRequested)
            {
                TrainingCheckpoint.Save(checkpointDir, config, model, adam, step, curve, evals);
                log($"interrupted: checkpoint saved at step {step} in {checkpointDir}; run the same command again to resume");
                options.Cancellation.ThrowIfCancellationRequested();
            }
            model.ZeroGrad();
            loss = 0;
            for (int micro = 0; micro < t.GradAccum; micro++)
            {
                var rng = new Random(MixSeed(config.Seed, step, micro));
                for (int s = 0; s < b; s++)
                {
                    int at = rng.Next(0, tokens.Length - T);
                    Array.Copy(tokens, at, inputs, s * T, T);
                    Array.Copy(tokens, at + 1, targets, s * T, T);
                }
                loss += model.Forward(inputs, targets, b, T, 1f / t.GradAccum) / t.GradAccum;
                model.Backward();
            }
            lastNorm = TrainingMath.ClipGlobalNorm(model.Gradients.Span, t.GradClip);
            float lr = TrainingMath.LearningRate(step, t.Steps, t.WarmupSteps, (float)t.Lr, (float)t.MinLr);
            adam.Update(model.Gradients, lr);
            tokensThisRun += (long)b * T * t.GradAccum;
            curve.Add(new JsonArray(step + 1, Math.Round(loss, 5)));

            double tps = tokensThisRun / runClock.Elapsed.TotalSeconds;
            var eta = TimeSpan.FromSeconds((t.Steps - step - 1) * (double)b * T * t.GradAccum / Math.Max(1, tps));
            options.Progress?.Invoke(new TrainProgress(step + 1, t.Steps, loss, lastNorm, lr, tps, clock.Elapsed, eta));

            bool last = step + 1 == t.Steps;
            if ((step + 1) % t.EvalEvery == 0 || last)
            {
                var v = ValidationLoss(model, validation, T, t.EvalWindows, b);
                evals.Add(new JsonObject { ["step"] = step + 1, ["loss"] = Math.Round(loss, 5), ["validation_loss"] = ToJson(v) });
                log($"step {step + 1}: loss {loss:F4}, validation {string.Join(", ", v.Select(kv => $"{kv.Key} {kv.Value:F4}"))}");
            }
            if ((step + 1) % t.CheckpointEvery == 0 && !last)
                TrainingCheckpoint.Save(checkpointDir, config, model, adam, step + 1, curve, evals);
        }

        // 4. The Hugging Face directory.
        var finalValidation = ValidationLoss(model, validation, T, t.EvalWindows, b);
        var summary = new TrainSummary(loss, tokensThisRun / Math.Max(1e-9, runClock.Elapsed.TotalSeconds), flopsPerToken, tokens.Length,
            clock.Elapsed.TotalSeconds, finalValidation);
        File.WriteAllText(Path.Combine(staging, "config.json"), ToHfConfigJson(llama));
        SafeTensorsWriter.Write(Path.Combine(staging, "model.safetensors"), model.ToWriterTensors(),
            new Dictionary<string, string> { ["format"] = "pt" });
        var training = new JsonObject
        {
            ["name"] = config.Name,
            ["trainer_version"] = CodeVersion,
            ["config"] = JsonNode.Parse(config.CanonicalJson()),
            ["seed"] = config.Seed,
            ["threads"] = NumericsRuntime.Threads,
            ["blas"] = NumericsRuntime.BlasConfig,
            ["train_tokens"] = tokens.Length,
            ["final_loss"] = Math.Round(loss, 5),
            ["final_grad_norm"] = Math.Round(lastNorm, 5),
            ["tokens_per_second"] = Math.Round(summary.TokensPerSecond, 1),
            ["flops_per_token"] = flopsPerToken,
            ["validation_loss"] = ToJson(finalValidation),
            ["loss_curve"] = curve,
            ["evaluations"] = evals,
            ["seconds"] = Math.Round(clock.Elapsed.TotalSeconds, 1),
        };
        if (options.Provenance is not null)
            foreach (var (k, v) in options.Provenance) training[k] = v?.DeepClone();
        options.Finalize?.Invoke(staging, summary, training);
        File.WriteAllText(Path.Combine(staging, "training.json"), training.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        if (Directory.Exists(checkpointDir)) Directory.Delete(checkpointDir, recursive: true);
        Directory.Move(staging, outDir);
        return summary;
    }

    /// <summary>Mean next-token loss on the first <paramref name="windows"/> non-overlapping windows of each validation stream.</summary>
    private static Dictionary<string, double> ValidationLoss(LlamaTrainingModel model, IReadOnlyDictionary<string, int[]> streams, int T, int windows, int batch)
    {
        var result = new Dictionary<string, double>();
        foreach (var (name, stream) in streams)
        {
            int n = Math.Min(windows, (stream.Length - 1) / T);
            if (n == 0) continue;
            double sum = 0;
            int count = 0;
            for (int w0 = 0; w0 < n; w0 += batch)
            {
                int bb = Math.Min(batch, n - w0);
                var inp = new int[bb * T];
                var tgt = new int[bb * T];
                for (int s = 0; s < bb; s++)
                {
                    Array.Copy(stream, (w0 + s) * T, inp, s * T, T);
                    Array.Copy(stream, (w0 + s) * T + 1, tgt, s * T, T);
                }
                sum += model.Forward(inp, tgt, bb, T) * bb;
                count += bb;
            }
            result[name] = sum / count;
        }
        return result;
    }

    private static JsonObject ToJson(IReadOnlyDictionary<string, double> d)
    {
        var o = new JsonObject();
        foreach (var (k, v) in d) o[k] = Math.Round(v, 5);
        return o;
    }

    /// <summary>A seed for (run seed, step, micro-batch) that does not depend on process-randomised hashing.</summary>
    internal static int MixSeed(int seed, int step, int micro)
    {
        ulong x = (ulong)(uint)seed * 0x9E3779B97F4A7C15UL ^ (ulong)(uint)step * 0xBF58476D1CE4E5B9UL ^ (ulong)(uint)micro * 0x94D049BB133111EBUL;
        x ^= x >> 31;
        x *= 0xD6E8FEB86659FD93UL;
        x ^= x >> 32;
        return (int)(x & 0x7FFFFFFF);
    }

    /// <summary>
    /// Forward + backward FLOPs per trained token: 6 per weight of every matmul (2 forward, 4 backward),
    /// including the output embedding, plus attention's QKᵀ and PV (2·2·T·D per head per token forward,
    /// full T×T as computed, ×3 with backward).
    /// </summary>
    public static double FlopsPerToken(LlamaConfig c, int seqLen)
    {
        long h = c.HiddenSize, qw = (long)c.NumAttentionHeads * c.HeadDim, kvw = (long)c.NumKeyValueHeads * c.HeadDim, inter = c.IntermediateSize;
        long perLayer = h * qw + 2 * h * kvw + qw * h + 3 * h * inter;
        double matmul = 6.0 * (perLayer * c.NumHiddenLayers + (long)c.VocabSize * h);
        double attention = 3.0 * 4.0 * seqLen * c.HeadDim * c.NumAttentionHeads * c.NumHiddenLayers;
        return matmul + attention;
    }

    public static LlamaConfig ToLlamaConfig(TrainConfig config, int vocabSize, int bos, int? eos)
    {
        var m = config.Model;
        return new LlamaConfig
        {
            Architecture = "LlamaForCausalLM",
            ModelType = "llama",
            VocabSize = vocabSize,
            HiddenSize = m.HiddenSize,
            IntermediateSize = m.IntermediateSize,
            NumHiddenLayers = m.NumHiddenLayers,
            NumAttentionHeads = m.NumAttentionHeads,
            NumKeyValueHeads = m.NumKeyValueHeads,
            HeadDim = m.HiddenSize / m.NumAttentionHeads,
            MaxPositionEmbeddings = m.MaxPositionEmbeddings,
            RmsNormEps = m.RmsNormEps,
            RopeTheta = m.RopeTheta,
            TieWordEmbeddings = m.TieWordEmbeddings,
            QkvBias = false,
            OutputBias = false,
            MlpBias = false,
            BosTokenId = bos,
            EosTokenId = eos,
        };
    }

    /// <summary>config.json as Hugging Face's LlamaConfig writes it.</summary>
    public static string ToHfConfigJson(LlamaConfig c) => new JsonObject
    {
        ["architectures"] = new JsonArray("LlamaForCausalLM"),
        ["model_type"] = "llama",
        ["attention_bias"] = false,
        ["attention_dropout"] = 0.0,
        ["bos_token_id"] = c.BosTokenId,
        ["eos_token_id"] = c.EosTokenId,
        ["head_dim"] = c.HeadDim,
        ["hidden_act"] = "silu",
        ["hidden_size"] = c.HiddenSize,
        ["initializer_range"] = 0.02,
        ["intermediate_size"] = c.IntermediateSize,
        ["max_position_embeddings"] = c.MaxPositionEmbeddings,
        ["mlp_bias"] = false,
        ["num_attention_heads"] = c.NumAttentionHeads,
        ["num_hidden_layers"] = c.NumHiddenLayers,
        ["num_key_value_heads"] = c.NumKeyValueHeads,
        ["pretraining_tp"] = 1,
        ["rms_norm_eps"] = c.RmsNormEps,
        ["rope_scaling"] = null,
        ["rope_theta"] = c.RopeTheta,
        ["tie_word_embeddings"] = c.TieWordEmbeddings,
        ["torch_dtype"] = "float32",
        ["use_cache"] = true,
        ["vocab_size"] = c.VocabSize,
    }.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
}

/// <summary>Writes a file completely or not at all (temp file in the same directory, then rename).</summary>
/// <summary>
/// A whole small file written under a temporary name owned by this process (<see cref="Leftovers.TempPath"/>), flushed,
/// then renamed over the target: readers see the old file or the new one, never a part; a killed writer's temporary
/// is swept by the next sweep of its directory.
/// </summary>
public static class AtomicFile
{
    private static readonly UTF8Encoding Utf8NoBom = new(encoderShouldEmitUTF8Identifier: false);

    public static void WriteAllText(string path, string text) => WriteAllText(path, text, Utf8NoBom);

    public static void WriteAllText(string path, string text, Encoding encoding) => WriteAllBytes(path, encoding.GetBytes(text));

    public static void WriteAllBytes(string path, byte[] bytes)
    {
        string full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        string tmp = Leftovers.TempPath(full);
        try
        {
            using (var stream = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                stream.Write(bytes);
                stream.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }
}
