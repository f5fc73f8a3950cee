using SvdLlm.Compression.Delta;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Tests;

/// <summary>
/// Delta compression's numerical core (LowRank, DARE, ImPart) against checks that do not reuse the code under test:
/// the boundary of ImPart's Algorithm 1 characterised by brute force over every rank, Eckart–Young tails of matrices
/// built with a known spectrum, budgets worked out by hand from the shapes, and Monte-Carlo means over seeds whose
/// tolerances come from variances derived here (DARE: ΔW²(CR − 1) per entry; ImPart: the product of the two columns'
/// keep-rescale variances, summed over triplets).
/// </summary>
public class DeltaCompressionTests
{
    private static Tensor<double> Random(Random r, int rows, int cols, double scale = 1) => TruncationTests.Random(r, rows, cols, scale);

    internal static double[] DescendingSpectrum(Random r, int n0)
    {
        // A decaying spectrum with noise, sorted: distinct values, ratios spread over several decades.
        var s = new double[n0];
        for (int i = 0; i < n0; i++) s[i] = Math.Exp(-4.0 * i / n0) * (0.5 + r.NextDouble());
        Array.Sort(s);
        Array.Reverse(s);
        return s;
    }

    private static double MaxAbsDiff(Tensor<double> x, Tensor<double> y)
    {
        Assert.Equal(x.Shape, y.Shape);
        double d = 0;
        for (int i = 0; i < x.Length; i++) d = Math.Max(d, Math.Abs(x.Span[i] - y.Span[i]));
        return d;
    }

    private static double SquaredDistance(ReadOnlySpan<double> x, ReadOnlySpan<double> y)
    {
        double s = 0;
        for (int i = 0; i < x.Length; i++) s += (x[i] - y[i]) * (x[i] - y[i]);
        return s;
    }

    private static bool BitwiseEqual(Tensor<double> x, Tensor<double> y)
    {
        if (!x.Shape.SequenceEqual(y.Shape)) return false;
        for (int i = 0; i < x.Length; i++)
            if (BitConverter.DoubleToInt64Bits(x.Span[i]) != BitConverter.DoubleToInt64Bits(y.Span[i])) return false;
        return true;
    }

    // ---------------------------------------------------------------- Algorithm 1

    [Theory]
    [InlineData(7, 0.5)]
    [InlineData(64, 1.0)]
    [InlineData(64, 2.0)]
    [InlineData(1000, 0.5)]
    [InlineData(1000, 1.0)]
    public void Sparsity_ratios_meet_the_target_within_one_vector_and_never_decrease(int n0, double c)
    {
        var rng = new Random(n0 * 31 + (int)(c * 10));
        foreach (double alpha in new[] { 0.3, 0.75, 0.9, 0.97 })
            foreach (double beta in new[] { 0.0, 0.2, 0.6, 0.8 })
            {
                var sigma = DescendingSpectrum(rng, n0);
                var res = ImpartSparsity.Compute(sigma, alpha, beta, c);
                var p = res.DropProbabilities;
                Assert.Equal(n0, p.Length);
                string at = $"n0 = {n0}, α = {alpha}, β = {beta}, C = {c}";

                // α ≤ mean(p) < α + 1/n₀: never over the budget, under it by less than one vector's share; < 1e-3 for n₀ ≥ 1000.
                double mean = p.Sum() / n0;
                Assert.InRange(mean, alpha - 1e-9 / n0, alpha + 1.0 / n0);
                if (n0 >= 1000) Assert.True(Math.Abs(mean - alpha) < 1e-3, at);
                Assert.Equal(mean, res.MeanDropProbability, 1e-15);

                for (int i = 0; i < n0; i++)
                {
                    Assert.InRange(p[i], 0.0, 1.0);
                    if (i > 0) Assert.True(p[i] >= p[i - 1], $"{at}: p[{i}] = {p[i]} < p[{i - 1}] = {p[i - 1]}");
                    if (i < res.Rank) Assert.True(p[i] < 1, $"{at}: kept triplet {i} has p = 1");
                    else Assert.Equal(1.0, p[i]);
                }

                // Brute force: pre-prune ⌊min(β, α)·n₀⌋ (β = 0.6, 0.8 exceed α = 0.3, 0.75 and are clamped), γ from the
                // pre-pruned share, and r the largest rank whose total drop (dropped triplets 1, kept ones by the formula)
                // still reaches α·n₀.
                int pre = (int)Math.Floor(Math.Min(alpha, beta) * n0 + 1e-9);
                Assert.Equal(pre, res.PrePruned);
                double betaEff = (double)pre / n0;
                double gamma = (alpha - betaEff) / (1 - betaEff);
                var formula = sigma.Select(s => gamma * (1 - Math.Pow(s / sigma[0], c))).ToArray();
                double Total(int rank) => n0 - rank + formula.Take(rank).Sum();
                int expectedRank = n0 - pre;
                while (expectedRank > 0 && Total(expectedRank) < alpha * n0 - 1e-9) expectedRank--;
                Assert.Equal(expectedRank, res.Rank);
                for (int i = 0; i < res.Rank; i++) Assert.Equal(formula[i], p[i], 1e-14);
                if (res.Rank > 0) Assert.Equal(0.0, p[0]); // σ₁ is σ_max: the most important vector is kept dense
            }
    }

