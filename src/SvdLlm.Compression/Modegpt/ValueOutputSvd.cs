using SvdLlm.Numerics;

namespace SvdLlm.Compression.Modegpt;

/// <summary>
/// C̃^½ and C̃^{-½} [d, d] of a Gram C, symmetric, from C = V Λ Vᵀ with every eigenvalue below
/// <see cref="Floor"/> = ε·λ_max raised to it (<see cref="ClampedEigenvalues"/> of them): C̃ = V max(Λ, Floor) Vᵀ. Both
/// roots are of the same C̃, so Root·InverseRoot = I to rounding even when C is singular.
/// </summary>
public sealed record SymmetricRoots(Tensor<double> Root, Tensor<double> InverseRoot, int ClampedEigenvalues, double Floor) : IDisposable
{
    public void Dispose()
    {
        Root.Dispose();
        InverseRoot.Dispose();
    }
}

/// <summary>
/// A V/O head group at rank k: <see cref="OutputColumns"/>[g] = W_O,g' [d, k] (the new o_proj columns of query head g of
/// the group) and <see cref="ValueRows"/> = W_V' [k, d] (the new v_proj rows of the shared V head), with
/// W_O,g' W_V' = block g of U_k U_kᵀ M. <see cref="SingularValues"/> are all singular values of M C̃^½ (descending),
/// M = [W_O,1; …; W_O,G] W_V [G·d, d] the stacked products.
/// </summary>
public sealed record ValueOutputFactors(Tensor<double>[] OutputColumns, Tensor<double> ValueRows, double[] SingularValues) : IDisposable
{
    public int Rank => ValueRows.Rows;

    /// <summary>
    /// √(Σ_{i≥k} σ_i²): the optimal loss √(Σ_g ‖(W_O,g W_V − W_O,g' W_V') Xᵀ‖²_F) when C̃ = XᵀX (no eigenvalue clamped).
    /// </summary>
    public double TailLoss => DenseMath.TailNorm(SingularValues, Rank);

    public void Dispose()
    {
        foreach (var o in OutputColumns) o.Dispose();
        ValueRows.Dispose();
    }
}

