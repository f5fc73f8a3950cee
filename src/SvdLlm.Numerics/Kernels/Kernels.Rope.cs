namespace SvdLlm.Numerics.Kernels;

public static partial class Kernels
{
    /// <summary>
    /// Rotary position embedding in the Hugging Face "rotate_half" convention, in place.
    /// x is [T, heads·D] (one row per token, heads side by side); for each head and i &lt; D/2:
    /// (x[i], x[i+D/2]) ← (x[i]·cos − x[i+D/2]·sin, x[i+D/2]·cos + x[i]·sin) with cos/sin = table[position][i].
    /// cos and sin are [maxPosition, D/2] tables; positions[t] is token t's position.
    /// </summary>
    public static unsafe void ApplyRope(Span<float> x, int tokens, int heads, int headDim,
        ReadOnlySpan<float> cos, ReadOnlySpan<float> sin, ReadOnlySpan<int> positions)
    {
        int half = headDim / 2;
        if (headDim % 2 != 0) throw new ArgumentException($"ApplyRope: head_dim {headDim} must be even");
        CheckLength(nameof(ApplyRope), "x", x.Length, (long)tokens * heads * headDim);
        CheckLength(nameof(ApplyRope), "positions", positions.Length, tokens);
        CheckLength(nameof(ApplyRope), "sin", sin.Length, cos.Length);
        int maxPos = cos.Length / Math.Max(1, half);
        foreach (int p in positions)
            if ((uint)p >= (uint)maxPos) throw new ArgumentException($"ApplyRope: position {p} outside the rotary table of {maxPos} positions");
        int width = heads * headDim;
        fixed (float* px = x) fixed (float* pc = cos) fixed (float* ps = sin) fixed (int* pp = positions)
        {
            nint ax = (nint)px, ac = (nint)pc, asn = (nint)ps, ap = (nint)pp;
            ForRows(tokens, width, t =>
            {
                float* row = (float*)ax + (long)t * width;
                int pos = ((int*)ap)[t];
                float* c = (float*)ac + (long)pos * half;
                float* s = (float*)asn + (long)pos * half;
                for (int h = 0; h < heads; h++)
                {
                    float* v = row + h * headDim;
                    for (int i = 0; i < half; i++)
                    {
                        float a = v[i], b = v[i + half];
                        v[i] = a * c[i] - b * s[i];
                        v[i + half] = b * c[i] + a * s[i];
                    }
                }
            });
        }
    }
}