    [Theory]
    [InlineData(64, 0.7, 0.0, 19)]            // (1 − 0.7)·64 = 19.2
    [InlineData(64, 0.6875, 0.0, 20)]         // 0.6875 = 11/16: (1 − α)·64 = 20 exactly
    [InlineData(64, 0.6875, 0.5, 20)]
    [InlineData(64, 0.6875, 0.9, 20)]         // β > α: clamped to α
    [InlineData(10, 0.65, 0.3, 3)]            // 3.5
    [InlineData(48, 1 - 17.0 / 48, 0.2, 17)]  // 17 up to rounding of α
    public void Exponent_zero_is_plain_truncation_at_the_floor_of_the_kept_fraction(int n0, double alpha, double beta, int rank)
    {
        var sigma = DescendingSpectrum(new Random(n0), n0);
        var res = ImpartSparsity.Compute(sigma, alpha, beta, 0);
        Assert.Equal(rank, res.Rank);
        for (int i = 0; i < n0; i++) Assert.Equal(i < rank ? 0.0 : 1.0, res.DropProbabilities[i]);
    }

    [Theory]
    [InlineData(0.0, 1.0)]
    [InlineData(0.5, 2.0)]
    [InlineData(0.0, 0.0)]
    public void Zero_target_sparsity_keeps_every_vector_dense(double beta, double c)
    {
        var sigma = DescendingSpectrum(new Random(3), 40);
        var res = ImpartSparsity.Compute(sigma, 0, beta, c);
        Assert.Equal(40, res.Rank);
        Assert.Equal(0, res.PrePruned);
        Assert.All(res.DropProbabilities, p => Assert.Equal(0.0, p));
    }

    [Theory]
    [InlineData(10, 0.9, 0.35, 3)]    // ⌊3.5⌋ = 3, not the authors' ⌈3.5⌉ = 4
    [InlineData(100, 0.9, 0.29, 29)]  // 0.29·100 = 28.999999999999996 in binary: still 29
    [InlineData(10, 0.2, 0.5, 2)]     // β > α: clamped, ⌊0.2·10⌋ = 2
    public void Pre_prune_removes_the_floor_of_beta_n0_with_beta_clamped_to_alpha(int n0, double alpha, double beta, int prePruned)
    {
        var sigma = DescendingSpectrum(new Random(5), n0);
        var res = ImpartSparsity.Compute(sigma, alpha, beta, 1);
        Assert.Equal(prePruned, res.PrePruned);
        for (int i = n0 - prePruned; i < n0; i++) Assert.Equal(1.0, res.DropProbabilities[i]);
        double betaEff = (double)prePruned / n0;
        Assert.Equal((alpha - betaEff) / (1 - betaEff), res.Gamma, 1e-15); // 0 for the clamped case: α·n₀ = 2 is pre-pruned
    }