/// <summary>
/// MoDeGPT's Type III module (Lin et al., ICLR 2025, arXiv 2408.09632), by SVD: a head's value and output
/// maps, x ↦ W_O,h W_V,h x in HF layout (W_V,h [d_h, d] = the head's rows of v_proj, W_O,h [d, d_h] = its columns of
/// o_proj), are replaced by a rank-k pair. Attention mixing over tokens is ignored, as in the paper, so the objective is
/// ‖(W_O W_V − W_O' W_V') Xᵀ‖_F with X [T, d] the attention inputs (rows are tokens) and C = XᵀX; since
/// ‖E Xᵀ‖²_F = tr(E C Eᵀ) = ‖E C^½‖²_F, Eckart–Young on M C^½ = U Σ Vᵀ gives the optimum
/// M' = U_k Σ_k V_kᵀ C^{-½} = U_k U_kᵀ M (the second form because Σ_k V_kᵀ = U_kᵀ M C^½).
///
/// <para><b>Square root.</b> The symmetric root C^½ = V Λ^½ Vᵀ, as the paper writes it. Here any R with R Rᵀ = C (a
/// Cholesky factor) would give the same U and the same optimum, since (M R)(M R)ᵀ = M C Mᵀ; the choice of root only
/// changes results in Type II's column norms (<see cref="QueryKeySelection"/>). Eigenvalues ≤ ε·λ_max (ε = 1e-10 by
/// default) are raised to ε·λ_max and counted (<see cref="Roots"/>): dsyevd's eigenvalues carry an absolute error of
/// about d·u·λ_max ≈ 1e-12·λ_max at d = 4096, so smaller ones, and the negative ones rounding produces, are noise. A
/// direction the calibration never excited then still weighs a little instead of nothing, which makes the subspace
/// unique where it would otherwise be arbitrary.</para>
///
/// <para><b>Split.</b> W_O' = U_k (orthonormal columns) and W_V' = U_kᵀ W_O W_V, i.e. the second form of M'. The
/// paper's literal W_V' = V_kᵀ C^{-½} with W_O' = U_k Σ_k has the same product, but multiplies by C̃^{-½} (up to
/// 1/√(ε·λ_max)) and recovers W_O W_V only up to that rounding; this split never inverts anything, so the clamp only
/// chooses the subspace, k = rank(M) reproduces W_O W_V exactly for any C, and W_V' = (U_kᵀ W_O) W_V is a recombination
/// of the original V rows. Only C^½ is used; <see cref="SymmetricRoots.InverseRoot"/> is there for the paper's form.</para>
///
/// <para><b>GQA.</b> One V head W_V [d_h, d] serves G query heads, each with its own o_proj columns W_O,g [d, d_h]
/// (HF repeat_kv: query head q uses V head q / G, so group h owns query heads h·G … h·G + G − 1). Their attention weights
/// differ, so the heads' outputs cannot be merged into (Σ_g W_O,g) W_V; they share only the reduced V. With mixing ignored
/// per head, the group's objective is the sum of its heads' errors, Σ_g ‖(W_O,g W_V − W_O,g' W_V') Xᵀ‖²_F =
/// ‖(M − M') C^½‖²_F with the stacked M = [W_O,1; …; W_O,G] W_V [G·d, d] and M' = [W_O,1'; …; W_O,G'] W_V'. Its rank-k
/// optimum is again U_k U_kᵀ M (U from the SVD of M C^½), which factors exactly as a shared W_V' = U_kᵀ M_O W_V and
/// per-head W_O,g' = the g-th d rows of U_k, so the Eckart–Young identity holds for the sum: Σ_g ‖…‖² = Σ_{i&gt;k} σ_i²(M C^½).
/// G = 1 is the paper's per-head case.</para>
///
/// <para><b>Cost.</b> M C^½ = M_O (W_V C^½) is never formed at [G·d, d]: with the thin SVD M_O = U₁ S₁ V₁ᵀ ([G·d, d_h]),
/// M C^½ = U₁ Z with Z = S₁ V₁ᵀ W_V C^½ [d_h, d], and Z = U₂ Σ V₂ᵀ gives U = U₁ U₂ (orthonormal). Two SVDs of
/// d_h-row matrices and one [d_h, d]·[d, d] product per group; C^½ is computed once per layer.</para>
/// </summary>
public static class ValueOutputSvd
{
    /// <summary>Default ε: eigenvalues of C at or below 1e-10·λ_max are raised to it.</summary>
    public const double DefaultEigenFloor = 1e-10;

