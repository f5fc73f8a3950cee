using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Checkpoints;
using SvdLlm.Compression.Calibration;
using SvdLlm.Compression.Quantization;
using SvdLlm.Models.Data;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Delta;

/// <summary>The delta methods of <c>svdllm compress-delta</c>, by the name the CLI and the matrices use.</summary>
public enum DeltaMethod
{
    /// <summary>Truncated SVD of ΔW at the equal-budget rank.</summary>
    Svd,

    /// <summary>Random drop of ΔW's entries, the kept ones rescaled (DARE).</summary>
    Dare,

    /// <summary>ImPart: SVD of ΔW, each singular vector sparsified by its importance.</summary>
    Impart,
}

/// <summary>
/// Settings of one delta compression. <see cref="Beta"/> and <see cref="Exponent"/> are ImPart's pre-prune fraction β
/// and singular-value exponent C; the defaults are the reference's example configuration (β 0.8, C 0.5, chosen there
/// for CR 32 on a 13B chat model).
/// </summary>
public sealed record DeltaOptions(DeltaMethod Method, double Ratio, double Beta = 0.8, double Exponent = 0.5, ulong Seed = 0,
    DeltaQuantization? Quantization = null)
{
    public static DeltaMethod ParseMethod(string name) => name switch
    {
        "svd" => DeltaMethod.Svd,
        "dare" => DeltaMethod.Dare,
        "impart" => DeltaMethod.Impart,
        _ => throw new ArgumentException($"--method {name}: not a delta method; expected impart, svd or dare"),
    };

    public static string Name(DeltaMethod m) => m.ToString().ToLowerInvariant();

    public void Check()
    {
        if (!(Ratio > 0) || !double.IsFinite(Ratio)) throw new ArgumentException($"--ratio {Ratio}: the delta's compression ratio CR (dense values / stored values) must be a finite positive number");
        // An SVD method may store up to its full-rank factors (CR down to mn/((m + n)·min(m, n)), checked per matrix);
        // DARE keeps each entry with probability 1/CR, which needs CR ≥ 1.
        if (Method == DeltaMethod.Dare && Ratio < 1) throw new ArgumentException($"--ratio {Ratio}: DARE keeps each delta value with probability 1/CR, so CR must be at least 1");
        if (!(Beta >= 0 && Beta < 1)) throw new ArgumentException($"--beta {Beta}: ImPart's pre-prune fraction must be in [0, 1)");
        if (!(Exponent >= 0) || !double.IsFinite(Exponent)) throw new ArgumentException($"--exponent {Exponent}: ImPart's singular-value exponent C must be a finite number ≥ 0");
        if (Quantization is not null)
        {
            if (Method != DeltaMethod.Impart) throw new ArgumentException($"--quantize gptq quantizes ImPart's sparse singular vectors (ImPart-Qt); {Name(Method)} has none");
            Quantization.Check();
        }
    }

    /// <summary>The method's label: impart, svd, dare, or impart-qt when ImPart's factors are quantized.</summary>
    public string Label => Name(Method) + (Quantization is null ? "" : DeltaCheckpoint.QuantizedSuffix);
}

/// <summary>
/// ImPart-Qt's settings (<see cref="ImpartQuantization"/>): the width per singular vector, GPTQ's group size and relative
/// damping (ImPart's configuration: 8x2,3x32,2 with groups of 128 and 1 % damping). With them, the CR is CR_qt, counting
/// bits relative to float16.
/// </summary>
public sealed record DeltaQuantization(DeltaBitPlan Bits, int GroupSize = 128, double PercentDamping = 0.01)
{
    public GptqOptions Gptq => new() { GroupSize = GroupSize, PercentDamping = PercentDamping };

    public void Check()
    {
        if (GroupSize == 0 || GroupSize < -1) throw new ArgumentException($"--group-size {GroupSize}: expected a positive group size, or -1 for one group per row");
        Gptq.Check();
    }
}

/// <summary>One linear's compressed delta: its shape, what it stores and what it kept.</summary>
/// <param name="StoredBits">bits of the stored values: 16 each, or the quantized codes' (ImPart-Qt)</param>
/// <param name="ScaleBits">ImPart-Qt: bits of the GPTQ scales and zero points, which CR_qt leaves out; 0 otherwise</param>
public sealed record DeltaLinear(string Name, int Rows, int Cols, long StoredValues, int? Rank, double RelativeError, long StoredBits, long ScaleBits = 0);

