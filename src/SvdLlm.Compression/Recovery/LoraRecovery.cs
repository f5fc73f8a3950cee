using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using SvdLlm.Compression.Calibration;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Checkpoints;
using SvdLlm.Models.Training;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Recovery;

/// <summary>
/// SVD-LLM's recovery settings (Wang et al., ICLR 2025, "sequential low-rank approximation"). The reference fine-tunes on
/// Alpaca with rank 8, α 16, batch 64, 3 epochs and lr 1e-4 over about 2,400 steps a stage; here the data is the
/// calibration text (a few hundred windows), so an epoch is a few dozen steps of <see cref="BatchSize"/> windows and the
/// default rate is the reference's argparse default 3e-4 rather than the 1e-4 its scripts pair with 50× more steps.
/// </summary>
public sealed record LoraOptions
{
    public int Rank { get; init; } = 8;
    public double Alpha { get; init; } = 16;
    public double LearningRate { get; init; } = 3e-4;
    public int Epochs { get; init; } = 3;
    public int BatchSize { get; init; } = 8;

    /// <summary>Seeds the adapters' A and the epochs' window order (the windows themselves come from the calibration seed).</summary>
    public int Seed { get; init; }

    public void Check()
    {
        if (Rank < 1) throw new ArgumentException($"lora_rank {Rank} must be at least 1");
        if (!(Alpha > 0) || !double.IsFinite(Alpha)) throw new ArgumentException($"lora_alpha {Alpha} must be a positive number");
        if (!(LearningRate > 0) || !double.IsFinite(LearningRate)) throw new ArgumentException($"lora_lr {LearningRate} must be a positive number");
        if (Epochs < 1) throw new ArgumentException($"lora_epochs {Epochs} must be at least 1");
        if (BatchSize < 1) throw new ArgumentException($"lora_batch {BatchSize} must be at least 1");
    }
}

/// <summary>One stage of the recovery: the factor adapted, its steps, the training loss after every step, its wall time.</summary>
public sealed record LoraStage(LoraTarget Target, int Steps, double[] Loss, double Seconds);

/// <summary>
/// SVD-LLM's sequential LoRA recovery of a low-rank checkpoint: LoRA adapters on every W_u (the factors written
/// "…_u_proj"), trained with everything else frozen on next-token cross-entropy over the recovery windows, merged; then
/// the same on every W_v of the merged model. Deterministic for a seed and thread count (window order from the seed,
/// no dropout). What differs from the reference: the data is plain text, so every token is a target (Alpaca's prompt
/// masking has no prompts to mask); no dropout (the reference's 0.05 would make runs depend on a second generator);
/// float32 throughout instead of fp16 (the reference's fp16 NaNs, its issue #19, cannot happen); the learning rate warms
/// up over 4 % of the steps and then follows a cosine to zero (HF's default is linear); the final adapters are merged,
/// not the best checkpoint by a validation loss, since no validation split is set aside.
/// </summary>
public static class LoraRecovery
{
    /// <summary>
    /// Trains both stages on <paramref name="windows"/> starting from the checkpoint in <paramref name="compressedDir"/>
    /// and writes the recovered checkpoint to <paramref name="outDir"/> (every file of the input, the factors replaced in
    /// their original dtype; written to a temporary directory and renamed, so it appears whole or not at all).
    /// </summary>
    public static IReadOnlyList<LoraStage> Run(string compressedDir, CalibrationWindows windows, LoraOptions options, string outDir, Action<string> log,
        bool force = false, CancellationToken cancellation = default)
    {
        options.Check();
        outDir = Path.GetFullPath(outDir);
        if (Directory.Exists(outDir)) throw new IOException($"{outDir} already exists; refusing to overwrite (delete it or choose another --out)");
        LlamaConfig config;
        Dictionary<string, int> ranks;
        using (var model = ModelLoader.Load(compressedDir))
        {
            if (model is not LlamaForCausalLM llama)
                throw new NotSupportedException($"LoRA recovery needs the backward pass, which exists for the LLaMA family only ({compressedDir} is {model.Architecture})");
            config = llama.Config;
            LlamaTrainingModel.RequireUniformShapes(config); // before the memory estimate, which assumes uniform shapes
            ranks = model.Linears.Where(l => l.IsLowRank).ToDictionary(l => l.Name, l => l.Rank!.Value);
            if (ranks.Count == 0) throw new ArgumentException($"{compressedDir} has no low-rank linear: LoRA recovery adapts the factors an SVD method writes");
            CheckMemory(config, model.ParameterCount, windows.SeqLen, Math.Min(options.BatchSize, windows.Count), force);
        }

        var stages = new List<LoraStage>();
        using var train = new LlamaTrainingModel(config, ranks: ranks);
        using (var reader = CheckpointReader.Open(compressedDir)) train.LoadFrom(reader);
        train.FreezeWeights = true;
        foreach (var target in new[] { LoraTarget.U, LoraTarget.V })
        {
            cancellation.ThrowIfCancellationRequested();
            stages.Add(TrainStage(train, target, windows, options, log, cancellation));
            train.MergeLora();
        }
        Write(compressedDir, outDir, train.Parameters);
        return stages;
    }

