using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using SvdLlm.Compression.Calibration;
using SvdLlm.Compression.Quantization;
using SvdLlm.Compression.Recovery;
using SvdLlm.Models.Architectures;
using SvdLlm.Numerics;

namespace SvdLlm.Compression;

/// <summary>
/// A method with its parameters: what one matrix cell or one <c>svdllm compress</c> computes. A matrix's
/// <c>{name: gptq, params: {bits: 4, group_size: 128}}</c> and the command line's <c>--bits 4 --group-size 128</c> both
/// come through <see cref="Parse"/>, and <see cref="Canonical"/> is what a cell key hashes: values in one spelling and
/// defaults left out, so <c>{bits: 4, sym: false}</c> and <c>{bits: "4"}</c> are the same cell.
/// </summary>
/// <param name="Quantizer">for a low-rank method, the quantizer of its factors (rtn or gptq), or null; for rtn/gptq, the method itself</param>
/// <param name="Quantization">the grid and GPTQ settings when anything is quantized</param>
/// <param name="VectorQuantization">GPTVQ's settings, for gptvq</param>
/// <param name="Gfwsvd">GFWSVD's gradient samples and power iterations, for gfwsvd</param>
/// <param name="Recovery">SVD-LLM's LoRA recovery of the factors after truncation (any SVD method), or null</param>
/// <param name="ReferenceNumerics"><c>numerics: reference</c>: SVD-LLM's truncation in its public code's precisions (Grams
/// accumulated in float32, float32 whitening, inverse and SVD; <see cref="Truncation.CholeskyWhiteningTruncation"/>)</param>
public sealed record MethodRecipe(CompressionMethod Method, string? Quantizer, GptqOptions? Quantization, GptvqOptions? VectorQuantization = null,
    GfwsvdOptions? Gfwsvd = null, LoraOptions? Recovery = null, Dobi.DobiOptions? Dobi = null, SvdLlm.Compression.Modegpt.ModegptOptions? Modegpt = null,
    bool ReferenceNumerics = false)
{
    /// <summary><c>numerics</c>: float64 (the default) or reference (SVD-LLM's public code's precisions).</summary>
    public const string NumericsParameter = "numerics";

    /// <summary>Dobi-SVD's stage-1 settings, besides an SVD method's quantize and recovery parameters.</summary>
    public static readonly IReadOnlyList<string> DobiParameters = ["epochs", "batch", "lambda", "beta", "lr", "remap"];

    /// <summary>Recovery's: <c>recover: lora</c> and LoRA's settings (any SVD method).</summary>
    public static readonly IReadOnlyList<string> RecoveryParameters = ["recover", "lora_rank", "lora_alpha", "lora_lr", "lora_epochs", "lora_batch"];

    /// <summary>GFWSVD's own, besides an SVD method's quantize parameters.</summary>
    public static readonly IReadOnlyList<string> GfwsvdParameters = ["gradient_samples", "power_iterations"];

    /// <summary>MoDeGPT's: the Nyström ridge (relative to mean diag C_σ), the allocation's ε and its cap on a block's sparsity.</summary>
    public static readonly IReadOnlyList<string> ModegptParameters = ["ridge", "smoothing", "max_sparsity"];

    public static readonly IReadOnlyList<string> RtnParameters = ["bits", "group_size", "sym"];

    /// <summary>GPTVQ's: group_size is weights per codebook (the paper's "group size"), not GPTQ's columns per scale.</summary>
    public static readonly IReadOnlyList<string> GptvqParameters = ["bits", "vq_dim", "group_size", "columns_per_group", "codebook_bits", "kmeans_iters", "m_step", "weighting", "damp"];
    public static readonly IReadOnlyList<string> GptqParameters = ["bits", "group_size", "act_order", "static_groups", "sym", "damp"];

    /// <summary>
    /// An SVD method's: <c>quantize</c> (rtn or gptq) and that quantizer's parameters, applied to both factors, and
    /// <c>recover</c> with LoRA's settings (recovery runs before quantization).
    /// </summary>
    public static readonly IReadOnlyList<string> LowRankParameters = ["quantize", .. GptqParameters, .. RecoveryParameters];

    private static readonly GptqOptions Defaults = new();

    /// <summary>Whether the cell reads calibration statistics (low-rank methods do).</summary>
    public bool NeedsStatistics => Method.NeedsStatistics;

    /// <summary>Whether the cell runs the model on calibration windows (GPTQ and GPTVQ, GFWSVD's gradients, sensitivity search, local update).</summary>
    public bool NeedsWindows => Method.NeedsCalibrationWindows || Quantizer == "gptq" || Recovery is not null;

    /// <summary>Whether the cell takes a ratio (low-rank) or quantizes at full rank (rtn, gptq, gptvq: ratio 0 in results).</summary>
    public bool TakesRatio => !Method.IsQuantization;

    public static MethodRecipe Plain(string method) => Parse(method, new Dictionary<string, string>());

    /// <summary>
    /// Reads a method's parameters. Errors name the parameter as <paramref name="spell"/> writes it (<c>params.bits</c>
    /// in a matrix, <c>--bits</c> on the command line) and say what was expected.
    /// </summary>
    public static MethodRecipe Parse(string method, IReadOnlyDictionary<string, string> parameters, Func<string, string>? spell = null)
    {
        spell ??= p => "params." + p;
        var m = CompressionMethod.Get(method);
        foreach (string p in parameters.Keys.Where(p => !m.Parameters.Contains(p)))
            throw new ArgumentException(m.IsQuantization && LowRankParameters.Contains(p)
                ? $"{spell(p)} is not a parameter of {method} (it takes {string.Join(", ", m.Parameters.Select(spell))})"
                : $"{spell(p)}: unknown parameter of {method}; it takes {string.Join(", ", m.Parameters.Select(spell))}");
        if (m.Name == "gptvq") return ParseGptvq(m, parameters, spell);
        if (m.Structured)
        {
            var d = new SvdLlm.Compression.Modegpt.ModegptOptions();
            double Get(string key, double fallback, double min, double max)
            {
                if (!parameters.TryGetValue(key, out string? v)) return fallback;
                if (!double.TryParse(v, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double x) || !(x >= min && x <= max))
                    throw new ArgumentException($"{spell(key)}: '{v}' must be a number in [{min}, {max}]");
                return x;
            }
            return new MethodRecipe(m, null, null)
            {
                Modegpt = d with
                {
                    Ridge = Get("ridge", d.Ridge, 0, 1e6),
                    Smoothing = Get("smoothing", d.Smoothing, 1e-6, double.PositiveInfinity),
                    MaxSparsity = Get("max_sparsity", d.MaxSparsity, 1e-6, 0.999),
                },
            };
        }
        if (parameters.TryGetValue(NumericsParameter, out string? numerics))
        {
            bool reference = numerics switch
            {
                "reference" => true,
                "float64" => false,
                _ => throw new ArgumentException($"{spell(NumericsParameter)}: '{numerics}' is not a numerics; expected float64 (the default) or reference (SVD-LLM's public code: float32 Grams, whitening, inverse and SVD)"),
            };
            var rest = parameters.Where(kv => kv.Key != NumericsParameter).ToDictionary(kv => kv.Key, kv => kv.Value);
            return Parse(method, rest, spell) with { ReferenceNumerics = reference };
        }
        if (!m.IsQuantization && RecoveryParameters.Any(parameters.ContainsKey))
        {
            var lora = ParseRecovery(parameters, spell);
            var rest = parameters.Where(kv => !RecoveryParameters.Contains(kv.Key)).ToDictionary(kv => kv.Key, kv => kv.Value);
            return Parse(method, rest, spell) with { Recovery = lora };
        }
        if (m.Allocation == AllocationKind.Learned)
        {
            var d = new Dobi.DobiOptions();
            string? Get(string k) => parameters.TryGetValue(k, out string? v) ? v : null;
            var dobi = new Dobi.DobiOptions
            {
                Epochs = Get("epochs") is { } ep ? ParseInt(ep, spell("epochs")) : d.Epochs,
                BatchSize = Get("batch") is { } b ? ParseInt(b, spell("batch")) : d.BatchSize,
                Lambda = Get("lambda") is { } l ? ParseDouble(l, spell("lambda")) : d.Lambda,
                Beta = Get("beta") is { } be ? ParseDouble(be, spell("beta")) : d.Beta,
                LearningRate = Get("lr") is { } lr ? ParseDouble(lr, spell("lr")) : null,
                Remap = Get("remap") is { } rm && ParseBool(rm, spell("remap")),
            };
            try
            {
                dobi.Check();
            }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"{m.Name}: {spell(e.Message.Split(' ')[0])}{e.Message[e.Message.IndexOf(' ')..]}", e);
            }
            var rest = parameters.Where(kv => !DobiParameters.Contains(kv.Key)).ToDictionary(kv => kv.Key, kv => kv.Value);
            return ParseLowRankOrQuantizer(m, rest, spell) with { Dobi = dobi };
        }
        if (m.NeedsGradientSamples)
        {
            // GFWSVD's own parameters, then the rest as any SVD method's.
            var g = new GfwsvdOptions(
                parameters.TryGetValue("gradient_samples", out string? k) ? ParseInt(k, spell("gradient_samples")) : Compressor.GradientSamplesPerLinear,
                parameters.TryGetValue("power_iterations", out string? it) ? ParseInt(it, spell("power_iterations")) : new GfwsvdOptions().PowerIterations);
            try
            {
                g.Check();
            }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"gfwsvd: {e.Message}", e);
            }
            var rest = parameters.Where(kv => !GfwsvdParameters.Contains(kv.Key)).ToDictionary(kv => kv.Key, kv => kv.Value);
            return ParseLowRankOrQuantizer(m, rest, spell) with { Gfwsvd = g };
        }
        return ParseLowRankOrQuantizer(m, parameters, spell);
    }

    private static MethodRecipe ParseLowRankOrQuantizer(CompressionMethod m, IReadOnlyDictionary<string, string> parameters, Func<string, string> spell)
    {
        string method = m.Name;
        string? quantizer = m.IsQuantization ? m.Name : parameters.GetValueOrDefault("quantize");
        if (quantizer is null)
        {
            if (parameters.Count > 0)
                throw new ArgumentException($"{spell(parameters.Keys.First())} applies to a quantizer: give {spell("quantize")} (rtn or gptq) as well, or drop it");
            return new MethodRecipe(m, null, null);
        }
        if (quantizer is not ("rtn" or "gptq"))
            throw new ArgumentException($"{spell("quantize")}: '{quantizer}' is not a quantizer of factors; expected rtn or gptq");
        if (quantizer == "rtn")
            foreach (string p in GptqParameters.Except(RtnParameters).Where(parameters.ContainsKey))
                throw new ArgumentException($"{spell(p)} is GPTQ's; rtn uses no calibration data");
        if (!parameters.TryGetValue("bits", out string? bitsText))
            throw new ArgumentException($"{quantizer} needs {spell("bits")} (2, 3, 4 or 8)");
        var options = new GptqOptions
        {
            Bits = Int(bitsText, "bits"),
            GroupSize = parameters.TryGetValue("group_size", out string? g) ? Int(g, "group_size") : Defaults.GroupSize,
            ActOrder = parameters.TryGetValue("act_order", out string? a) && Bool(a, "act_order"),
            StaticGroups = parameters.TryGetValue("static_groups", out string? s) && Bool(s, "static_groups"),
            Symmetric = parameters.TryGetValue("sym", out string? y) && Bool(y, "sym"),
            PercentDamping = parameters.TryGetValue("damp", out string? d) ? Double(d, "damp") : Defaults.PercentDamping,
        };
        if (options.GroupSize <= 0) options = options with { GroupSize = -1 };
        try
        {
            _ = Create(quantizer, options);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"{method}{(m.IsQuantization ? "" : " + " + quantizer)}: {e.Message}", e);
        }
        return new MethodRecipe(m, quantizer, options);

        int Int(string v, string p) => ParseInt(v, spell(p));
        bool Bool(string v, string p) => ParseBool(v, spell(p));
        double Double(string v, string p) => ParseDouble(v, spell(p));
    }

    private static readonly LoraOptions LoraDefaults = new();

    private static LoraOptions ParseRecovery(IReadOnlyDictionary<string, string> p, Func<string, string> spell)
    {
        if (!p.TryGetValue("recover", out string? how))
            throw new ArgumentException($"{spell(p.Keys.First(RecoveryParameters.Contains))} applies to recovery: give {spell("recover")} lora as well, or drop it");
        if (how != "lora") throw new ArgumentException($"{spell("recover")}: '{how}' is not a recovery; expected lora (SVD-LLM's sequential LoRA on W_u, then W_v)");
        string? Get(string k) => p.TryGetValue(k, out string? v) ? v : null;
        var o = new LoraOptions
        {
            Rank = Get("lora_rank") is { } r ? ParseInt(r, spell("lora_rank")) : LoraDefaults.Rank,
            Alpha = Get("lora_alpha") is { } a ? ParseDouble(a, spell("lora_alpha")) : LoraDefaults.Alpha,
            LearningRate = Get("lora_lr") is { } lr ? ParseDouble(lr, spell("lora_lr")) : LoraDefaults.LearningRate,
            Epochs = Get("lora_epochs") is { } ep ? ParseInt(ep, spell("lora_epochs")) : LoraDefaults.Epochs,
            BatchSize = Get("lora_batch") is { } b ? ParseInt(b, spell("lora_batch")) : LoraDefaults.BatchSize,
        };
        try
        {
            o.Check();
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"{spell(e.Message.Split(' ')[0])}{e.Message[e.Message.IndexOf(' ')..]}", e);
        }
        return o;
    }

    private static int ParseInt(string v, string name) => int.TryParse(v, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int x)
        ? x : throw new ArgumentException($"{name}: '{v}' is not an integer");

    private static bool ParseBool(string v, string name) => bool.TryParse(v, out bool x) ? x : throw new ArgumentException($"{name}: '{v}' is not true or false");

    private static double ParseDouble(string v, string name) => double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double x) && double.IsFinite(x)
        ? x : throw new ArgumentException($"{name}: '{v}' is not a number");

    private static readonly GptvqOptions VqDefaults = new();

    private static MethodRecipe ParseGptvq(CompressionMethod m, IReadOnlyDictionary<string, string> p, Func<string, string> spell)
    {
        if (!p.TryGetValue("bits", out string? bits)) throw new ArgumentException($"gptvq needs {spell("bits")} (index bits per weight; b·vq_dim ≤ 8)");
        string? Get(string k) => p.TryGetValue(k, out string? v) ? v : null;
        var options = new GptvqOptions
        {
            Bits = ParseInt(bits, spell("bits")),
            VqDim = Get("vq_dim") is { } d ? ParseInt(d, spell("vq_dim")) : VqDefaults.VqDim,
            GroupSize = Get("group_size") is { } g ? ParseInt(g, spell("group_size")) : 0,
            ColumnsPerGroup = Get("columns_per_group") is { } c ? ParseInt(c, spell("columns_per_group")) : VqDefaults.ColumnsPerGroup,
            CodebookBits = Get("codebook_bits") is { } cb ? ParseInt(cb, spell("codebook_bits")) : VqDefaults.CodebookBits,
            KMeansIterations = Get("kmeans_iters") is { } it ? ParseInt(it, spell("kmeans_iters")) : VqDefaults.KMeansIterations,
            IncludeMStep = Get("m_step") is { } ms ? ParseBool(ms, spell("m_step")) : VqDefaults.IncludeMStep,
            Weighting = Get("weighting") switch
            {
                null => VqDefaults.Weighting,
                "reference" => GptvqWeighting.Reference,
                "obs" => GptvqWeighting.ObsConsistent,
                var w => throw new ArgumentException($"{spell("weighting")}: '{w}' is not reference or obs"),
            },
            PercentDamping = Get("damp") is { } dp ? ParseDouble(dp, spell("damp")) : VqDefaults.PercentDamping,
        };
        if (options.GroupSize <= 0) options = options with { GroupSize = 0 };
        try
        {
            options.Check();
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"gptvq: {e.Message}", e);
        }
        return new MethodRecipe(m, "gptvq", null, options);
    }

    /// <summary>The quantizer of the method, or of its factors; null for an SVD method alone.</summary>
    public MatrixQuantizer? CreateQuantizer() => VectorQuantization is { } vq ? new GptvqQuantizer(vq) : Quantization is null ? null : Create(Quantizer!, Quantization);

    private static MatrixQuantizer Create(string quantizer, GptqOptions options)
        => quantizer == "gptq" ? MatrixQuantizer.Gptq(options) : MatrixQuantizer.Rtn(options);

    /// <summary>The parameters in one spelling, defaults left out (what a cell key hashes).</summary>
    public SortedDictionary<string, string> Canonical()
    {
        var c = new SortedDictionary<string, string>(StringComparer.Ordinal);
        string I(int v) => v.ToString(CultureInfo.InvariantCulture);
        if (VectorQuantization is { } vq)
        {
            var d = new GptvqOptions { Bits = vq.Bits, VqDim = vq.VqDim };
            c["bits"] = I(vq.Bits);
            if (vq.VqDim != VqDefaults.VqDim) c["vq_dim"] = I(vq.VqDim);
            if (vq.EffectiveGroupSize != d.EffectiveGroupSize) c["group_size"] = I(vq.EffectiveGroupSize);
            if (vq.ColumnsPerGroup != d.ColumnsPerGroup) c["columns_per_group"] = I(vq.ColumnsPerGroup);
            if (vq.CodebookBits != d.CodebookBits) c["codebook_bits"] = I(vq.CodebookBits);
            if (vq.KMeansIterations != d.KMeansIterations) c["kmeans_iters"] = I(vq.KMeansIterations);
            if (vq.IncludeMStep != d.IncludeMStep) c["m_step"] = vq.IncludeMStep ? "true" : "false";
            if (vq.Weighting != d.Weighting) c["weighting"] = vq.Weighting == GptvqWeighting.ObsConsistent ? "obs" : "reference";
            if (vq.PercentDamping != d.PercentDamping) c["damp"] = vq.PercentDamping.ToString("R", CultureInfo.InvariantCulture);
            return c;
        }
        if (ReferenceNumerics) c[NumericsParameter] = "reference";
        if (Recovery is { } lo)
        {
            string D(double v) => v.ToString("R", CultureInfo.InvariantCulture);
            c["recover"] = "lora";
            if (lo.Rank != LoraDefaults.Rank) c["lora_rank"] = I(lo.Rank);
            if (lo.Alpha != LoraDefaults.Alpha) c["lora_alpha"] = D(lo.Alpha);
            if (lo.LearningRate != LoraDefaults.LearningRate) c["lora_lr"] = D(lo.LearningRate);
            if (lo.Epochs != LoraDefaults.Epochs) c["lora_epochs"] = I(lo.Epochs);
            if (lo.BatchSize != LoraDefaults.BatchSize) c["lora_batch"] = I(lo.BatchSize);
        }
        if (Modegpt is { } mg)
        {
            var md = new SvdLlm.Compression.Modegpt.ModegptOptions();
            string D(double v) => v.ToString("R", CultureInfo.InvariantCulture);
            if (mg.Ridge != md.Ridge) c["ridge"] = D(mg.Ridge);
            if (mg.Smoothing != md.Smoothing) c["smoothing"] = D(mg.Smoothing);
            if (mg.MaxSparsity != md.MaxSparsity) c["max_sparsity"] = D(mg.MaxSparsity);
        }
        if (Dobi is { } dobi)
        {
            var dd = new Dobi.DobiOptions();
            string D(double v) => v.ToString("R", CultureInfo.InvariantCulture);
            if (dobi.Epochs != dd.Epochs) c["epochs"] = I(dobi.Epochs);
            if (dobi.BatchSize != dd.BatchSize) c["batch"] = I(dobi.BatchSize);
            if (dobi.Lambda != dd.Lambda) c["lambda"] = D(dobi.Lambda);
            if (dobi.Beta != dd.Beta) c["beta"] = D(dobi.Beta);
            if (dobi.LearningRate is double lr) c["lr"] = D(lr);
            if (dobi.Remap) c["remap"] = "true";
        }
        if (Gfwsvd is { } g)
        {
            var d = new GfwsvdOptions();
            if (g.GradientSamples != d.GradientSamples) c["gradient_samples"] = I(g.GradientSamples);
            if (g.PowerIterations != d.PowerIterations) c["power_iterations"] = I(g.PowerIterations);
        }
        if (Quantization is not { } q) return c;
        if (!Method.IsQuantization) c["quantize"] = Quantizer!;
        c["bits"] = q.Bits.ToString(CultureInfo.InvariantCulture);
        if (q.GroupSize > 0) c["group_size"] = q.GroupSize.ToString(CultureInfo.InvariantCulture);
        if (q.ActOrder) c["act_order"] = "true";
        if (q.StaticGroups) c["static_groups"] = "true";
        if (q.Symmetric) c["sym"] = "true";
        if (Quantizer == "gptq" && q.PercentDamping != Defaults.PercentDamping) c["damp"] = q.PercentDamping.ToString("R", CultureInfo.InvariantCulture);
        return c;
    }

    /// <summary>"GPTQ 4-bit g128", "SVD-LLM V2 + GPTQ 4-bit g128": how tables and plots name the cell's method.</summary>
    public string Label => VectorQuantization is { } vq ? new GptvqQuantizer(vq).Label
        : Quantization is null ? MethodLabel
        : Method.IsQuantization ? QuantizationLabel : $"{MethodLabel} + {QuantizationLabel}";

    /// <summary>The method's display name with its own non-default settings (GFWSVD's K and iterations).</summary>
    private string MethodLabel
    {
        get
        {
            string label = Method.Display;
            if (ReferenceNumerics) label += " (reference numerics)";
            if (Gfwsvd is { } g)
            {
                var d = new GfwsvdOptions();
                if (g.GradientSamples != d.GradientSamples) label += $" K{g.GradientSamples}";
                if (g.PowerIterations != d.PowerIterations) label += $" {g.PowerIterations} iters";
            }
            if (Modegpt is { } mg)
            {
                var md = new SvdLlm.Compression.Modegpt.ModegptOptions();
                // An ε this large makes softmax(−s/ε) flat: every block at the same sparsity.
                if (mg.Smoothing >= 1e6) label += " uniform";
                else if (mg.Smoothing != md.Smoothing) label += $" ε {mg.Smoothing.ToString("G3", CultureInfo.InvariantCulture)}";
                if (mg.MaxSparsity != md.MaxSparsity) label += $" φ≤{mg.MaxSparsity.ToString("G3", CultureInfo.InvariantCulture)}";
                if (mg.Ridge != md.Ridge) label += $" ridge {mg.Ridge.ToString("G3", CultureInfo.InvariantCulture)}";
            }
            if (Dobi is { } dobi)
            {
                var dd = new Dobi.DobiOptions();
                if (dobi.Epochs != dd.Epochs) label += $" {dobi.Epochs} ep";
                if (dobi.Lambda != dd.Lambda) label += $" λ{dobi.Lambda.ToString("G3", CultureInfo.InvariantCulture)}";
                if (dobi.LearningRate is double lr) label += $" lr {lr.ToString("G3", CultureInfo.InvariantCulture)}";
                if (dobi.Remap) label += " (8-bit remap)";
            }
            if (Recovery is { } lo)
            {
                var parts = new List<string> { " + LoRA" };
                if (lo.Rank != LoraDefaults.Rank) parts.Add($"r{lo.Rank}");
                if (lo.Alpha != LoraDefaults.Alpha) parts.Add($"α{lo.Alpha.ToString("G3", CultureInfo.InvariantCulture)}");
                if (lo.LearningRate != LoraDefaults.LearningRate) parts.Add($"lr {lo.LearningRate.ToString("G3", CultureInfo.InvariantCulture)}");
                if (lo.Epochs != LoraDefaults.Epochs) parts.Add($"{lo.Epochs} ep");
                if (lo.BatchSize != LoraDefaults.BatchSize) parts.Add($"b{lo.BatchSize}");
                label += string.Join(" ", parts);
            }
            return label;
        }
    }

    private string QuantizationLabel
    {
        get
        {
            var q = Quantization!;
            var parts = new List<string> { $"{(Quantizer == "gptq" ? "GPTQ" : "RTN")} {q.Bits}-bit" };
            if (q.GroupSize > 0) parts.Add($"g{q.GroupSize}");
            if (q.ActOrder) parts.Add("act-order");
            if (q.StaticGroups) parts.Add("static groups");
            if (q.Symmetric) parts.Add("sym");
            if (Quantizer == "gptq" && q.PercentDamping != Defaults.PercentDamping) parts.Add($"damp {q.PercentDamping.ToString("G3", CultureInfo.InvariantCulture)}");
            return string.Join(" ", parts);
        }
    }

    /// <summary>
    /// Compresses <paramref name="model"/> into <paramref name="outDir"/> (which appears whole or not at all) and returns
    /// the report that compression-report.json holds: an SVD method at <paramref name="ratio"/>, a quantizer at full rank,
    /// or an SVD method whose factors are then LoRA-recovered (<paramref name="recoveryText"/>'s windows, or the
    /// calibration windows) and/or quantized (the factors go to scratch directories beside the output first). Every report carries the decoder linears' stored bytes before and after, the axis on which SVD and
    /// quantization compare. <paramref name="annotate"/> adds what only the caller knows (calibration time, provenance)
    /// before the report is written.
    /// </summary>
    public CompressionReport CompressToDirectory(CausalLanguageModel model, IStatisticsSource? stats, CalibrationWindows? windows, double ratio, string outDir,
        Action<string> log, string? workspaceDir = null, Action<CompressionReport>? annotate = null, RecoveryText? recoveryText = null)
    {
        if (NeedsStatistics && stats is null) throw new ArgumentException($"{Method.Name} needs calibration statistics");
        if (NeedsWindows && windows is null) throw new ArgumentException($"{Label} runs the model on calibration windows; pass them");
        long bytesBefore = model.Linears.Sum(l => l.StoredWeightBytes(model.Reader));
        var indented = new JsonSerializerOptions { WriteIndented = true };
        if (Method.Structured)
            return SvdLlm.Compression.Modegpt.ModegptCompressor.CompressToDirectory(model, stats!, windows!, ratio, outDir, log, this.Modegpt, annotate);
        if (Method.IsQuantization)
        {
            CompressionReport? composed = null;
            QuantizedCheckpoint.Write(model, CreateQuantizer()!, windows, outDir, log, quant =>
            {
                composed = new CompressionReport { Method = Method.Name, Ratio = 0 };
                composed.LinearParamsBefore = composed.LinearParamsAfter = model.LinearParameterCount;
                composed.ModelParamsBefore = composed.ModelParamsAfter = model.ParameterCount;
                Quantized(composed, quant, bytesBefore);
                annotate?.Invoke(composed);
                return CompressedCheckpoint.ReportJson(composed);
            });
            return composed!;
        }
        if (Quantization is null && Recovery is null)
        {
            var report = Compressor.CompressToDirectory(model, stats!, Method.Name, ratio, outDir, log, workspaceDir, windows, Gfwsvd, Dobi, ReferenceNumerics);
            Finish(report, outDir);
            SvdLlm.Models.Training.AtomicFile.WriteAllText(Path.Combine(outDir, "compression-report.json"), CompressedCheckpoint.ReportJson(report).ToJsonString(indented));
            return report;
        }
        // SVD to a scratch directory beside the output, then LoRA recovery and/or quantization of its factors; every
        // intermediate is a directory renamed into place only when whole, so an interrupted run leaves no output.
        string full = Path.GetFullPath(outDir), parent = Path.GetDirectoryName(full)!;
        SvdLlm.Models.Data.Leftovers.Sweep(parent, Path.GetFileName(outDir) + ".svd");
        SvdLlm.Models.Data.Leftovers.Sweep(parent, Path.GetFileName(outDir) + ".lora");
        string svdDir = SvdLlm.Models.Data.Leftovers.TempPath(full + ".svd");
        string? loraDir = null;
        try
        {
            var report = Compressor.CompressToDirectory(model, stats!, Method.Name, ratio, svdDir, log, workspaceDir, windows, Gfwsvd, Dobi, ReferenceNumerics);
            // The SVD stage's transient memory (pooled native blocks, the writer's large managed arrays) goes back to the
            // system before the next stage's arrives, so the peak is the larger stage, not their sum.
            ReleaseStageMemory();
            string lowRankDir = svdDir;
            if (Recovery is { } lora)
            {
                var data = recoveryText?.Windows ?? windows!;
                loraDir = SvdLlm.Models.Data.Leftovers.TempPath(full + ".lora");
                var clock = System.Diagnostics.Stopwatch.StartNew();
                var stages = LoraRecovery.Run(svdDir, data, lora, loraDir, log);
                report.StageSeconds["recovery"] = clock.Elapsed.TotalSeconds;
                report.Recovery = LoraRecovery.ToJson(lora, data, stages, recoveryText?.Description);
                foreach (var st in stages) report.TrainingCurves[$"lora_{st.Target.ToString().ToLowerInvariant()}"] = st.Loss.ToList();
                report.Label = Label;
                report.Notes.Add($"LoRA recovery (rank {lora.Rank}) of every W_u, merged, then of every W_v: training loss "
                    + string.Join(", ", stages.Select(st => $"{st.Target} {st.Loss[0]:F4} → {st.Loss[^1]:F4}")));
                if (Quantization is null)
                {
                    Finish(report, loraDir);
                    SvdLlm.Models.Training.AtomicFile.WriteAllText(Path.Combine(loraDir, "compression-report.json"), CompressedCheckpoint.ReportJson(report).ToJsonString(indented));
                    Directory.Move(loraDir, full);
                    loraDir = null;
                    return report;
                }
                ReleaseStageMemory();
                lowRankDir = loraDir;
            }
            using var lowRank = ModelLoader.Load(lowRankDir);
            QuantizedCheckpoint.Write(lowRank, CreateQuantizer()!, windows, outDir, log, quant =>
            {
                Quantized(report, quant, bytesBefore);
                annotate?.Invoke(report);
                return CompressedCheckpoint.ReportJson(report);
            });
            return report;
        }
        finally
        {
            if (Directory.Exists(svdDir)) Directory.Delete(svdDir, recursive: true);
            if (loraDir is not null && Directory.Exists(loraDir)) Directory.Delete(loraDir, recursive: true);
        }

        // Bytes before and after, then the caller's annotations: what a low-rank report gets before it is written.
        void Finish(CompressionReport report, string dir)
        {
            report.LinearBytesBefore = bytesBefore;
            using (var written = ModelLoader.Load(dir)) report.LinearBytesAfter = written.Linears.Sum(l => l.StoredWeightBytes(written.Reader));
            annotate?.Invoke(report);
        }
    }

    private static void ReleaseStageMemory()
    {
        NativeBufferPool.Trim();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
    }

    /// <summary>Folds a quantization report into <paramref name="report"/>: bytes, stage time, notes, and the whole of it under "quantization".</summary>
    private void Quantized(CompressionReport report, JsonObject quant, long bytesBefore)
    {
        report.LinearBytesBefore = bytesBefore;
        report.LinearBytesAfter = quant["linear_bytes_after"]!.GetValue<long>();
        report.StageSeconds["quantization"] = quant["stage_seconds"]!["quantization"]!.GetValue<double>();
        foreach (var n in quant["notes"]!.AsArray()) report.Notes.Add(n!.GetValue<string>());
        report.Notes.Add($"{(VectorQuantization is null ? QuantizationLabel : Label)}: {quant["bits_per_weight"]} bits per dense linear weight");
        report.Quantization = quant;
        report.Label = Label;
    }
}

/// <summary>
/// The text LoRA recovery trains on when it is not the calibration text (<c>--recover-text</c>): its windows, sampled as
/// the calibration windows are, and how the report names it (file name and SHA-256).
/// </summary>
public sealed record RecoveryText(CalibrationWindows Windows, string Description);
