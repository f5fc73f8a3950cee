namespace SvdLlm.Compression.Quantization;

/// <summary>
/// The per-row uniform grid of GPTQ's quantizer (Frantar et al. 2022, and RTN with the same grid): b bits give the
/// integer levels 0..2^b − 1, a value w maps to code c = clamp(round(w / scale) + zero, 0, maxq) and back to
/// scale·(c − zero). Asymmetric (the reference's default): the grid spans [min(w_min, 0), max(w_max, 0)] of the
/// row, zero = round(−x_min / scale). Symmetric: the grid spans [−a, a] with a = max|w| and zero = (maxq + 1) / 2.
/// A row that is all zero gets the range (−1, 1), so its scale is never 0. Rounding is half-to-even, as torch.round.
/// Scales are rounded to float16 when fitted, because the GPTQ layout stores them so: the codes chosen (and the loss
/// reported) are then exactly those of the checkpoint (the reference fits in float32 and rounds only when packing).
/// </summary>
public readonly record struct UniformGrid(int Bits, bool Symmetric)
{
    public int MaxLevel => (1 << Bits) - 1;

    public static void CheckBits(int bits)
    {
        if (bits < 2 || bits > 8) throw new ArgumentOutOfRangeException(nameof(bits), $"bits must be 2..8 (the GPTQ layout packs 2, 3, 4 or 8; 5–7 are allowed for experiments), got {bits}");
    }

    /// <summary>Scale and integer zero point of one row over <paramref name="values"/>.</summary>
    public (double Scale, int Zero) Fit(ReadOnlySpan<double> values)
    {
        double lo = 0, hi = 0;
        foreach (double v in values)
        {
            if (double.IsNaN(v)) throw new ArgumentException("a weight to quantize is NaN");
            if (v < lo) lo = v;
            if (v > hi) hi = v;
        }
        int maxq = MaxLevel;
        if (Symmetric)
        {
            double a = Math.Max(-lo, hi);
            if (a == 0) a = 1;
            return (Stored(2 * a / maxq), (maxq + 1) / 2);
        }
        if (lo == 0 && hi == 0) (lo, hi) = (-1, 1);
        double scale = Stored((hi - lo) / maxq);
        int zero = (int)Math.Clamp(Math.Round(-lo / scale, MidpointRounding.ToEven), 0, maxq);
        if (zero == 0)
        {
            // The GPTQ layout stores zero − 1 in b bits, so 0 cannot be written (AutoGPTQ's packer wraps it around).
            // Such a row has −x_min < s/2: zero 1 with step x_max/(2^b − 2) covers [−s', x_max] ⊇ [x_min, x_max].
            scale = Stored(hi / (maxq - 1));
            zero = 1;
        }
        return (scale, zero);
    }

    /// <summary>The scale as float16 stores it; at least float16's smallest step, so it never becomes 0.</summary>
    public static double Stored(double scale)
    {
        double h = (double)(Half)scale;
        if (double.IsInfinity(h)) throw new ArgumentException($"a quantization scale of {scale:G4} exceeds float16's range (weights beyond ±1e6?)");
        return Math.Max(h, (double)Half.Epsilon);
    }

    /// <summary>The integer code of w on the grid (scale, zero).</summary>
    public int Code(double w, double scale, int zero) =>
        (int)Math.Clamp(Math.Round(w / scale, MidpointRounding.ToEven) + zero, 0, MaxLevel);

    /// <summary>The value a code stands for.</summary>
    public static double Value(int code, double scale, int zero) => scale * (code - zero);
}
