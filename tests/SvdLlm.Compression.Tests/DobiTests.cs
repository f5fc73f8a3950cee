using SvdLlm.Compression.Dobi;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Tests;

/// <summary>
/// Dobi-SVD's numerical core (Wang, Ke et al., ICLR 2025) against checks that do not reuse the code under test:
/// closed forms derived by hand (tanh limits, the code book's gaps, Eckart–Young tails of matrices built with a known
/// spectrum), central finite differences of losses written here with naive loops, PCA by an SVD of the data instead of
/// an eigendecomposition of its Gram, and parameter counts from the arrays a remapped weight actually holds.
/// </summary>
public class DobiTests
{
    private static Tensor<double> Random(Random r, int rows, int cols, double scale = 1) => TruncationTests.Random(r, rows, cols, scale);

    private static Tensor<double> WithSpectrum(Random r, int m, int n, double[] sigma) => TruncationTests.WithSpectrum(r, m, n, sigma);

    private static double MaxAbs(Tensor<double> x) => x.Span.ToArray().Max(Math.Abs);

    private static double MaxAbsDiff(Tensor<double> x, Tensor<double> y)
    {
        Assert.Equal(x.Shape, y.Shape);
        double d = 0;
        for (int i = 0; i < x.Length; i++) d = Math.Max(d, Math.Abs(x.Span[i] - y.Span[i]));
        return d;
    }

    /// <summary>Naive U_q diag(σ ⊙ T) V_qᵀ from a LAPACK SVD of <paramref name="a"/>, written out in loops (the test's own forward).</summary>
    private static Tensor<double> MaskedReconstruction(Tensor<double> a, double gamma, double beta, int q)
    {
        using var svd = Lapack.Svd(a);
        var r = Tensor<double>.Zeros(a.Rows, a.Cols);
        for (int i = 0; i < q; i++)
        {
            double w = svd.S[i] * (0.5 * Math.Tanh(beta * (gamma - (i + 1))) + 0.5);
            for (int x = 0; x < a.Rows; x++)
                for (int y = 0; y < a.Cols; y++) r[x, y] += w * svd.U[x, i] * svd.Vt[i, y];
        }
        return r;
    }

    /// <summary>A nonlinear scalar loss of Â: Σ C∘Â + Σ D∘Â². Its gradient is G = C + 2 D∘Â.</summary>
    private static double Loss(Tensor<double> ahat, Tensor<double> c, Tensor<double> d)
    {
        double s = 0;
        for (int i = 0; i < ahat.Length; i++) s += c.Span[i] * ahat.Span[i] + d.Span[i] * ahat.Span[i] * ahat.Span[i];
        return s;
    }

    private static Tensor<double> LossGradient(Tensor<double> ahat, Tensor<double> c, Tensor<double> d)
    {
        var g = Tensor<double>.Uninitialized(ahat.Shape);
        for (int i = 0; i < ahat.Length; i++) g.Span[i] = c.Span[i] + 2 * d.Span[i] * ahat.Span[i];
        return g;
    }

    /// <summary>Central differences of A ↦ Loss(masked reconstruction of A), entry by entry.</summary>
    private static Tensor<double> FiniteDifferenceGradient(Tensor<double> a, double gamma, double beta, int q, Tensor<double> c, Tensor<double> d, double h = 1e-6)
    {
        var g = Tensor<double>.Zeros(a.Rows, a.Cols);
        using var p = a.Clone();
        for (int i = 0; i < a.Length; i++)
        {
            double x = p.Span[i];
            p.Span[i] = x + h;
            double fp;
            using (var r = MaskedReconstruction(p, gamma, beta, q)) fp = Loss(r, c, d);
            p.Span[i] = x - h;
            double fm;
            using (var r = MaskedReconstruction(p, gamma, beta, q)) fm = Loss(r, c, d);
            p.Span[i] = x;
            g.Span[i] = (fp - fm) / (2 * h);
        }
        return g;
    }

    /// <summary>
    /// The analytic gradient through <see cref="StableSvdBackward"/> alone, with the factor gradients formed here in
    /// loops: for Â = Σ w_i u_i v_iᵀ (w = σ ⊙ T), gU = G V diag(w), gV = Gᵀ U diag(w), gσ_i = T_i u_iᵀ G v_i.
    /// </summary>
    private static Tensor<double> AnalyticGradient(Tensor<double> a, double gamma, double beta, int q, Tensor<double> c, Tensor<double> d, double gapThreshold = StableSvdBackward.DefaultGapThreshold)
    {
        using var svd = Lapack.Svd(a);
        int l = a.Rows, m = a.Cols;
        using var ahat = MaskedReconstruction(a, gamma, beta, q);
        using var g = LossGradient(ahat, c, d);
        using var u = Tensor<double>.Zeros(l, q);
        using var v = Tensor<double>.Zeros(m, q);
        var s = new double[q];
        var t = new double[q];
        for (int i = 0; i < q; i++)
        {
            s[i] = svd.S[i];
            t[i] = 0.5 * Math.Tanh(beta * (gamma - (i + 1))) + 0.5;
            for (int x = 0; x < l; x++) u[x, i] = svd.U[x, i];
            for (int y = 0; y < m; y++) v[y, i] = svd.Vt[i, y];
        }
        using var gU = Tensor<double>.Zeros(l, q);
        using var gV = Tensor<double>.Zeros(m, q);
        var gS = new double[q];
        for (int i = 0; i < q; i++)
        {
            double w = s[i] * t[i];
            for (int x = 0; x < l; x++)
                for (int y = 0; y < m; y++)
                {
                    gU[x, i] += g[x, y] * v[y, i] * w;
                    gV[y, i] += g[x, y] * u[x, i] * w;
                    gS[i] += t[i] * u[x, i] * g[x, y] * v[y, i];
                }
        }
        return StableSvdBackward.Backward(u, s, v, gU, gS, gV, gapThreshold);
    }