/// <summary>What <see cref="DeltaCheckpoint.Write"/> did: per linear, totals, the other tensors that differ, the time.</summary>
public sealed record DeltaReport(DeltaOptions Options, IReadOnlyList<DeltaLinear> Linears, long OtherChangedValues, double Seconds)
{
    public long DenseValues => Linears.Sum(l => (long)l.Rows * l.Cols);
    public long StoredValues => Linears.Sum(l => l.StoredValues);

    public long StoredBits => Linears.Sum(l => l.StoredBits);

    /// <summary>
    /// CR achieved over the decoder linears: 16 × dense values of every ΔW over the bits stored, i.e. dense over stored
    /// values for float16 values, and ImPart's CR_qt for quantized ones.
    /// </summary>
    public double AchievedRatio => StoredBits == 0 ? double.PositiveInfinity : 16.0 * DenseValues / StoredBits;

    /// <summary>The stored values' bytes, as ImPart counts a delta's size: float16 values or quantized codes (indices, singular values and quantization scales not counted).</summary>
    public long StoredBytes => (StoredBits + 7) / 8;

    /// <summary>ImPart-Qt's quantization scales and zero points, in bytes (not in <see cref="StoredBytes"/>, as ImPart counts).</summary>
    public long ScaleBytes => (Linears.Sum(l => l.ScaleBits) + 7) / 8;
}

/// <summary>
/// Delta compression of a base/fine-tuned pair into a full checkpoint: every decoder linear's weight becomes
/// W_base + compress(W_ft − W_base); everything else (embeddings, norms, lm_head) is the fine-tuned model's, as the
/// delta-compression papers leave those tensors alone; how many of their values differ from the base is reported, since
/// a full fine-tune moves them too and they are part of what a deployment would ship. The output has the fine-tuned
/// model's files and dtypes, loads wherever the fine-tuned model loads, and is staged and renamed so it appears whole or
/// not at all. Linears are compressed one at a time while the file is written: memory is one linear's float64 work, not
/// the model.
/// </summary>
public static class DeltaCheckpoint
{
    public const string ReportFileName = "delta-report.json";

    /// <summary>Bumped when a change alters what a delta compression writes (it enters the matrix's cell keys).</summary>
    public const int CodeVersion = 1;

