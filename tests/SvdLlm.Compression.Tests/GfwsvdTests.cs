using SvdLlm.Compression.Truncation;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Tests;

/// <summary>
/// GFWSVD (arXiv 2505.17974) against computations that share nothing with the implementation: the Fisher formed
/// explicitly as an [mn, mn] matrix, its Van Loan–Pitsianis rearrangement written index by index, explicit Kronecker
/// products and quadratic forms, and the project's SVD-LLM and FWSVD truncations for the special cases.
/// vec is column-stacking: vec(X)[i + m·j] = X[i, j], and (A ⊗ B)[i + m·j, p + m·l] = A[j, l]·B[i, p].
/// </summary>
public class GfwsvdTests
{
    private static Tensor<double> Random(Random r, int rows, int cols, double scale = 1) => TruncationTests.Random(r, rows, cols, scale);

    /// <summary>M Mᵀ + shift·I, M random: symmetric positive definite with a spread spectrum.</summary>
    private static Tensor<double> RandomSpd(Random r, int n, double shift = 0.1)
    {
        using var m = Random(r, n, n);
        var a = Tensor<double>.Zeros(n, n);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                double s = i == j ? shift : 0;
                for (int p = 0; p < n; p++) s += m[i, p] * m[j, p];
                a[i, j] = s;
            }
        return a;
    }

    private static Tensor<double> Identity(int n)
    {
        var t = Tensor<double>.Zeros(n, n);
        for (int i = 0; i < n; i++) t[i, i] = 1;
        return t;
    }

    private static Tensor<double> Diagonal(double[] d)
    {
        var t = Tensor<double>.Zeros(d.Length, d.Length);
        for (int i = 0; i < d.Length; i++) t[i, i] = d[i];
        return t;
    }

    private static Tensor<double> Scaled(Tensor<double> x, double c)
    {
        var t = x.Clone();
        var s = t.Span;
        for (int i = 0; i < s.Length; i++) s[i] *= c;
        return t;
    }

    /// <summary>A ⊗ B [n·m, n·m] for A [n, n], B [m, m], written out entry by entry.</summary>
    private static Tensor<double> Kron(Tensor<double> a, Tensor<double> b)
    {
        int n = a.Rows, m = b.Rows;
        var k = Tensor<double>.Zeros(n * m, n * m);
        for (int j = 0; j < n; j++)
            for (int l = 0; l < n; l++)
                for (int i = 0; i < m; i++)
                    for (int p = 0; p < m; p++) k[i + m * j, p + m * l] = a[j, l] * b[i, p];
        return k;
    }

    /// <summary>F = (1/K) Σ vec(G_k) vec(G_k)ᵀ [mn, mn].</summary>
    private static Tensor<double> Fisher(IReadOnlyList<Tensor<double>> gradients)
    {
        int m = gradients[0].Rows, n = gradients[0].Cols;
        var f = Tensor<double>.Zeros(m * n, m * n);
        foreach (var g in gradients)
            for (int a = 0; a < m * n; a++)
                for (int b = 0; b < m * n; b++) f[a, b] += g[a % m, a / m] * g[b % m, b / m] / gradients.Count;
        return f;
    }

    /// <summary>
    /// Van Loan–Pitsianis rearrangement R(F) [n², m²]: row (j, l) is vec of the m×m block F_{jl} (block row j, block column l),
    /// so that ‖F − A ⊗ B‖_F = ‖R(F) − vec(A) vec(B)ᵀ‖_F. Row index j·n + l, column index i·m + p.
    /// </summary>
    private static Tensor<double> Rearrange(Tensor<double> f, int m, int n)
    {
        var r = Tensor<double>.Zeros(n * n, m * m);
        for (int j = 0; j < n; j++)
            for (int l = 0; l < n; l++)
                for (int i = 0; i < m; i++)
                    for (int p = 0; p < m; p++) r[j * n + l, i * m + p] = f[i + m * j, p + m * l];
        return r;
    }

    /// <summary>½ vec(ΔW)ᵀ (A ⊗ B) vec(ΔW) with the Kronecker product formed explicitly.</summary>
    private static double SecondOrderLoss(Tensor<double> w, Tensor<double> wApprox, Tensor<double> a, Tensor<double> b)
    {
        int m = w.Rows, n = w.Cols;
        using var k = Kron(a, b);
        var d = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) d[i + m * j] = w[i, j] - wApprox[i, j];
        double q = 0;
        for (int x = 0; x < m * n; x++)
            for (int y = 0; y < m * n; y++) q += d[x] * k[x, y] * d[y];
        return 0.5 * q;
    }

    private static double Norm(Tensor<double> x) => Math.Sqrt(x.Span.ToArray().Sum(v => v * v));

    private static double RelDiff(Tensor<double> x, Tensor<double> y)
    {
        Assert.Equal(x.Shape, y.Shape);
        double d = 0;
        for (int i = 0; i < x.Length; i++) d += Math.Pow(x.Span[i] - y.Span[i], 2);
        return Math.Sqrt(d) / Math.Max(Norm(y), 1e-300);
    }

    private static Tensor<double> Product(Tensor<double> u, Tensor<double> v) => NaiveMath.Mul(u, v);

    private static List<Tensor<double>> RandomGradients(Random r, int m, int n, int count)
    {
        var list = new List<Tensor<double>>();
        for (int k = 0; k < count; k++)
        {
            var g = Random(r, m, n);
            // Anisotropic rows and columns, like real gradients, so that A and B are far from multiples of I.
            for (int i = 0; i < m; i++) for (int j = 0; j < n; j++) g[i, j] *= (1 + i) * (1 + 2 * j);
            list.Add(g);
        }
        return list;
    }

    private static void DisposeAll(IEnumerable<IDisposable> items)
    {
        foreach (var x in items) x.Dispose();
    }

    // ---------- 1. Nearest Kronecker factors ----------

    [Fact]
    public void Gfwsvd_nearest_matches_the_top_singular_pair_of_the_explicit_rearranged_fisher()
    {
        var r = new Random(11);
        int m = 3, n = 2;
        var gradients = RandomGradients(r, m, n, 5);
        try
        {
            using var f = Fisher(gradients);
            using var rf = Rearrange(f, m, n);
            using var svd = Lapack.Svd(rf);
            Assert.True(svd.S[1] < 0.9 * svd.S[0], "test needs a separated top singular value");
            double sigma = svd.S[0], root = Math.Sqrt(sigma);
            using var aRef = Tensor<double>.Zeros(n, n);
            using var bRef = Tensor<double>.Zeros(m, m);
            for (int j = 0; j < n; j++) for (int l = 0; l < n; l++) aRef[j, l] = root * svd.U[j * n + l, 0];
            for (int i = 0; i < m; i++) for (int p = 0; p < m; p++) bRef[i, p] = root * svd.Vt[0, i * m + p];
            double sign = Enumerable.Range(0, m).Sum(i => bRef[i, i]) < 0 ? -1 : 1;
            using var aExpected = Scaled(aRef, sign);
            using var bExpected = Scaled(bRef, sign);

            using var kf = KroneckerFisher.Nearest(gradients, maxIterations: 2000, tolerance: 1e-13, regularise: false);
            Assert.Equal(sigma, kf.Sigma, sigma * 1e-10);
            Assert.True(RelDiff(kf.A, aExpected) < 1e-8, $"A differs by {RelDiff(kf.A, aExpected):E2}");
            Assert.True(RelDiff(kf.B, bExpected) < 1e-8, $"B differs by {RelDiff(kf.B, bExpected):E2}");
            Assert.Null(kf.RegularisationA);
            // The pair is the best Kronecker approximation: ‖F − A⊗B‖² = ‖F‖² − σ₁².
            using var ab = Kron(kf.A, kf.B);
            double residual = 0, total = 0;
            for (int i = 0; i < f.Length; i++) { residual += Math.Pow(f.Span[i] - ab.Span[i], 2); total += f.Span[i] * f.Span[i]; }
            Assert.Equal(total - sigma * sigma, residual, total * 1e-9);
        }
        finally { DisposeAll(gradients); }
    }

    [Fact]
    public void Gfwsvd_nearest_recovers_an_exactly_kronecker_fisher()
    {
        var r = new Random(12);
        int m = 4, n = 3;
        using var aTrue = RandomSpd(r, n);
        using var bTrue = RandomSpd(r, m);
        using var la = Lapack.Cholesky(aTrue);
        using var lb = Lapack.Cholesky(bTrue);
        // G_(i,j) = √(mn)·L_B e_i e_jᵀ L_Aᵀ: vec(G) = (L_A ⊗ L_B)·√(mn)·e, and the mn unit vectors have covariance I/(mn)·mn.
        var gradients = new List<Tensor<double>>();
        try
        {
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    var g = Tensor<double>.Zeros(m, n);
                    for (int p = 0; p < m; p++) for (int q = 0; q < n; q++) g[p, q] = Math.Sqrt(m * n) * lb[p, i] * la[q, j];
                    gradients.Add(g);
                }
            using var f = Fisher(gradients);
            using var expected = Kron(aTrue, bTrue);
            Assert.True(RelDiff(f, expected) < 1e-12, "the construction must give F = A ⊗ B exactly");

            using var kf = KroneckerFisher.Nearest(gradients, regularise: false);
            using var got = Kron(kf.A, kf.B);
            Assert.True(RelDiff(got, expected) < 1e-10, $"A⊗B differs by {RelDiff(got, expected):E2}");
            // (cA, B/c) with c > 0: A is a positive multiple of A_true.
            double c = kf.A[0, 0] / aTrue[0, 0];
            Assert.True(c > 0);
            using var aScaled = Scaled(aTrue, c);
            using var bScaled = Scaled(bTrue, 1 / c);
            Assert.True(RelDiff(kf.A, aScaled) < 1e-10);
            Assert.True(RelDiff(kf.B, bScaled) < 1e-10);
            Assert.True(kf.Iterations <= 3, $"a rank-1 rearrangement converges at once, took {kf.Iterations}");
            Assert.Equal(Norm(expected), kf.Sigma, 1e-10 * kf.Sigma);
        }
        finally { DisposeAll(gradients); }
    }

    [Fact]
    public void Gfwsvd_nearest_fixes_the_sign_and_the_operator_overload_agrees()
    {
        var r = new Random(13);
        int m = 5, n = 4;
        var gradients = RandomGradients(r, m, n, 6);
        try
        {
            using var baseline = KroneckerFisher.Nearest(gradients, maxIterations: 500, tolerance: 1e-12, regularise: false);
            using var minusI = Scaled(Identity(n), -1);
            // Starting from −I every iterate is negative definite: the raw pair is (−A, −B).
            using var flipped = KroneckerFisher.Nearest(m, n, a => KroneckerFisher.Apply(gradients, a), b => KroneckerFisher.ApplyTransposed(gradients, b),
                maxIterations: 500, tolerance: 1e-12, regularise: false, start: minusI);
            Assert.True(KroneckerFisher.Trace(flipped.B) > 0 && KroneckerFisher.Trace(flipped.A) > 0);
            Assert.True(RelDiff(flipped.A, baseline.A) < 1e-9);
            Assert.True(RelDiff(flipped.B, baseline.B) < 1e-9);
            // Symmetric results.
            for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) Assert.Equal(baseline.A[i, j], baseline.A[j, i]);
            for (int i = 0; i < m; i++) for (int j = 0; j < m; j++) Assert.Equal(baseline.B[i, j], baseline.B[j, i]);
        }
        finally { DisposeAll(gradients); }
    }

    [Fact]
    public void Gfwsvd_regularised_factors_are_positive_definite_and_recorded()
    {
        var r = new Random(14);
        int m = 6, n = 5;
        // K = 1 with a rank-1 gradient whose last row and column are zero (a dead output and a dead input): A and B have
        // rank 1; the damping λ·diag(X) lifts the live directions but leaves the dead one at 0, so the clamp must act.
        var gradients = new List<Tensor<double>>();
        try
        {
            var g = Tensor<double>.Zeros(m, n);
            for (int i = 0; i < m - 1; i++) for (int j = 0; j < n - 1; j++) g[i, j] = (i + 1) * (j % 2 == 0 ? 1 : -0.5);
            gradients.Add(g);
            using var raw = KroneckerFisher.Nearest(gradients, regularise: false);
            using var kf = KroneckerFisher.Nearest(gradients);
            Assert.NotNull(kf.RegularisationA);
            Assert.NotNull(kf.RegularisationB);
            Assert.Equal(KroneckerFisher.InitialDamping, kf.RegularisationA!.Damping);
            Assert.Equal(1, kf.RegularisationA.ClampedEigenvalues);
            Assert.Equal(1, kf.RegularisationB!.ClampedEigenvalues);
            using (var eig = Lapack.SymmetricEigen(kf.A))
            {
                Assert.Equal(KroneckerFisher.RelativeEigenFloor * eig.Values[^1], kf.RegularisationA.Floor, 1e-6 * kf.RegularisationA.Floor);
                Assert.True(eig.Values[0] >= kf.RegularisationA.Floor * (1 - 1e-4), $"λ_min(A) = {eig.Values[0]:E3} below the floor");
            }
            Assert.NotNull(kf.RegularisationNote);
            using var ca = Lapack.Cholesky(kf.A);
            using var cb = Lapack.Cholesky(kf.B);
            Assert.True(RelDiff(kf.A, raw.A) < 1e-5 && RelDiff(kf.B, raw.B) < 1e-5, "regularisation must be a small change");
            // The raw factors are singular: the truncation refuses them rather than dividing by zero.
            using var w = Random(r, m, n);
            Assert.Throws<ArgumentException>(() => new GfwsvdTruncation().Truncate(w, 2, new TruncationInputs { Kronecker = raw }));
            // The regularised ones work and the note travels with the factors.
            using var fr = new GfwsvdTruncation().Truncate(w, Math.Min(m, n), new TruncationInputs { Kronecker = kf });
            Assert.Contains("eigenvalues raised", fr.Note);
            using var p = Product(fr.U, fr.V);
            Assert.True(RelDiff(p, w) < 1e-6, $"full rank reproduces W up to the conditioning of the floor, got {RelDiff(p, w):E2}");
        }
        finally { DisposeAll(gradients); }
    }

    // ---------- 2. Closed form ----------

    public static TheoryData<int, int, KroneckerRoot> Shapes() => new()
    {
        { 6, 4, KroneckerRoot.Cholesky }, { 4, 6, KroneckerRoot.Cholesky }, { 5, 5, KroneckerRoot.Cholesky },
        { 6, 4, KroneckerRoot.Symmetric }, { 4, 6, KroneckerRoot.Symmetric }, { 5, 5, KroneckerRoot.Symmetric },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Gfwsvd_full_rank_reproduces_W(int m, int n, KroneckerRoot root)
    {
        var r = new Random(20 + m * 7 + n);
        using var w = Random(r, m, n);
        // Very different A and B (and square W for m = n, where swapping the sides would run but give W2·W1 ≠ W).
        using var kf = new KroneckerFactors(RandomSpd(r, n, 0.05), RandomSpd(r, m, 2), 1, 0, 0);
        using var f = new GfwsvdTruncation(root).Truncate(w, Math.Min(m, n), new TruncationInputs { Kronecker = kf });
        Assert.Equal(m, f.U.Rows);
        Assert.Equal(n, f.V.Cols);
        using var p = Product(f.U, f.V);
        Assert.True(RelDiff(p, w) < 1e-10, $"W_u W_v differs from W by {RelDiff(p, w):E2}");
        Assert.Equal(0, f.TheoreticalLoss, 1e-10 * Norm(w));
        Assert.Equal(GfwsvdTruncation.Objective, f.LossObjective);
    }

    /// <summary>The square case catches a consistent swap of the sides (B on the input, A on the output), which full rank cannot see.</summary>
    [Theory]
    [InlineData(5, 4)]
    [InlineData(4, 4)]
    public void Gfwsvd_loss_is_half_the_tail_and_random_competitors_never_do_better(int m, int n)
    {
        var r = new Random(21 + m + n);
        using var w = Random(r, m, n);
        using var a = RandomSpd(r, n);
        using var b = RandomSpd(r, m);
        using var kf = new KroneckerFactors(a.Clone(), b.Clone(), 1, 0, 0);

        // σ_i² independently: the eigenvalues of A^½ Wᵀ B W A^½ (similar to L_Aᵀ Wᵀ B W L_A).
        using var eigA = Lapack.SymmetricEigen(a);
        using var rootA = Tensor<double>.Zeros(n, n);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                for (int p = 0; p < n; p++) rootA[i, j] += eigA.Vectors[i, p] * Math.Sqrt(eigA.Values[p]) * eigA.Vectors[j, p];
        using var wt = DenseMath.Transposed(w);
        using var bw = NaiveMath.Mul(b, w);
        using var wbw = NaiveMath.Mul(wt, bw);
        using var left = NaiveMath.Mul(rootA, wbw);
        using var gram = NaiveMath.Mul(left, rootA);
        using var eig = Lapack.SymmetricEigen(gram);
        var sigma2 = eig.Values.OrderByDescending(x => x).ToArray();

        var truncation = new GfwsvdTruncation();
        for (int rank = 1; rank < Math.Min(m, n); rank++)
        {
            using var f = truncation.Truncate(w, rank, new TruncationInputs { Kronecker = kf });
            using var wp = Product(f.U, f.V);
            double loss = SecondOrderLoss(w, wp, a, b);
            double tail = 0.5 * sigma2.Skip(rank).Sum();
            Assert.Equal(tail, loss, 1e-10 * tail);
            Assert.Equal(tail, 0.5 * f.TheoreticalLoss * f.TheoreticalLoss, 1e-10 * tail);

            for (int trial = 0; trial < 100; trial++)
            {
                using var u = Random(r, m, rank, 2);
                using var v = Random(r, rank, n, 2);
                using var competitor = Product(u, v);
                Assert.True(SecondOrderLoss(w, competitor, a, b) >= loss * (1 - 1e-12));
            }
            // Local perturbations of the optimal factors (what ALS or gradient descent would try) never help either.
            foreach (double eps in new[] { 1e-2, 1e-4 })
                for (int trial = 0; trial < 20; trial++)
                {
                    using var du = Random(r, m, rank, eps);
                    using var dv = Random(r, rank, n, eps);
                    using var u = f.U.Clone();
                    using var v = f.V.Clone();
                    for (int i = 0; i < u.Length; i++) u.Span[i] += du.Span[i];
                    for (int i = 0; i < v.Length; i++) v.Span[i] += dv.Span[i];
                    using var perturbed = Product(u, v);
                    Assert.True(SecondOrderLoss(w, perturbed, a, b) >= loss * (1 - 1e-12));
                }
        }
    }

    [Fact]
    public void Gfwsvd_truncate_at_ranks_equals_truncate()
    {
        var r = new Random(22);
        int m = 7, n = 5;
        using var w = Random(r, m, n);
        using var kf = new KroneckerFactors(RandomSpd(r, n), RandomSpd(r, m), 1, 0, 0);
        var inputs = new TruncationInputs { Kronecker = kf };
        var t = new GfwsvdTruncation();
        var all = t.TruncateAtRanks(w, [1, 3, 5], inputs).ToList();
        try
        {
            foreach (var (k, f) in new[] { 1, 3, 5 }.Zip(all))
            {
                using var single = t.Truncate(w, k, inputs);
                Assert.Equal(k, f.Rank);
                using var p1 = Product(f.U, f.V);
                using var p2 = Product(single.U, single.V);
                Assert.True(RelDiff(p1, p2) < 1e-14);
            }
        }
        finally { DisposeAll(all); }
    }

    // ---------- 3. Reductions ----------

    [Fact]
    public void Gfwsvd_with_B_identity_and_A_gram_is_svdllm()
    {
        var r = new Random(30);
        int m = 8, n = 6;
        using var w = Random(r, m, n);
        using var c = TruncationTests.Gram(r, n, 40, deficient: false);
        using var kf = new KroneckerFactors(c.Clone(), Identity(m), 1, 0, 0);
        AssertSameTruncations(w, kf, new CholeskyWhiteningTruncation(), new TruncationInputs { Gram = c }, [1, 3, 5, 6]);
    }

    /// <summary>GFWSVD with <paramref name="kf"/> and <paramref name="oracle"/> give the same W' and loss at every rank, to 1e-10.</summary>
    private static void AssertSameTruncations(Tensor<double> w, KroneckerFactors kf, ITruncation oracle, TruncationInputs oracleInputs, int[] ranks)
    {
        foreach (int k in ranks)
        {
            using var g = new GfwsvdTruncation().Truncate(w, k, new TruncationInputs { Kronecker = kf });
            using var s = oracle.Truncate(w, k, oracleInputs);
            using var pg = g.Product();
            using var ps = s.Product();
            Assert.True(RelDiff(pg, ps) < 1e-10, $"k = {k}: products differ by {RelDiff(pg, ps):E2}");
            Assert.Equal(s.TheoreticalLoss, g.TheoreticalLoss, 1e-10 * Math.Max(1, s.TheoreticalLoss));
        }
    }

    [Fact]
    public void Gfwsvd_with_B_row_fisher_and_A_identity_is_fwsvd()
    {
        var r = new Random(31);
        int m = 7, n = 9;
        using var w = Random(r, m, n);
        var fisher = Enumerable.Range(0, m).Select(i => 0.05 + 10 * r.NextDouble() * (i + 1)).ToArray();
        using var kf = new KroneckerFactors(Identity(n), Diagonal(fisher), 1, 0, 0);
        AssertSameTruncations(w, kf, new FisherWeightedTruncation(), new TruncationInputs { FisherRowSums = fisher }, [1, 2, 4, 7]);
    }

    // ---------- 4. Invariances ----------

    [Fact]
    public void Gfwsvd_is_invariant_to_the_scale_and_sign_of_the_pair_and_to_the_root()
    {
        var r = new Random(40);
        int m = 6, n = 5;
        using var w = Random(r, m, n);
        using var a = RandomSpd(r, n);
        using var b = RandomSpd(r, m);
        using var kf = new KroneckerFactors(a.Clone(), b.Clone(), 1, 0, 0);
        foreach (int k in new[] { 1, 2, 4 })
        {
            using var baseF = new GfwsvdTruncation().Truncate(w, k, new TruncationInputs { Kronecker = kf });
            using var basePr = baseF.Product();
            foreach (double c in new[] { 1e-3, 7.0, -1.0, -250.0 })
            {
                using var scaled = new KroneckerFactors(Scaled(a, c), Scaled(b, 1 / c), 1, 0, 0);
                using var f = new GfwsvdTruncation().Truncate(w, k, new TruncationInputs { Kronecker = scaled });
                using var p = f.Product();
                Assert.True(RelDiff(p, basePr) < 1e-10, $"k = {k}, c = {c}: {RelDiff(p, basePr):E2}");
                if (c < 0) Assert.Contains("negated", f.Note);
            }
            using var sym = new GfwsvdTruncation(KroneckerRoot.Symmetric).Truncate(w, k, new TruncationInputs { Kronecker = kf });
            using var ps = sym.Product();
            Assert.True(RelDiff(ps, basePr) < 1e-10, $"k = {k}: Cholesky and symmetric roots differ by {RelDiff(ps, basePr):E2}");
            Assert.Equal(baseF.TheoreticalLoss, sym.TheoreticalLoss, 1e-10 * Math.Max(1, baseF.TheoreticalLoss));
        }
    }

    [Fact]
    public void Gfwsvd_rejects_missing_mismatched_or_mixed_sign_factors()
    {
        var r = new Random(41);
        using var w = Random(r, 4, 3);
        var t = new GfwsvdTruncation();
        Assert.Throws<ArgumentException>(() => t.Truncate(w, 1, new TruncationInputs()));
        using (var swapped = new KroneckerFactors(Identity(4), Identity(3), 1, 0, 0))
            Assert.Throws<ArgumentException>(() => t.Truncate(w, 1, new TruncationInputs { Kronecker = swapped }));
        using (var mixed = new KroneckerFactors(Scaled(Identity(3), -1), Identity(4), 1, 0, 0))
            Assert.Throws<ArgumentException>(() => t.Truncate(w, 1, new TruncationInputs { Kronecker = mixed }));
    }

    // ---------- 5. End to end on gradients ----------

    [Fact]
    public void Gfwsvd_end_to_end_from_gradients_beats_fwsvd_on_the_kronecker_loss()
    {
        var r = new Random(50);
        int m = 6, n = 5;
        var gradients = RandomGradients(r, m, n, 8);
        try
        {
            using var kf = KroneckerFisher.Nearest(gradients, maxIterations: 500);
            Assert.True(kf.RelativeChange < 1e-10, $"power iteration did not converge: {kf.RelativeChange:E2} after {kf.Iterations}");
            using var w = Random(r, m, n);
            var rowFisher = Enumerable.Range(0, m).Select(i => gradients.Sum(g => Enumerable.Range(0, n).Sum(j => g[i, j] * g[i, j]))).ToArray();
            for (int k = 1; k < Math.Min(m, n); k++)
            {
                using var g = new GfwsvdTruncation().Truncate(w, k, new TruncationInputs { Kronecker = kf });
                using var fw = new FisherWeightedTruncation().Truncate(w, k, new TruncationInputs { FisherRowSums = rowFisher });
                using var pg = g.Product();
                using var pf = fw.Product();
                double lg = SecondOrderLoss(w, pg, kf.A, kf.B), lf = SecondOrderLoss(w, pf, kf.A, kf.B);
                Assert.Equal(0.5 * g.TheoreticalLoss * g.TheoreticalLoss, lg, 1e-9 * Math.Max(lg, 1e-12));
                Assert.True(lg <= lf * (1 + 1e-12), $"k = {k}: GFWSVD {lg:E4} > FWSVD {lf:E4} on the Kronecker loss");
            }
        }
        finally { DisposeAll(gradients); }
    }
}
