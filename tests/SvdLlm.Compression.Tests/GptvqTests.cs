using SvdLlm.Compression.Quantization;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Tests;

/// <summary>
/// GPTVQ against independent computations: GPTQ when the codebook is a fixed RTN grid, plain nearest-centroid VQ when
/// H = I, naive k-means objective, weighted means and quantile ranks, the codebook update's optimality (naive objective
/// and gradient), integer codebook rounding, counted storage against the paper's bpv, GPTQ's loss identity, block-size
/// invariance, and that H matters (beats round-to-nearest and H-blind VQ on a correlated H).
/// </summary>
public class GptvqTests
{
    private static (Tensor<double> W, Tensor<double> H) Problem(int seed, int m, int n) => GptqTests.Problem(seed, m, n);

    private static Tensor<double> Identity(int n)
    {
        var eye = Tensor<double>.Zeros(n, n);
        for (int j = 0; j < n; j++) eye[j, j] = 1;
        return eye;
    }

    /// <summary>tr((W − Q)(H + λI)(W − Q)ᵀ) by plain loops.</summary>
    private static double Objective(Tensor<double> w, VqMatrix q, Tensor<double> h, double lambda = 0)
    {
        int m = w.Rows, n = w.Cols;
        double s = 0;
        var e = new double[n];
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++) e[j] = w[i, j] - q.Value(i, j);
            for (int a = 0; a < n; a++)
            {
                double rowSum = 0;
                for (int b = 0; b < n; b++) rowSum += (h[a, b] + (a == b ? lambda : 0)) * e[b];
                s += e[a] * rowSum;
            }
        }
        return s;
    }

    /// <summary>∂/∂c of tr((W − Q(c)) H (W − Q(c))ᵀ) for every stored centroid coordinate: −2 Σ over the weights using it of [(W − Q)H]_ij.</summary>
    private static double[] Gradient(Tensor<double> w, VqMatrix q, Tensor<double> h)
    {
        int m = w.Rows, n = w.Cols, k = q.Centroids, dim = q.VqDim;
        var g = new double[q.CentroidValues.Length];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double r = 0;
                for (int b = 0; b < n; b++) r += (w[i, b] - q.Value(i, b)) * h[b, j];
                int idx = q.Indices[i * (n / dim) + j / dim];
                g[(q.CodebookOf(i, j) * k + idx) * dim + j % dim] -= 2 * r;
            }
        return g;
    }

    [Theory]
    [InlineData(4, GptvqWeighting.Reference)]
    [InlineData(3, GptvqWeighting.ObsConsistent)]
    [InlineData(2, GptvqWeighting.Reference)]
    public void WithTheRoundToNearestGridAsFixedCodebookItIsGptq(int bits, GptvqWeighting weighting)
    {
        var (w, h) = Problem(1, 6, 13);
        using (w)
        using (h)
        {
            // GPTQ without groups fits one grid per row on the untouched W; the same grid as a one-row, whole-row codebook.
            var rtn = Gptq.RoundToNearest(w, bits, -1, symmetric: false);
            int k = 1 << bits;
            var codebooks = new double[6 * k];
            for (int i = 0; i < 6; i++)
                for (int c = 0; c < k; c++) codebooks[i * k + c] = UniformGrid.Value(c, rtn.Scales[i], rtn.Zeros[i]);
            var options = new GptvqOptions { Bits = bits, VqDim = 1, ColumnsPerGroup = 13, GroupSize = 13, BlockSize = 4, Weighting = weighting };
            var vq = Gptvq.QuantizeWithCodebooks(w, h, options, codebooks);
            var gptq = Gptq.Quantize(w, h, new GptqOptions { Bits = bits, BlockSize = 5 });
            Assert.Equal(1, vq.Matrix.RowsPerCodebook);
            for (int i = 0; i < 6; i++)
                for (int j = 0; j < 13; j++)
                    Assert.True(Math.Abs(vq.Matrix.Value(i, j) - gptq.Matrix.Value(i, j)) <= 1e-12, $"[{i},{j}] {vq.Matrix.Value(i, j)} vs GPTQ {gptq.Matrix.Value(i, j)}");
            Assert.Equal(gptq.Loss, vq.Loss, gptq.Loss * 1e-10);
            Assert.Equal(gptq.Damping, vq.Damping);
        }
    }

    [Theory]
    [InlineData(2, 1, 8)]
    [InlineData(2, 2, 8)]
    [InlineData(1, 4, 8)]
    [InlineData(2, 2, 0)]
    public void AnIdentityHessianGivesPlainNearestCentroidVq(int bits, int dim, int codebookBits)
    {
        var r = new Random(11);
        using var w = TruncationTests.Random(r, 12, 32);
        using var eye = Identity(32);
        var options = new GptvqOptions
        {
            Bits = bits, VqDim = dim, ColumnsPerGroup = 16, GroupSize = 16 * 6, IncludeMStep = false, CodebookBits = codebookBits,
            KMeansIterations = 1000,
        };
        var result = Gptvq.Quantize(w, eye, options);
        var q = result.Matrix;
        Assert.Equal(4, q.CodebookCount);
        int k = q.Centroids, nv = 32 / dim;
        var sums = new double[q.CentroidValues.Length];
        var counts = new int[q.CodebookCount * k];
        for (int i = 0; i < 12; i++)
            for (int v = 0; v < nv; v++)
            {
                // Euclidean nearest centroid by a plain scan.
                int cb = q.CodebookOf(i, v * dim), best = -1;
                double bestDist = double.PositiveInfinity;
                for (int c = 0; c < k; c++)
                {
                    double dist = 0;
                    for (int d = 0; d < dim; d++)
                    {
                        double diff = w[i, v * dim + d] - q.CentroidValues[(cb * k + c) * dim + d];
                        dist += diff * diff;
                    }
                    if (dist < bestDist) { bestDist = dist; best = c; }
                }
                Assert.Equal(best, q.Indices[i * nv + v]);
                counts[cb * k + best]++;
                for (int d = 0; d < dim; d++) sums[(cb * k + best) * dim + d] += w[i, v * dim + d];
            }
        if (codebookBits == 0)
        {
            // Nothing moves W when H = I, so k-means ran to convergence on W itself: every used centroid is its cluster's mean.
            for (int c = 0; c < counts.Length; c++)
                if (counts[c] > 0)
                    for (int d = 0; d < dim; d++)
                        Assert.Equal(sums[c * dim + d] / counts[c], q.CentroidValues[c * dim + d], 12);
        }
    }

    private static (double[] Xs, double[] Ws) Points(int seed, int count, int dim)
    {
        var r = new Random(seed);
        var xs = new double[count * dim];
        var ws = new double[count * dim];
        for (int p = 0; p < count; p++)
        {
            double cluster = r.Next(5);
            for (int d = 0; d < dim; d++)
            {
                xs[d * count + p] = cluster * (d + 1) + r.NextDouble() - 0.5 + (d > 0 ? 0.5 * xs[p] : 0);
                ws[d * count + p] = 0.2 + r.NextDouble();
            }
        }
        return (xs, ws);
    }

    private static double KMeansObjective(double[] xs, double[] ws, int count, int dim, double[] centroids)
    {
        int k = centroids.Length / dim;
        double total = 0;
        for (int p = 0; p < count; p++)
        {
            double best = double.PositiveInfinity;
            for (int c = 0; c < k; c++)
            {
                double s = 0;
                for (int d = 0; d < dim; d++)
                {
                    double diff = xs[d * count + p] - centroids[c * dim + d];
                    s += ws[d * count + p] * diff * diff;
                }
                best = Math.Min(best, s);
            }
            total += best;
        }
        return total;
    }

    [Theory]
    [InlineData(1, 8)]
    [InlineData(2, 16)]
    [InlineData(4, 8)]
    public void TheWeightedKMeansObjectiveNeverIncreases(int dim, int k)
    {
        const int count = 203;
        var (xs, ws) = Points(3, count, dim);
        var init = new double[k * dim];
        Gptvq.MahalanobisInit(xs, count, dim, init);
        var objectives = new List<double>();
        for (int t = 0; t <= 20; t++)
        {
            var c = (double[])init.Clone();
            Gptvq.WeightedKMeans(xs, ws, count, dim, c, t);
            objectives.Add(KMeansObjective(xs, ws, count, dim, c));
        }
        for (int t = 1; t < objectives.Count; t++)
            Assert.True(objectives[t] <= objectives[t - 1] * (1 + 1e-12), $"iteration {t}: {objectives[t]} > {objectives[t - 1]}");
        Assert.True(objectives[^1] < 0.99 * objectives[0], $"k-means did not improve on its start: {objectives[0]} → {objectives[^1]}");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(4)]
    public void AKMeansStepIsTheClosedFormWeightedMean(int dim)
    {
        const int count = 101, k = 6;
        var (xs, ws) = Points(4, count, dim);
        var r = new Random(5);
        var start = new double[k * dim];
        for (int s = 0; s < start.Length; s++) start[s] = r.NextDouble() * 4;
        for (int d = 0; d < dim; d++) start[(k - 1) * dim + d] = 1e6; // a centroid no point is nearest to
        var c = (double[])start.Clone();
        Gptvq.WeightedKMeans(xs, ws, count, dim, c, 1);
        var sw = new double[k * dim];
        var swx = new double[k * dim];
        for (int p = 0; p < count; p++)
        {
            int best = 0;
            double bestDist = double.PositiveInfinity;
            for (int j = 0; j < k; j++)
            {
                double s = 0;
                for (int d = 0; d < dim; d++) s += ws[d * count + p] * Math.Pow(xs[d * count + p] - start[j * dim + d], 2);
                if (s < bestDist) { bestDist = s; best = j; }
            }
            for (int d = 0; d < dim; d++)
            {
                sw[best * dim + d] += ws[d * count + p];
                swx[best * dim + d] += ws[d * count + p] * xs[d * count + p];
            }
        }
        for (int s = 0; s < k * dim; s++)
        {
            if (sw[s] == 0) Assert.Equal(start[s], c[s]);
            else Assert.Equal(swx[s] / sw[s], c[s], 12);
        }
        for (int d = 0; d < dim; d++) Assert.Equal(1e6, c[(k - 1) * dim + d]);
    }

    [Theory]
    [InlineData(1, 37, 8)]
    [InlineData(2, 37, 16)]
    [InlineData(4, 50, 16)]
    [InlineData(2, 6, 3)]
    public void TheMahalanobisInitTakesExactQuantileRanks(int dim, int count, int k)
    {
        var (xs, _) = Points(6, count, dim);
        var c = new double[k * dim];
        Gptvq.MahalanobisInit(xs, count, dim, c);
        // Naive: mean, scatter matrix, its inverse by an LU solve, distances, a stable sort, round-half-even ranks.
        var mu = new double[dim];
        for (int d = 0; d < dim; d++) mu[d] = Enumerable.Range(0, count).Average(p => xs[d * count + p]);
        using var sigma = Tensor<double>.Zeros(dim, dim);
        for (int p = 0; p < count; p++)
            for (int a = 0; a < dim; a++)
                for (int b = 0; b < dim; b++) sigma[a, b] += (xs[a * count + p] - mu[a]) * (xs[b * count + p] - mu[b]);
        using var eye = Identity(dim);
        using var inv = Lapack.Solve(sigma, eye);
        var dist = new double[count];
        for (int p = 0; p < count; p++)
            for (int a = 0; a < dim; a++)
                for (int b = 0; b < dim; b++) dist[p] += (xs[a * count + p] - mu[a]) * inv[a, b] * (xs[b * count + p] - mu[b]);
        var order = Enumerable.Range(0, count).OrderBy(p => dist[p]).ToArray();
        for (int j = 0; j < k; j++)
        {
            int rank = (int)Math.Round(j * (count - 1.0) / (k - 1), MidpointRounding.ToEven);
            for (int d = 0; d < dim; d++) Assert.Equal(xs[d * count + order[rank]], c[j * dim + d]);
        }
        // The half-way ranks round to even, as torch.round does: 2.5 → 2, 1.5 → 2.
        Assert.Equal(2, Gptvq.QuantileRank(1, 6, 3));
        Assert.Equal(2, Gptvq.QuantileRank(1, 4, 3));
    }

    [Theory]
    [InlineData(2, 2, 0)]
    [InlineData(2, 1, 0)]
    [InlineData(1, 4, 0)]
    [InlineData(2, 2, 8)]
    public void TheCodebookUpdateIsTheExactLeastSquaresOptimum(int bits, int dim, int codebookBits)
    {
        var (w, h) = Problem(3, 16, 32);
        using (w)
        using (h)
        {
            var options = new GptvqOptions { Bits = bits, VqDim = dim, ColumnsPerGroup = 16, GroupSize = 16 * 8, CodebookBits = codebookBits };
            var plain = Gptvq.Quantize(w, h, options with { IncludeMStep = false });
            var updated = Gptvq.Quantize(w, h, options);
            Assert.Equal(plain.Matrix.Indices, updated.Matrix.Indices);
            double f0 = Objective(w, plain.Matrix, h), f1 = Objective(w, updated.Matrix, h);
            Assert.Equal(f0, updated.MStepObjectiveBefore!.Value, f0 * 1e-9);
            Assert.Equal(f1, updated.MStepObjectiveAfter!.Value, f0 * 1e-9);
            Assert.True(f1 < f0 * (1 - 1e-4), $"the update did not lower the objective: {f0} → {f1}");
            if (codebookBits == 0)
            {
                // The exact optimum: every centroid coordinate's partial derivative vanishes.
                var g0 = Gradient(w, plain.Matrix, h);
                var g1 = Gradient(w, updated.Matrix, h);
                double scale = g0.Max(Math.Abs);
                Assert.True(scale > 0);
                Assert.All(g1, g => Assert.True(Math.Abs(g) <= 1e-8 * scale, $"gradient {g} vs {scale} before"));
            }
        }
    }

    [Fact]
    public void AnIdentityHessianUpdatesEachCentroidToItsClusterMean()
    {
        var r = new Random(12);
        using var w = TruncationTests.Random(r, 8, 16);
        using var eye = Identity(16);
        var q = Gptvq.Quantize(w, eye, new GptvqOptions { Bits = 2, VqDim = 2, ColumnsPerGroup = 8, GroupSize = 32, CodebookBits = 0, KMeansIterations = 2 }).Matrix;
        int k = q.Centroids;
        var sums = new double[q.CentroidValues.Length];
        var counts = new int[q.CodebookCount * k];
        for (int i = 0; i < 8; i++)
            for (int v = 0; v < 8; v++)
            {
                int c = q.CodebookOf(i, 2 * v) * k + q.Indices[i * 8 + v];
                counts[c]++;
                for (int d = 0; d < 2; d++) sums[c * 2 + d] += w[i, 2 * v + d];
            }
        int used = 0;
        for (int c = 0; c < counts.Length; c++)
            if (counts[c] > 0)
            {
                used++;
                for (int d = 0; d < 2; d++) Assert.Equal(sums[c * 2 + d] / counts[c], q.CentroidValues[c * 2 + d], 12);
            }
        Assert.True(used > q.CodebookCount);
    }

    [Theory]
    [InlineData(8)]
    [InlineData(4)]
    public void IntegerCodebooksAreWithinHalfAStep(int bits)
    {
        var r = new Random(7);
        var values = Enumerable.Range(0, 64).Select(_ => r.NextDouble() * 3 - 1.2).ToArray();
        var original = (double[])values.Clone();
        var codes = new sbyte[64];
        float scale = Gptvq.CompressCodebook(values, bits, codes);
        int imax = (1 << (bits - 1)) - 1;
        Assert.Equal(original.Max(Math.Abs) / imax, scale, 1e-6);
        Assert.Equal(imax, codes.Max(c => Math.Abs((int)c)));
        for (int s = 0; s < 64; s++)
        {
            Assert.Equal(codes[s] * (double)scale, values[s]);
            Assert.True(Math.Abs(original[s] - values[s]) <= scale / 2 * (1 + 1e-9), $"{original[s]} → {values[s]}, step {scale}");
        }
        // A quantized matrix's centroids are exactly its stored codes times its stored scales.
        var (w, h) = Problem(9, 8, 16);
        using (w)
        using (h)
        {
            var q = Gptvq.Quantize(w, h, new GptvqOptions { Bits = 2, VqDim = 2, ColumnsPerGroup = 8, GroupSize = 32, CodebookBits = bits }).Matrix;
            for (int s = 0; s < q.CentroidValues.Length; s++)
                Assert.Equal(q.CodebookCodes![s] * (double)q.CodebookScales![s / (q.Centroids * 2)], q.CentroidValues[s]);
        }
    }

    [Theory]
    [InlineData(2, 2, 8)]
    [InlineData(3, 1, 8)]
    [InlineData(1, 4, 4)]
    [InlineData(2, 2, 0)]
    public void CountedBitsMatchThePaperFormula(int bits, int dim, int codebookBits)
    {
        int k = 1 << (bits * dim);
        var options = new GptvqOptions { Bits = bits, VqDim = dim, ColumnsPerGroup = 16, GroupSize = 16 * 8, CodebookBits = codebookBits };
        var (w, h) = Problem(10, 16, 32);
        using (w)
        using (h)
        {
            var q = Gptvq.Quantize(w, h, options).Matrix;
            Assert.Equal(4, q.CodebookCount);
            double formula = VqMatrix.ExpectedBitsPerValue(options);
            Assert.Equal(bits + (double)k * dim * (codebookBits > 0 ? codebookBits : 64) / 128, formula, 12);
            Assert.Equal(formula, q.BitsPerWeight, 12);
            if (codebookBits > 0) Assert.Equal(formula + 4 * 32.0 / 512, q.BitsPerWeightWithScales, 12);
        }
        // The paper's configurations: 2.125, 3.125 and 4.125 bits per value with the default group sizes.
        Assert.Equal(2.125, VqMatrix.ExpectedBitsPerValue(new GptvqOptions { Bits = 2, VqDim = 2 }));
        Assert.Equal(2.125, VqMatrix.ExpectedBitsPerValue(new GptvqOptions { Bits = 2, VqDim = 1 }));
        Assert.Equal(3.125, VqMatrix.ExpectedBitsPerValue(new GptvqOptions { Bits = 3, VqDim = 2 }));
        Assert.Equal(4.125, VqMatrix.ExpectedBitsPerValue(new GptvqOptions { Bits = 4, VqDim = 1 }));
        Assert.Equal(2.125, VqMatrix.ExpectedBitsPerValue(new GptvqOptions { Bits = 2, VqDim = 4 }));
        Assert.Equal(32768, new GptvqOptions { Bits = 4, VqDim = 2 }.EffectiveGroupSize);
    }

    [Theory]
    [InlineData(2, 1, GptvqWeighting.Reference, 8)]
    [InlineData(2, 2, GptvqWeighting.Reference, 8)]
    [InlineData(2, 2, GptvqWeighting.ObsConsistent, 0)]
    [InlineData(1, 4, GptvqWeighting.Reference, 8)]
    public void ReportedLossIsHalfTheDampedObjective(int bits, int dim, GptvqWeighting weighting, int codebookBits)
    {
        // D = 1: E = Err·U with U H_d Uᵀ = I, so the accumulated loss is ½ tr(E H_d Eᵀ). D > 1: the vector's own columns are
        // not coupled, the accumulated sum is not the objective, and the reported loss is evaluated directly.
        var (w, h) = Problem(2, 16, 32);
        using (w)
        using (h)
        {
            var result = Gptvq.Quantize(w, h, new GptvqOptions
            {
                Bits = bits, VqDim = dim, ColumnsPerGroup = 16, GroupSize = 16 * 8, BlockSize = 6, IncludeMStep = false,
                Weighting = weighting, CodebookBits = codebookBits,
            });
            double direct = Objective(w, result.Matrix, h, result.Damping) / 2;
            Assert.Equal(direct, result.Loss, direct * 1e-9);
            if (dim == 1) Assert.Equal(direct, result.AccumulatedLoss, direct * 1e-9);
            else Assert.NotEqual(direct, result.AccumulatedLoss, direct * 1e-3);
            // With the codebook update the loss (still of W' before it) comes from the update's starting objective instead.
            var updated = Gptvq.Quantize(w, h, new GptvqOptions
            {
                Bits = bits, VqDim = dim, ColumnsPerGroup = 16, GroupSize = 16 * 8, BlockSize = 6, Weighting = weighting, CodebookBits = codebookBits,
            });
            Assert.Equal(direct, updated.Loss, direct * 1e-9);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(4)]
    public void TheBlockSizeDoesNotChangeTheResult(int dim)
    {
        var (w, h) = Problem(4, 8, 32);
        using (w)
        using (h)
        {
            var options = new GptvqOptions { Bits = dim == 4 ? 1 : 2, VqDim = dim, ColumnsPerGroup = 8, GroupSize = 8 * 4, BlockSize = 1 };
            var reference = Gptvq.Quantize(w, h, options);
            foreach (int block in new[] { 6, 12, 128 })
            {
                var other = Gptvq.Quantize(w, h, options with { BlockSize = block });
                Assert.Equal(reference.Matrix.Indices, other.Matrix.Indices);
                Assert.Equal(reference.Matrix.CodebookCodes, other.Matrix.CodebookCodes);
                for (int s = 0; s < reference.Matrix.CentroidValues.Length; s++)
                    Assert.Equal(reference.Matrix.CentroidValues[s], other.Matrix.CentroidValues[s], 1e-12);
                Assert.Equal(reference.Loss, other.Loss, reference.Loss * 1e-10);
            }
        }
    }

    [Theory]
    [InlineData(20)]
    [InlineData(21)]
    [InlineData(22)]
    public void HessianAwareVqBeatsRoundToNearestAndHessianBlindVq(int seed)
    {
        var (w, h) = Problem(seed, 16, 64);
        using (w)
        using (h)
        {
            using var eye = Identity(64);
            var options = new GptvqOptions { Bits = 2, VqDim = 2, ColumnsPerGroup = 32 };
            double gptvq = Objective(w, Gptvq.Quantize(w, h, options).Matrix, h);
            double blind = Objective(w, Gptvq.Quantize(w, eye, options).Matrix, h);
            var rtn = Gptq.RoundToNearest(w, 2, -1, symmetric: false);
            using var wr = rtn.Dequantize();
            double rtnObjective = 0;
            for (int i = 0; i < 16; i++)
                for (int a = 0; a < 64; a++)
                    for (int b = 0; b < 64; b++) rtnObjective += (w[i, a] - wr[i, a]) * h[a, b] * (w[i, b] - wr[i, b]);
            Assert.True(gptvq < blind, $"GPTVQ {gptvq} vs H-blind VQ {blind}");
            Assert.True(gptvq < rtnObjective, $"GPTVQ {gptvq} vs RTN {rtnObjective}");
        }
    }

    [Fact]
    public void ADeadInputIsZeroedBeforeQuantizationAndSaid()
    {
        var (w, h) = Problem(6, 4, 16);
        using (w)
        using (h)
        {
            for (int k = 0; k < 16; k++) { h[3, k] = 0; h[k, 3] = 0; }
            var result = Gptvq.Quantize(w, h, new GptvqOptions { Bits = 3, VqDim = 1, ColumnsPerGroup = 16, GroupSize = 64 });
            Assert.Equal(1, result.DeadColumns);
            Assert.Contains("dead", result.Note);
            var q = result.Matrix;
            // The zeroed weight takes the centroid nearest to 0.
            for (int i = 0; i < 4; i++)
            {
                int cb = q.CodebookOf(i, 3);
                double nearest = q.CentroidValues.Skip(cb * 8).Take(8).MinBy(Math.Abs);
                Assert.Equal(Math.Abs(nearest), Math.Abs(q.Value(i, 3)));
            }
        }
    }

    [Fact]
    public void NonFiniteInputsAndBadOptionsAreRejected()
    {
        var (w, h) = Problem(7, 4, 8);
        using (w)
        using (h)
        {
            var options = new GptvqOptions { Bits = 2, VqDim = 2, ColumnsPerGroup = 8 };
            w[1, 2] = double.NaN;
            Assert.Contains("W", Assert.Throws<ArgumentException>(() => Gptvq.Quantize(w, h, options)).Message);
            w[1, 2] = 0;
            h[5, 4] = double.NaN;
            Assert.Contains("H", Assert.Throws<ArgumentException>(() => Gptvq.Quantize(w, h, options)).Message);
        }
        Assert.Contains("256", Assert.Throws<ArgumentException>(() => new GptvqOptions { Bits = 3, VqDim = 4 }.Check()).Message);
        Assert.Contains("256", Assert.Throws<ArgumentException>(() => new GptvqOptions { Bits = 5, VqDim = 2 }.Check()).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new GptvqOptions { VqDim = 3 }.Check());
        Assert.Throws<ArgumentOutOfRangeException>(() => new GptvqOptions { VqDim = 2, ColumnsPerGroup = 255 }.Check());
        Assert.Contains("multiple", Assert.Throws<ArgumentException>(() => new GptvqOptions { ColumnsPerGroup = 256, GroupSize = 300 }.Check()).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new GptvqOptions { CodebookBits = 1 }.Check());
    }
}
