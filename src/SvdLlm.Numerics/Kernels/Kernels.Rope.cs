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

    /// <summary>
    /// Rotary position embedding of heads that keep only some of the rotary pairs (a structurally pruned model such as
    /// MoDeGPT's), in place. x is [T, heads·D'] with D' = 2m: each head keeps the rotate_half layout of its m kept pairs,
    /// pair j at positions j and j + m. Pair j of head h turns with the ORIGINAL frequency index
    /// i = pairs[g·m + j], g = h / (heads / pairHeads): pairs is [pairHeads, m] (one row per key/value head, shared by
    /// its group of query heads, because a query and its key must turn by the same angle for their dot product to depend
    /// on the relative position only). cos and sin are the unpruned model's tables [maxPosition, tableHalf], so a kept
    /// pair is rotated by exactly the values the unpruned head would have used, bit for bit:
    /// (x[j], x[j+m]) ← (x[j]·cos − x[j+m]·sin, x[j+m]·cos + x[j]·sin) with cos/sin = table[position][i].
    /// With pairs = 0 … tableHalf − 1 in every row this is <see cref="ApplyRope"/> to the last bit.
    /// </summary>
    public static unsafe void ApplyRopeKeptPairs(Span<float> x, int tokens, int heads, int headDim,
        ReadOnlySpan<float> cos, ReadOnlySpan<float> sin, int tableHalf, ReadOnlySpan<int> pairs, int pairHeads, ReadOnlySpan<int> positions)
    {
        const string kernel = nameof(ApplyRopeKeptPairs);
        if (headDim <= 0 || headDim % 2 != 0) throw new ArgumentException($"{kernel}: head dimension {headDim} must be positive and even");
        if (tableHalf <= 0) throw new ArgumentException($"{kernel}: the rotary table's width {tableHalf} must be positive");
        if (pairHeads <= 0 || heads % pairHeads != 0) throw new ArgumentException($"{kernel}: {pairHeads} rows of pairs do not divide {heads} heads");
        int half = headDim / 2;
        CheckLength(kernel, "x", x.Length, (long)tokens * heads * headDim);
        CheckLength(kernel, "positions", positions.Length, tokens);
        CheckLength(kernel, "pairs", pairs.Length, (long)pairHeads * half);
        CheckLength(kernel, "sin", sin.Length, cos.Length);
        if (cos.Length % tableHalf != 0) throw new ArgumentException($"{kernel}: the rotary table has {cos.Length} entries, not a multiple of its width {tableHalf}");
        foreach (int i in pairs)
            if ((uint)i >= (uint)tableHalf) throw new ArgumentException($"{kernel}: frequency index {i} outside [0, {tableHalf})");
        int maxPos = cos.Length / tableHalf;
        foreach (int p in positions)
            if ((uint)p >= (uint)maxPos) throw new ArgumentException($"{kernel}: position {p} outside the rotary table of {maxPos} positions");
        int width = heads * headDim, group = heads / pairHeads;
        fixed (float* px = x) fixed (float* pc = cos) fixed (float* ps = sin) fixed (int* pp = positions) fixed (int* pk = pairs)
        {
            nint ax = (nint)px, ac = (nint)pc, asn = (nint)ps, ap = (nint)pp, ak = (nint)pk;
            ForRows(tokens, width, t =>
            {
                float* row = (float*)ax + (long)t * width;
                int pos = ((int*)ap)[t];
                float* c = (float*)ac + (long)pos * tableHalf;
                float* s = (float*)asn + (long)pos * tableHalf;
                for (int h = 0; h < heads; h++)
                {
                    float* v = row + h * headDim;
                    int* kept = (int*)ak + (h / group) * half;
                    for (int j = 0; j < half; j++)
                    {
                        int i = kept[j];
                        float a = v[j], b = v[j + half];
                        v[j] = a * c[i] - b * s[i];
                        v[j + half] = b * c[i] + a * s[i];
                    }
                }
            });
        }
    }
}
