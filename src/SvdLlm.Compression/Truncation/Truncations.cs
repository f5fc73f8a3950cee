using SvdLlm.Numerics;

namespace SvdLlm.Compression.Truncation;

// The truncations of the compared methods, in the papers' notation (see docs/NUMERICS.md; these literal forms are the oracles of WeightedLowRank):
// W [m, n] = out × in, C = X Xᵀ [n, n], rank k, factors W_u [m, k], W_v [k, n].

/// <summary>Plain SVD: W = U Σ Vᵀ, W_u = U_k Σ_k^½, W_v = Σ_k^½ V_kᵀ. Objective ‖W − W'‖_F (data-free).</summary>
public sealed class PlainSvdTruncation : ITruncation
{
    public string Name => "svd";

    public LowRankFactors Truncate(Tensor<double> w, int k, TruncationInputs inputs)
    {
        Ranks.Check(w, k);
        using var svd = Lapack.Svd(w);
        return SplitSqrt(svd, k, DenseMath.TailNorm(svd.S, k), "‖W−W'‖_F");
    }

    /// <summary>W_u = U_k Σ_k^½ and W_v = Σ_k^½ V_kᵀ from an SVD.</summary>
    internal static LowRankFactors SplitSqrt(SvdResult<double> svd, int k, double loss, string objective, string? note = null)
    {
        var u = DenseMath.LeadingColumns(svd.U, k);
        var v = DenseMath.LeadingRows(svd.Vt, k);
        var root = svd.S.Take(k).Select(Math.Sqrt).ToArray();
        DenseMath.ScaleColumns(u, root);
        DenseMath.ScaleRows(v, root);
        return new LowRankFactors(u, v, loss, objective, note);
    }
}

/// <summary>
/// ASVD: S₀ = diag(s), s_j = (mean_t |x_j|)^α + 1e-6 with α = 0.5; SVD(W S₀) = U Σ Vᵀ;
/// W_u = U_k Σ_k^½, W_v = Σ_k^½ V_kᵀ S₀⁻¹. Objective ‖(W − W') S₀‖_F.
/// </summary>
public sealed class AsvdTruncation(double alpha = 0.5) : ITruncation
{
    public string Name => "asvd";
    public double Alpha { get; } = alpha;

    public LowRankFactors Truncate(Tensor<double> w, int k, TruncationInputs inputs) => TruncateAtRanks(w, [k], inputs).Single();

    /// <summary>SVD(W S₀) does not depend on k: decomposed once, then split at every rank.</summary>
    public IEnumerable<LowRankFactors> TruncateAtRanks(Tensor<double> w, IReadOnlyList<int> ranks, TruncationInputs inputs)
    {
        foreach (int k in ranks) Ranks.Check(w, k);
        var mean = inputs.MeanAbsInput ?? throw new ArgumentException("ASVD needs the mean |x| of the linear's input");
        if (mean.Length != w.Cols) throw new ArgumentException($"mean |x| has {mean.Length} entries, W has {w.Cols} columns");
        var s = mean.Select(x => Math.Pow(x, Alpha) + 1e-6).ToArray();
        var inverse = s.Select(x => 1 / x).ToArray();
        using var ws = w.Clone();
        DenseMath.ScaleColumns(ws, s);
        using var svd = Lapack.Svd(ws);
        var result = new List<LowRankFactors>(ranks.Count);
        foreach (int k in ranks)
        {
            var f = PlainSvdTruncation.SplitSqrt(svd, k, DenseMath.TailNorm(svd.S, k), "‖(W−W')S₀‖_F");
            DenseMath.ScaleColumns(f.V, inverse);
            result.Add(f);
        }
        return result;
    }
}

/// <summary>
/// FWSVD, row-Fisher variant (Hsu et al. 2022): Î_ij = Σ_batches (∂L/∂W_ij)², row importance
/// I = diag(sqrt(Σ_j Î_ij)); SVD(I W) = U Σ Vᵀ; W_u = I⁻¹ U_k Σ_k, W_v = V_kᵀ. Objective ‖I(W − W')‖_F.
/// Rows with (numerically) zero Fisher get I_ii = 1e-8·max I (recorded in the note) so I⁻¹ stays finite.
/// </summary>
public sealed class FisherWeightedTruncation : ITruncation
{
    public string Name => "fwsvd";