    // ---------------------------------------------------------------- 1. mask

    [Theory]
    [InlineData(2.3)]
    [InlineData(3.7)]
    [InlineData(0.4)]
    public void Mask_tends_to_hard_truncation_at_the_floor_of_gamma(double gamma)
    {
        // |T_i − H_i| = ½(1 − tanh(β|γ − i|)) = 1/(1 + e^{2β|γ−i|}) < e^{−2β|γ−i|} with H_i = [i ≤ ⌊γ⌋]. At β = 10⁴ the
        // bound underflows to 0, so the mask must be exactly the hard one. ½·tanh + ½ is evaluated next to ±1, so it carries
        // an absolute rounding error of up to one unit in the last place of 1 (2.2e-16), added to the bound.
        int q = 6;
        foreach (double beta in new[] { 10.0, 100.0, 1e4 })
        {
            var t = DobiMask.Values(gamma, q, beta);
            for (int i = 1; i <= q; i++)
            {
                double hard = i <= Math.Floor(gamma) ? 1 : 0;
                Assert.True(Math.Abs(t[i - 1] - hard) <= Math.Exp(-2 * beta * Math.Abs(gamma - i)) + Math.Pow(2, -52),
                    $"β = {beta}, i = {i}: T = {t[i - 1]}");
            }
        }
        Assert.Equal(Enumerable.Range(1, q).Select(i => i <= Math.Floor(gamma) ? 1.0 : 0.0), DobiMask.Values(gamma, q, 1e4));
    }

    [Fact]
    public void At_an_integer_gamma_the_gamma_th_value_stays_one_half()
    {
        // tanh(β·0) = 0 for every β, so the limit is not hard truncation at ⌊γ⌋ but keeps half of σ_γ.
        foreach (double beta in new[] { 10.0, 1e4 })
        {
            var t = DobiMask.Values(3, 5, beta);
            Assert.Equal(0.5, t[2]);
            Assert.Equal(1.0, t[1], 1e-8);
            Assert.Equal(0.0, t[3], 1e-8);
        }
    }

    [Fact]
    public void Hard_limit_of_the_forward_is_the_eckart_young_truncation()
    {
        // A is built with σ = 5, 4, 3, 2, 1, so the rank-2 truncation has ‖Â‖² = 25 + 16 and ‖A − Â‖² = 9 + 4 + 1 exactly.
        var r = new Random(11);
        using var a = WithSpectrum(r, 6, 5, [5, 4, 3, 2, 1]);
        using var t = DobiTruncation.Forward(a, 2.5, beta: 1e4);
        double kept = 0, dropped = 0;
        for (int i = 0; i < a.Length; i++)
        {
            kept += t.Output.Span[i] * t.Output.Span[i];
            dropped += Math.Pow(a.Span[i] - t.Output.Span[i], 2);
        }
        // Float64 SVD of an O(5) matrix: entries carry ≈ 1e-15 relative error; 1e-10 leaves ample room.
        Assert.Equal(41, kept, 1e-10);
        Assert.Equal(14, dropped, 1e-10);
    }

    [Fact]
    public void Mask_derivative_matches_central_differences()
    {
        // h = 1e-5 on a function with |T'''| ≤ β³: truncation error ≤ β³h²/6 ≈ 2e-8 at β = 10; rounding ≈ 1e-16/h = 1e-11.
        foreach (double beta in new[] { 1.0, 10.0 })
            foreach (double gamma in new[] { 0.3, 2.9, 3.05 })
            {
                var d = DobiMask.Derivatives(gamma, 5, beta);
                for (int i = 1; i <= 5; i++)
                {
                    double h = 1e-5;
                    double fd = (DobiMask.Value(gamma + h, i, beta) - DobiMask.Value(gamma - h, i, beta)) / (2 * h);
                    Assert.Equal(fd, d[i - 1], 1e-7);
                }
            }
        // Far from the transition 1 − tanh² cancels to 0; the sech² form keeps the true (tiny, positive) value.
        Assert.True(DobiMask.Derivative(0, 3, 10) > 0);
        Assert.Equal(0.5 * 10 * 4 * Math.Exp(-60), DobiMask.Derivative(0, 3, 10), 1e-30);
    }

    // ---------------------------------------------------------------- 2. SVD backward

