using SvdLlm.Numerics;

namespace SvdLlm.Compression.Modegpt;

/// <summary>
/// The refit down_proj of a Type I module: <see cref="Weight"/> = W_D C_σ S (Sᵀ C_σ S + δI)⁻¹ [d_model, k], with
/// δ = <see cref="AddedRidge"/> (0 unless the Cholesky of Sᵀ C_σ S failed; then the smallest δ that made it succeed).
/// </summary>
public sealed record DownProjUpdate(Tensor<double> Weight, double AddedRidge) : IDisposable
{
    public void Dispose() => Weight.Dispose();
}

/// <summary>
/// A Type I module compressed to k intermediate channels: <see cref="Kept"/> (ascending) are the rows to keep in gate_proj
/// and up_proj (<see cref="RowSelection.Rows{T}"/>) and the columns the new down_proj stands for; <see cref="Scores"/> the
/// ridge leverage score of every channel; <see cref="Lambda"/> the absolute ridge λ the scores used.
/// </summary>
public sealed record MlpCompression(int[] Kept, double[] Scores, double Lambda, Tensor<double> DownProj, double AddedRidge) : IDisposable
{
    public void Dispose() => DownProj.Dispose();
}

/// <summary>
/// MoDeGPT's Type I module (Lin et al., ICLR 2025, arXiv 2408.09632), by Nyström approximation: the MLP
/// y = W_D (σ(W_G x) ⊙ W_U x) keeps k of its d_ff intermediate channels. σ and ⊙ act channel by channel, so keeping
/// channels is a row selection of W_G and W_U that changes nothing about the kept channels' values; W_D is then refit
/// by least squares on the calibration activations h (the Nyström approximation of C_σ = Σ_t h_t h_tᵀ from k of its
/// columns). C_σ is the Gram of down_proj's input, which the calibrator already collects, in float64.
///
/// <para><b>Selection.</b> Channels are ranked by the ridge leverage score s_i = [C_σ(C_σ + λI)⁻¹]_ii, top k kept, ties
/// to the lower index (a deterministic order; the paper does not say). No optimality of the subset is claimed: the paper
/// motivates leverage scores by a Nyström error bound, not by an exact argmin.</para>
///
/// <para><b>Ridge scale.</b> λ = ridge·mean(diag C_σ) (ridge = 1e-2 by default, the value of the cbacary third-party
/// configuration; the paper gives no number). An absolute λ would mean something different for every calibration size
/// and every layer, because C_σ is a sum over tokens and activations grow with depth; relative to the mean channel energy,
/// the scores are invariant to scaling C_σ (s_i(aC, aλ) = s_i(C, λ)), so one ridge serves every layer and sample count.
/// ridge → 0 makes every channel of a positive-definite C_σ score 1 (no ranking at all); ridge → ∞ ranks by C_σ,ii.</para>
/// </summary>
public static class NystromMlp
{
    /// <summary>Default relative ridge: λ = 1e-2·mean(diag C_σ).</summary>
    public const double DefaultRidge = 1e-2;

    /// <summary>
    /// First relative ridge tried when the Cholesky of Sᵀ C_σ S fails (multiplied by 10 up to
    /// <see cref="MaxCholeskyRidge"/>). Just above dpotrf's backward error k·u·‖G‖ (≈ 1.2e-12 at k = 11008), so a
    /// matrix that only failed by rounding gets a perturbation of the order of the rounding itself.
    /// </summary>
    public const double FirstCholeskyRidge = 1e-12;

    /// <summary>Largest relative ridge tried before giving up: the size of the leverage-score ridge itself.</summary>
    public const double MaxCholeskyRidge = 1e-2;

    /// <summary>λ = <paramref name="ridge"/>·mean(diag C_σ). Refuses a C_σ whose diagonal is all zero (no activation recorded).</summary>
    public static double Lambda(Tensor<double> gram, double ridge = DefaultRidge)
    {
        int n = Square(gram, "C_σ");
        if (!(ridge > 0) || !double.IsFinite(ridge)) throw new ArgumentOutOfRangeException(nameof(ridge), $"ridge {ridge} must be positive and finite");
        double mean = MeanDiagonal(gram, n);
        if (!(mean > 0)) throw new ArgumentException($"C_σ [{n}, {n}] has mean diagonal {mean}: no activation was recorded, nothing to rank", nameof(gram));
        return ridge * mean;
    }

