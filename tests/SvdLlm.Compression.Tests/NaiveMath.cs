using SvdLlm.Numerics;

namespace SvdLlm.Compression.Tests;

/// <summary>Reference linear algebra by plain loops, independent of BLAS, for checking what the code computes through it.</summary>
internal static class NaiveMath
{
    /// <summary>A·B with triple loops.</summary>
    public static Tensor<double> Mul(Tensor<double> a, Tensor<double> b)
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
}
