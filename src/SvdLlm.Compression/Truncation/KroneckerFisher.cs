using SvdLlm.Numerics;

namespace SvdLlm.Compression.Truncation;

// GFWSVD (Chekalina et al., "Generalized Fisher-Weighted SVD", arXiv 2505.17974), numerical core.
// W [m, n] = out × in; vec is column-stacking, so vec(B X Aᵀ) = (A ⊗ B) vec(X) and
// ½ vec(ΔW)ᵀ (A ⊗ B) vec(ΔW) = ½ tr(ΔWᵀ B ΔW A) = ½ ‖L_Bᵀ ΔW L_A‖²_F with B = L_B L_Bᵀ, A = L_A L_Aᵀ.
// A [n, n] is the input side, B [m, m] the output side. Everything is float64 (the reference stores its
// factors in bf16, which loses the small eigenvalues the Cholesky needs).

/// <summary>
/// What <see cref="KroneckerFisher.RegulariseToSpd"/> did to one factor X: X + λ·diag(X) with
/// λ = <paramref name="Damping"/>, then eigenvalues below <paramref name="Floor"/> raised to it
/// (<paramref name="ClampedEigenvalues"/> of them). <paramref name="MinEigenvalueRelative"/> is λ_min/λ_max of the
/// damped matrix before clamping.
/// </summary>
public sealed record SpdRegularisation(double Damping, int ClampedEigenvalues, double Floor, double MinEigenvalueRelative)
{
    public override string ToString() =>
        $"+{Damping:E1}·diag, {ClampedEigenvalues} eigenvalues raised to {Floor:E2} (λ_min/λ_max was {MinEigenvalueRelative:E2})";
}

/// <summary>
/// F ≈ A ⊗ B, the nearest Kronecker product to the empirical Fisher of one linear. A [n, n] is the input side, B [m, m]
/// the output side; each carries √σ₁ (σ₁ = <see cref="Sigma"/>, the top singular value of the rearranged F), with the
/// sign chosen so that tr(A) &gt; 0 and tr(B) &gt; 0. <see cref="Iterations"/> and <see cref="RelativeChange"/> describe the
/// power iteration (RelativeChange ≥ the tolerance means it stopped at the iteration cap). The regularisations are null
/// when the factors are the raw singular pair; otherwise A and B are the regularised, symmetric positive-definite
/// matrices and the records say what was added.
/// </summary>
public sealed record KroneckerFactors(
    Tensor<double> A,
    Tensor<double> B,
    double Sigma,
    int Iterations,
    double RelativeChange,
    SpdRegularisation? RegularisationA = null,
    SpdRegularisation? RegularisationB = null) : IDisposable
{
    /// <summary>A one-line description of the regularisation (null when none), for the truncation's note.</summary>
    public string? RegularisationNote =>
        RegularisationA is null && RegularisationB is null ? null : $"A: {RegularisationA?.ToString() ?? "none"}; B: {RegularisationB?.ToString() ?? "none"}";

    public void Dispose()
    {
        A.Dispose();
        B.Dispose();
    }
}

/// <summary>
/// Nearest Kronecker factors of the empirical Fisher F = (1/K) Σ_k vec(G_k) vec(G_k)ᵀ (Van Loan–Pitsianis):
/// min ‖F − A ⊗ B‖_F is the rank-1 approximation of the rearranged R(F) [n², m²], whose action on matrices is
/// T(A) = (1/K) Σ G_k A G_kᵀ (n×n → m×m, = R(F)ᵀ vec A) and Tᵀ(B) = (1/K) Σ G_kᵀ B G_k (m×m → n×n, = R(F) vec B).
/// Computed matrix-free by power iteration on TᵀT; F itself ([mn, mn]) is never formed.
/// </summary>
public static class KroneckerFisher
{
    /// <summary>Initial damping λ of X + λ·diag(X), as the reference.</summary>
    public const double InitialDamping = 1e-6;

