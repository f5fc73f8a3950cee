using SvdLlm.Models.Architectures;
using SvdLlm.Models.Training;
using SvdLlm.Numerics;
using SvdLlm.Numerics.Backends;
using K = SvdLlm.Numerics.Kernels.Kernels;

namespace SvdLlm.Models.Tests.Training;

/// <summary>
/// Each backward op against central finite differences of a naive float64 forward written here:
/// for a random upstream gradient dy, the directional loss L(x) = Σ dy·f(x) has ∂L/∂x = the op's
/// backward. float64 FD with h = 1e-5 is exact to ~1e-9, so the tolerance (1e-4 relative + 1e-5)
/// measures the float32 backward only.
/// </summary>
public class OpGradientTests
{
    private static double[] Rand(Random r, int n, double s = 1) => Enumerable.Range(0, n).Select(_ => (r.NextDouble() * 2 - 1) * s).ToArray();
    private static float[] F(double[] a) => a.Select(x => (float)x).ToArray();

    /// <summary>Central differences of Σ dy·f(x) w.r.t. every x_i.</summary>
    private static double[] FiniteDifference(double[] x, double[] dy, Func<double[], double[]> f, double h = 1e-5)
    {
        var g = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            double o = x[i];
            x[i] = o + h; double plus = Dot(dy, f(x));
            x[i] = o - h; double minus = Dot(dy, f(x));
            x[i] = o;
            g[i] = (plus - minus) / (2 * h);
        }
        return g;
    }

    private static double Dot(double[] a, double[] b) => a.Zip(b, (x, y) => x * y).Sum();

    private static void AssertClose(double[] expected, ReadOnlySpan<float> actual, string what, double rel = 1e-4, double abs = 1e-5)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(actual[i] - expected[i]) <= rel * Math.Abs(expected[i]) + abs, $"{what}[{i}]: {actual[i]} vs finite difference {expected[i]}");
    }

    [Fact]
    public void RmsNorm_backward()
    {
        var r = new Random(1);
        int rows = 3, c = 9;
        var x = Rand(r, rows * c, 2);
        var w = Rand(r, c);
        var dy = Rand(r, rows * c);
        const double eps = 1e-5;
        double[] Fwd(double[] xv, double[] wv)
        {
            var y = new double[rows * c];
            for (int i = 0; i < rows; i++)
            {
                double ss = 0;
                for (int j = 0; j < c; j++) ss += xv[i * c + j] * xv[i * c + j];
                double rs = 1 / Math.Sqrt(ss / c + eps);
                for (int j = 0; j < c; j++) y[i * c + j] = xv[i * c + j] * rs * wv[j];
            }
            return y;
        }
        var y32 = new float[rows * c];
        var rstd = new float[rows];
        K.RmsNormForward(F(x), F(w), (float)eps, y32, rstd, rows);
        var dx = new float[rows * c];
        var dw = new float[c];
        K.RmsNormBackward(F(dy), F(x), F(w), rstd, dx, dw, rows);
        AssertClose(FiniteDifference(x, dy, xv => Fwd(xv, w)), dx, "dx");
        AssertClose(FiniteDifference(w, dy, wv => Fwd(x, wv)), dw, "dw");
    }

    [Fact]
    public void SiluMul_backward()
    {
        var r = new Random(2);
        int n = 13;
        var g = Rand(r, n, 4);
        var u = Rand(r, n, 2);
        var dy = Rand(r, n);
        double[] Fwd(double[] gv, double[] uv) => gv.Select((v, i) => v / (1 + Math.Exp(-v)) * uv[i]).ToArray();
        var dg = new float[n];
        var du = new float[n];
        K.SiluMulBackward(F(dy), F(g), F(u), dg, du);
        AssertClose(FiniteDifference(g, dy, gv => Fwd(gv, u)), dg, "dgate");
        AssertClose(FiniteDifference(u, dy, uv => Fwd(g, uv)), du, "dup");
    }

    [Fact]
    public void Rope_backward_is_the_transpose_of_the_rotation()
    {
        var r = new Random(3);
        int tokens = 4, heads = 2, d = 6, half = d / 2, maxPos = 8;
        var cos = new float[maxPos * half];
        var sin = new float[maxPos * half];
        for (int p = 0; p < maxPos; p++)
            for (int i = 0; i < half; i++) { double a = p * Math.Pow(100, -2.0 * i / d); cos[p * half + i] = (float)Math.Cos(a); sin[p * half + i] = (float)Math.Sin(a); }
        int[] pos = [0, 3, 5, 7];
        var x = Rand(r, tokens * heads * d);
        var dy = Rand(r, tokens * heads * d);
        double[] Fwd(double[] xv)
        {
            var y = (double[])xv.Clone();
            for (int t = 0; t < tokens; t++)
                for (int h = 0; h < heads; h++)
                    for (int i = 0; i < half; i++)
                    {
                        int o = (t * heads + h) * d;
                        double c = cos[pos[t] * half + i], s = sin[pos[t] * half + i];
                        y[o + i] = xv[o + i] * c - xv[o + i + half] * s;
                        y[o + i + half] = xv[o + i + half] * c + xv[o + i] * s;
                    }
            return y;
        }
        var dx = F(dy);
        K.ApplyRopeBackward(dx, tokens, heads, d, cos, sin, pos);
        AssertClose(FiniteDifference(x, dy, Fwd), dx, "dx");
    }

    [Fact]
    public void Cross_entropy_backward()
    {
        var r = new Random(4);
        var z = Rand(r, 11, 3);
        int target = 6;
        float scale = 0.25f;
        double Loss(double[] zv)
        {
            double m = zv.Max();
            return m + Math.Log(zv.Sum(v => Math.Exp(v - m))) - zv[target];
        }
        var dz = F(z);
        double loss = K.CrossEntropyForwardBackward(dz, target, scale);
        Assert.Equal(Loss(z), loss, 1e-6);
        var fd = FiniteDifference(z, [scale], zv => [Loss(zv)]);
        AssertClose(fd, dz, "dlogits");
    }

    [Theory]
    [InlineData(4, 4)]
    [InlineData(4, 2)]
    [InlineData(6, 1)]
    public void Attention_backward_with_grouped_kv_heads(int heads, int kvHeads)
    {
        var r = new Random(heads * 10 + kvHeads);
        int batch = 2, t = 5, d = 4, qw = heads * d, kvw = kvHeads * d, n = batch * t;
        float scale = 0.5f;
        var q = Rand(r, n * qw);
        var k = Rand(r, n * kvw);
        var v = Rand(r, n * kvw);
        var dy = Rand(r, n * qw);
        double[] Fwd(double[] qv, double[] kv, double[] vv)
        {
            var o = new double[n * qw];
            for (int b = 0; b < batch; b++)
                for (int h = 0; h < heads; h++)
                {
                    int g = h / (heads / kvHeads);
                    for (int i = 0; i < t; i++)
                    {
                        var s = new double[i + 1];
                        for (int j = 0; j <= i; j++)
                            for (int e = 0; e < d; e++) s[j] += qv[(b * t + i) * qw + h * d + e] * kv[(b * t + j) * kvw + g * d + e] * scale;
                        double m = s.Max(), z = s.Sum(x => Math.Exp(x - m));
                        for (int j = 0; j <= i; j++)
                            for (int e = 0; e < d; e++) o[(b * t + i) * qw + h * d + e] += Math.Exp(s[j] - m) / z * vv[(b * t + j) * kvw + g * d + e];
                    }
                }
            return o;
        }
        var be = CpuBackend.Instance;
        var probs = new float[batch * heads * t * t];
        var outp = new float[n * qw];
        float[] q32 = F(q), k32 = F(k), v32 = F(v);
        CausalAttention.Forward(be, q32, k32, v32, outp, batch, t, heads, kvHeads, d, scale, null, probs);
        var expectedOut = Fwd(q, k, v);
        AssertClose(expectedOut, outp, "forward", 1e-5, 1e-6);
        var dq = new float[n * qw];
        var dk = new float[n * kvw];
        var dv = new float[n * kvw];
        CausalAttention.Backward(be, F(dy), q32, k32, v32, probs, dq, dk, dv, batch, t, heads, kvHeads, d, scale, new float[t * t]);
        AssertClose(FiniteDifference(q, dy, x => Fwd(x, k, v)), dq, "dq");
        AssertClose(FiniteDifference(k, dy, x => Fwd(q, x, v)), dk, "dk");
        AssertClose(FiniteDifference(v, dy, x => Fwd(q, k, x)), dv, "dv");
    }

    [Theory]
    [InlineData(null, true)]
    [InlineData(3, false)]
    [InlineData(2, true)]
    public void Linear_backward_dense_and_low_rank(int? rank, bool bias)
    {
        var r = new Random(rank ?? 0);
        int rows = 4, inF = 7, outF = 5;
        var arena = new ParameterArena();
        var lin = new TrainableLinear { Name = "model.layers.0.mlp.up_proj", In = inF, Out = outF, Rank = rank, HasBias = bias };
        lin.Declare(arena);
        arena.Allocate();
        using var grads = arena.NewBlock();
        foreach (var e in arena.Entries) F(Rand(r, e.Length)).CopyTo(arena.View(e));
        var x = Rand(r, rows * inF);
        var dy = Rand(r, rows * outF);
        double[] P(string name) => arena.View(name).ToArray().Select(f => (double)f).ToArray();

        // Naive float64 forward with explicit parameter arrays so each can be perturbed.
        var parameters = arena.Entries.ToDictionary(e => e.Name, e => P(e.Name));
        double[] Fwd(double[] xv)
        {
            var y = new double[rows * outF];
            for (int i = 0; i < rows; i++)
                for (int o = 0; o < outF; o++)
                {
                    double s = 0;
                    if (rank is int kk)
                    {
                        var u = parameters[Linear.UName(lin.Name) + ".weight"];
                        var v = parameters[Linear.VName(lin.Name) + ".weight"];
                        for (int a = 0; a < kk; a++)
                        {
                            double tv = 0;
                            for (int j = 0; j < inF; j++) tv += xv[i * inF + j] * v[a * inF + j];
                            s += tv * u[o * kk + a];
                        }
                    }
                    else
                    {
                        var w = parameters[lin.Name + ".weight"];
                        for (int j = 0; j < inF; j++) s += xv[i * inF + j] * w[o * inF + j];
                    }
                    if (bias) s += parameters.Single(kv => kv.Key.EndsWith(".bias")).Value[o];
                    y[i * outF + o] = s;
                }
            return y;
        }

        var y32 = new float[rows * outF];
        var x32 = F(x);
        lin.Forward(CpuBackend.Instance, arena.Data, x32, rows, y32);
        AssertClose(Fwd(x), y32, "forward", 1e-5, 1e-5);
        var dx = new float[rows * inF];
        lin.Backward(CpuBackend.Instance, arena.Data, grads, x32, F(dy), rows, dx, null);
        AssertClose(FiniteDifference(x, dy, Fwd), dx, "dx");
        foreach (var e in arena.Entries)
        {
            var fd = FiniteDifference(parameters[e.Name], dy, _ => Fwd(x));
            AssertClose(fd, ParameterArena.View(grads, e), e.Name);
        }
        lin.Dispose();
        arena.Dispose();
    }
}
