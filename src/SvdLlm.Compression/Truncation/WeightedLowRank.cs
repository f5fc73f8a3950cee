using SvdLlm.Numerics;

namespace SvdLlm.Compression.Truncation;

/// <summary>
/// How a method weighs the error of W' (all the compared methods are one problem, see docs/NUMERICS.md):
/// minimise ‖diag(a)·(W − W')·X‖_F over rank-k W', with C = X Xᵀ given as a full Gram (SVD-LLM, V2), a
/// diagonal (ASVD: C = S₀², S₀ = diag(mean|x|^α + 1e-6)) or the identity (plain SVD, FWSVD), and the optional
/// row weights a (FWSVD: a_i = sqrt(Σ_j Î_ij)).
/// </summary>
public sealed class Weighting
{
    /// <summary>Full Gram [n, n] (float64, symmetric); null when <see cref="Diagonal"/> or identity.</summary>
    public Tensor<double>? Gram { get; init; }

    /// <summary>Diagonal Gram entries [n]; null when <see cref="Gram"/> or identity.</summary>
    public double[]? Diagonal { get; init; }

    /// <summary>Row weights [m]; null for none.</summary>
    public double[]? Rows { get; init; }

    /// <summary>Objective named in the report.</summary>
    public required string Objective { get; init; }

    /// <summary>Regularisation applied to build this weighting (jitter, floored rows), for the report.</summary>
    public string? Note { get; init; }

    /// <summary>
    /// A whitening S (S Sᵀ = C) shared by the linears that read the same input in route R (gate/up): computed once
    /// per input by whoever builds the weightings, then reused. Null to let <see cref="WeightedLowRank"/> compute it.
    /// </summary>
    public Whitening? SharedWhitening { get; init; }
}

/// <summary>S with S Sᵀ = C: a Cholesky factor [n, n] when C is positive definite, else U_P Λ_P^½ [n, p] on the eigen-support.</summary>
public sealed class Whitening(Tensor<double> s, string route, double droppedEigenvalueThreshold = 0, Tensor<double>? nullBasis = null, double[]? nullEigenvalues = null) : IDisposable
{
    public Tensor<double> S { get; } = s;
    public string Route { get; } = route;

    /// <summary>Eigenvectors of C treated as its null space (λ ≤ ε·λ_max) and their eigenvalues; null for Cholesky.</summary>
    public Tensor<double>? NullBasis { get; } = nullBasis;
    public double[]? NullEigenvalues { get; } = nullEigenvalues;
    public double Threshold { get; } = droppedEigenvalueThreshold;

    /// <summary>
    /// Cholesky when it succeeds (n³/3 flops); otherwise the eigen-support factor with ε = <paramref name="relativeThreshold"/>·λ_max.
    /// </summary>
    /// <summary>The Cholesky whitening, or null when C is not positive definite.</summary>
    public static Whitening? TryCholesky(Tensor<double> c)
    {
        try
        {
            return new Whitening(Lapack.Cholesky(c), "chol(C)");
        }
        catch (LapackException e) when (e.Info > 0)
        {
            return null;
        }
    }

    /// <summary>Whether S is C's lower-triangular Cholesky factor (square, no null space).</summary>
    public bool IsCholesky => NullBasis is null && S.Rows == S.Cols && Route.StartsWith("chol", StringComparison.Ordinal);

    public static Whitening Of(Tensor<double> c, double relativeThreshold = 1e-10)
    {
        try
        {
            return new Whitening(Lapack.Cholesky(c), "chol(C)");
        }
        catch (LapackException e) when (e.Info > 0)
        {
            using var eig = Lapack.SymmetricEigen(c);
            int n = c.Rows;
            double max = eig.Values[^1];
            if (!(max > 0)) throw new ArgumentException("the Gram matrix is zero (no calibration tokens reached this linear)");
            double threshold = relativeThreshold * max;
            var keep = Enumerable.Range(0, n).Where(j => eig.Values[j] > threshold).Reverse().ToArray();
            var drop = Enumerable.Range(0, n).Where(j => eig.Values[j] <= threshold).ToArray();
            var s = Tensor<double>.Uninitialized(n, keep.Length);
            for (int i = 0; i < n; i++)
                for (int j = 0; j < keep.Length; j++) s[i, j] = eig.Vectors[i, keep[j]] * Math.Sqrt(eig.Values[keep[j]]);
            Tensor<double>? q = null;
            if (drop.Length > 0)
            {
                q = Tensor<double>.Uninitialized(n, drop.Length);
                for (int i = 0; i < n; i++)
                    for (int j = 0; j < drop.Length; j++) q[i, j] = eig.Vectors[i, drop[j]];
            }
            return new Whitening(s, $"eig(C) support {keep.Length}/{n}", threshold, q, drop.Select(j => Math.Max(0, eig.Values[j])).ToArray());
        }
    }