    /// <param name="statistics">the fine-tuned model's calibration statistics: the input Grams ImPart-Qt's GPTQ needs; unused otherwise</param>
    public static DeltaReport Write(string baseDir, string fineTunedDir, DeltaOptions options, string outDir, Action<string> log,
        JsonObject? provenance = null, CancellationToken cancellation = default, IStatisticsSource? statistics = null)
    {
        options.Check();
        if (options.Quantization is not null && statistics is null)
            throw new ArgumentException("ImPart-Qt needs the fine-tuned model's calibration statistics (its GPTQ weighs each factor by its input's Gram)");
        outDir = Path.GetFullPath(outDir);
        if (Directory.Exists(outDir)) throw new IOException($"{outDir} already exists; refusing to overwrite (delete it or choose another --out)");
        var clock = Stopwatch.StartNew();
        using var ft = ModelLoader.Load(fineTunedDir);
        using var bm = ModelLoader.Load(baseDir);
        if (ft.Architecture != bm.Architecture)
            throw new ArgumentException($"{fineTunedDir} is {ft.Architecture} but {baseDir} is {bm.Architecture}: a delta needs the same architecture");
        var linears = new Dictionary<string, Linear>();
        var baseLinears = bm.Linears.ToDictionary(l => l.Name);
        foreach (var l in ft.Linears)
        {
            if (l.IsLowRank || l.QuantizedBits is not null)
                throw new ArgumentException($"{fineTunedDir}: {l.Name} is {(l.IsLowRank ? "low-rank" : "quantized")}; compress-delta needs dense float checkpoints");
            if (!baseLinears.TryGetValue(l.Name, out var b))
                throw new ArgumentException($"{baseDir} has no {l.Name}, which {fineTunedDir} has: not a base/fine-tuned pair");
            if (b.IsLowRank || b.QuantizedBits is not null)
                throw new ArgumentException($"{baseDir}: {b.Name} is {(b.IsLowRank ? "low-rank" : "quantized")}; compress-delta needs dense float checkpoints");
            if (b.OutFeatures != l.OutFeatures || b.InFeatures != l.InFeatures)
                throw new ArgumentException($"{l.Name}.weight is [{l.OutFeatures}, {l.InFeatures}] in {fineTunedDir} but [{b.OutFeatures}, {b.InFeatures}] in {baseDir}");
            linears.Add(l.Name + ".weight", l);
        }
        foreach (var l in linears.Values)
        {
            // Refuse an unmeetable CR before writing (CR_qt is met by a search over the sparsity instead).
            if (options.Method != DeltaMethod.Dare && options.Quantization is null) DeltaBudget.Sparsity(l.OutFeatures, l.InFeatures, options.Ratio);
            if (options.Quantization is not null && !statistics!.InputKeys.Contains(l.InputKey))
                throw new ArgumentException($"the calibration statistics ({statistics.Metadata.GetValueOrDefault("model", "?")}) have no Gram for {l.Name}'s input '{l.InputKey}': were they collected on {fineTunedDir}?");
        }
        log($"compress-delta {options.Label} at CR {options.Ratio:G4}"
            + (options.Quantization is { } q ? $" (bits {q.Bits}, groups of {q.GroupSize})" : "") + $": {linears.Count} linears, "
            + $"{linears.Values.Sum(l => (long)l.OutFeatures * l.InFeatures):N0} delta values");

        var done = new List<DeltaLinear>();
        long otherChanged = 0;
        DeltaReport? report = null;
        using var ftReader = CheckpointReader.Open(fineTunedDir);
        using var baseReader = CheckpointReader.Open(baseDir);
        foreach (string name in ftReader.TensorNames.Where(n => ftReader.GetInfo(n).DType == SafeTensorsDType.I32 && baseReader.Contains(n)))
            // Integers outside the linears describe the architecture (a pruned model's kept rotary pairs): if they differ,
            // the two models' linears do not mean the same thing and their difference is no delta.
            if (!ftReader.ReadInt32(name).AsSpan().SequenceEqual(baseReader.ReadInt32(name)))
                throw new ArgumentException($"tensor '{name}' differs between {fineTunedDir} and {baseDir}: not a base/fine-tuned pair of one architecture");

        // One input's Gram held at a time (q/k/v, and gate/up, share theirs and come together): memory stays one Gram.
        string? heldKey = null;
        Tensor<double> Gram(string key)
        {
            if (heldKey is not null && heldKey != key) statistics!.Release(heldKey);
            heldKey = key;
            return statistics!.Input(key).Gram;
        }

        WriterTensor? Replace(SafeTensorsFile st, TensorInfo info)
        {
            if (linears.TryGetValue(info.Name, out var l))
                return WriterTensor.Lazy(info.Name, info.DType, info.Shape, () =>
                {
                    cancellation.ThrowIfCancellationRequested();
                    var (data, record) = Compress(l, info.Name, ftReader, baseReader, options, Gram);
                    done.Add(record);
                    if (done.Count % Math.Max(1, linears.Count / 8) == 0 || done.Count == linears.Count)
                        log($"  {done.Count}/{linears.Count} linears ({clock.Elapsed.TotalSeconds:F1} s)");
                    return data;
                });
            // Everything else is the fine-tuned model's, copied as it is; the values that differ from the base are counted
            // while copying, so each tensor is read once for both.
            bool comparable = info.DType is SafeTensorsDType.F32 or SafeTensorsDType.F16 or SafeTensorsDType.BF16 or SafeTensorsDType.F64
                              && baseReader.Contains(info.Name) && baseReader.GetInfo(info.Name).ElementCount == info.ElementCount;
            if (!comparable) return null;
            return WriterTensor.Lazy(info.Name, info.DType, info.Shape, () =>
            {
                var a = new float[checked((int)info.ElementCount)];
                st.ReadAsFloat32(info.Name, a);
                var b = baseReader.ReadAsFloat32(info.Name);
                for (int i = 0; i < a.Length; i++) if (a[i] != b[i]) otherChanged++;
                return a;
            });
        }

        IEnumerable<(string, string)> Reports()
        {
            report = new DeltaReport(options, done, otherChanged, clock.Elapsed.TotalSeconds);
            var indented = new JsonSerializerOptions { WriteIndented = true };
            yield return (ReportFileName, ToJson(report, baseDir, fineTunedDir, provenance).ToJsonString(indented));
            yield return ("compression-report.json", CompressedCheckpoint.ReportJson(AsCompressionReport(report, ft.ParameterCount)).ToJsonString(indented));
        }

        try
        {
            CheckpointRewrite.Write(fineTunedDir, outDir, Replace, "compress-delta", skip: ["fine-tuning.json", ReportFileName, "compression-report.json"], extra: Reports);
        }
        finally
        {
            if (heldKey is not null) statistics!.Release(heldKey);
        }
        return report!;
    }

