using System.Diagnostics;
using System.Text.Json.Nodes;
using SvdLlm.Compression.Calibration;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Checkpoints;
using SvdLlm.Models.Training;

namespace SvdLlm.Compression.Recovery;

/// <summary>
/// Continued training of every weight of a model on new text (<c>svdllm train --init</c>): how the project makes the
/// base/fine-tuned pairs that delta compression needs. AdamW with β (0.9, 0.999), no weight decay by default (a
/// fine-tune should move the weights where the data asks, not toward zero), global-norm clipping at 1, warm-up over
/// <see cref="WarmupFraction"/> of the steps and a cosine to zero; each epoch a seeded permutation of the windows.
/// </summary>
public sealed record FineTuneOptions
{
    public const double WarmupFraction = 0.05;

    public int Steps { get; init; } = 200;
    public double LearningRate { get; init; } = 1e-4;
    public int BatchSize { get; init; } = 8;
    public double WeightDecay { get; init; }
    public int Seed { get; init; }

    public void Check()
    {
        if (Steps < 1) throw new ArgumentException($"--steps {Steps} must be at least 1");
        if (!(LearningRate > 0) || !double.IsFinite(LearningRate)) throw new ArgumentException($"--lr {LearningRate} must be a positive number");
        if (BatchSize < 1) throw new ArgumentException($"--batch {BatchSize} must be at least 1");
        if (!(WeightDecay >= 0) || !double.IsFinite(WeightDecay)) throw new ArgumentException($"--weight-decay {WeightDecay} must be a non-negative number");
    }
}

/// <summary>A finished fine-tune: the loss of every step and the wall time.</summary>
public sealed record FineTuneResult(double[] Loss, double Seconds);

public static class FineTuning
{
    /// <summary>Bumped when a change to the training loop changes what a fine-tune computes (it enters cache keys).</summary>
    public const int CodeVersion = 1;

    /// <summary>
    /// Trains the dense LLaMA-family model in <paramref name="initDir"/> on <paramref name="windows"/> and writes it to
    /// <paramref name="outDir"/> (every file of the input, the weights replaced in their original dtype, plus
    /// <c>fine-tuning.json</c>; staged and renamed, so the directory appears whole or not at all).
    /// </summary>
    public static FineTuneResult Run(string initDir, CalibrationWindows windows, FineTuneOptions options, string outDir, Action<string> log,
        JsonObject? provenance = null, bool force = false, CancellationToken cancellation = default)
    {
        options.Check();
        outDir = Path.GetFullPath(outDir);
        if (Directory.Exists(outDir)) throw new IOException($"{outDir} already exists; refusing to overwrite (delete it or choose another --out)");
        LlamaConfig config;
        using (var model = ModelLoader.Load(initDir))
        {
            if (model is not LlamaForCausalLM llama)
                throw new NotSupportedException($"training needs the backward pass, which exists for the LLaMA family only ({initDir} is {model.Architecture})");
            if (model.Linears.FirstOrDefault(l => l.IsLowRank || l.QuantizedBits is not null) is { } packed)
                throw new ArgumentException($"{initDir}: {packed.Name} is {(packed.IsLowRank ? "low-rank" : "quantized")}; train --init fine-tunes dense float checkpoints (fine-tune before compressing)");
            config = llama.Config;
            LlamaTrainingModel.RequireUniformShapes(config); // before the memory estimate, which assumes uniform shapes
            CheckMemory(config, model.ParameterCount, windows.SeqLen, Math.Min(options.BatchSize, windows.Count), force);
        }

        var clock = Stopwatch.StartNew();
        using var train = new LlamaTrainingModel(config);
        using (var reader = CheckpointReader.Open(initDir)) train.LoadFrom(reader);
        using var adam = new AdamW(train.Parameters) { Beta1 = 0.9f, Beta2 = 0.999f, WeightDecay = (float)options.WeightDecay };
        int steps = options.Steps, warmup = Math.Max(1, (int)Math.Ceiling(FineTuneOptions.WarmupFraction * steps));
        log($"fine-tuning {train.ParameterCount:N0} parameters: {steps} steps of {Math.Min(options.BatchSize, windows.Count)} windows × {windows.SeqLen} tokens "
            + $"({windows.Count} windows, {(double)steps * options.BatchSize / windows.Count:F2} epochs), lr {options.LearningRate:G3}, seed {options.Seed}");
        var loss = TextTraining.Run(train, windows, steps, options.BatchSize, unchecked(options.Seed * 1_000_003 + 17), step =>
        {
            TrainingMath.ClipGlobalNorm(train.Gradients.Span, 1.0);
            adam.Update(train.Gradients, TrainingMath.LearningRate(step, steps, warmup, (float)options.LearningRate, 0f));
        }, (step, l) => log($"  step {step + 1}/{steps}: loss {l:F4} ({clock.Elapsed.TotalSeconds:F1} s)"), cancellation);
        var result = new FineTuneResult(loss, clock.Elapsed.TotalSeconds);
        var record = new JsonObject
        {
            ["init"] = Path.GetFullPath(initDir),
            ["steps"] = steps,
            ["lr"] = options.LearningRate,
            ["batch"] = options.BatchSize,
            ["weight_decay"] = options.WeightDecay,
            ["seed"] = options.Seed,
            ["windows"] = windows.Count,
            ["seq_len"] = windows.SeqLen,
            ["seconds"] = Math.Round(result.Seconds, 3),
            ["first_loss"] = loss[0],
            ["final_loss"] = loss[^1],
            ["loss"] = new JsonArray(loss.Select(l => (JsonNode)Math.Round(l, 6)).ToArray()),
        };
        if (provenance is not null) record["provenance"] = provenance;
        LoraRecovery.Write(initDir, outDir, train.Parameters, ("fine-tuning.json", record.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true })));
        return result;
    }

    /// <summary>Refuses (unless forced) when the float32 weights, their gradients, AdamW's two moments and a batch's activations do not fit.</summary>
    public static void CheckMemory(LlamaConfig config, long parameters, int seqLen, int batch, bool force, long? available = null)
    {
        long need = EstimateBytes(config, parameters, seqLen, batch);
        available ??= Preflight.AvailableMemoryBytes();
        if (available is not long a || need <= a || force) return;
        throw new InsufficientResourcesException(
            $"fine-tuning holds the whole model in float32 with its gradients, AdamW's two moments and a batch of {batch} windows' activations: "
            + $"about {need / 1e9:F1} GB for seq_len {seqLen}, but only {a / 1e9:F1} GB is available (MemAvailable). "
            + "Use a smaller --batch or --seq-len, free memory, or force it (--force) to try anyway.");
    }

    public static long EstimateBytes(LlamaConfig config, long parameters, int seqLen, int batch)
        => FisherCollector.TrainingModelBytes(config, seqLen, batch, parameters, weightGradients: true) + 8 * parameters + 300L * (1 << 20);
}