    /// <summary>
    /// Tolerance for analytic vs central-difference gradients. With h = 1e-6 and a loss of size O(10–100): the
    /// truncation error is h²·|ℓ'''|/6 and the rounding error ≈ 1e-16·|ℓ|/h ≈ 1e-8; on matrices whose singular gaps are
    /// ≥ 0.5 the third derivatives are O(10²), so 1e-6 of the gradient's scale separates both from any real error
    /// (a wrong sign or a missing term changes entries by O(1)).
    /// </summary>
    private static void AssertGradientsAgree(Tensor<double> expected, Tensor<double> actual, double relative = 1e-6)
    {
        double scale = Math.Max(MaxAbs(expected), 1);
        double diff = MaxAbsDiff(expected, actual);
        Assert.True(diff <= relative * scale, $"max |Δ| = {diff:E3} against scale {scale:E3}");
    }

    [Fact]
    public void Backward_matches_finite_differences_on_a_random_6x5_matrix()
    {
        var r = new Random(21);
        using var a = Random(r, 6, 5, 2);
        using var c = Random(r, 6, 5);
        using var d = Random(r, 6, 5, 0.3);
        using (var svd = Lapack.Svd(a))
            for (int i = 1; i < 5; i++) Assert.True(svd.S[i - 1] - svd.S[i] > 0.05, "the test needs distinct singular values");
        foreach (var (gamma, beta) in new[] { (2.6, 3.0), (4.2, 10.0), (1.3, 1.0) })
        {
            using var fd = FiniteDifferenceGradient(a, gamma, beta, 5, c, d);
            using var analytic = AnalyticGradient(a, gamma, beta, 5, c, d);
            AssertGradientsAgree(fd, analytic);
        }
    }

    [Fact]
    public void Backward_of_a_truncated_svd_matches_finite_differences_when_the_tail_is_zero()
    {
        // q = 3 < min = 5 on a rank-3 matrix: the truncated-subspace terms (I − UUᵀ)gU S⁻¹Vᵀ and U S⁻¹gVᵀ(I − VVᵀ) carry
        // all the gradient outside span(U) and span(V), and they are exact because the discarded σ are zero.
        var r = new Random(22);
        using var a = WithSpectrum(r, 6, 5, [5, 3.5, 2]);
        using var c = Random(r, 6, 5);
        using var d = Random(r, 6, 5, 0.3);
        using var fd = FiniteDifferenceGradient(a, 2.4, 3, 3, c, d);
        using var analytic = AnalyticGradient(a, 2.4, 3, 3, c, d);
        AssertGradientsAgree(fd, analytic);

        // The same through DobiTruncation's own factor gradients.
        using var t = DobiTruncation.Forward(a, 2.4, 3, rank: 3);
        using var g = LossGradient(t.Output, c, d);
        var (_, da) = t.Backward(g);
        using (da) AssertGradientsAgree(fd, da);
    }

    [Fact]
    public void Truncated_backward_is_approximate_when_the_discarded_spectrum_is_not_zero()
    {
        // Characterises the reference's q = ⌊γ⌋ + 5: with σ_4, σ_5 ≠ 0 the truncated formula treats them as zero, so it
        // differs from the true gradient of the top-3 reconstruction by terms of relative size ≈ σ_4/σ_3 (here 0.75).
        // The full-rank route on the same matrix is exact.
        var r = new Random(23);
        using var a = WithSpectrum(r, 6, 5, [5, 3.5, 2, 1.5, 1]);
        using var c = Random(r, 6, 5);
        using var d = Random(r, 6, 5, 0.3);
        using var fd = FiniteDifferenceGradient(a, 2.4, 3, 3, c, d);
        using var truncated = AnalyticGradient(a, 2.4, 3, 3, c, d);
        Assert.True(MaxAbsDiff(fd, truncated) > 1e-2 * MaxAbs(fd), "expected the truncated gradient to be visibly approximate");
        using var fdFull = FiniteDifferenceGradient(a, 2.4, 3, 5, c, d);
        using var full = AnalyticGradient(a, 2.4, 3, 5, c, d);
        AssertGradientsAgree(fdFull, full);
    }

    [Fact]
    public void Inverse_gaps_are_one_over_squared_differences_and_the_series_on_ties()
    {
        // Distinct values: F_ij = 1/(σ_j² − σ_i²) exactly (row i, column j). Tied values: (K + 1)/σ² on the lower
        // triangle, mirrored with a minus sign. Both floored: the reference's 1e2.
        double[] s = [3, 2, 2, 1, 1e-12, 1e-13];
        using var f = StableSvdBackward.InverseGaps(s);
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++)
            {
                if (i == j) { Assert.Equal(0, f[i, j]); continue; }
                if (s[i] == s[j])
                {
                    double expected = (StableSvdBackward.DefaultSeriesOrder + 1) / (s[i] * s[i]);
                    Assert.Equal(i > j ? expected : -expected, f[i, j], 1e-14);
                }
                else Assert.Equal(1 / (s[j] * s[j] - s[i] * s[i]), f[i, j], 1e-14);
            }
        Assert.Equal(StableSvdBackward.ZeroPairValue, f[5, 4]);
        Assert.Equal(-StableSvdBackward.ZeroPairValue, f[4, 5]);