    /// <summary>The method's name where a compressed model is recorded (compression-report.json, the results database).</summary>
    public static string MethodName(DeltaMethod m) => MethodPrefix + DeltaOptions.Name(m);

    /// <summary>The recorded name of a compression with these options: <see cref="MethodName"/>, with "-qt" for ImPart-Qt.</summary>
    public static string MethodName(DeltaOptions o) => MethodPrefix + o.Label;

    /// <summary>What <see cref="MethodName"/> puts before a delta method's name, so recorded delta cells never collide with the SVD methods' (svd).</summary>
    public const string MethodPrefix = "delta-";

    internal const string QuantizedSuffix = "-qt";

    /// <summary>Whether a recorded method name is ImPart-Qt's (<see cref="MethodName(DeltaOptions)"/> with quantization).</summary>
    public static bool IsQuantizedMethodName(string name) => IsMethodName(name) && name.EndsWith(QuantizedSuffix, StringComparison.Ordinal);

    /// <summary>Whether a recorded method name is a delta method's.</summary>
    public static bool IsMethodName(string name) => name.StartsWith(MethodPrefix, StringComparison.Ordinal);

    /// <summary>The delta method of a recorded name (<see cref="MethodName"/>'s inverse); refuses any other name.</summary>
    public static DeltaMethod ParseMethodName(string name) => IsMethodName(name)
        ? DeltaOptions.ParseMethod(name.EndsWith(QuantizedSuffix, StringComparison.Ordinal) ? name[MethodPrefix.Length..^QuantizedSuffix.Length] : name[MethodPrefix.Length..])
        : throw new ArgumentException($"'{name}' is not a delta method's recorded name (delta-impart, delta-svd, delta-dare)");

    /// <summary>
    /// The delta as compression-report.json states a compression, so every command and the results store read it like
    /// any compressed model: "before" is the deltas' dense values, "after" the values stored, the ratio removed
    /// 1 − 1/CR; bytes count float16 values (what ImPart's CR counts); one row per linear with its rank (0 for DARE)
    /// and the relative Frobenius error of its delta as the measured loss.
    /// </summary>
    public static CompressionReport AsCompressionReport(DeltaReport r, long modelParameters)
    {
        var c = new CompressionReport { Method = MethodName(r.Options), Ratio = r.Options.Ratio };
        c.Label = $"{r.Options.Label} Δ CR {r.Options.Ratio:G4}";
        c.LinearParamsBefore = r.DenseValues;
        c.LinearParamsAfter = r.StoredValues;
        c.ModelParamsBefore = modelParameters;
        c.ModelParamsAfter = modelParameters - r.DenseValues + r.StoredValues;
        c.LinearBytesBefore = 2 * r.DenseValues;
        c.LinearBytesAfter = r.StoredBytes;
        c.StageSeconds["delta"] = Math.Round(r.Seconds, 3);
        foreach (var l in r.Linears)
        {
            long dense = (long)l.Rows * l.Cols;
            c.Matrices.Add(new MatrixReport(l.Name, [l.Rows, l.Cols], MatrixGroup(l.Name), 1 - (double)l.StoredValues / dense, l.Rank ?? 0, l.RelativeError,
                "‖ΔW − ΔŴ‖_F/‖ΔW‖_F", l.RelativeError, dense, l.StoredValues, 0, null, null));
        }
        c.Notes.Add($"delta compression of the fine-tuned model's decoder linears ({r.Options.Label}, CR {r.Options.Ratio:G4}, achieved {r.AchievedRatio:F3}); "
            + $"{r.OtherChangedValues:N0} values outside them differ from the base and are kept from the fine-tuned model");
        return c;
    }

