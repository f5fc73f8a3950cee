using SvdLlm.Numerics;

namespace SvdLlm.Compression.Truncation;

/// <summary>How <see cref="GfwsvdTruncation"/> factors A and B: X = L Lᵀ.</summary>
public enum KroneckerRoot
{
    /// <summary>L lower triangular (dpotrf); inverses applied by triangular solves.</summary>
    Cholesky,

    /// <summary>L = X^½ = V Λ^½ Vᵀ (dsyevd); X^{-½} = V Λ^{-½} Vᵀ from the same eigendecomposition.</summary>
    Symmetric,
}

/// <summary>
/// GFWSVD (Chekalina et al., arXiv 2505.17974) with the Fisher F ≈ A ⊗ B from <see cref="TruncationInputs.Kronecker"/>
/// (A [n, n] input side, B [m, m] output side, both symmetric positive definite). With B = L_B L_Bᵀ, A = L_A L_Aᵀ the
/// second-order loss ½ vec(ΔW)ᵀ(A⊗B)vec(ΔW) is ½‖L_Bᵀ ΔW L_A‖²_F, so the weighted rank-k problem has the closed form
/// W̃ = L_Bᵀ W L_A = U Σ Vᵀ, W_u = L_B^{-ᵀ} U_k Σ_k^½ [m, k], W_v = Σ_k^½ V_kᵀ L_A^{-1} [k, n]; the theoretical loss is
/// ‖L_Bᵀ(W − W')L_A‖_F = sqrt(Σ_{i&gt;k} σ_i²) (the second-order loss is half its square). The sides are consistent by
/// construction: at k = min(m, n) W_u W_v = W. Factors with tr(A) &lt; 0 and tr(B) &lt; 0 (the singular pair with the other
/// sign) are negated first, which leaves A ⊗ B unchanged.
/// </summary>
public sealed class GfwsvdTruncation(KroneckerRoot root = KroneckerRoot.Cholesky) : ITruncation
{
    public const string Objective = "‖L_Bᵀ(W−W')L_A‖_F";

    public string Name => "gfwsvd";
    public KroneckerRoot Root { get; } = root;

    public LowRankFactors Truncate(Tensor<double> w, int k, TruncationInputs inputs) => TruncateAtRanks(w, [k], inputs).Single();

    /// <summary>W̃ does not depend on k: factored and decomposed once, then split at every rank.</summary>
    public IEnumerable<LowRankFactors> TruncateAtRanks(Tensor<double> w, IReadOnlyList<int> ranks, TruncationInputs inputs)
    {
        foreach (int k in ranks) Ranks.Check(w, k);
        var kron = inputs.Kronecker ?? throw new ArgumentException("GFWSVD needs the Kronecker factors A ⊗ B of the linear's Fisher");
        int m = w.Rows, n = w.Cols;
        if (kron.A.Rows != n || kron.A.Cols != n) throw new ArgumentException($"A {kron.A.ShapeString} (input side) does not match W {w.ShapeString}: expected [{n}, {n}]");
        if (kron.B.Rows != m || kron.B.Cols != m) throw new ArgumentException($"B {kron.B.ShapeString} (output side) does not match W {w.ShapeString}: expected [{m}, {m}]");

        double trA = KroneckerFisher.Trace(kron.A), trB = KroneckerFisher.Trace(kron.B);
        if ((trA < 0) != (trB < 0)) throw new ArgumentException($"tr(A) = {trA:E3} and tr(B) = {trB:E3} differ in sign: A ⊗ B is not a Fisher");
        double sign = trA < 0 ? -1 : 1;
        string? note = kron.RegularisationNote;
        if (sign < 0) note = (note is null ? "" : note + "; ") + "A and B both negative definite: negated (A ⊗ B unchanged)";

        using var la = SideRoot.Create(kron.A, sign, Root, "A");
        using var lb = SideRoot.Create(kron.B, sign, Root, "B");
        using var wt = w.Clone();
        la.MultiplyRight(wt);
        lb.MultiplyLeftTransposed(wt);
        using var svd = Lapack.Svd(wt);
        var result = new List<LowRankFactors>(ranks.Count);
        try
        {
            foreach (int k in ranks)
            {
                var f = PlainSvdTruncation.SplitSqrt(svd, k, DenseMath.TailNorm(svd.S, k), Objective, note);
                result.Add(f);
                lb.SolveLeftTransposed(f.U);
                la.SolveRight(f.V);
            }
        }
        catch
        {
            foreach (var f in result) f.Dispose();
            throw;
        }
        return result;
    }