        // A threshold wide enough to catch (2, 1.9): the series (1/4)·Σ_{k=0..10} 0.95^{2k}, summed here term by term.
        using var g = StableSvdBackward.InverseGaps([2, 1.9], gapThreshold: 0.5);
        double series = 0;
        for (int k = 0; k <= 10; k++) series += Math.Pow(0.95, 2 * k);
        Assert.Equal(series / 4, g[1, 0], 1e-14);
        Assert.Equal(-series / 4, g[0, 1], 1e-14);
    }

    [Fact]
    public void Repeated_singular_values_give_a_finite_gradient_that_drops_the_tied_pairs_coupling()
    {
        // σ = 3, 2, 2, 1, 0.5: LAPACK returns the tied pair equal to ≈ 1e-15, inside the 1e-10 threshold, so the series
        // replaces 1/(σ_b² − σ_a²) by (K + 1)/σ² = 11/4. With γ = 4.5 both tied values have T ≈ 1 (T_2 − T_3 ≈ 1e-13), so
        // Â depends only on their common subspace and is differentiable there.
        //
        // What the true gradient is at the tie: for a pair (a, b) the core entry is
        // F_ab·[g_ab(σ_b²T_b − σ_a²T_a) + g_ba·σ_aσ_b(T_b − T_a)] with g_ab = u_aᵀ G v_b and F_ab = 1/(σ_b² − σ_a²).
        // As σ_a → σ_b with T_a = T_b = T, the first product is 0/0 → T·g_ab, the second → 0. The stable backward
        // multiplies the finite series value by a numerator that is ≈ 0, so it returns ≈ 0 for both entries and drops
        // T·(u_a g_ab v_bᵀ + u_b g_ba v_aᵀ). The test checks the gradient is finite, that adding exactly that term
        // recovers central differences, and that the term is not negligible: the stabilisation trades the exploding
        // gradient for a biased one on exact ties (which, with a 1e-10 absolute threshold, are the only pairs it touches).
        var r = new Random(24);
        using var a = WithSpectrum(r, 6, 5, [3, 2, 2, 1, 0.5]);
        using var svd = Lapack.Svd(a);
        Assert.True(Math.Abs(svd.S[1] - svd.S[2]) <= StableSvdBackward.DefaultGapThreshold);
        using var f = StableSvdBackward.InverseGaps(svd.S);
        Assert.Equal(11.0 / (svd.S[1] * svd.S[1]), f[2, 1], 1e-12);

        using var c = Random(r, 6, 5);
        using var d = Random(r, 6, 5, 0.3);
        double gamma = 4.5, beta = 10;
        using var analytic = AnalyticGradient(a, gamma, beta, 5, c, d);
        Assert.All(analytic.Span.ToArray(), x => Assert.True(double.IsFinite(x)));

        using var ahat = MaskedReconstruction(a, gamma, beta, 5);
        using var g = LossGradient(ahat, c, d);
        double G(int p, int q)
        {
            double s = 0;
            for (int x = 0; x < 6; x++)
                for (int y = 0; y < 5; y++) s += svd.U[x, p] * g[x, y] * svd.Vt[q, y];
            return s;
        }
        double t = DobiMask.Value(gamma, 2, beta), g12 = G(1, 2), g21 = G(2, 1);
        using var corrected = analytic.Clone();
        double correction = 0;
        for (int x = 0; x < 6; x++)
            for (int y = 0; y < 5; y++)
            {
                double term = t * (svd.U[x, 1] * g12 * svd.Vt[2, y] + svd.U[x, 2] * g21 * svd.Vt[1, y]);
                corrected[x, y] += term;
                correction = Math.Max(correction, Math.Abs(term));
            }
        using var fd = FiniteDifferenceGradient(a, gamma, beta, 5, c, d);
        // 1e-5: the perturbed matrices split the tie by O(h), leaving O((T_2 − T_3)/h) ≈ 1e-7 of non-smoothness in the differences.
        AssertGradientsAgree(fd, corrected, 1e-5);
        Assert.True(correction > 1e-2 * MaxAbs(fd), "the dropped coupling should be visible");

        // With γ between the tied values (T_2 ≠ T_3) Â is not differentiable there; the gradient must still be finite.
        using var split = AnalyticGradient(a, 2.5, 10, 5, c, d);
        Assert.All(split.Span.ToArray(), x => Assert.True(double.IsFinite(x)));
    }

    // ---------------------------------------------------------------- 3. dL/dγ

    [Theory]
    [InlineData(2.6, 3.0)]
    [InlineData(1.2, 10.0)]
    [InlineData(3.5, 1.0)]
    public void Gamma_gradient_matches_finite_differences(double gamma, double beta)
    {
        // dL/dγ = Σ σ_i T_i'(γ) u_iᵀ G v_i against central differences of γ ↦ Loss(Â(γ)) with the test's own forward.
        // h = 1e-5: truncation β³h²|ℓ|/6 ≈ 1e-7 at β = 10, rounding ≈ 1e-16·|ℓ|/h ≈ 1e-10; tolerance 1e-6 relative.
        var r = new Random(31);
        using var a = Random(r, 7, 5, 2);
        using var c = Random(r, 7, 5);
        using var d = Random(r, 7, 5, 0.3);
        using var t = DobiTruncation.Forward(a, gamma, beta);
        using var g = LossGradient(t.Output, c, d);
        var (dGamma, da) = t.Backward(g);
        da.Dispose();
        double h = 1e-5;
        double fp, fm;
        using (var x = MaskedReconstruction(a, gamma + h, beta, 5)) fp = Loss(x, c, d);
        using (var x = MaskedReconstruction(a, gamma - h, beta, 5)) fm = Loss(x, c, d);
        double fd = (fp - fm) / (2 * h);
        Assert.True(Math.Abs(fd) > 1e-3, "the test needs a non-negligible γ gradient");
        Assert.Equal(fd, dGamma, 1e-6 * Math.Max(1, Math.Abs(fd)));
    }

    [Fact]
    public void Truncation_forward_and_input_gradient_match_the_independent_versions()
    {
        var r = new Random(32);
        using var a = Random(r, 5, 8, 2); // L < m: the other orientation
        using var c = Random(r, 5, 8);
        using var d = Random(r, 5, 8, 0.3);
        using var t = DobiTruncation.Forward(a, 2.7, 4);
        using var expected = MaskedReconstruction(a, 2.7, 4, 5);
        Assert.True(MaxAbsDiff(expected, t.Output) < 1e-12 * Math.Max(1, MaxAbs(expected)));
        using var g = LossGradient(t.Output, c, d);
        var (_, da) = t.Backward(g);
        using (da)
        using (var fd = FiniteDifferenceGradient(a, 2.7, 4, 5, c, d))
            AssertGradientsAgree(fd, da);
    }

    // ---------------------------------------------------------------- 4–5. stage 2 subspace

    [Fact]
    public void Stage_two_on_one_sample_is_the_eckart_young_optimum()
    {
        // X [L, n], W [m, n], A = X Wᵀ [L, m]. V_f = A's top-k right singular vectors; W' = V_k V_kᵀ W gives
        // X W'ᵀ = A V_k V_kᵀ, whose error must be Σ_{i>k} σ_i(A)², taken here from the eigenvalues of AᵀA (another route).
        var r = new Random(41);
        int l = 12, n = 6, m = 9, k = 3;
        using var x = Random(r, l, n);
        using var w = Random(r, m, n);
        using var a = DenseMath.MatMul(x, false, w, true);
        using var svd = Lapack.Svd(a);
        using var vf = Tensor<double>.Zeros(m, k);
        for (int i = 0; i < k; i++)
            for (int y = 0; y < m; y++) vf[y, i] = svd.Vt[i, y];
        using var sub = new DobiSubspace(m);
        sub.Add(vf);
        using var vk = sub.Top(k, out var lambda);
        Assert.All(lambda, v => Assert.Equal(1, v, 1e-12)); // M = V_f V_fᵀ is a projector
        using var wp = DobiSubspace.UpdateWeight(w, vk);
        using var xw = DenseMath.MatMul(x, false, wp, true);
        double err = 0;
        for (int i = 0; i < a.Length; i++) err += Math.Pow(xw.Span[i] - a.Span[i], 2);

        using var ata = DenseMath.MatMul(a, true, a, false);
        using var eig = Lapack.SymmetricEigen(ata); // ascending: the m − k smallest are the tail
        double tail = eig.Values.Take(m - k).Sum();
        Assert.True(tail > 1, "the test needs a non-trivial tail");
        // Both sides are sums of O(10²) squares computed in float64; 1e-9 relative is far above rounding.
        Assert.Equal(tail, err, 1e-9 * tail);
    }

    [Fact]
    public void Update_weight_applies_the_mask_between_the_projections()
    {
        // W' = V_k diag(T) V_kᵀ W, written here as Σ_i T_i v_i (v_iᵀ W) with loops.
        var r = new Random(42);
        using var q = Random(r, 5, 5);
        using var svd = Lapack.Svd(q);
        using var vk = DenseMath.LeadingColumns(svd.U, 2); // orthonormal columns
        using var w = Random(r, 5, 3);
        double[] mask = [0.9, 0.25];
        using var wp = DobiSubspace.UpdateWeight(w, vk, mask);
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < 3; j++)
            {
                double s = 0;
                for (int c = 0; c < 2; c++)
                {
                    double proj = 0;
                    for (int p = 0; p < 5; p++) proj += vk[p, c] * w[p, j];
                    s += mask[c] * vk[i, c] * proj;
                }
                Assert.Equal(s, wp[i, j], 1e-13);
            }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Chunked_accumulation_equals_batch_pca_on_the_concatenation(bool centered)
    {
        // Batch PCA here is the SVD of the stacked (and, if centered, mean-subtracted) rows R [N, m]: its right singular
        // vectors are the principal directions, computed without forming any Gram. Compared as projectors V_k V_kᵀ
        // (signs are free); the random data has eigen-gaps of O(1), so 1e-10 is a loose float64 bound.
        var r = new Random(51 + (centered ? 1 : 0));
        int m = 7, k = 3;
        int[] widths = [2, 4, 1, 3];
        var samples = widths.Select(q => Random(r, m, q)).ToList();
        using var sub = new DobiSubspace(m, centered);
        foreach (var s in samples) sub.Add(s);
        int total = widths.Sum();
        Assert.Equal(total, sub.Count);

        using var rows = Tensor<double>.Zeros(total, m);
        int at = 0;
        foreach (var s in samples)
        {
            for (int c = 0; c < s.Cols; c++, at++)
                for (int y = 0; y < m; y++) rows[at, y] = s[y, c];
            s.Dispose();
        }
        if (centered)
            for (int y = 0; y < m; y++)
            {
                double mean = 0;
                for (int i = 0; i < total; i++) mean += rows[i, y];
                mean /= total;
                for (int i = 0; i < total; i++) rows[i, y] -= mean;
            }
        using var batch = Lapack.Svd(rows);
        using var vk = sub.Top(k, out var lambda);
        for (int i = 0; i < k; i++) Assert.Equal(batch.S[i] * batch.S[i], lambda[i], 1e-10 * batch.S[0] * batch.S[0]);
        for (int p = 0; p < m; p++)
            for (int q = 0; q < m; q++)
            {
                double expected = 0, actual = 0;
                for (int i = 0; i < k; i++)
                {
                    expected += batch.Vt[i, p] * batch.Vt[i, q];
                    actual += vk[p, i] * vk[q, i];
                }
                Assert.Equal(expected, actual, 1e-10);
            }
    }

    [Fact]
    public void Only_the_centered_subspace_depends_on_singular_vector_signs()
    {
        // Flipping a fed vector's sign (an SVD's free choice) leaves Σ v vᵀ unchanged but moves the mean, so the
        // centered variant's subspace changes: the reason the uncentered form is the default.
        var r = new Random(53);
        int m = 6, k = 2;
        using var v = Random(r, m, 4);
        using var flipped = v.Clone();
        for (int y = 0; y < m; y++) flipped[y, 1] = -flipped[y, 1];
        double Distance(bool centered)
        {
            using var s1 = new DobiSubspace(m, centered);
            using var s2 = new DobiSubspace(m, centered);
            s1.Add(v);
            s2.Add(flipped);
            using var a = s1.Top(k, out _);
            using var b = s2.Top(k, out _);
            double d = 0;
            for (int p = 0; p < m; p++)
                for (int q = 0; q < m; q++)
                {
                    double pa = 0, pb = 0;
                    for (int i = 0; i < k; i++) { pa += a[p, i] * a[q, i]; pb += b[p, i] * b[q, i]; }
                    d = Math.Max(d, Math.Abs(pa - pb));
                }
            return d;
        }
        Assert.True(Distance(false) < 1e-12);
        Assert.True(Distance(true) > 1e-3);
    }

    // ---------------------------------------------------------------- 6. remapping

    [Fact]
    public void Dynamic_map_has_the_documented_codes()
    {
        // From the definition: per decade e = 0…6, 2^e midpoints of [0.1, 1] scaled by 10^(e−6), both signs; plus 0 and 1.
        var codes = DynamicMap.Codes.ToArray();
        Assert.Equal(256, codes.Length);
        for (int i = 1; i < codes.Length; i++) Assert.True(codes[i] > codes[i - 1]);
        Assert.Contains(0.0, codes);
        Assert.Equal(1.0, codes[^1]);
        Assert.Equal(-(1 - 0.9 / 128), codes[0], 1e-15);
        Assert.Equal(0.55e-6, codes.Where(c => c > 0).Min(), 1e-20);
        Assert.Equal(64, codes.Count(c => c > 0.1 && c < 1));
        Assert.Equal(127, codes.Count(c => c < 0));
        // Neighbouring top-decade midpoints are 0.9/64 apart; every other gap is smaller.
        Assert.Equal(0.9 / 64, DynamicMap.LargestGap, 1e-15);
    }

    [Fact]
    public void Vector_round_trip_error_is_at_most_absmax_times_half_the_largest_gap()
    {
        // Values spread over seven decades, both signs, like singular vectors with outliers. Each code must be the nearest
        // one (checked by brute force over all 256) and the error ≤ absmax·(0.9/64)/2, the hand-derived half gap.
        var r = new Random(61);
        var codes = DynamicMap.Codes.ToArray();
        for (int trial = 0; trial < 20; trial++)
        {
            var x = new double[40];
            for (int j = 0; j < x.Length; j++) x[j] = (r.Next(2) == 0 ? -1 : 1) * Math.Pow(10, -7 * r.NextDouble()) * 3.7;
            var q = new byte[x.Length];
            double absmax = DynamicMap.QuantizeVector(x, q);
            Assert.Equal(x.Max(Math.Abs), absmax);
            var y = new double[x.Length];
            DynamicMap.DequantizeVector(q, absmax, y);
            for (int j = 0; j < x.Length; j++)
            {
                Assert.True(Math.Abs(x[j] - y[j]) <= absmax * (0.9 / 64) / 2 * (1 + 1e-12));
                double best = codes.Min(c => Math.Abs(x[j] / absmax - c));
                Assert.Equal(best, Math.Abs(x[j] / absmax - codes[q[j]]), 1e-15);
            }
        }
        var zero = new byte[3];
        Assert.Equal(0, DynamicMap.QuantizeVector([0, 0, 0], zero));
    }

    [Theory]
    [InlineData(9, 5)]
    [InlineData(5, 9)]
    [InlineData(6, 6)]
    public void Remapped_factors_are_within_the_code_bound_of_the_exact_factors(int m, int n)
    {
        // Against the test's own SVD: long vector a_i = σ_i·(u_i or v_i), short b_i; signs aligned by a dot product.
        // Quantized entries: |Δ| ≤ absmax·gap/2 (+1e-12 for the two SVDs' rounding); the remainder is exact in float64 mode.
        var r = new Random(62 + m);
        using var w = Random(r, m, n, 3);
        int p = Math.Min(m, n), big = Math.Max(m, n), k = p - 1;
        var f = DobiRemap.Quantize(w, k, halfPrecision: false);
        var (lng, sht) = DobiRemap.DequantizeFactors(f);
        using var svd = Lapack.Svd(w);
        double halfGap = 0.9 / 128;
        for (int i = 0; i < k; i++)
        {
            var a = Enumerable.Range(0, big).Select(x => svd.S[i] * (m >= n ? svd.U[x, i] : svd.Vt[i, x])).ToArray();
            var b = Enumerable.Range(0, p).Select(x => m >= n ? svd.Vt[i, x] : svd.U[x, i]).ToArray();
            double dot = 0;
            for (int x = 0; x < big; x++) dot += a[x] * lng[x, i];
            double sign = Math.Sign(dot);
            double absA = a.Take(p).Max(Math.Abs), absB = b.Max(Math.Abs);
            for (int x = 0; x < p; x++)
            {
                Assert.True(Math.Abs(sign * a[x] - lng[x, i]) <= absA * halfGap + 1e-12);
                Assert.True(Math.Abs(sign * b[x] - sht[x, i]) <= absB * halfGap + 1e-12);
            }
            for (int x = p; x < big; x++) Assert.Equal(sign * a[x], lng[x, i], 1e-12);
        }
        lng.Dispose();
        sht.Dispose();
    }

    [Theory]
    [InlineData(9, 5)]
    [InlineData(5, 9)]
    [InlineData(7, 7)]
    public void Remapped_storage_is_k_times_the_larger_side_and_mn_at_full_rank(int m, int n)
    {
        // Counted from the arrays held: two bytes per 16-bit unit plus the 16-bit remainder.
        var r = new Random(63);
        using var w = Random(r, m, n);
        int p = Math.Min(m, n);
        foreach (int k in new[] { 0, 1, 3, p })
        {
            var f = DobiRemap.Quantize(w, k);
            Assert.Equal((long)k * Math.Max(m, n), f.StoredHalfWords);
            Assert.Equal(DobiRemap.CountedStorage(m, n, k), f.StoredHalfWords);
            Assert.Equal(2L * k, f.AbsmaxHalfWords);
        }
        Assert.Equal((long)m * n, DobiRemap.Quantize(w, p).StoredHalfWords);
    }

    [Fact]
    public void Wide_and_tall_branches_are_transposes_of_each_other()
    {
        // The m < n branch quantizes U and the first m entries of σV, keeping the rest of σV in 16 bits: exactly the
        // m ≥ n branch applied to Wᵀ. With the sign fixed on the long vector the two give the same codes.
        var r = new Random(64);
        using var w = Random(r, 5, 9, 2);
        using var wt = DenseMath.Transposed(w);
        var wide = DobiRemap.Quantize(w, 4);
        var tall = DobiRemap.Quantize(wt, 4);
        Assert.False(wide.LongSideIsRows);
        Assert.True(tall.LongSideIsRows);
        Assert.Equal(tall.LongCodes, wide.LongCodes);
        Assert.Equal(tall.ShortCodes, wide.ShortCodes);
        using var a = DobiRemap.Dequantize(wide);
        using var b = DobiRemap.Dequantize(tall);
        using var bt = DenseMath.Transposed(b);
        Assert.True(MaxAbsDiff(a, bt) < 1e-12);
    }

    [Fact]
    public void Full_rank_remap_reconstructs_w_within_the_propagated_code_bound()
    {
        // W = Σ a_i b_iᵀ with ‖a_i‖ = σ_i, ‖b_i‖ = 1. Per vector, the quantized entries err by ≤ absmax·gap/2 ≤ ‖·‖·gap/2,
        // so ‖δa_i‖ ≤ σ_i·h and ‖δb_i‖ ≤ h with h = √p·gap/2 (p entries quantized); then
        // ‖W − Ŵ‖_F ≤ Σ σ_i(2h + h²). Float64 mode so the 16-bit rounding does not enter; the bound is not tight but fails
        // on any factor mix-up (which costs O(‖W‖)).
        var r = new Random(65);
        foreach (var (m, n) in new[] { (8, 5), (5, 8) })
        {
            using var w = Random(r, m, n, 2);
            int p = Math.Min(m, n);
            using var rec = DobiRemap.Dequantize(DobiRemap.Quantize(w, p, halfPrecision: false));
            using var svd = Lapack.Svd(w);
            double h = Math.Sqrt(p) * (0.9 / 64) / 2;
            double bound = svd.S.Sum() * (2 * h + h * h);
            double err = 0;
            for (int i = 0; i < w.Length; i++) err += Math.Pow(w.Span[i] - rec.Span[i], 2);
            Assert.True(Math.Sqrt(err) <= bound, $"{Math.Sqrt(err)} > {bound}");
            Assert.True(Math.Sqrt(err) > 0);
        }
        // In 16-bit mode the scales and the remainder are exactly representable as IEEE halves.
        using var w2 = Random(r, 9, 4, 2);
        var f = DobiRemap.Quantize(w2, 3);
        Assert.All(f.LongAbsmax.Concat(f.ShortAbsmax).Concat(f.Remainder), x => Assert.Equal(x, (double)(Half)x));
    }

    // ---------------------------------------------------------------- 7. ratio bookkeeping

    /// <summary>Mixed shapes at L = 8 (ρ = 2, 2, 2, 1.5, 3), including a tall, a wide and a layer whose factors exceed mn.</summary>
    private static readonly (int M, int N)[] Shapes = [(16, 16), (40, 16), (16, 40), (20, 12), (24, 24)];

    /// <summary>γ per layer, chosen so that the weight ranks ρ·γ are the integers 4, 6, 8, 3, 15.</summary>
    private static readonly double[] Gammas = [2, 3, 4, 2, 5];

    private static readonly int[] Ranks = [4, 6, 8, 3, 15];

    [Fact]
    public void Ratio_without_remapping_equals_counted_factor_parameters()
    {
        // Per layer: u [m, k] and v [k, n] hold mk + kn values, or the dense mn when that is smaller (the last layer:
        // 15·48 = 720 > 576). Counted here, compared with the formula's Σ min((m+n)γρ, mn)/Σ mn.
        long stored = 0, total = 0;
        for (int l = 0; l < Shapes.Length; l++)
        {
            var (m, n) = Shapes[l];
            long factors = (long)m * Ranks[l] + (long)Ranks[l] * n;
            stored += Math.Min(factors, (long)m * n);
            total += (long)m * n;
        }
        Assert.Equal((double)stored / total, DobiRatio.Ratio(Shapes, Gammas, 8, remap: false), 1e-14);
    }

    [Fact]
    public void Ratio_with_remapping_equals_the_storage_of_remapped_weights()
    {
        // Each layer is actually remapped at k = ρ·γ and its held arrays counted (StoredHalfWords).
        var r = new Random(71);
        long stored = 0, total = 0;
        for (int l = 0; l < Shapes.Length; l++)
        {
            var (m, n) = Shapes[l];
            using var w = Random(r, m, n);
            stored += DobiRemap.Quantize(w, Ranks[l]).StoredHalfWords;
            total += (long)m * n;
        }
        Assert.Equal((double)stored / total, DobiRatio.Ratio(Shapes, Gammas, 8, remap: true), 1e-14);
        // γ = L is rank min(m, n): remapped it costs exactly mn, so the ratio is 1.
        Assert.Equal(1.0, DobiRatio.Ratio(Shapes, Enumerable.Repeat(8.0, Shapes.Length).ToArray(), 8, remap: true), 1e-14);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Ratio_gradient_matches_finite_differences(bool remap)
    {
        // The ratio is piecewise linear in each γ; away from a kink central differences are exact up to rounding
        // (≈ 1e-16/h), so 1e-8 is loose. Layer 5 without remapping is capped: slope 0.
        var g = new double[Shapes.Length];
        double[] gammas = [2.1, 3.3, 4.7, 2.2, 5.4];
        DobiRatio.Ratio(Shapes, gammas, 8, remap, g);
        for (int l = 0; l < Shapes.Length; l++)
        {
            double h = 1e-6;
            var p = (double[])gammas.Clone();
            var q = (double[])gammas.Clone();
            p[l] += h;
            q[l] -= h;
            double fd = (DobiRatio.Ratio(Shapes, p, 8, remap) - DobiRatio.Ratio(Shapes, q, 8, remap)) / (2 * h);
            Assert.Equal(fd, g[l], 1e-8);
        }
        if (!remap) Assert.Equal(0, g[4]);
    }

    [Fact]
    public void Initial_gamma_with_real_rho_hits_the_target_and_integer_rho_does_not()
    {
        // LLaMA-13B-like: min = 20, L = 8 gives ρ = 2.5 (5120/2048). Each uncapped layer at its γ₀ must sit at the target;
        // the reference's ⌊ρ⌋ = 2 starts it 2.5/2 = 1.25 times too high.
        (int M, int N)[] shape = [(20, 20)];
        foreach (bool remap in new[] { false, true })
        {
            double g0 = DobiRatio.InitialGamma(20, 20, 8, 0.4, remap);
            Assert.Equal(0.4, DobiRatio.Ratio(shape, [g0], 8, remap), 1e-14);
            double gi = DobiRatio.InitialGamma(20, 20, 8, 0.4, remap, RhoMode.Integer);
            Assert.Equal(0.5, DobiRatio.Ratio(shape, [gi], 8, remap), 1e-14);
        }
        foreach (var (m, n) in Shapes)
        {
            double g0 = DobiRatio.InitialGamma(m, n, 8, 0.3, remap: true);
            Assert.Equal(0.3, DobiRatio.Ratio([(m, n)], [g0], 8, remap: true), 1e-14);
        }
        // min(m, n) < L: ⌊ρ⌋ = 0 and the reference's γ₀ is undefined.
        Assert.Throws<ArgumentException>(() => DobiRatio.InitialGamma(4, 6, 8, 0.4, true, RhoMode.Integer));
        Assert.Equal(0.4 * 8, DobiRatio.InitialGamma(4, 6, 8, 0.4, true), 1e-12);
    }
}