    public LowRankFactors Truncate(Tensor<double> w, int k, TruncationInputs inputs)
    {
        Ranks.Check(w, k);
        var fisher = inputs.FisherRowSums ?? throw new ArgumentException("FWSVD needs the row sums of the Fisher information of the weight (Σ_j g_ij²)");
        if (fisher.Length != w.Rows) throw new ArgumentException($"Fisher row sums have {fisher.Length} entries, W {w.ShapeString} has {w.Rows} rows");
        var importance = fisher.Select(Math.Sqrt).ToArray();
        double max = importance.Max();
        if (!(max > 0)) throw new ArgumentException("FWSVD: the Fisher information is zero for every row (no gradient reached this linear)");
        double floor = 1e-8 * max;
        int floored = importance.Count(x => x < floor);
        for (int i = 0; i < importance.Length; i++) importance[i] = Math.Max(importance[i], floor);

        using var iw = w.Clone();
        DenseMath.ScaleRows(iw, importance);
        using var svd = Lapack.Svd(iw);
        var u = DenseMath.LeadingColumns(svd.U, k);
        DenseMath.ScaleColumns(u, svd.S.AsSpan(0, k));
        DenseMath.ScaleRows(u, importance.Select(x => 1 / x).ToArray());
        var v = DenseMath.LeadingRows(svd.Vt, k);
        return new LowRankFactors(u, v, DenseMath.TailNorm(svd.S, k), "‖I(W−W')‖_F",
            floored > 0 ? $"{floored} rows with Fisher below 1e-8·max were floored" : null);
    }
}

/// <summary>
/// SVD-LLM: S = chol(C) (lower, S Sᵀ = C); if C is not positive definite, C ← C + (−λ_min(C) + 1e-6)·I and
/// retry, as the reference does, but recorded in the note. SVD(W S) = U Σ Vᵀ; W_u = U_k Σ_k^½,
/// W_v = Σ_k^½ V_kᵀ S⁻¹ (a triangular solve). Theorem: ‖(W − W')X‖_F = sqrt(Σ_{i&gt;k} σ_i(WS)²) when S is exact.
/// </summary>
/// <para><b>Reference numerics</b> (<paramref name="referenceNumerics"/>, <c>numerics: reference</c>): SVD-LLM's public
/// code (its whitening step): the Cholesky in float64, then S cast to float32, S⁻¹ by a float32 LU inverse
/// (<c>torch.linalg.inv</c>), W·S and its SVD in float32, W_v = Σ_k^½ V_kᵀ S⁻¹ in float32. Its theoretical loss is
/// the float32 tail of σ(WS); what the factors really lose is the measured loss, and the difference is the numerics'
/// share, which is what the V2 paper's claim about truncation in practice is about (docs/NUMERICS.md).</para>
public sealed class CholeskyWhiteningTruncation(bool referenceNumerics = false) : ITruncation
{
    public string Name => "svdllm";

    /// <summary>Whether the whitening, inverse and SVD run in float32 as SVD-LLM's public code does.</summary>
    public bool ReferenceNumerics { get; } = referenceNumerics;

    public LowRankFactors Truncate(Tensor<double> w, int k, TruncationInputs inputs)
    {
        Ranks.Check(w, k);
        var c = inputs.Gram ?? throw new ArgumentException("SVD-LLM needs the Gram matrix C of the linear's input");
        if (c.Rows != w.Cols || c.Cols != w.Cols) throw new ArgumentException($"C {c.ShapeString} does not match W {w.ShapeString}");
        string? note = null;
        Tensor<double> s;
        try
        {
            s = Lapack.Cholesky(c);
        }
        catch (LapackException e) when (e.Info > 0)
        {
            using var eig = Lapack.SymmetricEigen(c);
            double shift = -eig.Values[0] + 1e-6;
            using var jittered = c.Clone();
            for (int i = 0; i < c.Rows; i++) jittered[i, i] += shift;
            s = Lapack.Cholesky(jittered);
            note = $"C not positive definite (λ_min = {eig.Values[0]:E3}); added {shift:E3}·I before Cholesky";
        }
        using (s)
        {
            if (ReferenceNumerics) return TruncateInFloat32(w, k, s, note);
            using var ws = DenseMath.MatMul(w, false, s, false);
            using var svd = Lapack.Svd(ws);
            var f = PlainSvdTruncation.SplitSqrt(svd, k, DenseMath.TailNorm(svd.S, k), "‖(W−W')X‖_F", note);
            // W_v ← W_v S⁻¹: solve X·S = W_v for X (right side, lower triangular).
            Blas.Dtrsm(left: false, lower: true, Transpose.No, unitDiagonal: false, f.V.Rows, f.V.Cols, 1.0, s.Span, s.Cols, f.V.Span, f.V.Cols);
            return f;
        }
    }