    public void Dispose()
    {
        S.Dispose();
        NullBasis?.Dispose();
    }
}

/// <summary>
/// The top of the weighted spectrum of one W: λ_i = σ_i(diag(a)·W·X)² for all i &lt; min(m, n) (descending) and the
/// first <see cref="Kept"/> left singular vectors U of diag(a)·W·X (orthonormal columns, [m, kept]). Everything a
/// truncation at any rank ≤ kept needs besides W, so V2's two passes decompose each matrix once.
/// </summary>
public sealed class WeightedBasis(double[] lambda, Tensor<double> u, string route, double droppedSquared) : IDisposable
{
    public double[] Lambda { get; } = lambda;
    public Tensor<double> U { get; } = u;
    public int Kept => U.Cols;

    /// <summary>Which computation ran, e.g. "L: eig(W C Wᵀ) 256" (recorded per matrix in the report).</summary>
    public string Route { get; } = route;

    /// <summary>Squared error carried by directions of C treated as null (eigen-support whitening only; else 0).</summary>
    public double DroppedSquared { get; } = droppedSquared;

    /// <summary>The truncation loss at rank k: sqrt(Σ_{i≥k} λ_i + dropped) = ‖diag(a)(W − W')X‖_F of the optimal W'.</summary>
    public double LossAtRank(int k) => LossAtRank(Lambda, DroppedSquared, k);

    /// <summary>sqrt(Σ_{i≥k} max(λ_i, 0) + dropped): the loss of the optimal rank-k W' given the weighted spectrum.</summary>
    public static double LossAtRank(double[] lambda, double droppedSquared, int k)
    {
        double s = droppedSquared;
        for (int i = lambda.Length - 1; i >= k; i--) s += Math.Max(0, lambda[i]);
        return Math.Sqrt(s);
    }

    public void Dispose() => U.Dispose();
}

/// <summary>
/// The one decomposition behind every truncation (see docs/NUMERICS.md for the derivation and the precision of each step).
/// The optimal rank-k W' for ‖diag(a)(W − W')X‖_F is W' = diag(a)⁻¹ U_k U_kᵀ diag(a) W, U_k the top-k left singular
/// vectors of diag(a)·W·X. Only one symmetric eigenproblem of size min(m, n) per matrix is solved:
/// - route L (m ≤ n): G = Ŵ C Ŵᵀ [m, m] (Ŵ = diag(a) W), eig(G) gives U and λ directly; no factorisation of C, so a
///   singular C is fine and W keeps its component on C's null space (the projection leaves it; V2's paper form zeroes it).
/// - route R (m &gt; n): S Sᵀ = C (Cholesky, or the eigen-support when C is singular), B = Ŵ S, H = Bᵀ B [p, p],
///   eig(H) = V Λ Vᵀ, U = B V Λ^{-½}.
/// Both in float64: G and H square the condition number, so λ_i is accurate to about u₆₄·n·λ_max absolutely
/// (≈ 1e-12·λ_max at n = 4096), far below any tail a truncation keeps; float32 (u ≈ 6e-8) would put that floor at
/// ≈ 2e-4·λ_max, comparable to the tails at 20–40 % compression, so it is not used.
/// </summary>
public static class WeightedLowRank
{
    /// <summary>The largest rank any allocation can ask for: a removed ratio ≥ 0 means k ≤ ⌊m n/(m + n)⌋.</summary>
    public static int MaxUsefulRank(int m, int n) => (int)Math.Min(Math.Min(m, n), (long)m * n / (m + n));

    /// <summary>Decomposes diag(a)·W·X; keeps the first <paramref name="keep"/> left singular vectors (0 = spectrum only).</summary>
    public static WeightedBasis Decompose(Tensor<double> w, Weighting weighting, int keep)
    {
        int m = w.Rows, n = w.Cols;
        keep = Math.Clamp(keep, 0, Math.Min(m, n));
        Check(w, weighting);
        var wa = Scaled(w, weighting.Rows);
        try
        {
            return m <= n ? RouteLeft(wa, weighting, keep) : RouteRight(wa, weighting, keep);
        }
        finally
        {
            if (!ReferenceEquals(wa, w)) wa.Dispose();
        }
    }

