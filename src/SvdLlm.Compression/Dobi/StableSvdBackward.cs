using SvdLlm.Numerics;

namespace SvdLlm.Compression.Dobi;

/// <summary>
/// Backward of a thin (possibly truncated) SVD A = U diag(σ) Vᵀ, A [L, m], U [L, q], V [m, q], q ≤ min(L, m), as
/// Dobi-SVD's stable SVD layer computes it (the paper's §3 "gradient explosion" fix).
///
/// <para><b>Derivation.</b> Differentiating A = U S Vᵀ and projecting, P = Uᵀ dA V = Ω_U S + dS − S Ω_V with
/// Ω_U = Uᵀ dU and Ω_V = Vᵀ dV antisymmetric (UᵀU = VᵀV = I). The diagonal gives dσ_i = P_ii; the pair of equations
/// for P_ij and P_ji (i ≠ j) gives Ω_U,ij = F_ij(σ_j P_ij + σ_i P_ji) and Ω_V,ij = F_ij(σ_i P_ij + σ_j P_ji) with
/// F_ij = 1/(σ_j² − σ_i²) = 1/((σ_j − σ_i)(σ_j + σ_i)) (row i, column j; the paper writes the same quantity with i as the
/// column). The components outside span(U) and span(V) are (I − UUᵀ) dA V S⁻¹ and (I − VVᵀ) dAᵀ U S⁻¹. Collecting the
/// coefficient of dA in ⟨gU, dU⟩ + ⟨gS, dσ⟩ + ⟨gV, dV⟩:</para>
/// <code>
/// gA = U [ (F ∘ (UᵀgU − gUᵀU)) S + diag(gS) + S (F ∘ (VᵀgV − gVᵀV)) ] Vᵀ
///    + (I − UUᵀ) gU S⁻¹ Vᵀ + U S⁻¹ gVᵀ (I − VVᵀ).
/// </code>
/// <para>The last two terms treat every singular value beyond q as zero. They are exact when q = min(L, m) or
/// rank(A) = q; for a truncated SVD of a matrix of higher rank they drop the coupling between kept and discarded
/// triplets (relative size ≈ σ_{q+1}/σ_i), which the reference accepts with q = ⌊γ⌋ + 5.</para>
///
/// <para><b>Near-degenerate pairs</b> (as the reference). σ is clamped to ≥ <see cref="SigmaFloor"/> wherever it is
/// inverted. F is computed on one triangle, for the pair whose larger value is σ_b and smaller σ_s, as
/// F = +1/(σ_b² − σ_s²) at the entry (row s-position, column b-position) where that sign is the true one, and
/// mirrored with a minus sign. When |σ_b − σ_s| ≤ the gap threshold, 1/(σ_b² − σ_s²) = (1/σ_b²)·Σ_{k≥0}(σ_s/σ_b)^{2k}
/// is replaced by the first K + 1 terms of that geometric series: bounded by (K + 1)/σ_b², which is its value for
/// exactly equal singular values. A pair whose clamped values both equal the floor (A rank-deficient) gets
/// <see cref="ZeroPairValue"/> instead, as the reference. With the reference's absolute threshold 1e-10 the series
/// almost never fires on real activations (σ of order 1–10³ are never that close unless exactly repeated), so in
/// practice only exact ties are regularised; the threshold is a parameter for that reason.</para>
/// </summary>
public static class StableSvdBackward
{
    /// <summary>Singular values are clamped to at least this before being inverted or squared in F.</summary>
    public const double SigmaFloor = 1e-10;

    /// <summary>The reference's absolute threshold on |σ_i − σ_j| below which the series replaces 1/(σ_i² − σ_j²).</summary>
    public const double DefaultGapThreshold = 1e-10;

    /// <summary>K: the series keeps the terms k = 0…K (K + 1 terms).</summary>
    public const int DefaultSeriesOrder = 10;

    /// <summary>|F| for a pair whose clamped singular values are both the floor (the reference's grad_epsilon).</summary>
    public const double ZeroPairValue = 1e2;

