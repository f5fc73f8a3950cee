using SvdLlm.Compression.Dobi;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Truncation;

/// <summary>
/// Dobi-SVD's weight update (stage 2): W' = V_k V_kᵀ W with V_k the top-k eigenvectors of M = Σ_samples V_f V_fᵀ, the
/// uncentered principal subspace of the windows' truncated activations' right singular vectors (the linear's output
/// space). Factors U = V_k [m, k] and V = V_kᵀ W [k, n], so U·V = W' exactly. The theoretical loss is how much of the
/// fed subspaces V_k misses: Σ_s ‖(I − V_k V_kᵀ) V_f‖²_F = tr M − Σ_{i≤k} λ_i (each V_f has orthonormal columns), its
/// square root reported.
/// </summary>
public sealed class ActivationSubspaceTruncation : ITruncation
{
    public const string Objective = "√Σ_s‖(I−V_kV_kᵀ)V_f‖²_F";

    public string Name => "dobi-svd";

    public LowRankFactors Truncate(Tensor<double> w, int k, TruncationInputs inputs)
    {
        Ranks.Check(w, k);
        var subspace = inputs.OutputSubspace ?? throw new ArgumentException("Dobi-SVD's truncation needs the linear's output subspace (stage 2)");
        if (subspace.Dimension != w.Rows) throw new ArgumentException($"the subspace has dimension {subspace.Dimension}, W {w.ShapeString} has {w.Rows} rows");
        var vk = subspace.Top(k, out double[] lambda);
        var v = DenseMath.MatMul(vk, true, w, false);
        using var scatter = subspace.Scatter();
        double trace = 0;
        for (int i = 0; i < scatter.Rows; i++) trace += scatter[i, i];
        double missed = Math.Max(0, trace - lambda.Sum());
        return new LowRankFactors(vk, v, Math.Sqrt(missed), Objective);
    }
}
