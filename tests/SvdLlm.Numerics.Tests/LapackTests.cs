using SvdLlm.Numerics;
using static SvdLlm.Numerics.Tests.TestUtil;

namespace SvdLlm.Numerics.Tests;

public class LapackTests
{
    [Theory]
    [InlineData(12, 5)]
    [InlineData(5, 12)]
    [InlineData(9, 9)]
    [InlineData(1, 4)]
    public void Svd_reconstructs_and_factors_are_orthonormal(int m, int n)
    {
        var rng = new Random(m * 100 + n);
        using var a = RandomMatrix(rng, m, n);
        using var svd = Lapack.Svd(a);
        int k = Math.Min(m, n);
        Assert.Equal(new[] { m, k }, svd.U.Shape);
        Assert.Equal(new[] { k, n }, svd.Vt.Shape);
        for (int i = 1; i < k; i++) Assert.True(svd.S[i - 1] >= svd.S[i]);
        Assert.All(svd.S, s => Assert.True(s >= 0));

        // U·diag(S)·Vt = A
        var us = svd.U.Span.ToArray();
        for (int i = 0; i < m; i++) for (int j = 0; j < k; j++) us[i * k + j] *= svd.S[j];
        var rebuilt = NaiveMatMul(us, false, svd.Vt.Span.ToArray(), false, m, n, k, k, n);
        Assert.True(MaxAbsDiff(rebuilt, a.Span) < 1e-12, $"reconstruction error {MaxAbsDiff(rebuilt, a.Span)}");

        // UᵀU = I and Vt·Vtᵀ = I
        var utu = NaiveMatMul(svd.U.Span.ToArray(), true, svd.U.Span.ToArray(), false, k, k, m, k, k);
        var vvt = NaiveMatMul(svd.Vt.Span.ToArray(), false, svd.Vt.Span.ToArray(), true, k, k, n, n, n);
        Assert.True(MaxAbsDiff(utu, Identity(k)) < 1e-12);
        Assert.True(MaxAbsDiff(vvt, Identity(k)) < 1e-12);
    }