    /// <summary>
    /// Ridge leverage scores s_i = [C_σ(C_σ + λI)⁻¹]_ii for an absolute λ &gt; 0, each in [0, 1).
    /// Computed from one symmetric eigendecomposition C_σ = V Λ Vᵀ as s_i = Σ_j V_ij² · λ_j/(λ_j + λ): a sum of
    /// non-negative terms, so a channel that barely contributes gets a small score with full relative accuracy, whereas
    /// 1 − λ[(C_σ + λI)⁻¹]_ii cancels to rounding noise exactly there (≈ 1e-16/s_i relative). Eigenvalues below zero,
    /// which only rounding produces for a Gram (|λ_j| ≲ n·u·λ_max), count as 0. The cost is one dsyevd of d_ff, what V2's
    /// whitening of down_proj already pays.
    /// </summary>
    public static double[] LeverageScores(Tensor<double> gram, double lambda)
    {
        int n = Square(gram, "C_σ");
        if (!(lambda > 0) || !double.IsFinite(lambda)) throw new ArgumentOutOfRangeException(nameof(lambda), $"λ = {lambda} must be positive and finite");
        using var eig = Lapack.SymmetricEigen(gram);
        var f = new double[n];
        for (int j = 0; j < n; j++)
        {
            double l = Math.Max(eig.Values[j], 0);
            f[j] = l / (l + lambda);
        }
        var s = new double[n];
        var v = eig.Vectors.Span;
        for (int i = 0; i < n; i++)
        {
            var row = v.Slice(i * n, n);
            double acc = 0;
            for (int j = 0; j < n; j++) acc += row[j] * row[j] * f[j];
            s[i] = acc;
        }
        return s;
    }

    /// <summary>
    /// The indices of the <paramref name="k"/> largest scores, ties broken toward the lower index, returned in ascending
    /// order (the order the kept channels keep in the compressed matrices, so the layout stays that of the original).
    /// </summary>
    public static int[] TopIndices(ReadOnlySpan<double> scores, int k)
    {
        if (k < 1 || k > scores.Length) throw new ArgumentOutOfRangeException(nameof(k), $"k = {k} outside [1, {scores.Length}]");
        for (int i = 0; i < scores.Length; i++)
            if (!double.IsFinite(scores[i])) throw new ArgumentException($"score {i} is {scores[i]}", nameof(scores));
        var s = scores.ToArray();
        var order = Enumerable.Range(0, s.Length).ToArray();
        Array.Sort(order, (a, b) => s[a] != s[b] ? s[b].CompareTo(s[a]) : a.CompareTo(b));
        var top = order[..k];
        Array.Sort(top);
        return top;
    }