    /// <summary>C̃^½ and C̃^{-½} of the attention input's Gram <paramref name="gram"/> [d, d] (float64, symmetric).</summary>
    public static SymmetricRoots Roots(Tensor<double> gram, double relativeFloor = DefaultEigenFloor)
    {
        ArgumentNullException.ThrowIfNull(gram);
        if (gram.Shape.Length != 2 || gram.Rows != gram.Cols || gram.Rows == 0) throw new ArgumentException($"C must be a non-empty square matrix, got {gram.ShapeString}", nameof(gram));
        if (!(relativeFloor > 0 && relativeFloor < 1)) throw new ArgumentOutOfRangeException(nameof(relativeFloor), $"ε = {relativeFloor} must lie in (0, 1)");
        int n = gram.Rows;
        using var eig = Lapack.SymmetricEigen(gram);
        double max = eig.Values[^1];
        if (!(max > 0)) throw new ArgumentException($"C [{n}, {n}] has no positive eigenvalue (λ_max = {max}): no input was recorded", nameof(gram));
        double floor = relativeFloor * max;
        int clamped = 0;
        var quarter = new double[n];
        var inverseQuarter = new double[n];
        for (int j = 0; j < n; j++)
        {
            double l = eig.Values[j];
            if (l <= floor) { l = floor; clamped++; }
            quarter[j] = Math.Sqrt(Math.Sqrt(l));
            inverseQuarter[j] = 1 / quarter[j];
        }
        var root = ScaledOuter(eig.Vectors, quarter);
        try
        {
            var inverse = ScaledOuter(eig.Vectors, inverseQuarter);
            return new SymmetricRoots(root, inverse, clamped, floor);
        }
        catch
        {
            root.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The rank-<paramref name="k"/> V/O pair of one V head <paramref name="valueRows"/> W_V [d_h, d] and the o_proj
    /// columns <paramref name="outputColumns"/> W_O,g [d, d_h] of the G query heads that read it (one for MHA), given
    /// <paramref name="gramRoot"/> = C̃^½ [d, d] of the attention input (<see cref="Roots"/>). k in [1, min(d_h, d)].
    /// </summary>
    public static ValueOutputFactors Fit(IReadOnlyList<Tensor<double>> outputColumns, Tensor<double> valueRows, Tensor<double> gramRoot, int k)
    {
        ArgumentNullException.ThrowIfNull(outputColumns);
        ArgumentNullException.ThrowIfNull(valueRows);
        ArgumentNullException.ThrowIfNull(gramRoot);
        int groups = outputColumns.Count;
        if (groups == 0) throw new ArgumentException("a V head needs at least one O head", nameof(outputColumns));
        if (valueRows.Shape.Length != 2) throw new ArgumentException($"W_V must be a matrix, got {valueRows.ShapeString}", nameof(valueRows));
        int dh = valueRows.Rows, d = valueRows.Cols;
        if (gramRoot.Shape.Length != 2 || gramRoot.Rows != d || gramRoot.Cols != d)
            throw new ArgumentException($"C^½ {gramRoot.ShapeString} must be [{d}, {d}] to match W_V {valueRows.ShapeString}", nameof(gramRoot));
        foreach (var o in outputColumns)
            if (o.Shape.Length != 2 || o.Rows != d || o.Cols != dh)
                throw new ArgumentException($"W_O head {o.ShapeString} must be [{d}, {dh}] to match W_V {valueRows.ShapeString}", nameof(outputColumns));
        int rows = groups * d;
        int r1 = Math.Min(rows, dh), r2 = Math.Min(r1, d);
        if (k < 1 || k > r2) throw new ArgumentOutOfRangeException(nameof(k), $"k = {k} outside [1, {r2}] for W_V {valueRows.ShapeString}");

        using var stacked = Tensor<double>.Uninitialized(rows, dh);
        for (int g = 0; g < groups; g++) outputColumns[g].Span.CopyTo(stacked.Span.Slice(g * d * dh, d * dh));
        using var svd1 = Lapack.Svd(stacked);

        // R = S₁ V₁ᵀ W_V [r₁, d]; Z = R C̃^½.
        using var r = DenseMath.MatMul(svd1.Vt, false, valueRows, false);
        DenseMath.ScaleRows(r, svd1.S);
        using var z = DenseMath.MatMul(r, false, gramRoot, false);
        using var svd2 = Lapack.Svd(z);
        using var u2k = DenseMath.LeadingColumns(svd2.U, k);

        var value = DenseMath.MatMul(u2k, true, r, false);
        var outputs = new Tensor<double>[groups];
        try
        {
            using var uk = DenseMath.MatMul(svd1.U, false, u2k, false);
            for (int g = 0; g < groups; g++)
                outputs[g] = Tensor<double>.From(uk.Span.Slice(g * d * k, d * k), d, k);
            return new ValueOutputFactors(outputs, value, svd2.S);
        }
        catch
        {
            value.Dispose();
            foreach (var o in outputs) o?.Dispose();
            throw;
        }
    }

    /// <summary>V diag(q)² Vᵀ as (V diag(q))(V diag(q))ᵀ, by dsyrk so the result is exactly symmetric.</summary>
    private static Tensor<double> ScaledOuter(Tensor<double> vectors, double[] q)
    {
        int n = vectors.Rows;
        using var a = vectors.Clone();
        DenseMath.ScaleColumns(a, q);
        var c = Tensor<double>.Zeros(n, n);
        Blas.Dsyrk(lower: true, Transpose.No, n, n, 1.0, a.Span, n, 0.0, c.Span, n);
        Blas.SymmetrizeFromLower(c.Span, n);
        return c;
    }
}