    /// <summary>W' at rank k from a basis with Kept ≥ k: factors u = diag(a)⁻¹ U_k D, v = D⁻¹ U_kᵀ diag(a) W, D balancing their norms.</summary>
    public static LowRankFactors Truncate(Tensor<double> w, WeightedBasis basis, int k, Weighting weighting)
    {
        Ranks.Check(w, k);
        if (k > basis.Kept) throw new ArgumentOutOfRangeException(nameof(k), $"rank {k} exceeds the {basis.Kept} kept singular vectors of {w.ShapeString}");
        int m = w.Rows, n = w.Cols;
        var wa = Scaled(w, weighting.Rows);
        var u = DenseMath.LeadingColumns(basis.U, k);
        var v = Tensor<double>.Uninitialized(k, n);
        // v = U_kᵀ Ŵ [k, n].
        Blas.Dgemm(Transpose.Yes, Transpose.No, k, n, m, 1.0, u.Span, k, wa.Span, n, 0.0, v.Span, n);
        if (!ReferenceEquals(wa, w)) wa.Dispose();
        // Balance: column i of u has norm 1, row i of v has norm ‖v_i‖; give both sqrt(‖v_i‖).
        var d = new double[k];
        for (int i = 0; i < k; i++)
        {
            double norm = Math.Sqrt(System.Numerics.Tensors.TensorPrimitives.SumOfSquares<double>(v.Row(i)));
            d[i] = norm > 0 ? Math.Sqrt(norm) : 1;
        }
        DenseMath.ScaleColumns(u, d);
        DenseMath.ScaleRows(v, d.Select(x => 1 / x).ToArray());
        if (weighting.Rows is { } a) DenseMath.ScaleRows(u, a.Select(x => 1 / x).ToArray());
        return new LowRankFactors(u, v, basis.LossAtRank(k), weighting.Objective, weighting.Note);
    }

    /// <summary>Decompose and truncate at one rank (single-pass methods).</summary>
    public static LowRankFactors DecomposeAndTruncate(Tensor<double> w, Weighting weighting, int k, out string route)
    {
        using var basis = Decompose(w, weighting, k);
        route = basis.Route;
        return Truncate(w, basis, k, weighting);
    }

    private static void Check(Tensor<double> w, Weighting g)
    {
        int m = w.Rows, n = w.Cols;
        if (g.Gram is { } c && (c.Rows != n || c.Cols != n)) throw new ArgumentException($"C {c.ShapeString} does not match W {w.ShapeString}");
        if (g.Diagonal is { } dg && dg.Length != n) throw new ArgumentException($"diagonal weighting has {dg.Length} entries, W {w.ShapeString} has {n} columns");
        if (g.Rows is { } a && a.Length != m) throw new ArgumentException($"row weights have {a.Length} entries, W {w.ShapeString} has {m} rows");
        if (g.Gram is not null && g.Diagonal is not null) throw new ArgumentException("a weighting has either a full Gram or a diagonal, not both");
    }

    /// <summary>Ŵ = diag(a)·W as a new tensor, or W itself (not copied: 360 MB for a 7B gate_proj) when there are no row weights.</summary>
    private static Tensor<double> Scaled(Tensor<double> w, double[]? rows)
    {
        if (rows is null) return w;
        var wa = w.Clone();
        DenseMath.ScaleRows(wa, rows);
        return wa;
    }

    private static WeightedBasis RouteLeft(Tensor<double> wa, Weighting g, int keep)
    {
        int m = wa.Rows, n = wa.Cols;
        using var gm = Tensor<double>.Uninitialized(m, m);
        string route;
        if (g.Gram is not null && g.SharedWhitening is { IsCholesky: true } chol)
        {
            // G = (Ŵ S)(Ŵ S)ᵀ with the shared Cholesky factor: a triangular multiply and a syrk, half the flops of two GEMMs.
            using var ws = wa.Clone();
            Blas.Dtrmm(left: false, lower: true, Transpose.No, unitDiagonal: false, m, n, 1.0, chol.S.Span, n, ws.Span, n);
            Blas.Dsyrk(lower: true, Transpose.No, m, n, 1.0, ws.Span, n, 0.0, gm.Span, m);
            Blas.SymmetrizeFromLower(gm.Span, m);
            route = $"L: {chol.Route}, eig(W C Wᵀ) {m}";
        }
        else if (g.Gram is { } c)
        {
            // G = (Ŵ C) Ŵᵀ: two GEMMs, no factorisation of C.
            using var t = Tensor<double>.Uninitialized(m, n);
            Blas.Dgemm(Transpose.No, Transpose.No, m, n, n, 1.0, wa.Span, n, c.Span, n, 0.0, t.Span, n);
            Blas.Dgemm(Transpose.No, Transpose.Yes, m, m, n, 1.0, t.Span, n, wa.Span, n, 0.0, gm.Span, m);
            Symmetrize(gm);
            route = $"L: eig(W C Wᵀ) {m}";
        }
        else
        {
            // G = Ŵ D Ŵᵀ = (Ŵ D^½)(Ŵ D^½)ᵀ: one syrk.
            using var ws = wa.Clone();
            if (g.Diagonal is { } dg) DenseMath.ScaleColumns(ws, dg.Select(Math.Sqrt).ToArray());
            Blas.Dsyrk(lower: true, Transpose.No, m, n, 1.0, ws.Span, n, 0.0, gm.Span, m);
            Blas.SymmetrizeFromLower(gm.Span, m);
            route = g.Diagonal is null ? $"L: eig(W Wᵀ) {m}" : $"L: eig(W D Wᵀ) {m}";
        }
        using var eig = Lapack.SymmetricEigen(gm);
        var lambda = Descending(eig.Values);
        var u = Tensor<double>.Uninitialized(m, Math.Max(keep, 0));
        for (int i = 0; i < m; i++)
            for (int j = 0; j < keep; j++) u[i, j] = eig.Vectors[i, m - 1 - j];
        return new WeightedBasis(lambda, u, route, 0);
    }

