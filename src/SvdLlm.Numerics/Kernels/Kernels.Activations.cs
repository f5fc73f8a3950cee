using System.Numerics.Tensors;

namespace SvdLlm.Numerics.Kernels;

public static partial class Kernels
{
    /// <summary>SwiGLU gate: y[i] = silu(gate[i]) · up[i], silu(g) = g · σ(g). y may alias gate or up.</summary>
    public static unsafe void SiluMul(ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> y, int rows)
    {
        CheckLength(nameof(SiluMul), "up", up.Length, gate.Length);
        CheckLength(nameof(SiluMul), "y", y.Length, gate.Length);
        if (rows <= 0 || gate.Length % rows != 0) throw new ArgumentException($"SiluMul: {gate.Length} elements do not split into {rows} rows");
        int c = gate.Length / rows;
        fixed (float* pg = gate) fixed (float* pu = up) fixed (float* py = y)
        {
            nint ag = (nint)pg, au = (nint)pu, ay = (nint)py;
            ForRows(rows, c, r =>
            {
                var g = new ReadOnlySpan<float>((float*)ag + (long)r * c, c);
                var u = new ReadOnlySpan<float>((float*)au + (long)r * c, c);
                var yr = new Span<float>((float*)ay + (long)r * c, c);
                // y = g·σ(g)·u; σ written into y first is safe even when y aliases g, since g is read again only elementwise.
                for (int i = 0; i < c; i++)
                {
                    float gi = g[i];
                    yr[i] = gi / (1f + MathF.Exp(-gi)) * u[i];
                }
            });
        }
    }

    /// <summary>y[i] = max(x[i], 0); NaN stays NaN. x and y may alias.</summary>
    public static void Relu(ReadOnlySpan<float> x, Span<float> y)
    {
        CheckLength(nameof(Relu), "y", y.Length, x.Length);
        TensorPrimitives.Max(x, 0f, y);
    }

    /// <summary>y[i] = x[i] + r[i] (residual add). y may alias x or r.</summary>
    public static void Add(ReadOnlySpan<float> x, ReadOnlySpan<float> r, Span<float> y)
    {
        CheckLength(nameof(Add), "r", r.Length, x.Length);
        CheckLength(nameof(Add), "y", y.Length, x.Length);
        TensorPrimitives.Add(x, r, y);
    }

    /// <summary>Adds a bias row to every row of y [rows, C].</summary>
    public static void AddBias(ReadOnlySpan<float> bias, Span<float> y, int rows)
    {
        int c = bias.Length;
        CheckLength(nameof(AddBias), "y", y.Length, (long)rows * c);
        for (int r = 0; r < rows; r++)
        {
            var yr = y.Slice(r * c, c);
            TensorPrimitives.Add(yr, bias, yr);
        }
    }
}
