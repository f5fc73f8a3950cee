using SvdLlm.Numerics;
using static SvdLlm.Numerics.Tests.TestUtil;

namespace SvdLlm.Numerics.Tests;

public class BlasTests
{
    [Theory]
    [InlineData(false, false, 5, 7, 3)]
    [InlineData(false, true, 17, 9, 33)]
    [InlineData(true, false, 8, 65, 4)]
    [InlineData(true, true, 31, 2, 19)]
    public void Dgemm_matches_naive_loop(bool ta, bool tb, int m, int n, int k)
    {
        var rng = new Random(1);
        int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2; // padded leading dimensions exercise strides
        var a = RandomArray(rng, (ta ? k : m) * lda);
        var b = RandomArray(rng, (tb ? n : k) * ldb);
        var c = new double[m * n];
        Blas.Dgemm(ta ? Transpose.Yes : Transpose.No, tb ? Transpose.Yes : Transpose.No, m, n, k, 1.0, a, lda, b, ldb, 0.0, c, n);
        var expected = NaiveMatMul(a, ta, b, tb, m, n, k, lda, ldb);
        Assert.True(MaxAbsDiff(c, expected) < 1e-12 * k, $"max diff {MaxAbsDiff(c, expected)}");
    }

    [Fact]
    public void Sgemm_matches_naive_loop_with_alpha_and_beta()
    {
        var rng = new Random(2);
        int m = 13, n = 11, k = 70;
        var a = RandomFloats(rng, m * k);
        var b = RandomFloats(rng, n * k);
        var c0 = RandomFloats(rng, m * n);
        var c = (float[])c0.Clone();
        Blas.Sgemm(Transpose.No, Transpose.Yes, m, n, k, 0.5f, a, k, b, k, 2f, c, n);
        var expected = NaiveMatMul(a.Select(x => (double)x).ToArray(), false, b.Select(x => (double)x).ToArray(), true, m, n, k, k, k);
        for (int i = 0; i < m * n; i++)
        {
            double e = 0.5 * expected[i] + 2 * c0[i];
            // float32 products of ~1-magnitude inputs summed over k=70 terms: error ≲ k·2⁻²⁴·|terms|.
            Assert.True(Math.Abs(c[i] - e) < 1e-4, $"element {i}: {c[i]} vs {e}");
        }
    }

    [Fact]
    public void Strided_batched_sgemm_equals_separate_calls()
    {
        var rng = new Random(3);
        int m = 4, n = 5, k = 6, batch = 3;
        var a = RandomFloats(rng, batch * m * k);
        var b = RandomFloats(rng, batch * k * n);
        var c = new float[batch * m * n];
        Blas.SgemmStridedBatched(Transpose.No, Transpose.No, m, n, k, 1f, a, k, m * k, b, n, k * n, 0f, c, n, m * n, batch);
        for (int i = 0; i < batch; i++)
        {
            var expected = NaiveMatMul(a.Skip(i * m * k).Take(m * k).Select(x => (double)x).ToArray(), false,
                b.Skip(i * k * n).Take(k * n).Select(x => (double)x).ToArray(), false, m, n, k, k, n);
            for (int j = 0; j < m * n; j++) Assert.True(Math.Abs(c[i * m * n + j] - expected[j]) < 1e-5);
        }
    }

    [Fact]
    public void Gemm_rejects_spans_too_short_for_their_dimensions()
    {
        var a = new float[10];
        var b = new float[12];
        var c = new float[6];
        var e = Assert.Throws<ArgumentException>(() => Blas.Sgemm(Transpose.No, Transpose.No, 2, 3, 6, 1f, a, 6, b, 3, 0f, c, 3));
        Assert.Contains("operand A", e.Message);
        Assert.Throws<ArgumentException>(() => Blas.Sgemm(Transpose.No, Transpose.No, 2, 3, 4, 1f, a, 3, b, 3, 0f, c, 3));
    }

    [Fact]
    public void Dsyrk_lower_triangle_equals_A_At()
    {
        var rng = new Random(4);
        int n = 9, k = 14;
        var a = RandomArray(rng, n * k);
        var c = new double[n * n];
        Blas.Dsyrk(lower: true, Transpose.No, n, k, 1.0, a, k, 0.0, c, n);
        Blas.SymmetrizeFromLower(c, n);
        var expected = NaiveMatMul(a, false, a, true, n, n, k, k, k);
        Assert.True(MaxAbsDiff(c, expected) < 1e-12);

        // Transposed form: Aᵀ·A with A stored as k×n.
        var c2 = new double[n * n];
        var at = RandomArray(rng, k * n);
        Blas.Dsyrk(lower: true, Transpose.Yes, n, k, 1.0, at, n, 0.0, c2, n);
        Blas.SymmetrizeFromLower(c2, n);
        Assert.True(MaxAbsDiff(c2, NaiveMatMul(at, true, at, false, n, n, k, n, n)) < 1e-12);
    }

    [Fact]
    public void Dtrsm_solves_lower_triangular_system()
    {
        var rng = new Random(5);
        int n = 7, nrhs = 3;
        var l = new double[n * n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j <= i; j++) l[i * n + j] = i == j ? 2 + rng.NextDouble() : rng.NextDouble() - 0.5;
        var x = RandomArray(rng, n * nrhs);
        var b = NaiveMatMul(l, false, x, false, n, nrhs, n, n, nrhs);
        Blas.Dtrsm(left: true, lower: true, Transpose.No, unitDiagonal: false, n, nrhs, 1.0, l, n, b, nrhs);
        Assert.True(MaxAbsDiff(b, x) < 1e-12);
    }

    [Fact]
    public void Dtrmm_from_the_right_equals_a_naive_product_that_reads_only_the_lower_triangle()
    {
        var rng = new Random(6);
        int m = 5, n = 7;
        var l = RandomArray(rng, n * n);   // junk above the diagonal must be ignored
        var lower = (double[])l.Clone();
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++) lower[i * n + j] = 0;
        var b = RandomArray(rng, m * n);
        var expected = NaiveMatMul(b, false, lower, false, m, n, n, n, n);
        Blas.Dtrmm(left: false, lower: true, Transpose.No, unitDiagonal: false, m, n, 1.0, l, n, b, n);
        Assert.True(MaxAbsDiff(b, expected) < 1e-12);
    }
}