    private static WeightedBasis RouteRight(Tensor<double> wa, Weighting g, int keep)
    {
        int m = wa.Rows, n = wa.Cols;
        Whitening? own = null;
        try
        {
            Tensor<double> b;
            string whitening;
            double dropped = 0;
            if (g.Gram is { } c)
            {
                var wh = g.SharedWhitening ?? (own = Whitening.Of(c));
                int p = wh.S.Cols;
                if (wh.IsCholesky)
                {
                    // S lower triangular: a triangular multiply, half the flops of the general one (185 GFLOP saved per 7B gate/up).
                    b = wa.Clone();
                    Blas.Dtrmm(left: false, lower: true, Transpose.No, unitDiagonal: false, m, n, 1.0, wh.S.Span, n, b.Span, n);
                }
                else
                {
                    b = Tensor<double>.Uninitialized(m, p);
                    Blas.Dgemm(Transpose.No, Transpose.No, m, p, n, 1.0, wa.Span, n, wh.S.Span, p, 0.0, b.Span, p);
                }
                whitening = wh.Route;
                if (wh.NullBasis is { } q)
                {
                    // What the directions treated as null carry: tr(Ŵ U_Q Λ_Q U_Qᵀ Ŵᵀ).
                    using var wq = DenseMath.MatMul(wa, false, q, false);
                    for (int i = 0; i < m; i++)
                        for (int j = 0; j < q.Cols; j++) dropped += wq[i, j] * wq[i, j] * wh.NullEigenvalues![j];
                }
            }
            else
            {
                b = wa.Clone();
                if (g.Diagonal is { } dg) DenseMath.ScaleColumns(b, dg.Select(Math.Sqrt).ToArray());
                whitening = g.Diagonal is null ? "I" : "D^½";
            }
            using (b)
            {
                int p = b.Cols;
                using var h = Tensor<double>.Zeros(p, p);
                Blas.Dsyrk(lower: true, Transpose.Yes, p, m, 1.0, b.Span, p, 0.0, h.Span, p);
                Blas.SymmetrizeFromLower(h.Span, p);
                using var eig = Lapack.SymmetricEigen(h);
                var lambda = Descending(eig.Values);
                if (lambda.Length < Math.Min(m, n)) lambda = [.. lambda, .. new double[Math.Min(m, n) - lambda.Length]];
                int kv = Math.Min(keep, p);
                // U = B V_k Λ_k^{-½}; a direction with λ = 0 carries nothing and gets a zero column.
                using var vk = Tensor<double>.Uninitialized(p, Math.Max(kv, 1));
                for (int i = 0; i < p; i++)
                    for (int j = 0; j < kv; j++) vk[i, j] = eig.Vectors[i, p - 1 - j];
                var u = Tensor<double>.Zeros(m, Math.Max(keep, 0));
                if (kv > 0)
                {
                    using var bv = Tensor<double>.Uninitialized(m, kv);
                    Blas.Dgemm(Transpose.No, Transpose.No, m, kv, p, 1.0, b.Span, p, vk.Span, kv, 0.0, bv.Span, kv);
                    double tiny = 1e-13 * Math.Max(lambda[0], 0);
                    var inv = Enumerable.Range(0, kv).Select(j => lambda[j] > tiny ? 1 / Math.Sqrt(lambda[j]) : 0).ToArray();
                    for (int i = 0; i < m; i++)
                    {
                        var src = bv.Row(i);
                        var dst = u.Row(i);
                        for (int j = 0; j < kv; j++) dst[j] = src[j] * inv[j];
                    }
                }
                return new WeightedBasis(lambda, u, $"R: {whitening}, eig(Sᵀ Wᵀ W S) {p}", dropped);
            }
        }
        finally
        {
            own?.Dispose();
        }
    }

    private static double[] Descending(double[] ascending)
    {
        var d = new double[ascending.Length];
        for (int i = 0; i < d.Length; i++) d[i] = ascending[^(i + 1)];
        return d;
    }

    private static void Symmetrize(Tensor<double> g)
    {
        int m = g.Rows;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < i; j++)
            {
                double avg = 0.5 * (g[i, j] + g[j, i]);
                g[i, j] = avg;
                g[j, i] = avg;
            }
    }
}
