using SvdLlm.Compression.Truncation;

namespace SvdLlm.Compression;

/// <summary>How a method picks ranks.</summary>
public enum AllocationKind { Uniform, TheoreticalLoss, Sensitivity }

/// <summary>A compression method = a rank allocation × a truncation (plus SVD-LLM's optional local update).</summary>
public sealed record CompressionMethod(string Name, string Description, AllocationKind Allocation, Func<ITruncation> Truncation,
    bool NeedsFisher = false, bool LocalUpdate = false)
{
    /// <summary>Every method this build offers, by the name used on the command line and in results.</summary>
    public static readonly IReadOnlyList<CompressionMethod> All =
    [
        new("svd", "plain SVD of W, uniform ratio", AllocationKind.Uniform, () => new PlainSvdTruncation()),
        new("asvd", "ASVD: SVD of W·diag(mean|x|^0.5), uniform ratio", AllocationKind.Uniform, () => new AsvdTruncation()),
        new("asvd-search", "ASVD truncation with ASVD's sensitivity-search allocation (calibration perplexity per linear and ratio)",
            AllocationKind.Sensitivity, () => new AsvdTruncation()),
        new("fwsvd", "FWSVD, row-Fisher variant (Hsu et al.): SVD of diag(sqrt Σ_j Î_ij)·W, uniform ratio", AllocationKind.Uniform,
            () => new FisherWeightedTruncation(), NeedsFisher: true),
        new("svdllm", "SVD-LLM: Cholesky whitening (jitter recorded when C is not PD), uniform ratio", AllocationKind.Uniform,
            () => new CholeskyWhiteningTruncation()),
        new("svdllm-update", "SVD-LLM + closed-form least-squares update of W_u on inputs from the compressed preceding layers",
            AllocationKind.Uniform, () => new CholeskyWhiteningTruncation(), LocalUpdate: true),
        new("svdllm-v2", "SVD-LLM V2: eigen-whitening truncation + theoretical-loss allocation", AllocationKind.TheoreticalLoss,
            () => new EigenWhiteningTruncation()),
        new("svdllm-v2-alloc", "ablation: V2's allocation with SVD-LLM's Cholesky truncation", AllocationKind.TheoreticalLoss,
            () => new CholeskyWhiteningTruncation()),
        new("svdllm-v2-trunc", "ablation: V2's eigen truncation with uniform ratios", AllocationKind.Uniform, () => new EigenWhiteningTruncation()),
    ];

    public static CompressionMethod Get(string name)
    {
        var m = All.FirstOrDefault(x => x.Name == name);
        if (m is not null) return m;
        string? close = SvdLlm.Models.NameSuggestions.Closest(name, All.Select(x => x.Name));
        throw new ArgumentException($"unknown method '{name}'" + (close is null ? "" : $"; did you mean '{close}'?") + $" Known methods: {string.Join(", ", All.Select(x => x.Name))}");
    }
}
