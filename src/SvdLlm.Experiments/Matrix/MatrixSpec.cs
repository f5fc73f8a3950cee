
namespace SvdLlm.Experiments.Matrix;

/// <summary>
/// A model of the matrix: <c>default</c> (the embedded default model, trained and cached on demand), a local HF
/// directory, or a model fine-tuned from an earlier entry (<see cref="FineTune"/>; made and cached on demand, so a
/// matrix can name the base/fine-tuned pairs delta compression needs).
/// </summary>
public sealed record ModelSpec(string Name, string Source, SourcePosition Position, FineTuneSpec? FineTune = null)
{
    /// <summary>The <see cref="Source"/> prefix of fine-tuned models (followed by the model's name).</summary>
    public const string FineTunedPrefix = "finetune:";

    public bool IsDefault => Source == ModelTraining.DefaultModel;

    public bool IsFineTuned => FineTune is not null;
}

/// <summary>
/// <c>finetune:</c> of a model entry: <c>svdllm train --init</c>'s settings (every weight of <see cref="From"/> trained
/// on <see cref="Text"/>: <c>demo</c>, <c>demo:&lt;corpus&gt;</c> or a text file).
/// </summary>
public sealed record FineTuneSpec(ModelSpec From, string Text, int Steps, double LearningRate, int BatchSize, int Samples, int SeqLen, int Seed, double WeightDecay)
{
    public SvdLlm.Compression.Recovery.FineTuneOptions Options => new()
    {
        Steps = Steps, LearningRate = LearningRate, BatchSize = BatchSize, Seed = Seed, WeightDecay = WeightDecay,
    };
}

/// <summary>Calibration data: <c>demo</c> (the training splits of the embedded corpora) or a UTF-8 text file.</summary>
public sealed record CalibrationSpec(string Dataset, int Samples, int SeqLen, int Seed, SourcePosition Position)
{
    public const string Demo = "demo";

    public bool IsDemo => Dataset == Demo;
}

/// <summary>
/// A compression method by its <see cref="SvdLlm.Compression.CompressionMethod"/> name, with its parameters in
/// <see cref="SvdLlm.Compression.MethodRecipe.Canonical"/> form (the cell key hashes them).
/// </summary>
public sealed record MethodSpec(string Name, IReadOnlyDictionary<string, string> Parameters, SourcePosition Position)
{
    /// <summary>The uncompressed model's pseudo-method (the baseline cell, ratio 0).</summary>
    public const string Original = "original";

    /// <summary>What the cell computes (not for <see cref="Original"/>).</summary>
    public SvdLlm.Compression.MethodRecipe Recipe => SvdLlm.Compression.MethodRecipe.Parse(Name, Parameters);
}

/// <summary>
/// <c>delta:</c> of a matrix: the fine-tuning delta of <see cref="FineTuned"/> over <see cref="Base"/> (two models
/// entries with the same architecture) compressed by each method at each CR (ImPart's: dense values over stored values).
/// Methods are named <c>delta-impart</c>, <c>delta-impart-qt</c>, <c>delta-svd</c>, <c>delta-dare</c> in cells and
/// tables; their parameters (<c>beta</c>, <c>exponent</c>, <c>seed</c>, and ImPart-Qt's <c>bits</c> and
/// <c>group_size</c>) are in <see cref="MethodSpec.Parameters"/>. ImPart-Qt cells calibrate the fine-tuned model with the
/// matrix's first calibration entry, which therefore enters their keys.
/// </summary>
public sealed record DeltaSpec(ModelSpec Base, ModelSpec FineTuned, IReadOnlyList<MethodSpec> Methods, IReadOnlyList<double> Ratios, SourcePosition Position)
{
    public static SvdLlm.Compression.Delta.DeltaOptions Options(MethodSpec method, double ratio)
    {
        var m = SvdLlm.Compression.Delta.DeltaCheckpoint.ParseMethodName(method.Name);
        var d = new SvdLlm.Compression.Delta.DeltaOptions(m, ratio);
        double Get(string key, double fallback) => method.Parameters.TryGetValue(key, out string? v) ? double.Parse(v, System.Globalization.CultureInfo.InvariantCulture) : fallback;
        return d with
        {
            Beta = Get("beta", d.Beta),
            Exponent = Get("exponent", d.Exponent),
            Seed = method.Parameters.TryGetValue("seed", out string? s) ? ulong.Parse(s, System.Globalization.CultureInfo.InvariantCulture) : d.Seed,
            Quantization = IsQuantized(method) ? Quantization(method) : null,
        };
    }

    /// <summary>An ImPart-Qt method (<c>impart-qt</c>): its GPTQ needs the fine-tuned model's calibration statistics.</summary>
    public static bool IsQuantized(MethodSpec method) => SvdLlm.Compression.Delta.DeltaCheckpoint.IsQuantizedMethodName(method.Name);

    private static SvdLlm.Compression.Delta.DeltaQuantization Quantization(MethodSpec method)
    {
        var q = new SvdLlm.Compression.Delta.DeltaQuantization(
            method.Parameters.TryGetValue("bits", out string? b) ? SvdLlm.Compression.Delta.DeltaBitPlan.Parse(b) : SvdLlm.Compression.Delta.DeltaBitPlan.Impart);
        return method.Parameters.TryGetValue("group_size", out string? g) ? q with { GroupSize = (int)double.Parse(g, System.Globalization.CultureInfo.InvariantCulture) } : q;
    }
}

/// <summary>An evaluation task: a <see cref="SvdLlm.Evaluation.Tasks.TaskRegistry"/> name, its data path, and protocol knobs.</summary>
public sealed record TaskSpec(string Name, string? Data, int? Limit, int? SeqLen, SourcePosition Position);

/// <summary>How to run (not what is computed: none of these enter a cell key).</summary>
/// <param name="Threads">BLAS/kernel threads (null: all cores); --threads overrides</param>
/// <param name="BatchSize">sequences per forward pass in evaluation</param>
/// <param name="KeepCompressed">keep a compressed model directory after all its evaluations are stored</param>
/// <param name="CacheDirectory">root of the artifact caches (null: $SVDLLM_CACHE or ~/.cache/svdllm)</param>
public sealed record RunOptions(int? Threads, int BatchSize, bool KeepCompressed, string? CacheDirectory);

/// <summary>A validated matrix: every path absolute and existing, every name known, no duplicate cells.</summary>
public sealed class MatrixSpec
{
    public required string Name { get; init; }

    /// <summary>The matrix file (absolute).</summary>
    public required string Path { get; init; }

    /// <summary>SHA-256 over the matrix file and every file it extends, in order.</summary>
    public required string Sha256 { get; init; }

    public required IReadOnlyList<ModelSpec> Models { get; init; }
    public required IReadOnlyList<CalibrationSpec> Calibrations { get; init; }
    public required IReadOnlyList<MethodSpec> Methods { get; init; }
    public required IReadOnlyList<double> Ratios { get; init; }

    /// <summary>Delta-compression blocks (<c>delta:</c>); empty when the matrix has none.</summary>
    public IReadOnlyList<DeltaSpec> Deltas { get; init; } = [];

    /// <summary>Whether the uncompressed model of each model is a cell too (method "original", ratio 0).</summary>
    public required bool Baseline { get; init; }

    public required IReadOnlyList<TaskSpec> Tasks { get; init; }
    public required RunOptions Run { get; init; }
}