    /// <summary>L with X = L Lᵀ for one side, and the four products the closed form needs.</summary>
    private sealed class SideRoot : IDisposable
    {
        private readonly Tensor<double> _l;
        private readonly Tensor<double>? _inverse;

        private SideRoot(Tensor<double> l, Tensor<double>? inverse)
        {
            _l = l;
            _inverse = inverse;
        }

        private bool Triangular => _inverse is null;

        public static SideRoot Create(Tensor<double> x, double sign, KroneckerRoot root, string name)
        {
            using var xs = x.Clone();
            if (sign < 0)
            {
                var s = xs.Span;
                for (int i = 0; i < s.Length; i++) s[i] = -s[i];
            }
            KroneckerFisher.Symmetrise(xs);
            if (root == KroneckerRoot.Cholesky)
            {
                try
                {
                    return new SideRoot(Lapack.Cholesky(xs), null);
                }
                catch (LapackException e) when (e.Info > 0)
                {
                    throw new ArgumentException($"GFWSVD: {name} is not positive definite (Cholesky failed at minor {e.Info}); regularise it with KroneckerFisher.RegulariseToSpd", e);
                }
            }
            using var eig = Lapack.SymmetricEigen(xs);
            if (!(eig.Values[0] > 0))
                throw new ArgumentException($"GFWSVD: {name} is not positive definite (λ_min = {eig.Values[0]:E3}); regularise it with KroneckerFisher.RegulariseToSpd");
            using var vr = eig.Vectors.Clone();
            using var vi = eig.Vectors.Clone();
            DenseMath.ScaleColumns(vr, eig.Values.Select(Math.Sqrt).ToArray());
            DenseMath.ScaleColumns(vi, eig.Values.Select(v => 1 / Math.Sqrt(v)).ToArray());
            var l = DenseMath.MatMul(vr, false, eig.Vectors, true);
            var inverse = DenseMath.MatMul(vi, false, eig.Vectors, true);
            return new SideRoot(l, inverse);
        }

        /// <summary>y ← y·L.</summary>
        public void MultiplyRight(Tensor<double> y)
        {
            if (Triangular) Blas.Dtrmm(left: false, lower: true, Transpose.No, unitDiagonal: false, y.Rows, y.Cols, 1.0, _l.Span, _l.Cols, y.Span, y.Cols);
            else Replace(y, DenseMath.MatMul(y, false, _l, false));
        }

        /// <summary>y ← Lᵀ·y.</summary>
        public void MultiplyLeftTransposed(Tensor<double> y)
        {
            if (Triangular) Blas.Dtrmm(left: true, lower: true, Transpose.Yes, unitDiagonal: false, y.Rows, y.Cols, 1.0, _l.Span, _l.Cols, y.Span, y.Cols);
            else Replace(y, DenseMath.MatMul(_l, true, y, false));
        }

        /// <summary>y ← L^{-ᵀ}·y.</summary>
        public void SolveLeftTransposed(Tensor<double> y)
        {
            if (Triangular) Blas.Dtrsm(left: true, lower: true, Transpose.Yes, unitDiagonal: false, y.Rows, y.Cols, 1.0, _l.Span, _l.Cols, y.Span, y.Cols);
            else Replace(y, DenseMath.MatMul(_inverse!, true, y, false));
        }

        /// <summary>y ← y·L^{-1}.</summary>
        public void SolveRight(Tensor<double> y)
        {
            if (Triangular) Blas.Dtrsm(left: false, lower: true, Transpose.No, unitDiagonal: false, y.Rows, y.Cols, 1.0, _l.Span, _l.Cols, y.Span, y.Cols);
            else Replace(y, DenseMath.MatMul(y, false, _inverse!, false));
        }

        private static void Replace(Tensor<double> target, Tensor<double> value)
        {
            using (value) value.Span.CopyTo(target.Span);
        }

        public void Dispose()
        {
            _l.Dispose();
            _inverse?.Dispose();
        }
    }
}