    /// <summary>
    /// F [q, q]: F_ij = 1/(σ_j² − σ_i²) for i ≠ j, 0 on the diagonal, with the clamping and series described on the type.
    /// Antisymmetric by construction. σ need not be sorted.
    /// </summary>
    public static Tensor<double> InverseGaps(ReadOnlySpan<double> sigma, double gapThreshold = DefaultGapThreshold, int seriesOrder = DefaultSeriesOrder)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(gapThreshold);
        ArgumentOutOfRangeException.ThrowIfNegative(seriesOrder);
        int q = sigma.Length;
        var f = Tensor<double>.Zeros(q, q);
        for (int i = 0; i < q; i++)
            for (int j = i + 1; j < q; j++)
            {
                double si = Math.Max(sigma[i], SigmaFloor), sj = Math.Max(sigma[j], SigmaFloor);
                // b = position of the larger value, s = of the smaller; ties go to the earlier index as the larger, so
                // that in descending order the positive entry is the lower triangle, as the reference.
                (int b, int s, double big, double small) = si >= sj ? (i, j, si, sj) : (j, i, sj, si);
                double value;
                if (big == SigmaFloor && small == SigmaFloor) value = ZeroPairValue;
                else if (big - small <= gapThreshold) value = Series(big, small, seriesOrder);
                else value = 1.0 / ((big - small) * (big + small));
                // F_sb = 1/(σ_b² − σ_s²) > 0; F_bs = −F_sb.
                f[s, b] = value;
                f[b, s] = -value;
            }
        return f;
    }

    /// <summary>(1/σ_b²)·Σ_{k=0..K}(σ_s/σ_b)^{2k}, summed by Horner's rule (no 1 − r² cancellation when r → 1).</summary>
    internal static double Series(double big, double small, int order)
    {
        double r2 = small / big * (small / big), sum = 1;
        for (int k = 0; k < order; k++) sum = 1 + r2 * sum;
        return sum / (big * big);
    }

    /// <summary>
    /// gA [L, m] from the factors and the upstream gradients (any of <paramref name="gU"/> [L, q], <paramref name="gS"/>
    /// [q] and <paramref name="gV"/> [m, q] may be null, meaning zero).
    /// </summary>
    public static Tensor<double> Backward(Tensor<double> u, ReadOnlySpan<double> sigma, Tensor<double> v,
        Tensor<double>? gU, ReadOnlySpan<double> gS, Tensor<double>? gV,
        double gapThreshold = DefaultGapThreshold, int seriesOrder = DefaultSeriesOrder)
    {
        ArgumentNullException.ThrowIfNull(u);
        ArgumentNullException.ThrowIfNull(v);
        int l = u.Rows, m = v.Rows, q = sigma.Length;
        if (u.Cols != q || v.Cols != q) throw new ArgumentException($"U {u.ShapeString} and V {v.ShapeString} must have {q} columns");
        if (q > Math.Min(l, m)) throw new ArgumentException($"q = {q} exceeds min(L, m) = {Math.Min(l, m)}");
        if (gU is not null && (gU.Rows != l || gU.Cols != q)) throw new ArgumentException($"gU {gU.ShapeString} is not [{l}, {q}]");
        if (gV is not null && (gV.Rows != m || gV.Cols != q)) throw new ArgumentException($"gV {gV.ShapeString} is not [{m}, {q}]");
        if (gS.Length != 0 && gS.Length != q) throw new ArgumentException($"gS has {gS.Length} values, expected {q} (or none)");

        var inv = new double[q];
        for (int i = 0; i < q; i++) inv[i] = 1.0 / Math.Max(sigma[i], SigmaFloor);

        // core [q, q]; P = (I − UUᵀ) gU S⁻¹ [L, q]; Q = (I − VVᵀ) gV S⁻¹ [m, q]; gA = U (core Vᵀ + Qᵀ) + P Vᵀ.
        using var core = Tensor<double>.Zeros(q, q);
        for (int i = 0; i < gS.Length; i++) core[i, i] = gS[i];
        Tensor<double>? p = null, qv = null;
        try
        {
            if (gU is not null || gV is not null)
            {
                using var f = InverseGaps(sigma, gapThreshold, seriesOrder);
                if (gU is not null)
                {
                    using var j = DenseMath.MatMul(u, true, gU, false);
                    for (int a = 0; a < q; a++)
                        for (int b = 0; b < q; b++) core[a, b] += f[a, b] * (j[a, b] - j[b, a]) * sigma[b];
                    p = OutOfSubspace(gU, u, j, inv);
                }
                if (gV is not null)
                {
                    using var k = DenseMath.MatMul(v, true, gV, false);
                    for (int a = 0; a < q; a++)
                        for (int b = 0; b < q; b++) core[a, b] += sigma[a] * f[a, b] * (k[a, b] - k[b, a]);
                    qv = OutOfSubspace(gV, v, k, inv);
                }
            }

            using var inner = DenseMath.MatMul(core, false, v, true); // [q, m]
            if (qv is not null)
                for (int a = 0; a < q; a++)
                    for (int c = 0; c < m; c++) inner[a, c] += qv[c, a];
            var ga = DenseMath.MatMul(u, false, inner, false);
            if (p is not null)
            {
                using var pv = DenseMath.MatMul(p, false, v, true);
                var gs = ga.Span;
                var ps = pv.Span;
                for (int x = 0; x < gs.Length; x++) gs[x] += ps[x];
            }
            return ga;
        }
        finally
        {
            p?.Dispose();
            qv?.Dispose();
        }
    }

    /// <summary>(g − Y·(Yᵀg)) diag(inv) given Yᵀg: the part of g outside span(Y), columns scaled by 1/σ.</summary>
    private static Tensor<double> OutOfSubspace(Tensor<double> g, Tensor<double> y, Tensor<double> ytg, double[] inv)
    {
        var r = DenseMath.MatMul(y, false, ytg, false);
        var rs = r.Span;
        var gs = g.Span;
        for (int x = 0; x < rs.Length; x++) rs[x] = gs[x] - rs[x];
        DenseMath.ScaleColumns(r, inv);
        return r;
    }
}
