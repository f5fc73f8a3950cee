namespace SvdLlm.Numerics.Kernels;

// Backward kernels, each beside the forward it differentiates (llm.c's layout): gradients are
// prefixed d, and every backward ACCUMULATES (+=) into its parameter gradients, so gradient
// accumulation over micro-batches is a matter of not zeroing in between. Input gradients (dx) are
// accumulated too, because the residual stream sums several contributions into one buffer.
public static partial class Kernels
{
    /// <summary>
    /// RMSNorm forward that also stores rstd[r] = 1/sqrt(mean(x_r²) + eps) for the backward pass:
    /// y = x·rstd·w. x and y must not alias (the backward needs x).
    /// </summary>
    public static unsafe void RmsNormForward(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> y, Span<float> rstd, int rows)
    {
        int c = weight.Length;
        CheckLength(nameof(RmsNormForward), "x", x.Length, (long)rows * c);
        CheckLength(nameof(RmsNormForward), "y", y.Length, (long)rows * c);
        CheckLength(nameof(RmsNormForward), "rstd", rstd.Length, rows);
        fixed (float* px = x) fixed (float* pw = weight) fixed (float* py = y) fixed (float* pr = rstd)
        {
            nint ax = (nint)px, aw = (nint)pw, ay = (nint)py, ar = (nint)pr;
            ForRows(rows, c, r =>
            {
                float* xr = (float*)ax + (long)r * c, yr = (float*)ay + (long)r * c, w = (float*)aw;
                double ss = 0;
                for (int i = 0; i < c; i++) ss += (double)xr[i] * xr[i];
                float rs = (float)(1.0 / Math.Sqrt(ss / c + eps));
                ((float*)ar)[r] = rs;
                for (int i = 0; i < c; i++) yr[i] = xr[i] * rs * w[i];
            });
        }
    }

    /// <summary>
    /// RMSNorm backward. With g = dy·w and r = rstd: dx += r·g − (r³/C)·x·Σ_j g_j x_j, dw += Σ_rows dy·x·r.
    /// dw is accumulated row by row in a fixed order (deterministic).
    /// </summary>
    public static void RmsNormBackward(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> rstd,
        Span<float> dx, Span<float> dweight, int rows)
    {
        int c = weight.Length;
        CheckLength(nameof(RmsNormBackward), "dy", dy.Length, (long)rows * c);
        CheckLength(nameof(RmsNormBackward), "x", x.Length, (long)rows * c);
        CheckLength(nameof(RmsNormBackward), "dx", dx.Length, (long)rows * c);
        CheckLength(nameof(RmsNormBackward), "dweight", dweight.Length, c);
        for (int r = 0; r < rows; r++)
        {
            var dyr = dy.Slice(r * c, c);
            var xr = x.Slice(r * c, c);
            var dxr = dx.Slice(r * c, c);
            double rs = rstd[r];
            double dot = 0;
            for (int i = 0; i < c; i++) dot += (double)dyr[i] * weight[i] * xr[i];
            double k = rs * rs * rs / c * dot;
            for (int i = 0; i < c; i++)
            {
                dxr[i] += (float)(rs * dyr[i] * weight[i] - k * xr[i]);
                dweight[i] += (float)(dyr[i] * xr[i] * rs);
            }
        }
    }

    /// <summary>
    /// SwiGLU backward for y = silu(g)·u: dg += dy·u·silu'(g) with silu'(g) = σ(g)·(1 + g·(1 − σ(g))), du += dy·silu(g).
    /// </summary>
    public static void SiluMulBackward(ReadOnlySpan<float> dy, ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> dgate, Span<float> dup)
    {
        int n = dy.Length;
        CheckLength(nameof(SiluMulBackward), "gate", gate.Length, n);
        CheckLength(nameof(SiluMulBackward), "up", up.Length, n);
        CheckLength(nameof(SiluMulBackward), "dgate", dgate.Length, n);
        CheckLength(nameof(SiluMulBackward), "dup", dup.Length, n);
        for (int i = 0; i < n; i++)
        {
            float g = gate[i];
            float s = 1f / (1f + MathF.Exp(-g));
            float silu = g * s;
            dgate[i] += dy[i] * up[i] * s * (1f + g * (1f - s));
            dup[i] += dy[i] * silu;
        }
    }

    /// <summary>
    /// RoPE backward, in place on the gradient: the forward is a rotation by +θ of each (i, i+D/2)
    /// pair, so its transpose is the rotation by −θ.
    /// </summary>
    public static unsafe void ApplyRopeBackward(Span<float> dx, int tokens, int heads, int headDim,
        ReadOnlySpan<float> cos, ReadOnlySpan<float> sin, ReadOnlySpan<int> positions)
    {
        int half = headDim / 2;
        CheckLength(nameof(ApplyRopeBackward), "dx", dx.Length, (long)tokens * heads * headDim);
        CheckLength(nameof(ApplyRopeBackward), "positions", positions.Length, tokens);
        int width = heads * headDim;
        for (int t = 0; t < tokens; t++)
        {
            var row = dx.Slice(t * width, width);
            int pos = positions[t];
            var c = cos.Slice(pos * half, half);
            var s = sin.Slice(pos * half, half);
            for (int h = 0; h < heads; h++)
            {
                var v = row.Slice(h * headDim, headDim);
                for (int i = 0; i < half; i++)
                {
                    float a = v[i], b = v[i + half];
                    v[i] = a * c[i] + b * s[i];
                    v[i + half] = b * c[i] - a * s[i];
                }
            }
        }
    }

    /// <summary>
    /// Softmax backward per row, in place: given P (softmax output) and dP, dS = P ∘ (dP − Σ_j dP_j P_j).
    /// Masked entries have P = 0 and so get dS = 0.
    /// </summary>
    public static void SoftmaxBackwardInPlace(ReadOnlySpan<float> p, Span<float> dp, int rows)
    {
        if (rows <= 0 || p.Length != dp.Length || p.Length % rows != 0)
            throw new ArgumentException($"SoftmaxBackwardInPlace: {p.Length} probabilities, {dp.Length} gradients, {rows} rows");
        int c = p.Length / rows;
        for (int r = 0; r < rows; r++)
        {
            var pr = p.Slice(r * c, c);
            var dr = dp.Slice(r * c, c);
            double dot = 0;
            for (int j = 0; j < c; j++) dot += (double)pr[j] * dr[j];
            float fdot = (float)dot;
            for (int j = 0; j < c; j++) dr[j] = pr[j] * (dr[j] - fdot);
        }
    }

    /// <summary>
    /// Cross-entropy forward and backward for one row of logits, fused: returns −log softmax(z)[target]
    /// and writes dz = scale·(softmax(z) − onehot(target)) over the logits in place.
    /// Stable (max subtracted); NaN/∞ in the row returns a non-finite loss for the caller to reject.
    /// </summary>
    public static double CrossEntropyForwardBackward(Span<float> logits, int target, float scale)
    {
        if ((uint)target >= (uint)logits.Length) throw new ArgumentOutOfRangeException(nameof(target), $"target {target} outside [0, {logits.Length})");
        double lse = LogSumExp(logits);
        double loss = lse - logits[target];
        if (!double.IsFinite(loss)) return loss;
        for (int j = 0; j < logits.Length; j++) logits[j] = (float)(Math.Exp(logits[j] - lse) * scale);
        logits[target] -= scale;
        return loss;
    }
}