    private static string MatrixGroup(string name) => name[(name.LastIndexOf('.') + 1)..];

    private static (float[] Data, DeltaLinear Record) Compress(Linear l, string name, CheckpointReader ft, CheckpointReader bs, DeltaOptions o, Func<string, Tensor<double>> gram)
    {
        int m = l.OutFeatures, n = l.InFeatures;
        var wf = ft.ReadAsFloat32(name);
        var wb = bs.ReadAsFloat32(name);
        using var f = DenseMath.ToDouble(wf, m, n);
        using var b = DenseMath.ToDouble(wb, m, n);
        using var delta = DeltaCompression.Difference(f, b);
        ulong seed = DeltaSeed.ForMatrix(o.Seed, name);
        using var c = o switch
        {
            { Quantization: { } q } => ImpartQuantization.Compress(delta, gram(l.InputKey), o.Ratio, o.Beta, o.Exponent, seed, q.Bits, q.Gptq),
            { Method: DeltaMethod.Svd } => DeltaCompression.LowRank(delta, o.Ratio),
            { Method: DeltaMethod.Dare } => DeltaCompression.Dare(delta, o.Ratio, seed),
            _ => DeltaCompression.Impart(delta, o.Ratio, o.Beta, o.Exponent, seed),
        };
        long scaleBits = o.Quantization is { } qs ? ImpartQuantization.ScaleBits(m, n, c.Rank ?? 0, qs.Bits, qs.GroupSize) : 0;
        ReadOnlySpan<double> d = delta.Span, dh = c.Delta.Span, bw = b.Span;
        double err = 0, norm = 0;
        var output = new float[wf.Length];
        for (int i = 0; i < output.Length; i++)
        {
            output[i] = (float)(bw[i] + dh[i]);
            if (!float.IsFinite(output[i])) throw new ArithmeticException($"{name}: the compressed delta gave a non-finite weight at index {i}");
            err += (d[i] - dh[i]) * (d[i] - dh[i]);
            norm += d[i] * d[i];
        }
        return (output, new DeltaLinear(l.Name, m, n, c.StoredValues, c.Rank, norm == 0 ? 0 : Math.Sqrt(err / norm), c.StoredBits, scaleBits));
    }

    public static JsonObject ToJson(DeltaReport r, string baseDir, string fineTunedDir, JsonObject? provenance)
    {
        var j = new JsonObject
        {
            ["method"] = r.Options.Label,
            ["ratio"] = r.Options.Ratio,
            ["base"] = Path.GetFullPath(baseDir),
            ["finetuned"] = Path.GetFullPath(fineTunedDir),
            ["seed"] = r.Options.Seed,
            ["dense_values"] = r.DenseValues,
            ["stored_values"] = r.StoredValues,
            ["achieved_ratio"] = Math.Round(r.AchievedRatio, 6),
            ["stored_bits"] = r.StoredBits,
            ["stored_bytes"] = r.StoredBytes,
            ["other_changed_values"] = r.OtherChangedValues,
            ["seconds"] = Math.Round(r.Seconds, 3),
            ["linears"] = new JsonArray(r.Linears.Select(l => (JsonNode)new JsonObject
            {
                ["name"] = l.Name,
                ["shape"] = new JsonArray(l.Rows, l.Cols),
                ["stored_values"] = l.StoredValues,
                ["stored_bits"] = l.StoredBits,
                ["rank"] = l.Rank,
                ["relative_error"] = Math.Round(l.RelativeError, 8),
            }).ToArray()),
        };
        if (r.Options.Method == DeltaMethod.Impart)
        {
            j["beta"] = r.Options.Beta;
            j["exponent"] = r.Options.Exponent;
        }
        if (r.Options.Quantization is { } q)
            j["quantization"] = new JsonObject
            {
                ["method"] = "gptq", ["bits"] = q.Bits.ToString(), ["group_size"] = q.GroupSize, ["percent_damping"] = q.PercentDamping,
                ["scale_bytes"] = r.ScaleBytes,
                ["note"] = "CR counts the codes' bits relative to float16 (ImPart's CR_qt); scales, zero points, indices and singular values are not counted",
            };
        if (provenance is not null) j["provenance"] = provenance.DeepClone();
        return j;
    }
}
