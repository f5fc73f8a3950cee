using SvdLlm.Numerics;
using static SvdLlm.Numerics.Tests.TestUtil;

namespace SvdLlm.Numerics.Tests;

/// <summary>The split eigensolver (dsytrd → dsterf | dstemr + dormtr) against dsyevd and against A v = λ v directly.</summary>
public class SymmetricTridiagonalTests
{
    /// <summary>A = Xᵀ X for a random X with decaying columns: symmetric positive semidefinite with a spread spectrum.</summary>
    private static Tensor<double> Gram(int n, int seed, int rank = -1)
    {
        var rng = new Random(seed);
        int t = rank < 0 ? n + 3 : rank;
        var x = new double[t * n];
        for (int i = 0; i < t; i++)
            for (int j = 0; j < n; j++) x[i * n + j] = (rng.NextDouble() - 0.5) * Math.Exp(-j / 7.0);
        var a = NaiveMatMul(x, true, x, false, n, n, t, n, n);
        var g = Tensor<double>.Uninitialized(n, n);
        a.CopyTo(g.Span);
        return g;
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(2, 1)]
    [InlineData(9, 4)]
    [InlineData(40, 40)]
    [InlineData(65, 17)]
    public void Eigenvalues_equal_dsyevd_and_top_vectors_satisfy_A_v_equals_lambda_v(int n, int k)
    {
        using var a = Gram(n, n * 31 + k);
        using var reference = Lapack.SymmetricEigen(a);
        using var t = SymmetricTridiagonal.Reduce(a);
        var all = t.Eigenvalues();
        double scale = reference.Values[^1];
        for (int i = 0; i < n; i++)
            Assert.True(Math.Abs(all[i] - reference.Values[i]) <= 1e-12 * scale, $"λ_{i}: {all[i]} vs dsyevd {reference.Values[i]}");

        using var v = t.TopEigenvectors(k, out var top);
        Assert.Equal(new[] { n, k }, v.Shape);
        var av = NaiveMatMul(a.Span.ToArray(), false, v.Span.ToArray(), false, n, k, n, n, k);
        for (int j = 0; j < k; j++)
        {
            Assert.True(Math.Abs(top[j] - reference.Values[n - 1 - j]) <= 1e-12 * scale, $"top λ_{j}: {top[j]} vs {reference.Values[n - 1 - j]}");
            if (j > 0) Assert.True(top[j - 1] >= top[j], "values must be descending");
            double r = 0;
            for (int i = 0; i < n; i++) r = Math.Max(r, Math.Abs(av[i * k + j] - top[j] * v[i, j]));
            Assert.True(r <= 1e-12 * scale, $"‖A v_{j} − λ v_{j}‖∞ = {r:E2}");
        }
        var vtv = NaiveMatMul(v.Span.ToArray(), true, v.Span.ToArray(), false, k, k, n, k, k);
        Assert.True(MaxAbsDiff(vtv, Identity(k)) < 1e-12, $"VᵀV − I = {MaxAbsDiff(vtv, Identity(k)):E2}");
    }

    [Fact]
    public void Top_subspace_equals_dsyevds_on_a_singular_matrix()
    {
        // Rank 6 of 20: the top-6 eigenvalues are separated from 14 zeros; the projector onto them is unique.
        const int n = 20, k = 6;
        using var a = Gram(n, 5, rank: k);
        using var reference = Lapack.SymmetricEigen(a);
        using var t = SymmetricTridiagonal.Reduce(a);
        using var v = t.TopEigenvectors(k, out _);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                double p = 0, q = 0;
                for (int c = 0; c < k; c++)
                {
                    p += v[i, c] * v[j, c];
                    q += reference.Vectors[i, n - 1 - c] * reference.Vectors[j, n - 1 - c];
                }
                Assert.True(Math.Abs(p - q) < 1e-10, $"projector ({i},{j}): {p} vs dsyevd {q}");
            }
    }

    [Fact]
    public void Serialization_round_trip_is_exact_and_gives_the_same_vectors()
    {
        using var a = Gram(33, 2);
        using var t = SymmetricTridiagonal.Reduce(a);
        using var ms = new MemoryStream();
        t.WriteTo(ms);
        Assert.Equal(SymmetricTridiagonal.SerializedBytes(33), ms.Length);
        ms.Position = 0;
        using var back = SymmetricTridiagonal.ReadFrom(ms, "memory");
        Assert.Equal(t.Diagonal, back.Diagonal);
        Assert.Equal(t.OffDiagonal, back.OffDiagonal);
        using var v1 = t.TopEigenvectors(5, out var l1);
        using var v2 = back.TopEigenvectors(5, out var l2);
        Assert.Equal(l1, l2);
        Assert.Equal(v1.Span.ToArray(), v2.Span.ToArray());
    }

    [Fact]
    public void Refuses_non_finite_input_and_bad_ranks()
    {
        using var a = Gram(4, 1);
        a[2, 1] = double.NaN;
        Assert.Throws<ArgumentException>(() => SymmetricTridiagonal.Reduce(a));
        using var b = Gram(4, 1);
        using var t = SymmetricTridiagonal.Reduce(b);
        Assert.Throws<ArgumentOutOfRangeException>(() => t.TopEigenvectors(5, out _));
        // Order 3 announced, 4 bytes follow: the read must fail, not return zeros.
        using var truncated = new MemoryStream([.. BitConverter.GetBytes(3L), 0, 0, 0, 0]);
        Assert.Throws<EndOfStreamException>(() => SymmetricTridiagonal.ReadFrom(truncated, "x"));
    }
}