    [Fact]
    public void Svd_recovers_a_known_spectrum()
    {
        // A = Q1·diag(σ)·Q2ᵀ built from orthonormal factors of other SVDs: the singular values must come back.
        var rng = new Random(7);
        int n = 6;
        using var q1 = Lapack.Svd(RandomMatrix(rng, n, n));
        using var q2 = Lapack.Svd(RandomMatrix(rng, n, n));
        double[] sigma = [10, 5, 3, 1, 0.5, 1e-3];
        var left = q1.U.Span.ToArray();
        for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) left[i * n + j] *= sigma[j];
        using var a = Tensor<double>.From(NaiveMatMul(left, false, q2.Vt.Span.ToArray(), false, n, n, n, n, n), n, n);
        using var svd = Lapack.Svd(a);
        for (int i = 0; i < n; i++) Assert.Equal(sigma[i], svd.S[i], 1e-12);
    }

    [Fact]
    public void Float_svd_reconstructs_within_float_precision()
    {
        var rng = new Random(8);
        int m = 20, n = 11;
        using var a = Tensor<float>.From(RandomFloats(rng, m * n), m, n);
        using var svd = Lapack.Svd(a);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int p = 0; p < n; p++) s += (double)svd.U[i, p] * svd.S[p] * svd.Vt[p, j];
                Assert.True(Math.Abs(s - a[i, j]) < 1e-5, $"[{i},{j}] {s} vs {a[i, j]}");
            }
    }

    [Theory]
    [InlineData(10)]
    [InlineData(75)]   // more than two 32×32 transpose tiles, with a partial one
    public void SymmetricEigen_pairs_satisfy_Cv_equals_lambda_v(int n)
    {
        var rng = new Random(9);
        var x = RandomArray(rng, n * 25);
        using var c = Tensor<double>.From(NaiveMatMul(x, false, x, true, n, n, 25, 25, 25), n, n);
        using var eig = Lapack.SymmetricEigen(c);
        for (int i = 1; i < n; i++) Assert.True(eig.Values[i - 1] <= eig.Values[i]);
        var v = eig.Vectors.Span.ToArray();
        var cv = NaiveMatMul(c.Span.ToArray(), false, v, false, n, n, n, n, n);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                Assert.True(Math.Abs(cv[i * n + j] - eig.Values[j] * v[i * n + j]) < 1e-10, $"C v_{j} ≠ λ v_{j} at row {i}");
        Assert.True(MaxAbsDiff(NaiveMatMul(v, true, v, false, n, n, n, n, n), Identity(n)) < 1e-12);
        // The trace is the sum of eigenvalues.
        double trace = 0;
        for (int i = 0; i < n; i++) trace += c[i, i];
        Assert.Equal(trace, eig.Values.Sum(), 1e-9);
    }

    [Fact]
    public void SymmetricEigen_reads_only_the_lower_triangle()
    {
        var rng = new Random(10);
        int n = 5;
        var x = RandomArray(rng, n * 8);
        using var c = Tensor<double>.From(NaiveMatMul(x, false, x, true, n, n, 8, 8, 8), n, n);
        using var garbled = c.Clone();
        for (int i = 0; i < n; i++) for (int j = i + 1; j < n; j++) garbled[i, j] = 1e6; // upper triangle is junk
        using var e1 = Lapack.SymmetricEigen(c);
        using var e2 = Lapack.SymmetricEigen(garbled);
        for (int i = 0; i < n; i++) Assert.Equal(e1.Values[i], e2.Values[i], 1e-9);
    }

    [Fact]
    public void Cholesky_reconstructs_and_is_lower_triangular()
    {
        var rng = new Random(11);
        int n = 8;
        var x = RandomArray(rng, n * 20);
        using var c = Tensor<double>.From(NaiveMatMul(x, false, x, true, n, n, 20, 20, 20), n, n);
        using var l = Lapack.Cholesky(c);
        for (int i = 0; i < n; i++) for (int j = i + 1; j < n; j++) Assert.Equal(0.0, l[i, j]);
        var llt = NaiveMatMul(l.Span.ToArray(), false, l.Span.ToArray(), true, n, n, n, n, n);
        Assert.True(MaxAbsDiff(llt, c.Span) < 1e-12);
    }

    [Fact]
    public void Cholesky_of_indefinite_matrix_throws_with_routine_and_minor()
    {
        using var c = Tensor<double>.From([1, 0, 0, 0, -1, 0, 0, 0, 1], 3, 3);
        var e = Assert.Throws<LapackException>(() => Lapack.Cholesky(c));
        Assert.Equal("dpotrf", e.Routine);
        Assert.Equal(2, e.Info);
        Assert.Contains("not positive definite", e.Message);
    }

    [Fact]
    public void Cholesky_of_rank_deficient_gram_fails_loudly()
    {
        // An input feature that is always zero → singular C with an exactly zero pivot: the case SVD-LLM's
        // Cholesky needs jitter for. (A duplicated feature is singular too, but rounding may leave a tiny
        // positive pivot, so whether dpotrf fails on it is not something a test can promise.)
        var rng = new Random(12);
        int n = 4, t = 30;
        var x = RandomArray(rng, n * t);
        for (int j = 0; j < t; j++) x[2 * t + j] = 0;
        using var c = Tensor<double>.From(NaiveMatMul(x, false, x, true, n, n, t, t, t), n, n);
        Assert.Throws<LapackException>(() => Lapack.Cholesky(c));
    }

    [Fact]
    public void Solve_satisfies_AX_equals_B_and_rejects_singular()
    {
        var rng = new Random(13);
        int n = 6, r = 2;
        using var a = RandomMatrix(rng, n, n);
        using var b = RandomMatrix(rng, n, r);
        using var x = Lapack.Solve(a, b);
        var ax = NaiveMatMul(a.Span.ToArray(), false, x.Span.ToArray(), false, n, r, n, n, r);
        Assert.True(MaxAbsDiff(ax, b.Span) < 1e-10);

        using var singular = Tensor<double>.From([1, 2, 2, 4], 2, 2);
        using var rhs = Tensor<double>.From([1, 1], 2, 1);
        var e = Assert.Throws<LapackException>(() => Lapack.Solve(singular, rhs));
        Assert.Equal("dgesv", e.Routine);
        Assert.Contains("singular", e.Message);
    }

    [Fact]
    public void Non_finite_input_is_refused_before_LAPACK()
    {
        using var a = Tensor<double>.From([1, double.NaN, 3, 4], 2, 2);
        var e = Assert.Throws<ArgumentException>(() => Lapack.Svd(a));
        Assert.Contains("dgesdd", e.Message);
        Assert.Throws<ArgumentException>(() => Lapack.SymmetricEigen(a));
        Assert.Throws<ArgumentException>(() => Lapack.Cholesky(a));
    }

    [Fact]
    public void Illegal_argument_info_names_the_argument()
    {
        var e = Assert.Throws<LapackException>(() => Lapack.Check("dgesdd", -12, ["JOBZ", "M", "N", "A", "LDA", "S", "U", "LDU", "VT", "LDVT", "WORK", "LWORK"], "test"));
        Assert.Contains("argument 12 (LWORK)", e.Message);
        Assert.Equal(-12, e.Info);
    }

    [Theory]
    [InlineData(4096.0, 4096)]
    [InlineData(4095.2, 4096)]
    [InlineData(0.0, 1)]
    public void Workspace_sizes_round_up(double query, int atLeast)
        => Assert.True(Lapack.RoundUpWorkspace(query) >= atLeast);

    [Fact]
    public void Workspace_from_a_float_query_is_not_truncated()
    {
        // 16777217 is not representable in float32; the query comes back as 16777216: padding must cover the lost unit.
        float q = 16777217f;
        Assert.True(Lapack.RoundUpWorkspace(q) >= 16777217);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void InvertTriangular_gives_the_inverse_and_keeps_the_triangle(bool upper)
    {
        const int n = 37;
        var r = new Random(11);
        using var t = Tensor<double>.Zeros(n, n);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                if (upper ? j >= i : j <= i) t[i, j] = i == j ? 1 + r.NextDouble() : r.NextDouble() - 0.5;
        using var inv = t.Clone();
        Lapack.InvertTriangular(inv, upper);
        // T·T⁻¹ = I by a naive product; T⁻¹ is triangular on the same side.
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int k = 0; k < n; k++) s += t[i, k] * inv[k, j];
                Assert.Equal(i == j ? 1.0 : 0.0, s, 1e-10);
                if (upper ? j < i : j > i) Assert.Equal(0.0, inv[i, j]);
            }
        using var singular = t.Clone();
        singular[5, 5] = 0;
        Assert.Equal(6, Assert.Throws<LapackException>(() => Lapack.InvertTriangular(singular, upper)).Info);
    }
}
