using SvdLlm.Compression;
using SvdLlm.Compression.Truncation;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Tests;

/// <summary>
/// Each truncation against what the mathematics guarantees, on synthetic matrices: Eckart–Young for the
/// objective each method minimises, SVD-LLM's and V2's theorem (theoretical = measured loss), and the
/// fact that both whitening methods find the same optimum when C is positive definite.
/// </summary>
public class TruncationTests
{
    internal static Tensor<double> Random(Random r, int rows, int cols, double scale = 1)
    {
        var t = Tensor<double>.Uninitialized(rows, cols);
        var s = t.Span;
        for (int i = 0; i < s.Length; i++) s[i] = (r.NextDouble() * 2 - 1) * scale;
        return t;
    }

    /// <summary>W = Q₁ diag(σ) Q₂ᵀ with orthonormal Q from SVDs of random matrices.</summary>
    internal static Tensor<double> WithSpectrum(Random r, int m, int n, double[] sigma)
    {
        using var a = Random(r, m, m);
        using var b = Random(r, n, n);
        using var qa = Lapack.Svd(a);
        using var qb = Lapack.Svd(b);
        var w = Tensor<double>.Zeros(m, n);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int p = 0; p < sigma.Length; p++) s += qa.U[i, p] * sigma[p] * qb.U[j, p];
                w[i, j] = s;
            }
        return w;
    }

    /// <summary>C = X Xᵀ for X [n, tokens]; optional rank deficiency: feature 1 duplicates feature 0, feature 2 is always zero.</summary>
    internal static Tensor<double> Gram(Random r, int n, int tokens, bool deficient)
    {
        using var x = Random(r, n, tokens, 2);
        if (deficient)
            for (int t = 0; t < tokens; t++) { x[1, t] = x[0, t]; x[2, t] = 0; }
        // Anisotropic features, like real activations: some channels much larger than others.
        for (int i = 0; i < n; i++) for (int t = 0; t < tokens; t++) x[i, t] *= 1 + 4 * (i % 3);
        var c = Tensor<double>.Zeros(n, n);
        Blas.Dgemm(Transpose.No, Transpose.Yes, n, n, tokens, 1, x.Span, tokens, x.Span, tokens, 0, c.Span, n);
        return c;
    }

    private static double Relative(double a, double b) => Math.Abs(a - b) / Math.Max(Math.Abs(b), 1e-300);

    [Fact]
    public void Plain_svd_is_the_best_rank_k_approximation()
    {
        var r = new Random(1);
        double[] sigma = [9, 7, 5, 3, 2, 1, 0.5, 0.1];
        using var w = WithSpectrum(r, 10, 8, sigma);
        using var f = new PlainSvdTruncation().Truncate(w, 3, new TruncationInputs());
        using var wp = f.Product();
        double err = 0;
        for (int i = 0; i < w.Length; i++) err += Math.Pow(w.Span[i] - wp.Span[i], 2);
        double tail = Math.Sqrt(sigma.Skip(3).Sum(s => s * s));
        Assert.Equal(tail, Math.Sqrt(err), 1e-10);
        Assert.Equal(tail, f.TheoreticalLoss, 1e-10);
        Assert.Equal(3, f.Rank);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void V2_measured_loss_equals_its_theoretical_loss(bool rankDeficient)
    {
        var r = new Random(2);
        int m = 12, n = 10;
        using var w = Random(r, m, n);
        using var c = Gram(r, n, 40, rankDeficient);
        foreach (int k in new[] { 1, 4, 7 })
        {
            using var f = new EigenWhiteningTruncation().Truncate(w, k, new TruncationInputs { Gram = c });
            using var wp = f.Product();
            double measured = DenseMath.MeasuredLoss(w, wp, c);
            Assert.True(Relative(measured, f.TheoreticalLoss) < 1e-6, $"k={k}: measured {measured}, theoretical {f.TheoreticalLoss}");
            Assert.All(wp.Span.ToArray(), v => Assert.True(double.IsFinite(v)));
            if (rankDeficient) Assert.Contains("treated as zero", f.Note);
        }
    }

    [Fact]
    public void Svd_llm_theorem_holds_and_matches_v2_when_C_is_positive_definite()
    {
        var r = new Random(3);
        int m = 9, n = 7, k = 3;
        using var w = Random(r, m, n);
        using var c = Gram(r, n, 50, deficient: false);
        using var v1 = new CholeskyWhiteningTruncation().Truncate(w, k, new TruncationInputs { Gram = c });
        using var v2 = new EigenWhiteningTruncation().Truncate(w, k, new TruncationInputs { Gram = c });
        using var p1 = v1.Product();
        using var p2 = v2.Product();
        Assert.Null(v1.Note);
        Assert.True(Relative(DenseMath.MeasuredLoss(w, p1, c), v1.TheoreticalLoss) < 1e-8);
        // Both minimise ‖(W − W')X‖_F over rank k; the minimiser is unique, so the products agree.
        for (int i = 0; i < p1.Length; i++) Assert.Equal(p2.Span[i], p1.Span[i], 1e-8);
    }

    [Fact]
    public void Svd_llm_needs_jitter_on_a_singular_gram_and_records_it()
    {
        var r = new Random(4);
        using var w = Random(r, 8, 6);
        using var c = Gram(r, 6, 30, deficient: true);
        using var f = new CholeskyWhiteningTruncation().Truncate(w, 3, new TruncationInputs { Gram = c });
        Assert.NotNull(f.Note);
        Assert.Contains("not positive definite", f.Note);
        using var p = f.Product();
        Assert.All(p.Span.ToArray(), v => Assert.True(double.IsFinite(v)));
        // V2 handles the same Gram exactly, and is at least as good.
        using var v2 = new EigenWhiteningTruncation().Truncate(w, 3, new TruncationInputs { Gram = c });
        using var p2 = v2.Product();
        Assert.True(DenseMath.MeasuredLoss(w, p2, c) <= DenseMath.MeasuredLoss(w, p, c) * (1 + 1e-9));
    }

    [Fact]
    public void V2_beats_data_free_and_activation_scaled_truncations_on_the_output_loss()
    {
        var r = new Random(5);
        int m = 16, n = 12, k = 4;
        using var w = Random(r, m, n);
        using var c = Gram(r, n, 60, deficient: false);
        var mean = Enumerable.Range(0, n).Select(j => Math.Sqrt(c[j, j] / 60)).ToArray();
        var inputs = new TruncationInputs { Gram = c, MeanAbsInput = mean };
        double Loss(ITruncation t)
        {
            using var f = t.Truncate(w, k, inputs);
            using var p = f.Product();
            return DenseMath.MeasuredLoss(w, p, c);
        }
        double v2 = Loss(new EigenWhiteningTruncation());
        Assert.True(v2 <= Loss(new PlainSvdTruncation()));
        Assert.True(v2 <= Loss(new AsvdTruncation()));
    }

    [Fact]
    public void Asvd_at_several_ranks_from_one_decomposition_meets_eckart_young_at_each()
    {
        var r = new Random(7);
        int m = 10, n = 8;
        using var w = Random(r, m, n);
        var mean = Enumerable.Range(0, n).Select(j => 0.3 + 0.7 * j).ToArray();
        var s = mean.Select(x => Math.Sqrt(x) + 1e-6).ToArray();
        using var ws = w.Clone();
        for (int i = 0; i < m; i++) for (int j = 0; j < n; j++) ws[i, j] *= s[j];
        using var svd = Lapack.Svd(ws);
        int[] ranks = [1, 4, 7];
        var all = new AsvdTruncation().TruncateAtRanks(w, ranks, new TruncationInputs { MeanAbsInput = mean }).ToList();
        try
        {
            Assert.Equal(ranks, all.Select(f => f.Rank));
            for (int q = 0; q < ranks.Length; q++)
            {
                // Each rank's W' is the best rank-k fit of W·S₀ mapped back: its weighted error is the singular-value tail.
                using var p = all[q].Product();
                double objective = 0;
                for (int i = 0; i < m; i++) for (int j = 0; j < n; j++) objective += Math.Pow((w[i, j] - p[i, j]) * s[j], 2);
                double tail = Math.Sqrt(svd.S.Skip(ranks[q]).Sum(x => x * x));
                Assert.Equal(tail, Math.Sqrt(objective), 1e-10);
                Assert.Equal(tail, all[q].TheoreticalLoss, 1e-10);
            }
        }
        finally
        {
            all.ForEach(f => f.Dispose());
        }
    }

    [Fact]
    public void Asvd_and_fwsvd_minimise_their_weighted_objectives()
    {
        var r = new Random(6);
        int m = 10, n = 8, k = 3;
        using var w = Random(r, m, n);
        var mean = Enumerable.Range(0, n).Select(j => 0.1 + j).ToArray();
        using var asvd = new AsvdTruncation().Truncate(w, k, new TruncationInputs { MeanAbsInput = mean });
        using var pa = asvd.Product();
        var s = mean.Select(x => Math.Sqrt(x) + 1e-6).ToArray();
        double objective = 0;
        for (int i = 0; i < m; i++) for (int j = 0; j < n; j++) objective += Math.Pow((w[i, j] - pa[i, j]) * s[j], 2);
        Assert.Equal(asvd.TheoreticalLoss, Math.Sqrt(objective), 1e-10);
        // Eckart–Young on W·S₀: the loss equals the tail of its singular values.
        using var ws = w.Clone();
        for (int i = 0; i < m; i++) for (int j = 0; j < n; j++) ws[i, j] *= s[j];
        using (var svd = Lapack.Svd(ws)) Assert.Equal(Math.Sqrt(svd.S.Skip(k).Sum(x => x * x)), asvd.TheoreticalLoss, 1e-10);

        using var fisher = Random(r, m, n);
        for (int i = 0; i < fisher.Length; i++) fisher.Span[i] = fisher.Span[i] * fisher.Span[i] * (1 + i % 5);
        using var fw = new FisherWeightedTruncation().Truncate(w, k, new TruncationInputs { FisherRowSums = Enumerable.Range(0, m).Select(i => fisher.Row(i).ToArray().Sum()).ToArray() });
        using var pf = fw.Product();
        var rowImportance = Enumerable.Range(0, m).Select(i => Math.Sqrt(fisher.Row(i).ToArray().Sum())).ToArray();
        double fobj = 0;
        for (int i = 0; i < m; i++) for (int j = 0; j < n; j++) fobj += Math.Pow((w[i, j] - pf[i, j]) * rowImportance[i], 2);
        Assert.Equal(fw.TheoreticalLoss, Math.Sqrt(fobj), 1e-10);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(9)]
    public void Invalid_ranks_are_rejected_with_the_shape(int k)
    {
        var r = new Random(7);
        using var w = Random(r, 8, 9);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new PlainSvdTruncation().Truncate(w, k, new TruncationInputs()));
        Assert.Contains("8×9", e.Message);
    }

    [Theory]
    [InlineData(4096, 4096, 0.2, 1638)]
    [InlineData(4096, 4096, 0.4, 1228)]
    [InlineData(4096, 4096, 0.6, 819)]
    [InlineData(4096, 4096, 0.8, 409)]
    [InlineData(11008, 4096, 0.2, 2388)]
    [InlineData(64, 256, 0.8, 10)]
    public void Rank_arithmetic(int m, int n, double removed, int expected)
    {
        // Expected values: ⌊m·n·(1−r)/(m+n)⌋ worked by hand, e.g. 4096²·0.8/8192 = 1638.4 → 1638; 11008·4096·0.8/15104 = 2388.17 → 2388.
        int k = Ranks.ForRemovedRatio(m, n, removed);
        Assert.Equal(expected, k);
        Assert.True((long)k * (m + n) <= (1 - removed) * m * n + 1e-6);
        Assert.True((long)(k + 1) * (m + n) > (1 - removed) * m * n);
    }
}
