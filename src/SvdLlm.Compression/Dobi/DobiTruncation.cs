using SvdLlm.Numerics;

namespace SvdLlm.Compression.Dobi;

/// <summary>
/// Dobi-SVD's stage 1 layer for one activation A [L, m]: forward Â = U diag(σ ⊙ T(γ)) Vᵀ = Σ_i σ_i T_i u_i v_iᵀ, and
/// the backward that trains γ. Float64 throughout; the SVD is an exact LAPACK SVD (the reference uses a randomized
/// truncated one with q = ⌊γ⌋ + 5 and two power iterations; pass <c>rank: ReferenceRank(…)</c> for the same q).
/// Owns the factors it keeps for the backward; dispose it.
/// </summary>
public sealed class DobiTruncation : IDisposable
{
    /// <summary>Left singular vectors [L, q].</summary>
    public Tensor<double> U { get; }

    /// <summary>Singular values, descending [q].</summary>
    public double[] Sigma { get; }

    /// <summary>Right singular vectors [m, q] (columns; not Vᵀ).</summary>
    public Tensor<double> V { get; }

    /// <summary>T_1…T_q at <see cref="Gamma"/>.</summary>
    public double[] Mask { get; }

    /// <summary>Â = U diag(σ ⊙ T) Vᵀ [L, m].</summary>
    public Tensor<double> Output { get; }

    public double Gamma { get; }
    public double Beta { get; }

    private DobiTruncation(Tensor<double> u, double[] sigma, Tensor<double> v, double gamma, double beta, Tensor<double> output, double[] mask)
    {
        U = u;
        Sigma = sigma;
        V = v;
        Gamma = gamma;
        Beta = beta;
        Output = output;
        Mask = mask;
    }

    /// <summary>
    /// The reference's SVD rank for a trained γ: ⌊γ⌋ + 5 (γ truncated toward zero, as Python's int()), clamped to
    /// [1, min(L, m)]. The five spare triplets carry the mask's tail (T_{⌊γ⌋+5} ≈ e^{−2β·4} at β = 10).
    /// </summary>
    public static int ReferenceRank(double gamma, int rows, int cols) => Math.Clamp((int)gamma + 5, 1, Math.Min(rows, cols));

    /// <summary>
    /// Thin SVD of <paramref name="a"/> [L, m], keep the leading <paramref name="rank"/> triplets (all min(L, m) when
    /// null) and apply the mask at γ. γ is used as given: the reference clamps it to [1, q] inside the mask (so its
    /// gradient is zero outside) and penalises γ outside [0, L] in the loss; both are left to the caller.
    /// </summary>
    public static DobiTruncation Forward(Tensor<double> a, double gamma, double beta = DobiMask.DefaultBeta, int? rank = null)
    {
        ArgumentNullException.ThrowIfNull(a);
        if (!double.IsFinite(gamma)) throw new ArgumentOutOfRangeException(nameof(gamma), "γ must be finite");
        int l = a.Rows, m = a.Cols, full = Math.Min(l, m);
        int q = rank ?? full;
        if (q < 1 || q > full) throw new ArgumentOutOfRangeException(nameof(rank), $"rank {q} outside [1, {full}]");

        using var svd = Lapack.Svd(a);
        var u = DenseMath.LeadingColumns(svd.U, q);
        var v = Tensor<double>.Uninitialized(m, q);
        for (int i = 0; i < q; i++)
            for (int c = 0; c < m; c++) v[c, i] = svd.Vt[i, c];
        var sigma = svd.S[..q];
        var mask = DobiMask.Values(gamma, q, beta);

        var w = new double[q];
        for (int i = 0; i < q; i++) w[i] = sigma[i] * mask[i];
        using var uw = u.Clone();
        DenseMath.ScaleColumns(uw, w);
        var output = DenseMath.MatMul(uw, false, v, true);
        return new DobiTruncation(u, sigma, v, gamma, beta, output, mask);
    }

    /// <summary>
    /// Given G = dL/dÂ [L, m], returns dL/dγ and dL/dA [L, m] (new tensor, caller owns). With w = σ ⊙ T and
    /// Â = Σ_i w_i u_i v_iᵀ, the gradients with respect to the factors are gU = G V diag(w), gV = Gᵀ U diag(w) and
    /// gσ_i = T_i·u_iᵀ G v_i; these go through <see cref="StableSvdBackward"/>. Since Â depends on γ only through T,
    /// dL/dγ = Σ_i σ_i T_i'(γ)·u_iᵀ G v_i. In stage 1 A = X Wᵀ, so the caller propagates dX = dA·W.
    /// </summary>
    public (double DGamma, Tensor<double> DA) Backward(Tensor<double> g, double gapThreshold = StableSvdBackward.DefaultGapThreshold,
        int seriesOrder = StableSvdBackward.DefaultSeriesOrder)
    {
        ArgumentNullException.ThrowIfNull(g);
        int l = U.Rows, m = V.Rows, q = Sigma.Length;
        if (g.Rows != l || g.Cols != m) throw new ArgumentException($"G {g.ShapeString} is not [{l}, {m}]");

        var w = new double[q];
        for (int i = 0; i < q; i++) w[i] = Sigma[i] * Mask[i];
        var derivative = DobiMask.Derivatives(Gamma, q, Beta);

        using var gv = DenseMath.MatMul(g, false, V, false);  // G V [L, q]
        var proj = new double[q];                               // u_iᵀ G v_i
        for (int r = 0; r < l; r++)
        {
            var ur = U.Row(r);
            var gr = gv.Row(r);
            for (int i = 0; i < q; i++) proj[i] += ur[i] * gr[i];
        }
        double dGamma = 0;
        var gS = new double[q];
        for (int i = 0; i < q; i++)
        {
            dGamma += Sigma[i] * derivative[i] * proj[i];
            gS[i] = Mask[i] * proj[i];
        }

        DenseMath.ScaleColumns(gv, w);                          // now gU = G V diag(w)
        using var gV = DenseMath.MatMul(g, true, U, false);     // Gᵀ U [m, q]
        DenseMath.ScaleColumns(gV, w);
        var dA = StableSvdBackward.Backward(U, Sigma, V, gv, gS, gV, gapThreshold, seriesOrder);
        return (dGamma, dA);
    }

    public void Dispose()
    {
        U.Dispose();
        V.Dispose();
        Output.Dispose();
    }
}
