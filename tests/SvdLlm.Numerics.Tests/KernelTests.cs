using SvdLlm.Numerics.Kernels;
using static SvdLlm.Numerics.Tests.TestUtil;

namespace SvdLlm.Numerics.Tests;

/// <summary>Each kernel against a scalar float64 loop, at widths that cross SIMD vector lengths (4, 8, 16 floats).</summary>
public class KernelTests
{
    public static TheoryData<int, int> Shapes => new() { { 1, 1 }, { 3, 7 }, { 2, 8 }, { 5, 9 }, { 4, 31 }, { 3, 33 }, { 300, 257 } };

    [Theory, MemberData(nameof(Shapes))]
    public void RmsNorm_matches_scalar(int rows, int cols)
    {
        var rng = new Random(rows * 1000 + cols);
        var x = RandomFloats(rng, rows * cols, 3);
        var w = RandomFloats(rng, cols);
        var y = new float[x.Length];
        Kernels.Kernels.RmsNorm(x, w, 1e-5f, y, rows);
        for (int r = 0; r < rows; r++)
        {
            double ss = 0;
            for (int i = 0; i < cols; i++) ss += (double)x[r * cols + i] * x[r * cols + i];
            double rstd = 1 / Math.Sqrt(ss / cols + 1e-5);
            for (int i = 0; i < cols; i++)
                Assert.True(Math.Abs(y[r * cols + i] - x[r * cols + i] * rstd * w[i]) < 1e-5, $"row {r} col {i}");
        }
    }

    [Theory, MemberData(nameof(Shapes))]
    public void LayerNorm_matches_scalar(int rows, int cols)
    {
        var rng = new Random(rows * 7 + cols);
        var x = RandomFloats(rng, rows * cols, 2).Select(v => v + 5f).ToArray(); // offset mean: catches a missing centring
        var w = RandomFloats(rng, cols);
        var b = RandomFloats(rng, cols);
        var y = new float[x.Length];
        Kernels.Kernels.LayerNorm(x, w, b, 1e-5f, y, rows);
        for (int r = 0; r < rows; r++)
        {
            double mean = 0, var = 0;
            for (int i = 0; i < cols; i++) mean += x[r * cols + i];
            mean /= cols;
            for (int i = 0; i < cols; i++) var += Math.Pow(x[r * cols + i] - mean, 2);
            var /= cols;
            for (int i = 0; i < cols; i++)
            {
                double e = (x[r * cols + i] - mean) / Math.Sqrt(var + 1e-5) * w[i] + b[i];
                Assert.True(Math.Abs(y[r * cols + i] - e) < 1e-4, $"row {r} col {i}: {y[r * cols + i]} vs {e}");
            }
        }
    }

    [Fact]
    public void Softmax_is_stable_for_large_logits_and_sums_to_one()
    {
        float[] x = [1000f, 1001f, 999f, -1e30f];
        Kernels.Kernels.SoftmaxInPlace(x);
        double z = Math.Exp(-1) + 1 + Math.Exp(-2);
        Assert.Equal(Math.Exp(-1) / z, x[0], 1e-6);
        Assert.Equal(1 / z, x[1], 1e-6);
        Assert.Equal(0f, x[3]);
        Assert.Equal(1.0, x.Sum(v => (double)v), 1e-6);
    }

    [Fact]
    public void Softmax_propagates_NaN_instead_of_hiding_it()
    {
        float[] x = [1f, float.NaN, 2f];
        Kernels.Kernels.SoftmaxInPlace(x);
        Assert.True(float.IsNaN(x.Sum()));
    }

    [Fact]
    public void LogSumExp_matches_float64_reference_and_flags_non_finite()
    {
        var rng = new Random(3);
        var x = RandomFloats(rng, 1000, 50).Select(v => v + 500f).ToArray();
        double max = x.Max();
        double expected = max + Math.Log(x.Sum(v => Math.Exp(v - max)));
        Assert.Equal(expected, Kernels.Kernels.LogSumExp(x), 1e-9);
        Assert.True(double.IsNaN(Kernels.Kernels.LogSumExp([1f, float.NaN])));
        Assert.True(double.IsPositiveInfinity(Kernels.Kernels.LogSumExp([1f, float.PositiveInfinity])));
    }

    [Theory]
    [InlineData(6, null)]
    [InlineData(9, 3)]
    [InlineData(5, 1)]
    public void CausalSoftmax_masks_future_and_outside_window(int t, int? window)
    {
        var rng = new Random(t);
        var s = RandomFloats(rng, t * t, 4);
        var orig = (float[])s.Clone();
        Kernels.Kernels.CausalSoftmax(s, t, window);
        for (int i = 0; i < t; i++)
        {
            int lo = window is int w ? Math.Max(0, i - w + 1) : 0;
            double z = 0;
            for (int j = lo; j <= i; j++) z += Math.Exp(orig[i * t + j]);
            for (int j = 0; j < t; j++)
            {
                double e = j >= lo && j <= i ? Math.Exp(orig[i * t + j]) / z : 0;
                Assert.True(Math.Abs(s[i * t + j] - e) < 1e-6, $"[{i},{j}] {s[i * t + j]} vs {e}");
            }
        }
    }

    [Theory, MemberData(nameof(Shapes))]
    public void SiluMul_matches_scalar(int rows, int cols)
    {
        var rng = new Random(rows + 31 * cols);
        var g = RandomFloats(rng, rows * cols, 6);
        var u = RandomFloats(rng, rows * cols, 2);
        var y = new float[g.Length];
        Kernels.Kernels.SiluMul(g, u, y, rows);
        for (int i = 0; i < g.Length; i++)
        {
            double e = g[i] / (1 + Math.Exp(-g[i])) * u[i];
            Assert.True(Math.Abs(y[i] - e) < 1e-5, $"{i}: {y[i]} vs {e}");
        }
    }

