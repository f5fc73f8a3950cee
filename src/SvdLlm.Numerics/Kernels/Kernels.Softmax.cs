using System.Numerics.Tensors;

namespace SvdLlm.Numerics.Kernels;

public static partial class Kernels
{
    /// <summary>
    /// Numerically stable softmax of one row in place: x[i] = exp(x[i] − max) / Σ exp(x[j] − max).
    /// Subtracting the maximum first is what keeps large logits from overflowing (not every
    /// TensorPrimitives.SoftMax does it). A row holding NaN becomes all NaN; a row of −∞ is an error
    /// (a query with nothing to attend to).
    /// </summary>
    public static void SoftmaxInPlace(Span<float> x)
    {
        if (x.IsEmpty) return;
        float max = TensorPrimitives.Max(x);
        if (float.IsNegativeInfinity(max))
            throw new ArgumentException("SoftmaxInPlace: every element is −∞ (fully masked row)");
        TensorPrimitives.Subtract(x, max, x);
        TensorPrimitives.Exp(x, x);
        float sum = TensorPrimitives.Sum(x);
        TensorPrimitives.Multiply(x, 1f / sum, x);
    }

    /// <summary>
    /// log Σ exp(x) of one row, stable (max subtracted), accumulated in float64.
    /// Returns NaN when x holds NaN and +∞ when x holds +∞: callers check with float.IsFinite.
    /// </summary>
    public static double LogSumExp(ReadOnlySpan<float> x)
    {
        float max = TensorPrimitives.Max(x);
        if (!float.IsFinite(max)) return float.IsNaN(max) ? double.NaN : max;
        double sum = 0;
        for (int i = 0; i < x.Length; i++) sum += Math.Exp(x[i] - max);
        return max + Math.Log(sum);
    }
}
