using System.Numerics.Tensors;

namespace SvdLlm.Numerics.Kernels;

public static partial class Kernels
{
    /// <summary>
    /// LayerNorm over each row of x [rows, C]: y = (x − mean) · rstd · w + b with the biased variance,
    /// rstd = 1/sqrt(var + eps) (PyTorch's nn.LayerNorm). Statistics in float64. x and y may alias.
    /// </summary>
    public static unsafe void LayerNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias,
        float eps, Span<float> y, int rows)
    {
        int c = weight.Length;
        CheckLength(nameof(LayerNorm), "bias", bias.Length, c);
        CheckLength(nameof(LayerNorm), "x", x.Length, (long)rows * c);
        CheckLength(nameof(LayerNorm), "y", y.Length, (long)rows * c);
        fixed (float* px = x) fixed (float* pw = weight) fixed (float* pb = bias) fixed (float* py = y)
        {
            nint ax = (nint)px, aw = (nint)pw, ab = (nint)pb, ay = (nint)py;
            ForRows(rows, c, r =>
            {
                var xr = new ReadOnlySpan<float>((float*)ax + (long)r * c, c);
                var yr = new Span<float>((float*)ay + (long)r * c, c);
                double sum = 0;
                for (int i = 0; i < c; i++) sum += xr[i];
                double mean = sum / c, sq = 0;
                for (int i = 0; i < c; i++) { double d = xr[i] - mean; sq += d * d; }
                float rstd = (float)(1.0 / Math.Sqrt(sq / c + eps));
                TensorPrimitives.Subtract(xr, (float)mean, yr);
                TensorPrimitives.Multiply(yr, rstd, yr);
                TensorPrimitives.FusedMultiplyAdd(yr, new ReadOnlySpan<float>((float*)aw, c), new ReadOnlySpan<float>((float*)ab, c), yr);
            });
        }
    }
}