    /// <summary>
    /// The least-squares down_proj for the kept channels: min over W' of ‖W_D H − W' Sᵀ H‖_F with H [d_ff, T] the
    /// calibration activations and C_σ = H Hᵀ, whose normal equations W' (Sᵀ C_σ S) = W_D C_σ S give
    /// W' = W_D C_σ S (Sᵀ C_σ S)⁻¹ (<paramref name="downProj"/> W_D is [d_model, d_ff] in HF layout; the result is
    /// [d_model, k], column j standing for channel kept[j]). Solved with the Cholesky factor L of the k×k block
    /// G = Sᵀ C_σ S as W' = (W_D C_σ S) L⁻ᵀ L⁻¹ (two triangular solves, no inverse formed). G is singular when a kept
    /// channel is dead or kept channels are linearly dependent on the calibration data; only then is δ·I added,
    /// δ = ρ·mean(diag G) for the first ρ of 1e-12, 1e-11, … ≤ 1e-2 that factors, and δ returned in
    /// <see cref="DownProjUpdate.AddedRidge"/> (a dead kept channel then gets a zero column, the minimum-norm choice).
    /// </summary>
    public static DownProjUpdate UpdateDownProj(Tensor<double> downProj, Tensor<double> gram, ReadOnlySpan<int> kept)
    {
        ArgumentNullException.ThrowIfNull(downProj);
        int n = Square(gram, "C_σ");
        if (downProj.Shape.Length != 2 || downProj.Cols != n)
            throw new ArgumentException($"W_D {downProj.ShapeString} must be [d_model, {n}] to match C_σ [{n}, {n}]", nameof(downProj));
        RowSelection.CheckIndices(kept, n, "channel");
        int m = downProj.Rows, k = kept.Length;
        if (k == 0) throw new ArgumentException("no channel kept", nameof(kept));

        // C_σ S [n, k] and G = Sᵀ C_σ S [k, k], gathered from the full symmetric matrix.
        using var cs = Tensor<double>.Uninitialized(n, k);
        for (int i = 0; i < n; i++)
        {
            var src = gram.Row(i);
            var dst = cs.Row(i);
            for (int j = 0; j < k; j++) dst[j] = src[kept[j]];
        }
        using var g = Tensor<double>.Uninitialized(k, k);
        for (int a = 0; a < k; a++) cs.Row(kept[a]).CopyTo(g.Row(a));

        var w = Tensor<double>.Uninitialized(m, k);
        try
        {
            Blas.Dgemm(Transpose.No, Transpose.No, m, k, n, 1.0, downProj.Span, n, cs.Span, k, 0.0, w.Span, k);
            var (l, ridge) = FactorWithRidge(g);
            using (l)
            {
                Blas.Dtrsm(left: false, lower: true, Transpose.Yes, unitDiagonal: false, m, k, 1.0, l.Span, k, w.Span, k);
                Blas.Dtrsm(left: false, lower: true, Transpose.No, unitDiagonal: false, m, k, 1.0, l.Span, k, w.Span, k);
            }
            return new DownProjUpdate(w, ridge);
        }
        catch
        {
            w.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The whole Type I step: λ from <paramref name="ridge"/>, leverage scores, top-k channels, refit down_proj.
    /// gate_proj and up_proj are then <c>RowSelection.Rows(w, result.Kept)</c>.
    /// </summary>
    public static MlpCompression Compress(Tensor<double> downProj, Tensor<double> gram, int k, double ridge = DefaultRidge)
    {
        double lambda = Lambda(gram, ridge);
        var scores = LeverageScores(gram, lambda);
        var kept = TopIndices(scores, k);
        var update = UpdateDownProj(downProj, gram, kept);
        return new MlpCompression(kept, scores, lambda, update.Weight, update.AddedRidge);
    }

    private static (Tensor<double> L, double Ridge) FactorWithRidge(Tensor<double> g)
    {
        int k = g.Rows;
        try
        {
            return (Lapack.Cholesky(g), 0);
        }
        catch (LapackException e) when (e.Info > 0)
        {
            // Not positive definite: retried below with the smallest ridge that works.
        }
        double scale = MeanDiagonal(g, k);
        if (!(scale > 0)) scale = 1; // every kept channel dead: G = 0, W_D C_σ S = 0, and W' = 0 whatever δ is.
        for (double rho = FirstCholeskyRidge; rho <= MaxCholeskyRidge * (1 + 1e-9); rho *= 10)
        {
            double delta = rho * scale;
            using var shifted = g.Clone();
            for (int i = 0; i < k; i++) shifted[i, i] += delta;
            try
            {
                return (Lapack.Cholesky(shifted), delta);
            }
            catch (LapackException e) when (e.Info > 0)
            {
            }
        }
        throw new ArgumentException($"Sᵀ C_σ S [{k}, {k}] is not positive definite even with {MaxCholeskyRidge}·mean(diag) added: C_σ is not a Gram matrix");
    }

    private static double MeanDiagonal(Tensor<double> c, int n)
    {
        double s = 0;
        for (int i = 0; i < n; i++) s += c[i, i];
        return n == 0 ? 0 : s / n;
    }

    private static int Square(Tensor<double> c, string name)
    {
        ArgumentNullException.ThrowIfNull(c);
        if (c.Shape.Length != 2 || c.Rows != c.Cols || c.Rows == 0) throw new ArgumentException($"{name} must be a non-empty square matrix, got {c.ShapeString}");
        return c.Rows;
    }
}