    [Fact]
    public void Relu_and_residual_add()
    {
        float[] x = [-1f, 0f, 2.5f, -0.1f, 3f];
        var y = new float[5];
        Kernels.Kernels.Relu(x, y);
        Assert.Equal(new[] { 0f, 0f, 2.5f, 0f, 3f }, y);
        Kernels.Kernels.Add(x, y, y);
        Assert.Equal(new[] { -1f, 0f, 5f, -0.1f, 6f }, y);
    }

    [Fact]
    public void Rope_rotates_pairs_half_a_head_apart()
    {
        int tokens = 3, heads = 2, d = 8, half = d / 2;
        var rng = new Random(5);
        var x = RandomFloats(rng, tokens * heads * d);
        var orig = (float[])x.Clone();
        int maxPos = 10;
        var cos = new float[maxPos * half];
        var sin = new float[maxPos * half];
        for (int p = 0; p < maxPos; p++)
            for (int i = 0; i < half; i++)
            {
                double angle = p * Math.Pow(10000, -2.0 * i / d);
                cos[p * half + i] = (float)Math.Cos(angle);
                sin[p * half + i] = (float)Math.Sin(angle);
            }
        int[] positions = [0, 4, 9];
        Kernels.Kernels.ApplyRope(x, tokens, heads, d, cos, sin, positions);
        for (int t = 0; t < tokens; t++)
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < half; i++)
                {
                    int o = t * heads * d + h * d;
                    double angle = positions[t] * Math.Pow(10000, -2.0 * i / d);
                    double a = orig[o + i], b = orig[o + i + half];
                    Assert.True(Math.Abs(x[o + i] - (a * Math.Cos(angle) - b * Math.Sin(angle))) < 1e-5);
                    Assert.True(Math.Abs(x[o + i + half] - (b * Math.Cos(angle) + a * Math.Sin(angle))) < 1e-5);
                }
        Assert.Throws<ArgumentException>(() => Kernels.Kernels.ApplyRope(x, tokens, heads, d, cos, sin, [0, 1, 10]));
    }

    [Fact]
    public void Rope_of_kept_pairs_turns_each_pair_by_its_original_frequency_and_its_key_value_heads_row()
    {
        // 4 query heads in 2 groups; the unpruned head has D = 12 (6 pairs), the pruned one keeps m = 3 pairs,
        // different ones per group and not in ascending order.
        int tokens = 3, heads = 4, pairHeads = 2, tableHalf = 6, m = 3, d = 2 * m, maxPos = 10;
        int[] pairs = [4, 0, 5, 2, 1, 3];
        var rng = new Random(6);
        var x = RandomFloats(rng, tokens * heads * d);
        var orig = (float[])x.Clone();
        var cos = new float[maxPos * tableHalf];
        var sin = new float[maxPos * tableHalf];
        for (int p = 0; p < maxPos; p++)
            for (int i = 0; i < tableHalf; i++)
            {
                double angle = p * Math.Pow(10000, -2.0 * i / (2 * tableHalf));
                cos[p * tableHalf + i] = (float)Math.Cos(angle);
                sin[p * tableHalf + i] = (float)Math.Sin(angle);
            }
        int[] positions = [0, 7, 9];
        Kernels.Kernels.ApplyRopeKeptPairs(x, tokens, heads, d, cos, sin, tableHalf, pairs, pairHeads, positions);
        for (int t = 0; t < tokens; t++)
            for (int h = 0; h < heads; h++)
                for (int j = 0; j < m; j++)
                {
                    int o = t * heads * d + h * d, i = pairs[h / 2 * m + j];
                    double angle = positions[t] * Math.Pow(10000, -2.0 * i / (2 * tableHalf));
                    double a = orig[o + j], b = orig[o + j + m];
                    Assert.True(Math.Abs(x[o + j] - (a * Math.Cos(angle) - b * Math.Sin(angle))) < 1e-5);
                    Assert.True(Math.Abs(x[o + j + m] - (b * Math.Cos(angle) + a * Math.Sin(angle))) < 1e-5);
                }

        // Every pair kept in order: the plain kernel, to the last bit.
        var full = RandomFloats(rng, tokens * heads * 2 * tableHalf);
        var viaPairs = (float[])full.Clone();
        Kernels.Kernels.ApplyRope(full, tokens, heads, 2 * tableHalf, cos, sin, positions);
        Kernels.Kernels.ApplyRopeKeptPairs(viaPairs, tokens, heads, 2 * tableHalf, cos, sin, tableHalf, [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5], pairHeads, positions);
        Assert.Equal(full, viaPairs);

        Assert.Throws<ArgumentException>(() => Kernels.Kernels.ApplyRopeKeptPairs(x, tokens, heads, d, cos, sin, tableHalf, [4, 0, 6, 2, 1, 3], pairHeads, positions));
        Assert.Throws<ArgumentException>(() => Kernels.Kernels.ApplyRopeKeptPairs(x, tokens, heads, d, cos, sin, tableHalf, [4, 0, 5], pairHeads, positions));
        Assert.Throws<ArgumentException>(() => Kernels.Kernels.ApplyRopeKeptPairs(x, tokens, heads, d, cos, sin, tableHalf, pairs, 3, positions));
    }

    [Fact]
    public void Kernels_reject_mismatched_lengths()
    {
        Assert.Throws<ArgumentException>(() => Kernels.Kernels.RmsNorm(new float[10], new float[4], 1e-5f, new float[10], 2));
        Assert.Throws<ArgumentException>(() => Kernels.Kernels.Add(new float[3], new float[4], new float[3]));
    }
}
