namespace SvdLlm.Numerics;

/// <summary>
/// SplitMix64 (Steele, Lea and Flood 2014): tiny, fixed across platforms and .NET versions, unlike <see cref="Random"/>,
/// whose algorithm a runtime may change. Everything seeded that must give the same bytes or the same masks on every
/// machine draws from it: the demo suite's items, the masks of delta compression (DARE, ImPart).
/// </summary>
public sealed class SplitMix64(ulong seed)
{
    private ulong _state = seed;

    public ulong Next()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform on [0, n) by rejection (no modulo bias).</summary>
    public int NextInt(int n)
    {
        if (n <= 0) throw new ArgumentOutOfRangeException(nameof(n));
        ulong limit = ulong.MaxValue - ulong.MaxValue % (ulong)n;
        ulong x;
        do x = Next(); while (x >= limit);
        return (int)(x % (ulong)n);
    }

    /// <summary>
    /// Uniform on [0, 1): the top 53 bits times 2⁻⁵³, so every value is an exact multiple of 2⁻⁵³ and
    /// P(u &lt; q) = ⌈q·2⁵³⌉/2⁵³, within 2⁻⁵³ of q for any q in [0, 1].
    /// </summary>
    public double NextDouble() => (Next() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Fisher–Yates.</summary>
    public void Shuffle<T>(IList<T> list)
    {
        for (int i = list.Count - 1; i > 0; i--)
        {
            int j = NextInt(i + 1);
            (list[i], list[j]) = (list[j], list[i]);
        }
    }
}
