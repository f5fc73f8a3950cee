using SvdLlm.Compression.Quantization;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Tests;

/// <summary>
/// GPTQ against independent computations: the identity E = Err·U (so ½ tr(E H Eᵀ) equals the reported loss), a naive
/// column-by-column optimal-brain-quantizer with explicit Schur complements of H⁻¹, block-size invariance, H = I giving
/// round-to-nearest, act-order equal to a run on the permuted problem, and dead inputs.
/// </summary>
public class GptqTests
{
    /// <summary>W [m, n] and H = X Xᵀ with correlated, unevenly scaled inputs (so GPTQ's updates matter), t &gt; n.</summary>
    internal static (Tensor<double> W, Tensor<double> H) Problem(int seed, int m, int n, int t = 0)
    {
        var r = new Random(seed);
        t = t > 0 ? t : 3 * n;
        var w = TruncationTests.Random(r, m, n);
        var x = TruncationTests.Random(r, n, t);
        for (int i = 1; i < n; i++)
        {
            double scale = 0.2 + r.NextDouble() * 2;
            var row = x.Row(i);
            var prev = x.Row(i - 1);
            for (int k = 0; k < t; k++) row[k] = scale * (row[k] + 0.7 * prev[k]);
        }
        var h = Tensor<double>.Zeros(n, n);
        Blas.Dsyrk(lower: true, Transpose.No, n, t, 1.0, x.Span, t, 0.0, h.Span, n);
        Blas.SymmetrizeFromLower(h.Span, n);
        x.Dispose();
        return (w, h);
    }

    internal static double Damping(Tensor<double> h, double percent)
    {
        double mean = 0;
        for (int j = 0; j < h.Rows; j++) mean += h[j, j] == 0 ? 1 : h[j, j];
        return percent * mean / h.Rows;
    }

