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
        using var y = NaiveMath.Mul(mlp.Down, mlp.H);
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
        using var fit = NaiveMath.Mul(result.DownProj, hs);
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
        using var y = NaiveMath.Mul(mlp.Down, mlp.H);
        using var fit = NaiveMath.Mul(update.Weight, mlp.H);
        Assert.True(FrobeniusDistance(fit, y) < 1e-8 * Frobenius(y), $"ridge {update.AddedRidge}");
    }

    // ---- Type II: Q/K by CR decomposition, whole rotary pairs ----

    /// <summary>inv_freq[i] = θ^(−2i/D), i &lt; D/2, as Hugging Face's default rotary embedding.</summary>
    private static double[] InverseFrequencies(int headDim, double theta = 10000) =>
        Enumerable.Range(0, headDim / 2).Select(i => Math.Pow(theta, -2.0 * i / headDim)).ToArray();

    /// <summary>
    /// Reference RoPE, rotate_half convention: the pair (i, i + D/2) of x [D] is rotated by position·invFreq[i]. Written
    /// out here, independent of the model's kernel, and for any D so the reduced head uses the same code.
    /// </summary>
    private static double[] Rope(ReadOnlySpan<double> x, ReadOnlySpan<double> invFreq, int position)
    {
        int half = x.Length / 2;
        Assert.Equal(half, invFreq.Length);
        var r = new double[x.Length];
        for (int i = 0; i < half; i++)
        {
            double angle = position * invFreq[i], c = Math.Cos(angle), s = Math.Sin(angle);
            r[i] = x[i] * c - x[i + half] * s;
            r[i + half] = x[i + half] * c + x[i] * s;
        }
        return r;
    }

    private static double Dot(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        double s = 0;
        for (int i = 0; i < a.Length; i++) s += a[i] * b[i];
        return s;
    }

    private static Tensor<double> Diagonal(params double[] d)
    {
        var c = Tensor<double>.Zeros(d.Length, d.Length);
        for (int i = 0; i < d.Length; i++) c[i, i] = d[i];
        return c;
    }

    /// <summary>A random positive-definite [n, n] covariance: Σ over tokens of anisotropic random vectors.</summary>
    private static Tensor<double> RandomCovariance(Random r, int n, int tokens = 40)
    {
        using var x = Random(r, n, tokens);
        for (int i = 0; i < n; i++) for (int t = 0; t < tokens; t++) x[i, t] *= 0.2 + r.NextDouble() * 3;
        return OuterGram(x);
    }

    [Fact]
    public void Keeping_every_head_dimension_keeps_the_original_order()
    {
        var r = new Random(21);
        using var cq = RandomCovariance(r, 8);
        using var ck = RandomCovariance(r, 8);
        foreach (var score in new[] { PairScore.SumOfRoots, PairScore.Block })
        {
            var sel = QueryKeySelection.Select([cq], ck, 8, score);
            Assert.Equal(Enumerable.Range(0, 8), sel.KeptDimensions);
            Assert.Equal(Enumerable.Range(0, 4), sel.KeptFrequencies);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => QueryKeySelection.Select([cq], ck, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => QueryKeySelection.Select([cq], ck, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => QueryKeySelection.Select([cq], ck, 10));
    }

    [Fact]
    public void Pairs_are_scored_from_the_diagonals_and_laid_out_as_kept_i_then_partners()
    {
        // d_h = 8, pairs (0,4) (1,5) (2,6) (3,7). Per-dimension score √(Cq_ii·Ck_ii):
        //   pair 0: Cq (1, 0), Ck (0, 1)         → roots 0 + 0 = 0,        block √(1·1) = 1
        //   pair 1: Cq (.25, .25), Ck (.25, .25) → roots .25 + .25 = .5,  block √(.5·.5) = .5
        //   pair 2: Cq (4, 4), Ck (1, 1)         → roots 2 + 2 = 4,        block √(8·2) = 4
        //   pair 3: Cq (.01, 0), Ck (.01, 0)     → roots .01,              block .01
        using var cq = Diagonal(1, 0.25, 4, 0.01, 0, 0.25, 4, 0);
        using var ck = Diagonal(0, 0.25, 1, 0.01, 1, 0.25, 1, 0);
        var roots = QueryKeySelection.PairScores([cq], ck, PairScore.SumOfRoots);
        var block = QueryKeySelection.PairScores([cq], ck, PairScore.Block);
        double[] expectedRoots = [0, 0.5, 4, 0.01], expectedBlock = [1, 0.5, 4, 0.01];
        for (int p = 0; p < 4; p++)
        {
            Assert.Equal(expectedRoots[p], roots[p], 1e-15);
            Assert.Equal(expectedBlock[p], block[p], 1e-15);
        }
        // The two readings disagree on pairs 0 and 1: the default keeps 1, the block score keeps 0.
        var sel = QueryKeySelection.Select([cq], ck, 4);
        Assert.Equal([1, 2], sel.KeptFrequencies);
        Assert.Equal([1, 2, 5, 6], sel.KeptDimensions);
        var selBlock = QueryKeySelection.Select([cq], ck, 4, PairScore.Block);
        Assert.Equal([0, 2], selBlock.KeptFrequencies);
        Assert.Equal([0, 2, 4, 6], selBlock.KeptDimensions);
        // Ties go to the lower pair: pairs 0 and 1 both score .5 here.
        using var tie = Diagonal(0.25, 0.25, 0, 0, 0.25, 0.25, 0, 0);
        Assert.Equal([0], QueryKeySelection.Select([tie], tie, 2).KeptFrequencies);
    }

    [Fact]
    public void Pair_selection_commutes_with_rope_when_the_kept_frequencies_are_used()
    {
        var r = new Random(22);
        const int d = 12, dh = 16, heads = 2, head = 1, k = 6;
        var invFreq = InverseFrequencies(dh);
        using var wq = Random(r, heads * dh, d);
        using var wk = Random(r, heads * dh, d);
        using var cq = RandomCovariance(r, dh);
        using var ck = RandomCovariance(r, dh);
        var sel = QueryKeySelection.Select([cq], ck, k);
        var reducedFreq = sel.InverseFrequencies(invFreq);
        Assert.Equal(sel.KeptFrequencies.Select(i => invFreq[i]), reducedFreq);

        // The reduced head's projections are the kept rows of the original head.
        var rows = RowSelection.HeadRows(head, dh, sel.KeptDimensions);
        using var wqReduced = RowSelection.Rows(wq, rows);
        using var wkReduced = RowSelection.Rows(wk, rows);
        using var headQ = RowSelection.Rows(wq, RowSelection.HeadRows(head, dh, Enumerable.Range(0, dh).ToArray()));
        using var headK = RowSelection.Rows(wk, RowSelection.HeadRows(head, dh, Enumerable.Range(0, dh).ToArray()));
        var ownFreq = InverseFrequencies(k); // what a d' = k head would use on its own
        double largestOwnError = 0;
        for (int trial = 0; trial < 20; trial++)
        {
            using var xq = Random(r, d, 1);
            using var xk = Random(r, d, 1);
            int m = r.Next(0, 2048), n = r.Next(0, 2048);
            using var q = NaiveMath.Mul(headQ, xq);
            using var kv = NaiveMath.Mul(headK, xk);
            using var qr = NaiveMath.Mul(wqReduced, xq);
            using var kr = NaiveMath.Mul(wkReduced, xk);
            for (int a = 0; a < k; a++)
            {
                Assert.Equal(q.Span[sel.KeptDimensions[a]], qr.Span[a]);
                Assert.Equal(kv.Span[sel.KeptDimensions[a]], kr.Span[a]);
            }
            // Full RoPE, then the score restricted to the kept pairs' terms …
            var qRot = Rope(q.Span, invFreq, m);
            var kRot = Rope(kv.Span, invFreq, n);
            double expected = 0;
            foreach (int i in sel.KeptFrequencies) expected += qRot[i] * kRot[i] + qRot[i + dh / 2] * kRot[i + dh / 2];
            // … equals RoPE on the reduced head with the original frequencies of its pairs.
            double reduced = Dot(Rope(qr.Span, reducedFreq, m), Rope(kr.Span, reducedFreq, n));
            Assert.Equal(expected, reduced, 1e-10 * (1 + Math.Abs(expected)));
            double own = Dot(Rope(qr.Span, ownFreq, m), Rope(kr.Span, ownFreq, n));
            largestOwnError = Math.Max(largestOwnError, Math.Abs(own - expected));
        }
        // The d'-dimensional head's own frequencies would not: the kept i's are not 0 … k/2 − 1 here.
        Assert.NotEqual(Enumerable.Range(0, k / 2), sel.KeptFrequencies);
        Assert.True(largestOwnError > 1e-3, $"own-frequency error {largestOwnError}");
    }

    [Fact]
    public void Gqa_group_scores_are_the_sum_of_each_query_heads_scores()
    {
        var r = new Random(23);
        const int dh = 10;
        using var ck = RandomCovariance(r, dh);
        using var q0 = RandomCovariance(r, dh);
        using var q1 = RandomCovariance(r, dh);
        using var q2 = RandomCovariance(r, dh);
        foreach (var score in new[] { PairScore.SumOfRoots, PairScore.Block })
        {
            var group = QueryKeySelection.PairScores([q0, q1, q2], ck, score);
            var each = new[] { q0, q1, q2 }.Select(q => QueryKeySelection.PairScores([q], ck, score)).ToArray();
            for (int p = 0; p < dh / 2; p++) Assert.Equal(each.Sum(e => e[p]), group[p], 1e-12 * group[p]);
            var sel = QueryKeySelection.Select([q0, q1, q2], ck, 4, score);
            Assert.Equal(NystromMlp.TopIndices(group, 2), sel.KeptFrequencies);
        }
        // One head's strong preference can be outvoted by the others': head A wants pair 0, heads B and C pair 1.
        using var a = Diagonal(9, 0, 0, 0);
        using var b = Diagonal(0, 4, 0, 0);
        using var one = Diagonal(1, 1, 1, 1);
        Assert.Equal([0], QueryKeySelection.Select([a], one, 2).KeptFrequencies);
        Assert.Equal([1], QueryKeySelection.Select([a, b, b], one, 2).KeptFrequencies);
    }

    [Fact]
    public void Block_pair_scores_are_the_same_before_and_after_rope_and_root_scores_are_not()
    {
        var r = new Random(24);
        const int dh = 8, tokens = 64;
        var invFreq = InverseFrequencies(dh);
        var pre = new[] { Tensor<double>.Zeros(dh, dh), Tensor<double>.Zeros(dh, dh) };
        var post = new[] { Tensor<double>.Zeros(dh, dh), Tensor<double>.Zeros(dh, dh) };
        try
        {
            for (int t = 0; t < tokens; t++)
                for (int which = 0; which < 2; which++)
                {
                    var v = Enumerable.Range(0, dh).Select(i => (r.NextDouble() * 2 - 1) * (1 + i)).ToArray();
                    var rotated = Rope(v, invFreq, t);
                    for (int i = 0; i < dh; i++)
                        for (int j = 0; j < dh; j++)
                        {
                            pre[which][i, j] += v[i] * v[j];
                            post[which][i, j] += rotated[i] * rotated[j];
                        }
                }
            var blockPre = QueryKeySelection.PairScores([pre[0]], pre[1], PairScore.Block);
            var blockPost = QueryKeySelection.PairScores([post[0]], post[1], PairScore.Block);
            for (int p = 0; p < dh / 2; p++) Assert.Equal(blockPre[p], blockPost[p], 1e-10 * blockPre[p]);
            var rootsPre = QueryKeySelection.PairScores([pre[0]], pre[1], PairScore.SumOfRoots);
            var rootsPost = QueryKeySelection.PairScores([post[0]], post[1], PairScore.SumOfRoots);
            double largest = Enumerable.Range(0, dh / 2).Max(p => Math.Abs(rootsPre[p] - rootsPost[p]) / rootsPre[p]);
            Assert.True(largest > 1e-3, $"largest relative change of a root score under RoPE: {largest}");
        }
        finally
        {
            foreach (var c in pre.Concat(post)) c.Dispose();
        }
    }

    [Fact]
    public void Head_covariance_from_the_attention_input_gram_equals_the_sum_over_tokens()
    {
        var r = new Random(25);
        const int d = 9, dh = 4, tokens = 30;
        using var w = Random(r, dh, d);
        using var x = Random(r, tokens, d);
        using var xt = Tensor<double>.Zeros(d, tokens);
        for (int t = 0; t < tokens; t++) for (int i = 0; i < d; i++) xt[i, t] = x[t, i];
        using var gram = OuterGram(xt);
        using var q = NaiveMath.Mul(w, xt); // [dh, T]
        using var expected = OuterGram(q);
        using var c = QueryKeySelection.HeadCovariance(w, gram);
        Assert.True(FrobeniusDistance(c, expected) < 1e-10 * Frobenius(expected));
    }

    // ---- Type III: V/O by SVD ----

    private sealed record AttentionInputs(Tensor<double> X, Tensor<double> Gram) : IDisposable
    {
        public void Dispose()
        {
            X.Dispose();
            Gram.Dispose();
        }
    }

    /// <summary>Attention inputs X [T, d] (rows are tokens, anisotropic columns) and C = XᵀX.</summary>
    private static AttentionInputs Inputs(Random r, int tokens, int d)
    {
        var x = Random(r, tokens, d);
        for (int t = 0; t < tokens; t++) for (int i = 0; i < d; i++) x[t, i] *= 1 + (i % 4);
        var c = Tensor<double>.Zeros(d, d);
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++)
            {
                double s = 0;
                for (int t = 0; t < tokens; t++) s += x[t, i] * x[t, j];
                c[i, j] = s;
            }
        return new AttentionInputs(x, c);
    }

    /// <summary>Σ_g ‖(W_O,g W_V − W_O,g' W_V') Xᵀ‖²_F by naive loops over tokens.</summary>
    private static double GroupLoss(Tensor<double>[] outputs, Tensor<double> value, ValueOutputFactors f, Tensor<double> x)
    {
        double loss = 0;
        for (int g = 0; g < outputs.Length; g++)
        {
            using var m = NaiveMath.Mul(outputs[g], value);
            using var mp = NaiveMath.Mul(f.OutputColumns[g], f.ValueRows);
            for (int t = 0; t < x.Rows; t++)
                for (int i = 0; i < m.Rows; i++)
                {
                    double e = 0;
                    for (int j = 0; j < m.Cols; j++) e += (m[i, j] - mp[i, j]) * x[t, j];
                    loss += e * e;
                }
        }
        return loss;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void Value_output_loss_is_the_singular_value_tail_of_the_whitened_product(int groups)
    {
        var r = new Random(31 + groups);
        const int d = 10, dh = 4, tokens = 40;
        using var inputs = Inputs(r, tokens, d);
        var (x, c) = (inputs.X, inputs.Gram);
        using var roots = ValueOutputSvd.Roots(c);
        Assert.Equal(0, roots.ClampedEigenvalues);
        using var value = Random(r, dh, d);
        var outputs = Enumerable.Range(0, groups).Select(_ => Random(r, d, dh)).ToArray();
        try
        {
            // The singular values of the explicit stacked product [W_O,1; …; W_O,G] W_V C^½ [G·d, d].
            using var stacked = Tensor<double>.Zeros(groups * d, d);
            for (int g = 0; g < groups; g++)
            {
                using var mg = NaiveMath.Mul(outputs[g], value);
                using var mgc = NaiveMath.Mul(mg, roots.Root);
                mgc.Span.CopyTo(stacked.Span.Slice(g * d * d, d * d));
            }
            using var explicitSvd = Lapack.Svd(stacked);

            for (int k = 1; k <= dh; k++)
            {
                using var f = ValueOutputSvd.Fit(outputs, value, roots.Root, k);
                Assert.Equal(k, f.Rank);
                Assert.Equal(groups, f.OutputColumns.Length);
                for (int i = 0; i < f.SingularValues.Length; i++)
                    Assert.Equal(explicitSvd.S[i], f.SingularValues[i], 1e-10 * explicitSvd.S[0]);
                // Eckart–Young on M C^½ with C = XᵀX: the measured loss over the tokens is the tail Σ_{i>k} σ_i².
                double tail = f.SingularValues.Skip(k).Sum(v => v * v);
                double measured = GroupLoss(outputs, value, f, x);
                Assert.Equal(tail, f.TailLoss * f.TailLoss, 1e-9 * explicitSvd.S[0] * explicitSvd.S[0]);
                Assert.True(Math.Abs(measured - tail) <= 1e-9 * Math.Max(tail, 1e-300) || k == dh && measured < 1e-20 * explicitSvd.S[0] * explicitSvd.S[0],
                    $"k = {k}: measured {measured}, tail {tail}");
                // W_O' stacked has orthonormal columns (the split puts every scale in W_V').
                for (int a = 0; a < k; a++)
                    for (int b = 0; b < k; b++)
                    {
                        double dot = 0;
                        foreach (var o in f.OutputColumns) for (int i = 0; i < d; i++) dot += o[i, a] * o[i, b];
                        Assert.Equal(a == b ? 1 : 0, dot, 1e-12);
                    }
            }
        }
        finally
        {
            foreach (var o in outputs) o.Dispose();
        }
    }

    [Fact]
    public void Value_output_at_full_head_rank_reproduces_every_head_even_on_a_singular_gram()
    {
        var r = new Random(33);
        const int d = 10, dh = 4, tokens = 5, groups = 2;
        using var inputs = Inputs(r, tokens, d); // rank 5 < d: five eigenvalues clamped
        var (x, c) = (inputs.X, inputs.Gram);
        using var roots = ValueOutputSvd.Roots(c);
        Assert.Equal(d - tokens, roots.ClampedEigenvalues);
        using var value = Random(r, dh, d);
        var outputs = Enumerable.Range(0, groups).Select(_ => Random(r, d, dh)).ToArray();
        try
        {
            using var f = ValueOutputSvd.Fit(outputs, value, roots.Root, dh);
            for (int g = 0; g < groups; g++)
            {
                using var m = NaiveMath.Mul(outputs[g], value);
                using var mp = NaiveMath.Mul(f.OutputColumns[g], f.ValueRows);
                Assert.True(FrobeniusDistance(m, mp) < 1e-12 * Frobenius(m), $"head {g}: {FrobeniusDistance(m, mp)}");
            }
            Assert.Throws<ArgumentOutOfRangeException>(() => ValueOutputSvd.Fit(outputs, value, roots.Root, dh + 1));
            Assert.Throws<ArgumentOutOfRangeException>(() => ValueOutputSvd.Fit(outputs, value, roots.Root, 0));
        }
        finally
        {
            foreach (var o in outputs) o.Dispose();
        }
    }

    [Fact]
    public void Value_output_product_equals_the_papers_form_with_the_inverse_root()
    {
        var r = new Random(34);
        const int d = 8, dh = 4, tokens = 30, k = 2;
        using var inputs = Inputs(r, tokens, d);
        var (x, c) = (inputs.X, inputs.Gram);
        using var roots = ValueOutputSvd.Roots(c);
        using var value = Random(r, dh, d);
        using var output = Random(r, d, dh);
        using var f = ValueOutputSvd.Fit([output], value, roots.Root, k);
        // U_k Σ_k V_kᵀ C^{-½} from the SVD of the explicit [d, d] product W_O W_V C^½.
        using var m = NaiveMath.Mul(output, value);
        using var mc = NaiveMath.Mul(m, roots.Root);
        using var svd = Lapack.Svd(mc);
        using var truncated = Tensor<double>.Zeros(d, d);
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++)
            {
                double s = 0;
                for (int p = 0; p < k; p++) s += svd.U[i, p] * svd.S[p] * svd.Vt[p, j];
                truncated[i, j] = s;
            }
        using var paper = NaiveMath.Mul(truncated, roots.InverseRoot);
        using var ours = NaiveMath.Mul(f.OutputColumns[0], f.ValueRows);
        Assert.True(FrobeniusDistance(paper, ours) < 1e-10 * Frobenius(ours), $"{FrobeniusDistance(paper, ours)}");
    }

    [Fact]
    public void Symmetric_roots_square_to_the_gram_and_invert_each_other()
    {
        var r = new Random(35);
        const int d = 9;
        foreach (int tokens in new[] { 40, 4 })
        {
            using var inputs = Inputs(r, tokens, d);
            var (x, c) = (inputs.X, inputs.Gram);
            using var roots = ValueOutputSvd.Roots(c);
            Assert.Equal(Math.Max(0, d - tokens), roots.ClampedEigenvalues);
            for (int i = 0; i < d; i++)
                for (int j = 0; j < d; j++)
                {
                    Assert.Equal(roots.Root[i, j], roots.Root[j, i]);
                    Assert.Equal(roots.InverseRoot[i, j], roots.InverseRoot[j, i]);
                }
            using var square = NaiveMath.Mul(roots.Root, roots.Root);
            // C̃ = C + (floor on the clamped directions): off by at most d·floor ≈ 1e-9·λ_max.
            Assert.True(FrobeniusDistance(square, c) < 1e-9 * Frobenius(c));
            using var identity = NaiveMath.Mul(roots.Root, roots.InverseRoot);
            // κ(C̃^½) ≤ 1e5 on the singular Gram, so the product is I to ≈ 1e5·u·d.
            for (int i = 0; i < d; i++) for (int j = 0; j < d; j++) Assert.Equal(i == j ? 1 : 0, identity[i, j], tokens > d ? 1e-12 : 1e-9);
        }
        using var zero = Tensor<double>.Zeros(3, 3);
        Assert.Throws<ArgumentException>(() => ValueOutputSvd.Roots(zero));
    }

    // ---- Global sparsity allocation and block influence ----

    /// <summary>
    /// The KKT solution of max Σ s_l(1 − φ_l) + ε·H(φ) s.t. Σ φ_l = L·φ_avg, 0 ≤ φ_l ≤ φ_max, found independently of
    /// the closed form: stationarity gives φ_l(μ) = min(φ_max, exp(−(s_l + μ)/ε − 1)) for the multiplier μ of the mean
    /// constraint, and Σ φ_l(μ) decreases in μ, so μ is found by bisection.
    /// </summary>
    private static double[] KktByBisection(double[] s, double average, double epsilon, double max)
    {
        int n = s.Length;
        double[] At(double mu) => s.Select(v => Math.Min(max, Math.Exp(-(v + mu) / epsilon - 1))).ToArray();
        double Excess(double mu) => At(mu).Sum() - n * average;
        double lo = -1, hi = 1;
        while (Excess(lo) < 0) lo *= 2;
        while (Excess(hi) > 0) hi *= 2;
        for (int i = 0; i < 200; i++)
        {
            double mid = 0.5 * (lo + hi);
            if (Excess(mid) > 0) lo = mid; else hi = mid;
        }
        return At(0.5 * (lo + hi));
    }

    private static double Objective(double[] s, double[] phi, double epsilon) =>
        s.Select((v, l) => v * (1 - phi[l]) - epsilon * (phi[l] > 0 ? phi[l] * Math.Log(phi[l]) : 0)).Sum();

    [Fact]
    public void Allocation_without_clipping_is_the_softmax_and_the_entropy_optimum()
    {
        var r = new Random(41);
        var s = Enumerable.Range(0, 10).Select(_ => r.NextDouble()).ToArray();
        const double average = 0.25, epsilon = 0.2;
        var phi = GlobalSparsity.Allocate(s, average, epsilon, maxSparsity: 1);
        double z = s.Sum(v => Math.Exp(-v / epsilon));
        var kkt = KktByBisection(s, average, epsilon, max: 1);
        for (int l = 0; l < s.Length; l++)
        {
            Assert.Equal(s.Length * average * Math.Exp(-s[l] / epsilon) / z, phi[l], 1e-14);
            Assert.Equal(kkt[l], phi[l], 1e-10);
            Assert.True(phi[l] < 1);
        }
        Assert.Equal(average, phi.Average(), 1e-12);
        // More important blocks lose less.
        for (int a = 0; a < s.Length; a++) for (int b = 0; b < s.Length; b++) if (s[a] < s[b]) Assert.True(phi[a] > phi[b]);
    }

    [Fact]
    public void Allocation_with_clipping_keeps_the_box_and_the_mean_and_solves_the_boxed_problem()
    {
        var r = new Random(42);
        // Three nearly unimportant blocks would get far more than φ_max from the softmax alone.
        var s = Enumerable.Range(0, 12).Select(l => l < 3 ? 0.01 * l : 0.5 + r.NextDouble()).ToArray();
        const double average = 0.3, epsilon = 0.1, max = 0.6;
        var raw = s.Select(v => s.Length * average * Math.Exp(-v / epsilon) / s.Sum(u => Math.Exp(-u / epsilon))).ToArray();
        Assert.True(raw.Count(v => v > max) >= 2, "the test needs clipping");
        var phi = GlobalSparsity.Allocate(s, average, epsilon, max);
        Assert.Equal(average, phi.Average(), 1e-12);
        Assert.All(phi, v => Assert.InRange(v, 0, max));
        Assert.True(phi.Count(v => v == max) >= 2);
        var kkt = KktByBisection(s, average, epsilon, max);
        for (int l = 0; l < s.Length; l++) Assert.Equal(kkt[l], phi[l], 1e-10);
        // The free blocks keep the softmax's proportions: the excess is spread in proportion to their weights.
        var free = Enumerable.Range(0, s.Length).Where(l => phi[l] < max).ToArray();
        foreach (int l in free) Assert.Equal(raw[l] / raw[free[0]], phi[l] / phi[free[0]], 1e-12);
        // And no feasible zero-sum step inside the box does better.
        double best = Objective(s, phi, epsilon);
        for (int trial = 0; trial < 200; trial++)
        {
            int a = free[r.Next(free.Length)], b = r.Next(s.Length);
            if (a == b) continue;
            double step = 1e-3 * (r.NextDouble() * 2 - 1);
            var moved = (double[])phi.Clone();
            moved[a] += step;
            moved[b] -= step;
            if (moved.Any(v => v < 0 || v > max)) continue;
            Assert.True(Objective(s, moved, epsilon) <= best + 1e-15, $"trial {trial} improved the objective");
        }
    }

    [Fact]
    public void Allocation_is_uniform_as_the_smoothing_grows_and_survives_underflow()
    {
        double[] s = [0.1, 0.9, 0.4, 0.7];
        Assert.All(GlobalSparsity.Allocate(s, 0.3, double.PositiveInfinity, 0.8), v => Assert.Equal(0.3, v, 1e-15));
        Assert.All(GlobalSparsity.Allocate(s, 0.3, 1e12, 0.8), v => Assert.Equal(0.3, v, 1e-12));
        Assert.All(GlobalSparsity.Allocate(s, 0.5, 0.01, 0.5), v => Assert.Equal(0.5, v, 1e-15));
        // exp(−1000) underflows in the first softmax; the second round renormalises the free blocks among themselves.
        var phi = GlobalSparsity.Allocate([0, 1000, 1000], 0.4, 1, 0.5);
        Assert.Equal([0.5, 0.35, 0.35], phi.Select(v => Math.Round(v, 14)));
    }

    [Fact]
    public void Infeasible_or_invalid_allocations_are_refused()
    {
        double[] s = [0.1, 0.2];
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => GlobalSparsity.Allocate(s, 0.9, 0.1, 0.8));
        Assert.Contains("exceeds φ_max", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => GlobalSparsity.Allocate(s, 0.3, 0, 0.8));
        Assert.Throws<ArgumentOutOfRangeException>(() => GlobalSparsity.Allocate(s, -0.1, 0.1, 0.8));
        Assert.Throws<ArgumentOutOfRangeException>(() => GlobalSparsity.Allocate(s, 0.3, 0.1, 1.5));
        Assert.Throws<ArgumentException>(() => GlobalSparsity.Allocate([0.1, double.NaN], 0.3, 0.1, 0.8));
        Assert.Throws<ArgumentException>(() => GlobalSparsity.Allocate([], 0.3, 0.1, 0.8));
    }

    [Fact]
    public void Block_influence_is_one_minus_the_mean_cosine_over_tokens()
    {
        const int d = 3;
        float[] input = [1, 2, 3, 1, 0, 0, 0, 2, 0, 4, 5, 6];
        Assert.Equal(0, BlockInfluence.Compute(input, input, d), 1e-15);
        Assert.Equal(2, BlockInfluence.Compute(input, input.Select(v => -v).ToArray(), d), 1e-15);
        float[] rotated = [0, 1, 0, 1, 0, 0, 0, 0, 1];
        float[] original = [1, 0, 0, 1, 0, 0, 0, 1, 0];
        Assert.Equal(1 - 1.0 / 3, BlockInfluence.Compute(original, rotated, d), 1e-15); // cos 0, 1, 0

        var r = new Random(43);
        var a = Enumerable.Range(0, 40 * d).Select(_ => (float)(r.NextDouble() * 2 - 1)).ToArray();
        var b = a.Select(v => v + (float)(0.5 * (r.NextDouble() * 2 - 1))).ToArray();
        double naive = 0;
        for (int t = 0; t < 40; t++)
        {
            double ab = 0, aa = 0, bb = 0;
            for (int i = 0; i < d; i++) { ab += a[t * d + i] * (double)b[t * d + i]; aa += a[t * d + i] * (double)a[t * d + i]; bb += b[t * d + i] * (double)b[t * d + i]; }
            naive += ab / Math.Sqrt(aa * bb);
        }
        double whole = BlockInfluence.Compute(a, b, d);
        Assert.Equal(1 - naive / 40, whole, 1e-14);
        // Fed in batches it is the same mean.
        var bi = new BlockInfluence(d);
        bi.Add(a.AsSpan(0, 25 * d), b.AsSpan(0, 25 * d));
        bi.Add(a.AsSpan(25 * d), b.AsSpan(25 * d));
        Assert.Equal(40, bi.Tokens);
        Assert.Equal(whole, bi.Score, 1e-14);

        // A zero row has no direction: cos counts as 0 and the token stays in the mean.
        Assert.Equal(0.5, BlockInfluence.Compute([1, 2, 3, 1, 2, 3], [1, 2, 3, 0, 0, 0], d), 1e-15);
        Assert.Throws<ArgumentException>(() => BlockInfluence.Compute([1, float.NaN, 3], [1, 2, 3], d));
        Assert.Throws<ArgumentException>(() => BlockInfluence.Compute([1, 2, 3, 4], [1, 2, 3, 4], d));
        Assert.Throws<InvalidOperationException>(() => new BlockInfluence(d).Score);
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