    [Fact]
    public void Invalid_sparsity_inputs_are_refused()
    {
        double[] sigma = [3, 2, 1];
        Assert.Throws<ArgumentOutOfRangeException>(() => ImpartSparsity.Compute(sigma, 1, 0, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => ImpartSparsity.Compute(sigma, -0.1, 0, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => ImpartSparsity.Compute(sigma, double.NaN, 0, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => ImpartSparsity.Compute(sigma, 0.5, 1, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => ImpartSparsity.Compute(sigma, 0.5, -0.1, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => ImpartSparsity.Compute(sigma, 0.5, 0, -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => ImpartSparsity.Compute(sigma, 0.5, 0, double.PositiveInfinity));
        Assert.Throws<ArgumentException>(() => ImpartSparsity.Compute([], 0.5, 0, 1));
        Assert.Contains("descending", Assert.Throws<ArgumentException>(() => ImpartSparsity.Compute([1, 2, 3], 0.5, 0, 1)).Message);
        Assert.Throws<ArgumentException>(() => ImpartSparsity.Compute([3, double.NaN, 1], 0.5, 0, 1));
        Assert.Throws<ArgumentException>(() => ImpartSparsity.Compute([3, 2, -1], 0.5, 0, 1));
    }

    // ---------------------------------------------------------------- budgets

    [Fact]
    public void Matrix_sparsity_from_the_shape_matches_ImParts_constants_where_they_apply()
    {
        // Square 4096² at CR 32: U and V hold 2·4096² values at full rank, so keeping 4096²/32 of them drops
        // 1 − 1/64 = 63/64, which is ImPart's attention formula (1 + α_all)/2 with α_all = 31/32.
        Assert.Equal(63.0 / 64, DeltaBudget.Sparsity(4096, 4096, 32), 1e-15);
        // LLaMA-7B MLP, [11008, 4096] at CR 32: 1 − (11008·4096)/(32·15104·4096) = 1 − 11008/483328; ImPart's hard-coded
        // (0.55 + 1.45·α_all)/2 approximates it to within 1e-3.
        double mlp = DeltaBudget.Sparsity(11008, 4096, 32);
        Assert.Equal(1 - 11008.0 / 483328, mlp, 1e-15);
        Assert.True(Math.Abs(mlp - (0.55 + 1.45 * (31.0 / 32)) / 2) < 1e-3);
        Assert.Equal(mlp, DeltaBudget.Sparsity(4096, 11008, 32), 1e-15); // U and V swap roles
        // The budget identity for assorted shapes: (1 − α)·n₀·(m + n) = mn/CR.
        foreach (var (m, n, cr) in new[] { (64, 96, 4.0), (96, 64, 2.5), (17, 5, 1.1), (30, 30, 100.0) })
        {
            double alpha = DeltaBudget.Sparsity(m, n, cr);
            Assert.Equal((double)m * n / cr, (1 - alpha) * Math.Min(m, n) * (m + n), 1e-9);
        }
    }

    [Fact]
    public void A_ratio_below_full_rank_storage_is_refused_and_full_rank_itself_is_zero_sparsity()
    {
        // [64, 96]: full-rank U and V hold 64·160 = 10240 values for 6144 dense ones, CR 0.6.
        Assert.Equal(0.6, DeltaBudget.FullRankRatio(64, 96), 1e-15);
        Assert.Equal(0.5, DeltaBudget.FullRankRatio(8, 8));
        Assert.Equal(0.0, DeltaBudget.Sparsity(64, 96, DeltaBudget.FullRankRatio(64, 96)));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => DeltaBudget.Sparsity(64, 96, 0.59));
        Assert.Contains("more than full-rank storage", e.Message);
        foreach (double bad in new[] { 0.0, -2.0, double.NaN, double.PositiveInfinity })
        {
            Assert.Throws<ArgumentOutOfRangeException>(() => DeltaBudget.Sparsity(64, 96, bad));
            Assert.Throws<ArgumentOutOfRangeException>(() => DeltaBudget.LowRankRank(64, 96, bad));
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => DeltaBudget.Sparsity(0, 96, 4));
    }

    [Theory]
    [InlineData(64, 96, 1.92, 20)]   // 6144/(1.92·160) = 20, which binary arithmetic gives as 19.999999999999996
    [InlineData(64, 96, 4, 9)]       // 9.6
    [InlineData(96, 64, 4, 9)]
    [InlineData(64, 96, 1000, 1)]    // 0.038: clipped up to one triplet
    [InlineData(64, 96, 0.1, 64)]    // 384: clipped to full rank
    public void LowRank_rank_is_the_floor_of_the_equal_budget_rank(int m, int n, double cr, int rank) =>
        Assert.Equal(rank, DeltaBudget.LowRankRank(m, n, cr));

    // ---------------------------------------------------------------- LowRank

    [Theory]
    [InlineData(64, 96)]
    [InlineData(96, 64)]
    public void LowRank_meets_Eckart_Young_on_a_matrix_with_a_known_spectrum(int m, int n)
    {
        var sigma = Enumerable.Range(0, Math.Min(m, n)).Select(i => 5 * Math.Pow(0.93, i)).ToArray();
        using var delta = TruncationTests.WithSpectrum(new Random(11), m, n, sigma);
        foreach (var (cr, rank) in new[] { (2.0, 19), (4.0, 9), (12.0, 3) }) // ⌊6144/(CR·160)⌋
        {
            using var res = DeltaCompression.LowRank(delta, cr);
            Assert.Equal(rank, res.Rank);
            Assert.Equal((long)rank * (m + n), res.StoredValues);
            double tail = sigma.Skip(rank).Sum(s => s * s);
            Assert.Equal(tail, SquaredDistance(delta.Span, res.Delta.Span), 1e-10 * sigma.Sum(s => s * s));
        }
    }

    // ---------------------------------------------------------------- DARE

    [Fact]
    public void Dare_is_unbiased_with_the_variance_of_a_rescaled_Bernoulli_and_keeps_one_entry_in_cr()
    {
        const int m = 64, n = 96, draws = 400;
        const double cr = 4;
        using var delta = Random(new Random(21), m, n);
        var mean = new double[m * n];
        long kept = 0;
        for (int s = 0; s < draws; s++)
        {
            using var res = DeltaCompression.Dare(delta, cr, (ulong)s);
            Assert.Null(res.Rank);
            long nonZero = 0;
            for (int i = 0; i < mean.Length; i++)
            {
                double x = res.Delta.Span[i];
                if (x != 0)
                {
                    Assert.Equal(cr * delta.Span[i], x); // 1/q = 4 exactly
                    nonZero++;
                }
                mean[i] += x / draws;
            }
            Assert.Equal(nonZero, res.StoredValues); // no entry of a uniform random ΔW is 0
            kept += res.StoredValues;
        }
        // Kept fraction: Binomial(draws·mn, 1/4), sd √(q(1 − q)/(draws·mn)) = 2.8e-4.
        Assert.InRange((double)kept / ((long)draws * m * n), 0.25 - 5 * 2.8e-4, 0.25 + 5 * 2.8e-4);
        // Mean of the draws: per entry variance ΔW²(CR − 1)/draws, independent over entries, so
        // E‖mean − ΔW‖²_F = ‖ΔW‖²_F (CR − 1)/draws. The realised sum of 6144 independent squares has a relative sd of
        // ≈ √(2·E[ΔW⁴]/(mn·E[ΔW²]²)) = √(3.6/6144) = 2.4 % (uniform ΔW), so its square root lies within ±5 % with
        // overwhelming probability (the norm's sd is ≈ 1.2 %); ±10 % still fails a biased or a wrongly scaled mask.
        double expected = SquaredDistance(delta.Span, new double[m * n]) * (cr - 1) / draws;
        double ratio = Math.Sqrt(SquaredDistance(mean, delta.Span) / expected);
        Assert.InRange(ratio, 0.9, 1.1);
    }

    [Fact]
    public void Dare_at_ratio_one_is_the_delta_itself_and_below_one_is_refused()
    {
        using var delta = Random(new Random(22), 8, 12);
        using var res = DeltaCompression.Dare(delta, 1, 5);
        Assert.True(BitwiseEqual(delta, res.Delta));
        Assert.Equal(96, res.StoredValues);
        Assert.Equal(1.0, res.AchievedRatio);
        Assert.Throws<ArgumentOutOfRangeException>(() => DeltaCompression.Dare(delta, 0.9, 5));
    }

    // ---------------------------------------------------------------- ImPart

    [Theory]
    [InlineData(64, 96, 0.0, 1.0)]
    [InlineData(64, 96, 0.4, 0.5)]   // β > α = 0: clamped, nothing pre-pruned
    [InlineData(96, 64, 0.0, 2.0)]
    public void Impart_at_the_full_rank_budget_reconstructs_the_delta(int m, int n, double beta, double c)
    {
        using var delta = Random(new Random(31), m, n);
        using var res = DeltaCompression.Impart(delta, DeltaBudget.FullRankRatio(m, n), beta, c, 7);
        Assert.Equal(Math.Min(m, n), res.Rank);
        Assert.Equal((long)Math.Min(m, n) * (m + n), res.StoredValues);
        Assert.True(MaxAbsDiff(delta, res.Delta) < 1e-10, $"max error {MaxAbsDiff(delta, res.Delta)}");
    }

    [Theory]
    [InlineData(64, 96)]
    [InlineData(96, 64)]
    public void Impart_with_exponent_zero_equals_LowRank_at_the_same_ratio(int m, int n)
    {
        using var delta = Random(new Random(32), m, n);
        foreach (double cr in new[] { 1.92, 3.0, 8.0, 20.0 })
            foreach (double beta in new[] { 0.0, 0.3 })
            {
                using var low = DeltaCompression.LowRank(delta, cr);
                using var imp = DeltaCompression.Impart(delta, cr, beta, 0, 99);
                Assert.Equal(low.Rank, imp.Rank);
                Assert.Equal(low.StoredValues, imp.StoredValues);
                Assert.True(MaxAbsDiff(low.Delta, imp.Delta) <= 1e-10, $"CR {cr}, β {beta}: {MaxAbsDiff(low.Delta, imp.Delta)}");
            }
    }

    [Fact]
    public void Impart_is_unbiased_over_masks_for_the_triplets_it_keeps()
    {
        const int m = 32, n = 48, draws = 300;
        const double cr = 3, beta = 0.2, c = 1;
        using var delta = Random(new Random(41), m, n);
        using var svd = Lapack.Svd(delta); // the test's own SVD, for the target and the variance
        int k = svd.S.Length;

        using var first = DeltaCompression.Impart(delta, cr, beta, c, 0);
        int r = first.Rank!.Value;
        var p = first.Ratios!.DropProbabilities;
        Assert.InRange(r, 2, k - 1);
        Assert.True(p[r - 1] > 0.2, $"p[r−1] = {p[r - 1]}: the masks must actually drop entries for this test to mean anything");

        var target = new double[m * n];
        var variance = new double[m * n];
        for (int i = 0; i < r; i++)
        {
            // A column of length len keeps len − d entries, each scaled by len/(len − d): E = 1, E[x²] = len/(len − d).
            int dU = (int)Math.Floor(m * p[i]), dV = (int)Math.Floor(n * p[i]);
            double second = (double)m / (m - dU) * ((double)n / (n - dV));
            for (int a = 0; a < m; a++)
                for (int b = 0; b < n; b++)
                {
                    double t = svd.S[i] * svd.U[a, i] * svd.Vt[i, b];
                    target[a * n + b] += t;
                    variance[a * n + b] += (second - 1) * t * t; // masks independent across triplets and factors
                }
        }

        var mean = new double[m * n];
        for (int s = 0; s < draws; s++)
        {
            using var res = DeltaCompression.Impart(delta, cr, beta, c, (ulong)s);
            for (int i = 0; i < mean.Length; i++) mean[i] += res.Delta.Span[i] / draws;
        }
        // E‖mean − target‖²_F = Σ variance / draws. The error sums the fluctuations of 2r independent column masks over
        // 300 draws, so its norm concentrates near √expectation: over 12 disjoint blocks of 300 seeds the ratio ranged
        // 0.95–1.06 (sd ≈ 0.03), so ±15 % is about five sd. A bias does not shrink with the draws: ImPart's own
        // 1/(1 − p) rescale (unbiased only when len·p is an integer) gives 1.22–1.47 here and fails, as does a missing
        // rescale or a mask of the wrong size.
        double expected = variance.Sum() / draws;
        double ratio = Math.Sqrt(SquaredDistance(mean, target) / expected);
        Assert.InRange(ratio, 0.85, 1.15);
        // And the triplets the loop dropped are really gone: the mean is far from ΔW itself.
        Assert.True(SquaredDistance(mean, delta.Span) > 10 * expected);
    }

    [Theory]
    [InlineData(64, 96, 3.0)]
    [InlineData(96, 64, 6.0)]
    [InlineData(48, 48, 5.0)]
    public void Impart_stores_the_kept_entries_of_the_kept_vectors_and_meets_the_ratio_within_one_vector(int m, int n, double cr)
    {
        using var delta = Random(new Random(51), m, n);
        using var res = DeltaCompression.Impart(delta, cr, 0.3, 1, 3);
        int r = res.Rank!.Value;
        var p = res.Ratios!.DropProbabilities;
        long exact = 0;
        double expected = 0;
        for (int i = 0; i < r; i++)
        {
            exact += m - (long)Math.Floor(m * p[i]) + n - (long)Math.Floor(n * p[i]);
            expected += (1 - p[i]) * (m + n);
        }
        Assert.Equal(exact, res.StoredValues);
        // ⌊len·p⌋ drops less than len·p by under one entry per column: 2 per kept triplet at most.
        Assert.InRange(res.StoredValues - expected, 0, 2 * r);
        // Budget: Σ(1 − p)(m + n) lies in (mn/CR − (m + n), mn/CR] (one vector's share, Algorithm 1), plus the floors.
        double budget = (double)m * n / cr;
        Assert.InRange(res.StoredValues, budget - (m + n), budget + 2 * r);
        Assert.Equal((double)m * n / res.StoredValues, res.AchievedRatio);
        // The reconstruction has rank ≤ r.
        using var check = Lapack.Svd(res.Delta);
        for (int i = r; i < check.S.Length; i++) Assert.True(check.S[i] < 1e-10 * check.S[0], $"σ[{i}] = {check.S[i]}");
    }

    [Fact]
    public void Impart_over_matrices_of_several_shapes_reproduces_the_global_ratio()
    {
        // Attention-like square and MLP-like wide/tall matrices at one CR: the shape-derived α gives each the same CR,
        // so the total does too, within one vector's share (m + n) per matrix plus 2 per kept triplet.
        const double cr = 6;
        (int M, int N)[] shapes = [(48, 48), (48, 96), (96, 48), (40, 40)];
        long dense = 0, stored = 0, slackLow = 0, slackHigh = 0;
        var rng = new Random(61);
        foreach (var (m, n) in shapes)
        {
            using var delta = Random(rng, m, n);
            using var res = DeltaCompression.Impart(delta, cr, 0.5, 0.5, DeltaSeed.ForMatrix(1, $"{m}x{n}"));
            dense += (long)m * n;
            stored += res.StoredValues;
            slackLow += m + n;
            slackHigh += 2L * res.Rank!.Value;
        }
        Assert.InRange(stored, dense / cr - slackLow, dense / cr + slackHigh);
        Assert.InRange((double)dense / stored, cr * 0.9, cr * 1.1);
    }

    // ---------------------------------------------------------------- determinism and validation

    [Fact]
    public void The_same_seed_gives_the_same_bits_and_another_seed_differs()
    {
        using var delta = Random(new Random(71), 40, 56);
        using var before = delta.Clone();
        using (var a = DeltaCompression.Dare(delta, 5, 123))
        using (var b = DeltaCompression.Dare(delta, 5, 123))
        using (var other = DeltaCompression.Dare(delta, 5, 124))
        {
            Assert.True(BitwiseEqual(a.Delta, b.Delta));
            Assert.Equal(a.StoredValues, b.StoredValues);
            Assert.False(BitwiseEqual(a.Delta, other.Delta));
        }
        using (var a = DeltaCompression.Impart(delta, 4, 0.3, 1, 123))
        using (var b = DeltaCompression.Impart(delta, 4, 0.3, 1, 123))
        using (var other = DeltaCompression.Impart(delta, 4, 0.3, 1, 124))
        {
            Assert.True(BitwiseEqual(a.Delta, b.Delta));
            Assert.Equal(a.StoredValues, b.StoredValues);
            Assert.False(BitwiseEqual(a.Delta, other.Delta));
        }
        Assert.True(BitwiseEqual(before, delta)); // the input is never modified

        Assert.Equal(DeltaSeed.ForMatrix(7, "model.layers.0.self_attn.q_proj"), DeltaSeed.ForMatrix(7, "model.layers.0.self_attn.q_proj"));
        Assert.NotEqual(DeltaSeed.ForMatrix(7, "model.layers.0.self_attn.q_proj"), DeltaSeed.ForMatrix(7, "model.layers.0.self_attn.k_proj"));
        Assert.NotEqual(DeltaSeed.ForMatrix(7, "model.layers.0.self_attn.q_proj"), DeltaSeed.ForMatrix(8, "model.layers.0.self_attn.q_proj"));
    }

    [Fact]
    public void Fnv1a64_matches_the_published_test_vectors()
    {
        // Fowler–Noll–Vo reference test vectors for FNV-1a 64 (also recomputed with a three-line Python loop).
        Assert.Equal(0xcbf29ce484222325UL, DeltaSeed.Fnv1a64(""u8));
        Assert.Equal(0xaf63dc4c8601ec8cUL, DeltaSeed.Fnv1a64("a"u8));
        Assert.Equal(0x85944171f73967e8UL, DeltaSeed.Fnv1a64("foobar"u8));
    }

    [Fact]
    public void Difference_subtracts_the_base_and_refuses_mismatched_or_non_finite_weights()
    {
        using var ft = Tensor<double>.From([1.5, 2, 3, 4, 5, 6], 2, 3);
        using var bw = Tensor<double>.From([0.5, 2, 1, 0, 5, 7], 2, 3);
        using var d = DeltaCompression.Difference(ft, bw);
        Assert.Equal(new double[] { 1, 0, 2, 4, 0, -1 }, d.Span.ToArray());
        using var wrong = Tensor<double>.Zeros(3, 2);
        Assert.Throws<ArgumentException>(() => DeltaCompression.Difference(ft, wrong));
        bw[1, 2] = double.NaN;
        Assert.Contains("[1, 2]", Assert.Throws<ArgumentException>(() => DeltaCompression.Difference(ft, bw)).Message);
    }

    [Fact]
    public void Every_method_refuses_a_delta_with_NaN_naming_the_entry()
    {
        using var delta = Random(new Random(81), 6, 9);
        delta[4, 7] = double.NaN;
        foreach (var run in new Func<CompressedDelta>[]
                 {
                     () => DeltaCompression.LowRank(delta, 2),
                     () => DeltaCompression.Dare(delta, 2, 1),
                     () => DeltaCompression.Impart(delta, 2, 0.2, 1, 1),
                 })
        {
            var e = Assert.Throws<ArgumentException>(run);
            Assert.Contains("NaN at [4, 7]", e.Message);
        }
        using var vector = Tensor<double>.Zeros(12);
        Assert.Throws<ArgumentException>(() => DeltaCompression.LowRank(vector, 2));
    }
}