    /// <summary>½ tr((W − Q) H_d (W − Q)ᵀ), H_d = H + λI, computed directly.</summary>
    internal static double Objective(Tensor<double> w, QuantizedMatrix q, Tensor<double> h, double lambda)
    {
        int m = w.Rows, n = w.Cols;
        using var e = q.Dequantize();
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) e[i, j] = w[i, j] - e[i, j];
        double s = 0;
        for (int i = 0; i < m; i++)
            for (int a = 0; a < n; a++)
            {
                double rowSum = 0;
                for (int b = 0; b < n; b++) rowSum += (h[a, b] + (a == b ? lambda : 0)) * e[i, b];
                s += e[i, a] * rowSum;
            }
        return s / 2;
    }

    /// <summary>
    /// The brute-force reference (GPTQ paper §3, "OBQ" in fixed column order): quantize column j, spread its error over
    /// the later columns with H⁻¹'s row j, then replace H⁻¹ by its Schur complement without j. Group parameters are fitted
    /// on the group's current columns when the group starts. Returns dequantized Q and the loss Σ (w − q)² / (2 [H⁻¹]_jj).
    /// ImPart-Qt's variant: entries outside <paramref name="keep"/> become 0, a row or column may have its own width,
    /// and with column widths a group also starts where the width changes.
    /// </summary>
    internal static (double[,] Q, double Loss) NaiveObq(Tensor<double> w0, Tensor<double> h, int bits, int groupSize, double lambda,
        bool[]? keep = null, int[]? rowBits = null, int[]? columnBits = null)
    {
        int m = w0.Rows, n = w0.Cols;
        UniformGrid Grid(int i, int j) => new(rowBits?[i] ?? columnBits?[j] ?? bits, Symmetric: false);
        var w = new double[m, n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) w[i, j] = w0[i, j];
        using var hd = h.Clone();
        for (int j = 0; j < n; j++) hd[j, j] += lambda;
        using var eye = Tensor<double>.Zeros(n, n);
        for (int j = 0; j < n; j++) eye[j, j] = 1;
        using var hinvT = Lapack.Solve(hd, eye);
        var hinv = new double[n, n];
        for (int a = 0; a < n; a++)
            for (int b = 0; b < n; b++) hinv[a, b] = hinvT[a, b];
        int g = groupSize > 0 ? groupSize : n;
        var scale = new double[m];
        var zero = new int[m];
        var q = new double[m, n];
        double loss = 0;
        int runStart = 0;
        for (int j = 0; j < n; j++)
        {
            if (columnBits is not null && j > 0 && columnBits[j] != columnBits[j - 1]) runStart = j;
            if ((j - runStart) % g == 0)
            {
                int end = j + g;
                while (columnBits is not null && end > j + 1 && (end > n || columnBits[end - 1] != columnBits[j])) end--;
                end = Math.Min(end, n);
                for (int i = 0; i < m; i++)
                {
                    var cols = new double[end - j];
                    for (int c = 0; c < cols.Length; c++) cols[c] = w[i, j + c];
                    (scale[i], zero[i]) = Grid(i, j).Fit(cols);
                }
            }
            double d = hinv[j, j];
            for (int i = 0; i < m; i++)
            {
                bool kept = keep is null || keep[i * n + j];
                q[i, j] = kept ? UniformGrid.Value(Grid(i, j).Code(w[i, j], scale[i], zero[i]), scale[i], zero[i]) : 0;
                double e = w[i, j] - q[i, j];
                loss += e * e / (2 * d);
                for (int k = j + 1; k < n; k++) w[i, k] -= e / d * hinv[j, k];
            }
            var rowJ = new double[n];
            for (int k = 0; k < n; k++) rowJ[k] = hinv[j, k];
            for (int a = 0; a < n; a++)
                for (int b = 0; b < n; b++) hinv[a, b] -= rowJ[a] * rowJ[b] / d;
        }
        return (q, loss);
    }

    [Theory]
    [InlineData(4, -1)]
    [InlineData(3, 4)]
    [InlineData(2, 5)]
    public void MatchesTheNaiveColumnByColumnQuantizer(int bits, int groupSize)
    {
        var (w, h) = Problem(1, 6, 13);
        using (w)
        using (h)
        {
            var result = Gptq.Quantize(w, h, new GptqOptions { Bits = bits, GroupSize = groupSize, BlockSize = 4 });
            var (q, loss) = NaiveObq(w, h, bits, groupSize, Damping(h, 0.01));
            for (int i = 0; i < w.Rows; i++)
                for (int j = 0; j < w.Cols; j++)
                    Assert.True(Math.Abs(result.Matrix.Value(i, j) - q[i, j]) <= 1e-12, $"Q[{i},{j}] {result.Matrix.Value(i, j)} vs naive {q[i, j]}");
            Assert.Equal(loss, result.Loss, loss * 1e-10);
        }
    }

    [Theory]
    [InlineData(4, -1, false)]
    [InlineData(3, 5, false)]
    [InlineData(3, 5, true)]
    [InlineData(2, 3, true)]
    public void ReportedLossIsHalfTheDampedObjective(int bits, int groupSize, bool actOrder)
    {
        // E = Err·U and U H_d Uᵀ = I, so ½ tr(E H_d Eᵀ) = ½ ‖Err‖² = the loss GPTQ adds up column by column.
        var (w, h) = Problem(2, 7, 17);
        using (w)
        using (h)
        {
            var result = Gptq.Quantize(w, h, new GptqOptions { Bits = bits, GroupSize = groupSize, ActOrder = actOrder, BlockSize = 6 });
            double direct = Objective(w, result.Matrix, h, result.Damping);
            Assert.Equal(direct, result.Loss, direct * 1e-9);
        }
    }

    [Theory]
    [InlineData(-1, false)]
    [InlineData(5, false)]
    [InlineData(4, true)]
    public void TheBlockSizeDoesNotChangeTheCodes(int groupSize, bool actOrder)
    {
        var (w, h) = Problem(3, 5, 19);
        using (w)
        using (h)
        {
            var reference = Gptq.Quantize(w, h, new GptqOptions { Bits = 3, GroupSize = groupSize, ActOrder = actOrder, BlockSize = 1 });
            foreach (int block in new[] { 7, 19, 128 })
            {
                var other = Gptq.Quantize(w, h, new GptqOptions { Bits = 3, GroupSize = groupSize, ActOrder = actOrder, BlockSize = block });
                Assert.Equal(reference.Matrix.Codes, other.Matrix.Codes);
                // Lazy and eager updates add the same terms in another order: scales agree to rounding, codes exactly.
                for (int k = 0; k < reference.Matrix.Scales.Length; k++)
                    Assert.Equal(reference.Matrix.Scales[k], other.Matrix.Scales[k], Math.Abs(reference.Matrix.Scales[k]) * 1e-12);
                Assert.Equal(reference.Matrix.Zeros, other.Matrix.Zeros);
            }
        }
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(4)]
    public void AnIdentityHessianGivesRoundToNearest(int groupSize)
    {
        var (w, h) = Problem(4, 6, 11);
        using (w)
        using (h)
        {
            using var eye = Tensor<double>.Zeros(11, 11);
            for (int j = 0; j < 11; j++) eye[j, j] = 1;
            var gptq = Gptq.Quantize(w, eye, new GptqOptions { Bits = 3, GroupSize = groupSize });
            var rtn = Gptq.RoundToNearest(w, 3, groupSize, symmetric: false);
            Assert.Equal(rtn.Codes, gptq.Matrix.Codes);
            Assert.Equal(rtn.Scales, gptq.Matrix.Scales);
            Assert.Equal(rtn.Zeros, gptq.Matrix.Zeros);
        }
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(4)]
    public void ActOrderEqualsARunOnThePermutedProblem(int groupSize)
    {
        var (w, h) = Problem(5, 5, 12);
        using (w)
        using (h)
        {
            int n = w.Cols;
            // The order act-order must use, computed here: decreasing H_jj.
            var perm = Enumerable.Range(0, n).OrderByDescending(j => h[j, j]).ToArray();
            Assert.NotEqual(Enumerable.Range(0, n), perm);
            using var wp = Tensor<double>.Uninitialized(w.Rows, n);
            using var hp = Tensor<double>.Uninitialized(n, n);
            for (int j = 0; j < n; j++)
            {
                for (int i = 0; i < w.Rows; i++) wp[i, j] = w[i, perm[j]];
                for (int k = 0; k < n; k++) hp[j, k] = h[perm[j], perm[k]];
            }
            var act = Gptq.Quantize(w, h, new GptqOptions { Bits = 3, GroupSize = groupSize, ActOrder = true });
            var plain = Gptq.Quantize(wp, hp, new GptqOptions { Bits = 3, GroupSize = groupSize });
            for (int i = 0; i < w.Rows; i++)
                for (int j = 0; j < n; j++)
                    Assert.Equal(plain.Matrix.Value(i, j), act.Matrix.Value(i, perm[j]), 12);
            for (int j = 0; j < n; j++) Assert.Equal(plain.Matrix.GroupIndex[j], act.Matrix.GroupIndex[perm[j]]);
            Assert.Equal(plain.Loss, act.Loss, plain.Loss * 1e-10);
        }
    }

    [Fact]
    public void StaticGroupsAreFittedOnTheOriginalWeightsInColumnOrder()
    {
        var (w, h) = Problem(8, 5, 12);
        using (w)
        using (h)
        {
            var result = Gptq.Quantize(w, h, new GptqOptions { Bits = 3, GroupSize = 4, ActOrder = true, StaticGroups = true });
            // The groups' grids are round-to-nearest's on the untouched W; the group of column c is c / 4 whatever the order.
            var rtn = Gptq.RoundToNearest(w, 3, 4, symmetric: false);
            Assert.Equal(rtn.Scales, result.Matrix.Scales);
            Assert.Equal(rtn.Zeros, result.Matrix.Zeros);
            Assert.Equal(Enumerable.Range(0, 12).Select(c => c / 4), result.Matrix.GroupIndex);
            // Still GPTQ: the loss identity holds, and the codes differ from round-to-nearest's.
            Assert.Equal(Objective(w, result.Matrix, h, result.Damping), result.Loss, result.Loss * 1e-9);
            Assert.NotEqual(rtn.Codes, result.Matrix.Codes);
        }
    }

    [Fact]
    public void ADeadInputIsZeroedAndSaid()
    {
        var (w, h) = Problem(6, 4, 9);
        using (w)
        using (h)
        {
            for (int k = 0; k < 9; k++) { h[3, k] = 0; h[k, 3] = 0; }
            var result = Gptq.Quantize(w, h, new GptqOptions { Bits = 4 });
            for (int i = 0; i < 4; i++) Assert.Equal(0.0, result.Matrix.Value(i, 3));
            Assert.Equal(1, result.DeadColumns);
            Assert.Contains("dead", result.Note);
        }
    }

    [Fact]
    public void AnIndefiniteHessianRaisesTheDampingAndSaysSo()
    {
        using var w = Tensor<double>.From([1.0, -2, 0.5, 0.25, 3, -1], 2, 3);
        using var h = Tensor<double>.From([1.0, 0, 0, 0, 1, 0, 0, 0, -0.5], 3, 3);
        var result = Gptq.Quantize(w, h, new GptqOptions { Bits = 4 });
        // mean diag H = 0.5: λ = 0.005, 0.05 and 0.5 leave H_22 ≤ 0; 5 is the first that works.
        Assert.Equal(5.0, result.Damping, 1e-12);
        Assert.Contains("raised", result.Note);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public void ARowWithoutNegativeWeightsGetsAZeroTheLayoutCanStore(int bits)
    {
        var grid = new UniformGrid(bits, Symmetric: false);
        foreach (var values in new[] { new[] { 0.0, 0.3, 1.2, 0.7 }, new[] { -0.001, 0.5, 2.0 } })
        {
            var (scale, zero) = grid.Fit(values);
            Assert.InRange(zero, 1, grid.MaxLevel);
            // Still no clipping: every value is within half a step of its level.
            foreach (double v in values)
                Assert.True(Math.Abs(UniformGrid.Value(grid.Code(v, scale, zero), scale, zero) - v) <= scale / 2 * (1 + 1e-12), $"{v} clipped on [{-scale * zero}, {scale * (grid.MaxLevel - zero)}]");
        }
    }

    [Theory]
    [InlineData(4, false)]
    [InlineData(3, true)]
    public void TheGridRoundsToTheNearestLevelInsideItsRange(int bits, bool symmetric)
    {
        var r = new Random(7);
        var grid = new UniformGrid(bits, symmetric);
        var values = Enumerable.Range(0, 50).Select(_ => r.NextDouble() * 3 - 1).ToArray();
        var (scale, zero) = grid.Fit(values);
        Assert.InRange(zero, 0, grid.MaxLevel);
        foreach (double v in values)
        {
            int code = grid.Code(v, scale, zero);
            double q = UniformGrid.Value(code, scale, zero);
            // The nearest level among all 2^b, found by scanning them.
            double best = Enumerable.Range(0, grid.MaxLevel + 1).Select(c => UniformGrid.Value(c, scale, zero)).MinBy(x => Math.Abs(x - v));
            Assert.Equal(best, q, 12);
        }
        if (!symmetric)
        {
            // The ends of the grid are the ends of the range, up to half a step and float16's rounding of the scale (2⁻¹¹ relative).
            double range = values.Max() - values.Min();
            Assert.Equal(values.Min(), UniformGrid.Value(0, scale, zero), scale / 2 + range / 2048);
            Assert.Equal(values.Max(), UniformGrid.Value(grid.MaxLevel, scale, zero), scale / 2 + range / 2048);
            Assert.Equal(scale, (double)(Half)scale);
        }
    }
}