    /// <summary>The damping is doubled while λ_min &lt; −<see cref="NegativeTolerance"/>·λ_max, up to <see cref="MaxDamping"/>.</summary>
    public const double NegativeTolerance = 1e-7;

    public const double MaxDamping = 0.1;

    /// <summary>
    /// Eigenvalues are raised to at least this fraction of λ_max. Larger than the reference's 1e-12 because the factors are
    /// then Cholesky-factored: dpotrf's backward error is O(n·u·‖X‖) (≈ 2.4e-12·‖X‖ at n = 11008), so a floor of 1e-10
    /// keeps the factorisation from failing on rounding at every LLaMA-7B shape.
    /// </summary>
    public const double RelativeEigenFloor = 1e-10;

    /// <summary>
    /// Nearest Kronecker factors of the empirical Fisher of the K gradients G_k [m, n] (all the same shape). Power iteration
    /// from A₀ = I (so B₁ ∝ Σ G_k G_kᵀ), each iterate normalised in Frobenius norm, stopping when both iterates change
    /// by less than <paramref name="tolerance"/> (relative) or after <paramref name="maxIterations"/>. With
    /// <paramref name="regularise"/> the returned A and B are made symmetric positive definite by
    /// <see cref="RegulariseToSpd"/> (recorded); without it they are the raw scaled singular pair.
    /// </summary>
    public static KroneckerFactors Nearest(IReadOnlyList<Tensor<double>> gradients, int maxIterations = 50, double tolerance = 1e-10, bool regularise = true)
    {
        ArgumentNullException.ThrowIfNull(gradients);
        if (gradients.Count == 0) throw new ArgumentException("GFWSVD needs at least one gradient sample");
        int m = gradients[0].Rows, n = gradients[0].Cols;
        foreach (var g in gradients)
            if (g.Shape.Length != 2 || g.Rows != m || g.Cols != n)
                throw new ArgumentException($"gradient samples differ in shape: {g.ShapeString} vs [{m}, {n}]");
        return Nearest(m, n, a => Apply(gradients, a), b => ApplyTransposed(gradients, b), maxIterations, tolerance, regularise);
    }

