using SvdLlm.Numerics;

namespace SvdLlm.Models.Training;

/// <summary>
/// AdamW (Loshchilov &amp; Hutter): Adam with bias correction and weight decay decoupled from the
/// gradient: θ ← θ − lr·(m̂/(sqrt(v̂)+ε) + λ·θ), applied only to parameters marked for decay
/// (matrices; not norms or biases). Moments live in blocks with the arena's layout.
/// </summary>
public sealed class AdamW : IDisposable
{
    private readonly ParameterArena _parameters;

    public Tensor<float> M { get; }
    public Tensor<float> V { get; }
    public float Beta1 { get; init; } = 0.9f;
    public float Beta2 { get; init; } = 0.95f;
    public float Epsilon { get; init; } = 1e-8f;
    public float WeightDecay { get; init; } = 0.1f;

    /// <summary>Number of steps taken (the t of the bias correction).</summary>
    public int Step { get; set; }

    public AdamW(ParameterArena parameters)
    {
        _parameters = parameters;
        M = parameters.NewBlock();
        V = parameters.NewBlock();
    }

    /// <summary>One update with learning rate <paramref name="lr"/> from <paramref name="gradients"/> (same layout as the arena).</summary>
    public void Update(Tensor<float> gradients, float lr)
    {
        Step++;
        double c1 = 1 - Math.Pow(Beta1, Step), c2 = 1 - Math.Pow(Beta2, Step);
        var p = _parameters.Data.Span;
        var g = gradients.Span;
        var m = M.Span;
        var v = V.Span;
        foreach (var e in _parameters.Entries)
        {
            float decay = e.WeightDecay ? WeightDecay : 0f;
            int end = (int)e.Offset + e.Length;
            for (int i = (int)e.Offset; i < end; i++)
            {
                float gi = g[i];
                m[i] = Beta1 * m[i] + (1 - Beta1) * gi;
                v[i] = Beta2 * v[i] + (1 - Beta2) * gi * gi;
                double mHat = m[i] / c1, vHat = v[i] / c2;
                p[i] -= (float)(lr * (mHat / (Math.Sqrt(vHat) + Epsilon) + decay * p[i]));
            }
        }
    }

    public void Dispose()
    {
        M.Dispose();
        V.Dispose();
    }
}

/// <summary>Training-loop helpers: the learning-rate schedule and global-norm gradient clipping.</summary>
public static class TrainingMath
{
    /// <summary>
    /// Linear warm-up from lr/warmup to lr over <paramref name="warmup"/> steps, then cosine decay to
    /// <paramref name="minLr"/> at <paramref name="total"/> steps. <paramref name="step"/> is 0-based.
    /// </summary>
    public static float LearningRate(int step, int total, int warmup, float lr, float minLr)
    {
        if (step < warmup) return lr * (step + 1) / warmup;
        if (total <= warmup) return lr;
        double progress = Math.Min(1.0, (double)(step - warmup) / Math.Max(1, total - warmup));
        return (float)(minLr + 0.5 * (lr - minLr) * (1 + Math.Cos(Math.PI * progress)));
    }

    /// <summary>The global L2 norm of the gradient (float64 accumulation); NaN/∞ propagate.</summary>
    public static double GlobalNorm(ReadOnlySpan<float> g)
    {
        double s = 0;
        foreach (float x in g) s += (double)x * x;
        return Math.Sqrt(s);
    }

    /// <summary>Scales the gradient so its global norm is at most <paramref name="maxNorm"/>; returns the norm before clipping.</summary>
    public static double ClipGlobalNorm(Span<float> g, double maxNorm)
    {
        double norm = GlobalNorm(g);
        if (!double.IsFinite(norm)) throw new ArithmeticException($"gradient norm is {norm}: a NaN or ∞ reached the gradients");
        if (maxNorm > 0 && norm > maxNorm) System.Numerics.Tensors.TensorPrimitives.Multiply(g, (float)(maxNorm / norm), g);
        return norm;
    }
}
