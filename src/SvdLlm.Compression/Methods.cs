using SvdLlm.Compression.Truncation;

namespace SvdLlm.Compression;

/// <summary>How a method picks ranks.</summary>
public enum AllocationKind { Uniform, TheoreticalLoss, Sensitivity, Learned }

/// <summary>What a truncation minimises (each maps to one <see cref="Weighting"/> of the same decomposition, see WeightedLowRank).</summary>
public enum TruncationKind
{
    /// <summary>‖W − W'‖_F.</summary>
    Svd,
    /// <summary>‖(W − W')S₀‖_F, S₀ = diag(mean|x|^0.5 + 1e-6).</summary>
    Asvd,
    /// <summary>‖I(W − W')‖_F, I = diag(sqrt(Σ_j Î_ij)).</summary>
    Fwsvd,
    /// <summary>‖(W − W')X‖_F on C, or on C + δI when C is not positive definite (SVD-LLM's jitter).</summary>
    CholeskyWhitening,
    /// <summary>‖(W − W')X‖_F on C as it is (positive semi-definite is fine).</summary>
    EigenWhitening,
    /// <summary>‖L_Bᵀ(W − W')L_A‖_F with the Fisher ≈ A ⊗ B from gradient samples (GFWSVD; its own closed form, not WeightedLowRank's).</summary>
    Kronecker,
    /// <summary>W' = V_k V_kᵀ W on the principal subspace of the truncated output activations (Dobi-SVD's stage 2; its own closed form).</summary>
    ActivationSubspace,
}