    /// <summary>
    /// The same power iteration for an operator given by its two actions: <paramref name="apply"/> = T (n×n → m×m) and
    /// <paramref name="applyTransposed"/> = Tᵀ (m×m → n×n); each returns a new tensor the iteration owns. Starts from
    /// <paramref name="start"/> (n×n; I when null). For a Fisher both maps preserve positive semi-definiteness, so a PSD
    /// start keeps every iterate PSD; whatever the start, the result's sign is fixed so that tr(B) &gt; 0.
    /// </summary>
    public static KroneckerFactors Nearest(int m, int n, Func<Tensor<double>, Tensor<double>> apply, Func<Tensor<double>, Tensor<double>> applyTransposed,
        int maxIterations = 50, double tolerance = 1e-10, bool regularise = true, Tensor<double>? start = null)
    {
        ArgumentNullException.ThrowIfNull(apply);
        ArgumentNullException.ThrowIfNull(applyTransposed);
        if (m < 1 || n < 1) throw new ArgumentOutOfRangeException(nameof(m), $"invalid shape [{m}, {n}]");
        if (maxIterations < 1) throw new ArgumentOutOfRangeException(nameof(maxIterations), "at least one iteration is needed");
        if (start is not null && (start.Rows != n || start.Cols != n)) throw new ArgumentException($"start {start.ShapeString} is not [{n}, {n}]");

        var a = start?.Clone() ?? Identity(n);
        Normalise(a, "start");
        Tensor<double>? b = null;
        double sigma = 0, change = double.PositiveInfinity;
        int iterations = 0;
        try
        {
            while (iterations < maxIterations)
            {
                iterations++;
                var bNext = Checked(apply(a), m, "T(A)");
                Tensor<double> aNext;
                try
                {
                    Symmetrise(bNext);
                    Normalise(bNext, "T(A)");
                    aNext = Checked(applyTransposed(bNext), n, "Tᵀ(B)");
                }
                catch
                {
                    bNext.Dispose();
                    throw;
                }
                try
                {
                    Symmetrise(aNext);
                    sigma = Normalise(aNext, "Tᵀ(B)");
                }
                catch
                {
                    aNext.Dispose();
                    bNext.Dispose();
                    throw;
                }
                change = Distance(aNext, a);
                if (b is not null) change = Math.Max(change, Distance(bNext, b));
                a.Dispose();
                b?.Dispose();
                (a, b) = (aNext, bNext);
                if (change < tolerance) break;
            }

            // (−u, −v) is the same singular pair: choose the one with tr(B) > 0 (the reference's svds may return either).
            double sign = Trace(b!) < 0 ? -1 : 1;
            double scale = Math.Sqrt(sigma);
            Scale(a, sign * scale);
            Scale(b!, sign * scale);
            if (!(Trace(a) > 0))
                throw new InvalidOperationException("the Kronecker factors have traces of opposite sign: the operator is not a Fisher (not positive semi-definite)");

            if (!regularise) return new KroneckerFactors(a, b!, sigma, iterations, change);
            var ra = RegulariseToSpd(a, out var infoA);
            try
            {
                var rb = RegulariseToSpd(b!, out var infoB);
                a.Dispose();
                b!.Dispose();
                return new KroneckerFactors(ra, rb, sigma, iterations, change, infoA, infoB);
            }
            catch
            {
                ra.Dispose();
                throw;
            }
        }
        catch
        {
            a.Dispose();
            b?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A symmetric positive-definite version of the symmetric X (a new tensor; X is untouched), following the reference's
    /// rule with scale-free thresholds: Y = X + λ·diag(X) with λ = 1e-6, doubled while λ_min(Y) &lt; −1e-7·λ_max(Y) and
    /// λ &lt; 0.1; then eigenvalues of Y below 1e-10·λ_max(Y) are raised to that floor (Y = V max(Λ, floor) Vᵀ, only if any
    /// were). Throws when λ_max(Y) ≤ 0 (no gradient reached this side).
    /// </summary>
    public static Tensor<double> RegulariseToSpd(Tensor<double> x, out SpdRegularisation info)
    {
        if (x.Shape.Length != 2 || x.Rows != x.Cols) throw new ArgumentException($"expected a square matrix, got {x.ShapeString}");
        int n = x.Rows;
        double lambda = InitialDamping;
        while (true)
        {
            var y = x.Clone();
            for (int i = 0; i < n; i++) y[i, i] += lambda * x[i, i];
            EigenResult<double> eig;
            try
            {
                Symmetrise(y);
                eig = Lapack.SymmetricEigen(y);
            }
            catch
            {
                y.Dispose();
                throw;
            }
            using (eig)
            {
                double max = eig.Values[^1], min = eig.Values[0];
                if (!(max > 0))
                {
                    y.Dispose();
                    throw new ArgumentException($"the Kronecker factor has no positive eigenvalue (λ_max = {max:E3}): no gradient reached this side of the linear");
                }
                if (min < -NegativeTolerance * max && lambda < MaxDamping)
                {
                    y.Dispose();
                    lambda *= 2;
                    continue;
                }
                double floor = RelativeEigenFloor * max;
                int clamped = eig.Values.Count(v => v < floor);
                info = new SpdRegularisation(lambda, clamped, floor, min / max);
                if (clamped == 0) return y;
                y.Dispose();
                // Y = V diag(max(λ, floor)) Vᵀ = (V D^½)(V D^½)ᵀ.
                using var vd = eig.Vectors.Clone();
                DenseMath.ScaleColumns(vd, eig.Values.Select(v => Math.Sqrt(Math.Max(v, floor))).ToArray());
                var z = DenseMath.MatMul(vd, false, vd, true);
                Symmetrise(z);
                return z;
            }
        }
    }

    /// <summary>T(A) = (1/K) Σ G_k A G_kᵀ [m, m].</summary>
    internal static Tensor<double> Apply(IReadOnlyList<Tensor<double>> gradients, Tensor<double> a)
    {
        int m = gradients[0].Rows, n = gradients[0].Cols, count = gradients.Count;
        var result = Tensor<double>.Zeros(m, m);
        using var ga = Tensor<double>.Uninitialized(m, n);
        foreach (var g in gradients)
        {
            Blas.Dgemm(Transpose.No, Transpose.No, m, n, n, 1.0, g.Span, n, a.Span, n, 0.0, ga.Span, n);
            Blas.Dgemm(Transpose.No, Transpose.Yes, m, m, n, 1.0 / count, ga.Span, n, g.Span, n, 1.0, result.Span, m);
        }
        return result;
    }

    /// <summary>Tᵀ(B) = (1/K) Σ G_kᵀ B G_k [n, n].</summary>
    internal static Tensor<double> ApplyTransposed(IReadOnlyList<Tensor<double>> gradients, Tensor<double> b)
    {
        int m = gradients[0].Rows, n = gradients[0].Cols, count = gradients.Count;
        var result = Tensor<double>.Zeros(n, n);
        using var gtb = Tensor<double>.Uninitialized(n, m);
        foreach (var g in gradients)
        {
            Blas.Dgemm(Transpose.Yes, Transpose.No, n, m, m, 1.0, g.Span, n, b.Span, m, 0.0, gtb.Span, m);
            Blas.Dgemm(Transpose.No, Transpose.No, n, n, m, 1.0 / count, gtb.Span, m, g.Span, n, 1.0, result.Span, n);
        }
        return result;
    }

    internal static double Trace(Tensor<double> x)
    {
        double s = 0;
        for (int i = 0; i < x.Rows; i++) s += x[i, i];
        return s;
    }

    private static Tensor<double> Identity(int n)
    {
        var t = Tensor<double>.Zeros(n, n);
        for (int i = 0; i < n; i++) t[i, i] = 1;
        return t;
    }

    private static Tensor<double> Checked(Tensor<double> t, int size, string what)
    {
        if (t.Shape.Length != 2 || t.Rows != size || t.Cols != size)
        {
            var shape = t.ShapeString;
            t.Dispose();
            throw new ArgumentException($"{what} returned {shape}, expected [{size}, {size}]");
        }
        return t;
    }

    /// <summary>Scales x to unit Frobenius norm and returns the norm it had.</summary>
    private static double Normalise(Tensor<double> x, string what)
    {
        double norm = 0;
        foreach (double v in x.Span) norm += v * v;
        norm = Math.Sqrt(norm);
        if (!(norm > 0) || !double.IsFinite(norm))
            throw new ArgumentException($"{what} has Frobenius norm {norm}: the Fisher is zero or not finite (no gradient reached this linear?)");
        Scale(x, 1 / norm);
        return norm;
    }

    private static void Scale(Tensor<double> x, double factor)
    {
        var s = x.Span;
        for (int i = 0; i < s.Length; i++) s[i] *= factor;
    }

    private static double Distance(Tensor<double> x, Tensor<double> y)
    {
        var a = x.Span;
        var b = y.Span;
        double s = 0;
        for (int i = 0; i < a.Length; i++) s += (a[i] - b[i]) * (a[i] - b[i]);
        return Math.Sqrt(s);
    }

    /// <summary>X ← (X + Xᵀ)/2 in place.</summary>
    internal static void Symmetrise(Tensor<double> x)
    {
        int n = x.Rows;
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++)
            {
                double v = 0.5 * (x[i, j] + x[j, i]);
                x[i, j] = v;
                x[j, i] = v;
            }
    }
}
