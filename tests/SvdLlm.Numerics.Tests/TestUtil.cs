using SvdLlm.Numerics;

namespace SvdLlm.Numerics.Tests;

internal static class TestUtil
{
    public static double[] RandomArray(Random rng, int n, double scale = 1.0)
    {
        var a = new double[n];
        for (int i = 0; i < n; i++) a[i] = (rng.NextDouble() * 2 - 1) * scale;
        return a;
    }

    public static float[] RandomFloats(Random rng, int n, double scale = 1.0)
        => RandomArray(rng, n, scale).Select(v => (float)v).ToArray();

    public static Tensor<double> RandomMatrix(Random rng, int rows, int cols)
        => Tensor<double>.From(RandomArray(rng, rows * cols), rows, cols);

    /// <summary>Naive row-major C = op(A)·op(B) in float64.</summary>
    public static double[] NaiveMatMul(double[] a, bool transA, double[] b, bool transB, int m, int n, int k, int lda, int ldb)
    {
        var c = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int p = 0; p < k; p++)
                {
                    double av = transA ? a[p * lda + i] : a[i * lda + p];
                    double bv = transB ? b[j * ldb + p] : b[p * ldb + j];
                    s += av * bv;
                }
                c[i * n + j] = s;
            }
        return c;
    }

    public static double[] Identity(int n)
    {
        var id = new double[n * n];
        for (int i = 0; i < n; i++) id[i * n + i] = 1;
        return id;
    }

    public static double MaxAbsDiff(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        Assert.Equal(a.Length, b.Length);
        double m = 0;
        for (int i = 0; i < a.Length; i++) m = Math.Max(m, Math.Abs(a[i] - b[i]));
        return m;
    }

    public static double FrobeniusNorm(ReadOnlySpan<double> a)
    {
        double s = 0;
        foreach (var v in a) s += v * v;
        return Math.Sqrt(s);
    }
}