    /// <summary>Steps after the float64 Cholesky S, in float32 as the reference runs them.</summary>
    private static LowRankFactors TruncateInFloat32(Tensor<double> w, int k, Tensor<double> s, string? note)
    {
        int m = w.Rows, n = w.Cols;
        using var s32 = DenseMath.ToFloat(s);
        using var w32 = DenseMath.ToFloat(w);
        using var inverse = Lapack.InverseFloat32(s32);
        using var ws = Tensor<float>.Uninitialized(m, n);
        Blas.Sgemm(Transpose.No, Transpose.No, m, n, n, 1f, w32.Span, n, s32.Span, n, 0f, ws.Span, n);
        using var svd = Lapack.Svd(ws);
        // W_u = U_k Σ_k^½; W_v = Σ_k^½ (V_kᵀ S⁻¹), each product in float32.
        using var vs = Tensor<float>.Uninitialized(k, n);
        Blas.Sgemm(Transpose.No, Transpose.No, k, n, n, 1f, svd.Vt.Span[..(k * n)], n, inverse.Span, n, 0f, vs.Span, n);
        var u = Tensor<double>.Uninitialized(m, k);
        var v = Tensor<double>.Uninitialized(k, n);
        int r = svd.S.Length;
        for (int j = 0; j < k; j++)
        {
            float root = MathF.Sqrt(svd.S[j]);
            for (int i = 0; i < m; i++) u[i, j] = svd.U[i, j] * root;
            var src = vs.Row(j);
            var dst = v.Row(j);
            for (int c = 0; c < n; c++) dst[c] = src[c] * root;
        }
        double tail = 0;
        for (int j = k; j < r; j++) tail += (double)svd.S[j] * svd.S[j];
        return new LowRankFactors(u, v, Math.Sqrt(tail), "‖(W−W')X‖_F", note is null ? "float32 whitening, inverse and SVD (numerics: reference)" : note + "; float32 whitening, inverse and SVD (numerics: reference)");
    }
}

/// <summary>
/// SVD-LLM V2 (Theorem 3.1): C = U_s Λ U_sᵀ; D = W U_s Λ^½; SVD(D) = U_d Σ_d V_dᵀ;
/// W_u = U_{d,k} Σ_k^½, W_v = Σ_k^½ V_{d,k}ᵀ Λ^{-½} U_sᵀ. No Cholesky, so a Gram that is only
/// positive semi-definite is fine: eigenvalues λ ≤ ε·λ_max (ε = <see cref="RelativeEigenThreshold"/>) are
/// treated as zero and Λ^{-½} is taken on the remaining support. The theoretical loss is then exactly
/// ‖(W − W')X‖_F = sqrt(Σ_{i&gt;k} σ_i(D)² + tr(W U_Q Λ_Q U_Qᵀ Wᵀ)), the second term being what the
/// dropped directions Q (λ ≤ ε·λ_max) carry — zero when they are exact zeros.
/// </summary>
public sealed class EigenWhiteningTruncation(double relativeEigenThreshold = 1e-10) : ITruncation
{
    public string Name => "svdllm-v2";
    public double RelativeEigenThreshold { get; } = relativeEigenThreshold;

