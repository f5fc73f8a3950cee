using System.Numerics.Tensors;

namespace SvdLlm.Numerics.Kernels;

public static partial class Kernels
{
    /// <summary>
    /// RMSNorm over each row of x [rows, C]: y[i] = x[i] · rstd · w[i], rstd = 1/sqrt(mean(x²) + eps).
    /// The sum of squares is accumulated in float64 (hidden sizes up to 8192 lose digits in float32).
    /// x and y may be the same span. NaN in a row propagates to that row's output.
    /// </summary>
    public static unsafe void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> y, int rows)
    {
        int c = weight.Length;
        CheckLength(nameof(RmsNorm), "x", x.Length, (long)rows * c);
        CheckLength(nameof(RmsNorm), "y", y.Length, (long)rows * c);
        fixed (float* px = x) fixed (float* pw = weight) fixed (float* py = y)
        {
            nint ax = (nint)px, aw = (nint)pw, ay = (nint)py;
            ForRows(rows, c, r =>
            {
                var xr = new ReadOnlySpan<float>((float*)ax + (long)r * c, c);
                var yr = new Span<float>((float*)ay + (long)r * c, c);
                double ss = 0;
                for (int i = 0; i < c; i++) ss += (double)xr[i] * xr[i];
                float rstd = (float)(1.0 / Math.Sqrt(ss / c + eps));
                TensorPrimitives.Multiply(xr, rstd, yr);
                TensorPrimitives.Multiply(yr, new ReadOnlySpan<float>((float*)aw, c), yr);
            });
        }
    }
}