/// <summary>
/// A compression method = a rank allocation × a truncation (plus SVD-LLM's optional local update). The truncation runs
/// through <see cref="WeightedLowRank"/>; <see cref="Reference"/> is the papers' literal computation, kept as the test
/// oracle (and for `--numerics reference`).
/// </summary>
/// <param name="Display">how tables and plots name it</param>
/// <param name="Order">its row in tables: baselines first, SVD-LLM, then V2 and its ablations (V2 paper, Tables 2 and 4)</param>
/// <param name="Structured">a structured method (MoDeGPT): narrower dense layers with per-layer widths, neither low-rank factors nor codes</param>
public sealed record CompressionMethod(string Name, string Display, int Order, string Description, AllocationKind Allocation, Func<ITruncation>? LowRankReference,
    bool NeedsFisher = false, bool LocalUpdate = false, bool Structured = false)
{
    /// <summary>Low-rank factors (every SVD method), or codes on a grid (rtn, gptq) or in codebooks (gptvq): see <see cref="Quantization.QuantizedCheckpoint"/>.</summary>
    public bool IsQuantization => LowRankReference is null && !Structured;

    /// <summary>The papers' literal truncation (the test oracle); only low-rank methods have one.</summary>
    public Func<ITruncation> Reference => LowRankReference ?? throw new InvalidOperationException($"{Name} is a quantization method; it has no truncation");

    /// <summary>The truncation's objective, from its reference implementation.</summary>
    public TruncationKind Truncation => Reference() switch
    {
        PlainSvdTruncation => TruncationKind.Svd,
        AsvdTruncation => TruncationKind.Asvd,
        FisherWeightedTruncation => TruncationKind.Fwsvd,
        CholeskyWhiteningTruncation => TruncationKind.CholeskyWhitening,
        EigenWhiteningTruncation => TruncationKind.EigenWhitening,
        GfwsvdTruncation => TruncationKind.Kronecker,
        ActivationSubspaceTruncation => TruncationKind.ActivationSubspace,
        var t => throw new InvalidOperationException($"no decomposition route for truncation {t.Name}"),
    };

    /// <summary>
    /// The method runs the model on the calibration windows while compressing (ASVD's sensitivity search probes the
    /// calibration perplexity; SVD-LLM's local update re-collects inputs from the compressed layers), so it needs them
    /// and compresses the whole model in memory rather than one streamed layer at a time. GPTQ runs the model on them
    /// too (sequential calibration, one layer at a time) and needs no statistics.
    /// </summary>
    public bool NeedsCalibrationWindows => Allocation is AllocationKind.Sensitivity or AllocationKind.Learned || LocalUpdate || Name is "gptq" or "gptvq" || NeedsGradientSamples
        || Structured; // MoDeGPT's block influence is a forward pass over the windows

    /// <summary>GFWSVD: per-linear gradient samples from backward passes over the calibration windows (the training model), turned into Kronecker factors.</summary>
    public bool NeedsGradientSamples => LowRankReference is not null && Truncation == TruncationKind.Kronecker;

    /// <summary>Whether the method reads the cached calibration statistics (every low-rank method does; quantization does not).</summary>
    public bool NeedsStatistics => !IsQuantization;

    /// <summary>
    /// The parameters a matrix may give the method (<c>methods: [{name: x, params: {...}}]</c>); matrix validation
    /// refuses any other, and <see cref="MethodRecipe"/> reads them.
    /// </summary>
    public IReadOnlyList<string> Parameters => Structured ? MethodRecipe.ModegptParameters
        : IsQuantization
        ? Name switch { "rtn" => MethodRecipe.RtnParameters, "gptvq" => MethodRecipe.GptvqParameters, _ => MethodRecipe.GptqParameters }
        : NeedsGradientSamples ? [.. MethodRecipe.LowRankParameters, .. MethodRecipe.GfwsvdParameters]
        : Allocation == AllocationKind.Learned ? [.. MethodRecipe.LowRankParameters, .. MethodRecipe.DobiParameters]
        : TakesReferenceNumerics ? [.. MethodRecipe.LowRankParameters, MethodRecipe.NumericsParameter]
        : MethodRecipe.LowRankParameters;

    /// <summary>
    /// Whether <c>numerics: reference</c> applies: SVD-LLM's Cholesky truncation, streamed (svdllm, svdllm-v2-alloc;
    /// svdllm-update's local update re-solves W_u in float64 and is left out).
    /// </summary>
    public bool TakesReferenceNumerics => LowRankReference is not null && Truncation == TruncationKind.CholeskyWhitening && !LocalUpdate;

    /// <summary>Every method this build offers, by the name used on the command line and in results.</summary>
    public static readonly IReadOnlyList<CompressionMethod> All =
    [
        new("svd", "SVD", 1, "plain SVD of W, uniform ratio", AllocationKind.Uniform, () => new PlainSvdTruncation()),
        new("asvd", "ASVD", 3, "ASVD: SVD of W·diag(mean|x|^0.5), uniform ratio", AllocationKind.Uniform, () => new AsvdTruncation()),
        new("asvd-search", "ASVD (rank search)", 4, "ASVD truncation with ASVD's sensitivity-search allocation (calibration perplexity per linear and ratio)",
            AllocationKind.Sensitivity, () => new AsvdTruncation()),
        new("fwsvd", "FWSVD", 2, "FWSVD, row-Fisher variant (Hsu et al.): SVD of diag(sqrt Σ_j Î_ij)·W, uniform ratio", AllocationKind.Uniform,
            () => new FisherWeightedTruncation(), NeedsFisher: true),
        new("gfwsvd", "GFWSVD", 2, "GFWSVD (Chekalina et al. 2025): Fisher ≈ A ⊗ B (nearest Kronecker product of 16 mini-batch gradients), closed-form weighted truncation, uniform ratio",
            AllocationKind.Uniform, () => new GfwsvdTruncation()),
        new("svdllm", "SVD-LLM", 5, "SVD-LLM: Cholesky whitening (jitter recorded when C is not PD), uniform ratio", AllocationKind.Uniform,
            () => new CholeskyWhiteningTruncation()),
        new("svdllm-update", "SVD-LLM (update)", 6, "SVD-LLM + closed-form least-squares update of W_u on inputs from the compressed preceding layers",
            AllocationKind.Uniform, () => new CholeskyWhiteningTruncation(), LocalUpdate: true),
        new("svdllm-v2", "SVD-LLM V2", 9, "SVD-LLM V2: eigen-whitening truncation + theoretical-loss allocation", AllocationKind.TheoreticalLoss,
            () => new EigenWhiteningTruncation()),
        new("svdllm-v2-alloc", "SVD-LLM V2 (allocation only)", 7, "ablation: V2's allocation with SVD-LLM's Cholesky truncation", AllocationKind.TheoreticalLoss,
            () => new CholeskyWhiteningTruncation()),
        new("svdllm-v2-trunc", "SVD-LLM V2 (truncation only)", 8, "ablation: V2's eigen truncation with uniform ratios", AllocationKind.Uniform, () => new EigenWhiteningTruncation()),
        new("dobi-svd", "Dobi-SVD", 9, "Dobi-SVD (Wang, Ke et al. 2025): a truncation position per linear learned through a differentiable SVD of its output activations, then W' = V_k V_kᵀ W on their principal subspace",
            AllocationKind.Learned, () => new ActivationSubspaceTruncation()),
        new("modegpt", "MoDeGPT", 13, "MoDeGPT (Lin et al. 2025): per-block widths from block influence; MLP by Nyström, Q/K by RoPE-pair selection, V/O by SVD of the whitened product; dense, smaller layers",
            AllocationKind.Uniform, null, Structured: true),
        new("rtn", "RTN", 10, "round-to-nearest on GPTQ's per-row (per-group) grid; no calibration data", AllocationKind.Uniform, null),
        new("gptq", "GPTQ", 11, "GPTQ (Frantar et al. 2022) with sequential calibration, as its reference's LLaMA script", AllocationKind.Uniform, null),
        new("gptvq", "GPTVQ", 12, "GPTVQ (van Baalen et al. 2024): GPTQ's pass with D-dimensional vector quantization and per-group codebooks, sequential calibration",
            AllocationKind.Uniform, null),
    ];

    /// <summary>The low-rank (SVD) methods: those that take a ratio and a truncation.</summary>
    public static IReadOnlyList<CompressionMethod> LowRank => [.. All.Where(m => !m.IsQuantization && !m.Structured)];


    public static CompressionMethod Get(string name)
    {
        var m = All.FirstOrDefault(x => x.Name == name);
        if (m is not null) return m;
        string? close = SvdLlm.Models.NameSuggestions.Closest(name, All.Select(x => x.Name));
        throw new ArgumentException($"unknown method '{name}'" + (close is null ? "" : $"; did you mean '{close}'?") + $" Known methods: {string.Join(", ", All.Select(x => x.Name))}");
    }
}