    public LowRankFactors Truncate(Tensor<double> w, int k, TruncationInputs inputs)
    {
        using var d = WhitenedWeight(w, inputs, out var us, out var lambdaRoot, out double droppedSquared, out int support);
        using (us)
        {
            Ranks.Check(w, k);
            using var svd = Lapack.Svd(d);
            int kk = Math.Min(k, svd.S.Length);
            double loss = Math.Sqrt(Math.Pow(DenseMath.TailNorm(svd.S, kk), 2) + droppedSquared);
            string? note = support < w.Cols ? $"{w.Cols - support} of {w.Cols} eigenvalues of C ≤ {RelativeEigenThreshold:E0}·λ_max treated as zero" : null;
            if (kk < k) note = (note is null ? "" : note + "; ") + $"rank {k} exceeds the support {support}; padded with zero factors";
            var f = PlainSvdTruncation.SplitSqrt(svd, kk, loss, "‖(W−W')X‖_F", note);
            // W_v = Σ_k^½ V_{d,k}ᵀ Λ_P^{-½} U_Pᵀ: scale columns by 1/sqrt(λ), then multiply by U_Pᵀ.
            DenseMath.ScaleColumns(f.V, lambdaRoot.Select(x => 1 / x).ToArray());
            var v = DenseMath.MatMul(f.V, false, us, true);
            var u = f.U.Clone();
            f.Dispose();
            if (kk < k)
            {
                (u, v) = (PadColumns(u, k), PadRows(v, k));
            }
            return new LowRankFactors(u, v, loss, "‖(W−W')X‖_F", note);
        }
    }

    /// <summary>
    /// D = W U_P Λ_P^½ over the eigen-support P; also returns U_P [n, p], Λ_P^½, and the squared loss carried by
    /// the dropped directions, tr(W U_Q Λ_Q U_Qᵀ Wᵀ). Used by the truncation and by V2's loss-based allocation.
    /// </summary>
    internal Tensor<double> WhitenedWeight(Tensor<double> w, TruncationInputs inputs, out Tensor<double> us, out double[] lambdaRoot,
        out double droppedSquared, out int support)
    {
        var c = inputs.Gram ?? throw new ArgumentException("SVD-LLM V2 needs the Gram matrix C of the linear's input");
        if (c.Rows != w.Cols || c.Cols != w.Cols) throw new ArgumentException($"C {c.ShapeString} does not match W {w.ShapeString}");
        using var eig = Lapack.SymmetricEigen(c);
        int n = c.Rows;
        double max = eig.Values[^1];
        if (!(max > 0)) throw new ArgumentException("SVD-LLM V2: the Gram matrix is zero (no calibration tokens reached this linear)");
        double threshold = RelativeEigenThreshold * max;
        var keep = Enumerable.Range(0, n).Where(j => eig.Values[j] > threshold).ToArray();
        var drop = Enumerable.Range(0, n).Where(j => eig.Values[j] <= threshold).ToArray();
        support = keep.Length;
        us = SelectColumns(eig.Vectors, keep);
        lambdaRoot = keep.Select(j => Math.Sqrt(eig.Values[j])).ToArray();
        droppedSquared = 0;
        if (drop.Length > 0)
        {
            using var uq = SelectColumns(eig.Vectors, drop);
            using var wuq = DenseMath.MatMul(w, false, uq, false);
            for (int i = 0; i < wuq.Rows; i++)
                for (int j = 0; j < drop.Length; j++)
                    droppedSquared += wuq[i, j] * wuq[i, j] * Math.Max(0, eig.Values[drop[j]]);
        }
        var d = DenseMath.MatMul(w, false, us, false);
        DenseMath.ScaleColumns(d, lambdaRoot);
        return d;
    }

    private static Tensor<double> SelectColumns(Tensor<double> a, int[] columns)
    {
        var r = Tensor<double>.Uninitialized(a.Rows, Math.Max(1, columns.Length));
        for (int i = 0; i < a.Rows; i++)
            for (int j = 0; j < columns.Length; j++) r[i, j] = a[i, columns[j]];
        return r;
    }

    private static Tensor<double> PadColumns(Tensor<double> a, int k)
    {
        var r = Tensor<double>.Zeros(a.Rows, k);
        for (int i = 0; i < a.Rows; i++) a.Row(i).CopyTo(r.Row(i));
        a.Dispose();
        return r;
    }

    private static Tensor<double> PadRows(Tensor<double> a, int k)
    {
        var r = Tensor<double>.Zeros(k, a.Cols);
        a.Span.CopyTo(r.Span);
        a.Dispose();
        return r;
    }
}