    private static LoraStage TrainStage(LlamaTrainingModel train, LoraTarget target, CalibrationWindows windows, LoraOptions o, Action<string> log, CancellationToken cancellation)
    {
        var clock = Stopwatch.StartNew();
        int stage = (int)target;
        var adapters = train.AttachLora(target, o.Rank, (float)o.Alpha, unchecked(o.Seed * 31 + stage));
        using var adam = new AdamW(adapters) { Beta1 = 0.9f, Beta2 = 0.999f, WeightDecay = 0f };
        int count = windows.Count, seq = windows.SeqLen;
        int perEpoch = (count + o.BatchSize - 1) / o.BatchSize, steps = perEpoch * o.Epochs;
        int warmup = Math.Max(1, (int)Math.Ceiling(0.04 * steps));
        long trainable = adapters.Length;
        log($"LoRA recovery, stage {target}: {trainable:N0} adapter parameters (rank {o.Rank}, α {o.Alpha:G4}) on every W_{target.ToString().ToLowerInvariant()}, "
            + $"{steps} steps ({o.Epochs} epochs of {count} windows × {seq} tokens, batch {o.BatchSize}), lr {o.LearningRate:G3}");
        var loss = TextTraining.Run(train, windows, steps, o.BatchSize, unchecked(o.Seed * 1_000_003 + stage * 7919), step =>
        {
            TrainingMath.ClipGlobalNorm(train.AdapterGradients!.Span, 1.0);
            adam.Update(train.AdapterGradients!, TrainingMath.LearningRate(step, steps, warmup, (float)o.LearningRate, 0f));
        }, (step, l) => log($"  {target} step {step + 1}/{steps}: loss {l:F4} ({clock.Elapsed.TotalSeconds:F1} s)"), cancellation);
        return new LoraStage(target, steps, loss, clock.Elapsed.TotalSeconds);
    }

    /// <summary>
    /// Refuses (unless forced) when the training model does not fit: the compressed model's parameters in float32 (no
    /// gradient block: only the adapters train) and a batch's activations (<see cref="FisherCollector.TrainingModelBytes"/>), the adapters being a
    /// rounding error beside them.
    /// </summary>
    public static void CheckMemory(LlamaConfig config, long parameters, int seqLen, int batch, bool force, long? available = null)
    {
        long need = EstimateBytes(config, parameters, seqLen, batch);
        available ??= Preflight.AvailableMemoryBytes();
        if (available is not long a || need <= a || force) return;
        throw new InsufficientResourcesException(
            $"LoRA recovery trains with the whole compressed model in memory (float32 parameters plus a batch of {batch} windows' activations of every layer): "
            + $"about {need / 1e9:F1} GB for seq_len {seqLen}, but only {a / 1e9:F1} GB is available (MemAvailable). "
            + "Use fewer or shorter recovery windows (lora_batch, --seq-len), free memory, or force it (--force) to try anyway.");
    }

    public static long EstimateBytes(LlamaConfig config, long parameters, int seqLen, int batch)
        => FisherCollector.TrainingModelBytes(config, seqLen, batch, parameters, weightGradients: false) + 300L * (1 << 20);

    /// <summary>Every file of <paramref name="source"/> into <paramref name="outDir"/>, each tensor the training model holds taken from it, plus <paramref name="extra"/> files.</summary>
    internal static void Write(string source, string outDir, ParameterArena parameters, params (string Name, string Text)[] extra)
        => CheckpointRewrite.Write(source, outDir, (_, info) => parameters.Contains(info.Name)
            ? WriterTensor.Lazy(info.Name, info.DType, info.Shape, () => parameters.View(info.Name).ToArray())
            : null, "LoRA recovery and fine-tuning (recover or fine-tune before quantizing)", extra: () => extra);

    /// <summary>What compression-report.json records under "recovery": the settings, and each stage's steps and seconds (the losses go to the report's training curves).</summary>
    public static JsonObject ToJson(LoraOptions o, CalibrationWindows windows, IReadOnlyList<LoraStage> stages, string? text)
    {
        var j = new JsonObject
        {
            ["method"] = "lora",
            ["rank"] = o.Rank,
            ["alpha"] = o.Alpha,
            ["lr"] = o.LearningRate,
            ["epochs"] = o.Epochs,
            ["batch"] = o.BatchSize,
            ["seed"] = o.Seed,
            ["windows"] = windows.Count,
            ["seq_len"] = windows.SeqLen,
            ["text"] = text ?? "calibration",
            ["stages"] = new JsonArray(stages.Select(s => (JsonNode)new JsonObject
            {
                ["factor"] = s.Target.ToString().ToLowerInvariant(),
                ["steps"] = s.Steps,
                ["seconds"] = Math.Round(s.Seconds, 3),
            }).ToArray()),
        };
        return j;
    }
}
