using SvdLlm.Numerics;

namespace SvdLlm.Compression.Dobi;

/// <summary>
/// The signed 8-bit "dynamic" code book of bitsandbytes (create_dynamic_map with its defaults: signed, 7 exponent
/// bits, 8 bits in total), rebuilt here from its definition, in float64 (the original evaluates it in float32).
///
/// <para>In words: for each decade e = 0…6 the interval [0.1, 1] is cut into 2^e equal pieces and the midpoint of each
/// piece, scaled by 10^(e−6), is a code, together with its negative. That gives 1 + 2 + … + 64 = 127 magnitudes per
/// sign, from 0.55·10⁻⁶ up to 1 − 0.9/128 ≈ 0.99297, i.e. 254 codes; 0 and +1 complete the 256 (there is no −1). The
/// codes are sorted ascending and a byte is an index into them. The widest gap between neighbours is 0.9/64 (between
/// two midpoints of the top decade), so rounding a value of [−1, 1] to the nearest code errs by at most 0.9/128.</para>
/// </summary>
public static class DynamicMap
{
    private static readonly double[] CodeBook = Build();

    /// <summary>The 256 codes, ascending.</summary>
    public static ReadOnlySpan<double> Codes => CodeBook;

    /// <summary>The largest distance between neighbouring codes.</summary>
    public static double LargestGap { get; } = ComputeLargestGap();

    private static double[] Build()
    {
        var data = new List<double>(256);
        for (int e = 0; e < 7; e++)
        {
            int pieces = 1 << e;
            double scale = Math.Pow(10, e - 6);
            for (int t = 0; t < pieces; t++)
            {
                double lo = 0.1 + 0.9 * t / pieces, hi = 0.1 + 0.9 * (t + 1) / pieces;
                double mid = scale * (lo + hi) / 2;
                data.Add(mid);
                data.Add(-mid);
            }
        }
        data.Add(0);
        data.Add(1);
        if (data.Count != 256) throw new InvalidOperationException($"dynamic map has {data.Count} codes, expected 256");
        data.Sort();
        return [.. data];
    }

    private static double ComputeLargestGap()
    {
        double gap = 0;
        for (int i = 1; i < CodeBook.Length; i++) gap = Math.Max(gap, CodeBook[i] - CodeBook[i - 1]);
        return gap;
    }

    /// <summary>Index of the code nearest to <paramref name="x"/> (values outside [−1, 1] go to the end codes; ties to the lower code).</summary>
    public static byte Nearest(double x)
    {
        if (double.IsNaN(x)) throw new ArgumentException("cannot quantize NaN");
        int hi = Array.BinarySearch(CodeBook, x);
        if (hi >= 0) return (byte)hi;
        hi = ~hi; // first code > x
        if (hi == 0) return 0;
        if (hi == CodeBook.Length) return (byte)(CodeBook.Length - 1);
        return (byte)(x - CodeBook[hi - 1] <= CodeBook[hi] - x ? hi - 1 : hi);
    }

    /// <summary>
    /// Quantizes one vector with a single absmax scale: code_j = nearest(x_j / absmax). Returns absmax (the largest
    /// |x_j|). An all-zero vector gets absmax 0 and the zero code everywhere (the original would divide by zero).
    /// </summary>
    public static double QuantizeVector(ReadOnlySpan<double> x, Span<byte> codes)
    {
        if (codes.Length != x.Length) throw new ArgumentException($"{codes.Length} codes for {x.Length} values");
        double absmax = 0;
        foreach (double v in x) absmax = Math.Max(absmax, Math.Abs(v));
        if (!double.IsFinite(absmax)) throw new ArgumentException("cannot quantize a non-finite vector");
        double inv = absmax > 0 ? 1 / absmax : 0;
        for (int j = 0; j < x.Length; j++) codes[j] = Nearest(x[j] * inv);
        return absmax;
    }

    /// <summary>x_j = Codes[code_j]·absmax.</summary>
    public static void DequantizeVector(ReadOnlySpan<byte> codes, double absmax, Span<double> x)
    {
        if (codes.Length != x.Length) throw new ArgumentException($"{codes.Length} codes for {x.Length} values");
        for (int j = 0; j < x.Length; j++) x[j] = CodeBook[codes[j]] * absmax;
    }
}

/// <summary>
/// One weight W' [m, n] remapped at rank k (Dobi-SVD's §3.3 "remapping"). Let p = min(m, n) and P = max(m, n), and call
/// the singular vectors on the longer side the long vectors (U's columns when m ≥ n, V's otherwise). For each kept
/// triplet i the long vector is scaled by σ_i; its first p entries are quantized with their own absmax
/// (<see cref="LongCodes"/>, <see cref="LongAbsmax"/>) and its last P − p entries kept in 16 bits
/// (<see cref="Remainder"/>); the short vector (length p) is quantized with its own absmax (<see cref="ShortCodes"/>,
/// <see cref="ShortAbsmax"/>). Codes are row-major [k, p]; Remainder is row-major [k, P − p].
/// </summary>
public sealed record RemappedFactors(
    int Rows,
    int Cols,
    int Rank,
    byte[] LongCodes,
    double[] LongAbsmax,
    byte[] ShortCodes,
    double[] ShortAbsmax,
    double[] Remainder)
{
    /// <summary>True when the long vectors are the left singular vectors (m ≥ n).</summary>
    public bool LongSideIsRows => Rows >= Cols;

    /// <summary>
    /// The storage the paper and the reference count, in 16-bit units: two 8-bit codes per unit plus the 16-bit
    /// remainder, = k·p/2 + k·p/2 + k·(P − p) = k·max(m, n). Counted from the arrays actually held.
    /// </summary>
    public long StoredHalfWords => (LongCodes.LongLength + ShortCodes.LongLength) / 2 + Remainder.LongLength;

    /// <summary>The 2k 16-bit absmax scales, which the paper's count leaves out.</summary>
    public long AbsmaxHalfWords => LongAbsmax.LongLength + ShortAbsmax.LongLength;
}

/// <summary>Quantize and dequantize per <see cref="RemappedFactors"/>, float64 in and out.</summary>
public static class DobiRemap
{
    /// <summary>k·max(m, n): the counted storage of rank k in 16-bit units (= mn at k = min(m, n), so rank ↔ memory is a bijection).</summary>
    public static long CountedStorage(int m, int n, int k) => (long)k * Math.Max(m, n);

    /// <summary>
    /// Full SVD of <paramref name="w"/> [m, n], then the first <paramref name="rank"/> triplets remapped. Each pair's sign
    /// (free, since (−a)(−b)ᵀ = abᵀ) is fixed so that the largest-magnitude quantized entry of the long vector is
    /// positive: that entry then maps exactly to the code +1 (the map has no −1), and W and Wᵀ remap identically.
    /// With <paramref name="halfPrecision"/> (the reference) the absmax scales and the remainder are rounded to IEEE
    /// half precision, as stored; the reference also casts the dequantized factors to fp16 at load, which is left to
    /// the caller.
    /// </summary>
    public static RemappedFactors Quantize(Tensor<double> w, int rank, bool halfPrecision = true)
    {
        ArgumentNullException.ThrowIfNull(w);
        int m = w.Rows, n = w.Cols, p = Math.Min(m, n), big = Math.Max(m, n);
        if (rank < 0 || rank > p) throw new ArgumentOutOfRangeException(nameof(rank), $"rank {rank} outside [0, {p}]");
        bool rowsLong = m >= n;
        using var svd = Lapack.Svd(w);
        var longCodes = new byte[rank * p];
        var shortCodes = new byte[rank * p];
        var longAbsmax = new double[rank];
        var shortAbsmax = new double[rank];
        var remainder = new double[rank * (big - p)];
        var a = new double[big];
        var b = new double[p];
        for (int i = 0; i < rank; i++)
        {
            double s = svd.S[i];
            for (int r = 0; r < big; r++) a[r] = s * (rowsLong ? svd.U[r, i] : svd.Vt[i, r]);
            for (int r = 0; r < p; r++) b[r] = rowsLong ? svd.Vt[i, r] : svd.U[r, i];
            int argmax = 0;
            for (int r = 1; r < p; r++)
                if (Math.Abs(a[r]) > Math.Abs(a[argmax])) argmax = r;
            if (a[argmax] < 0)
            {
                for (int r = 0; r < big; r++) a[r] = -a[r];
                for (int r = 0; r < p; r++) b[r] = -b[r];
            }
            longAbsmax[i] = Store(DynamicMap.QuantizeVector(a.AsSpan(0, p), longCodes.AsSpan(i * p, p)), halfPrecision);
            shortAbsmax[i] = Store(DynamicMap.QuantizeVector(b, shortCodes.AsSpan(i * p, p)), halfPrecision);
            for (int r = p; r < big; r++) remainder[i * (big - p) + r - p] = Store(a[r], halfPrecision);
        }
        return new RemappedFactors(m, n, rank, longCodes, longAbsmax, shortCodes, shortAbsmax, remainder);
    }

    private static double Store(double x, bool half) => half ? (double)(Half)x : x;

    /// <summary>
    /// The dequantized factors: the σ-scaled long vectors [P, k] and the short vectors [p, k], as columns. W' ≈ long·shortᵀ
    /// when m ≥ n and short·longᵀ otherwise.
    /// </summary>
    public static (Tensor<double> Long, Tensor<double> Short) DequantizeFactors(RemappedFactors f)
    {
        ArgumentNullException.ThrowIfNull(f);
        int p = Math.Min(f.Rows, f.Cols), big = Math.Max(f.Rows, f.Cols), k = f.Rank;
        var lng = Tensor<double>.Uninitialized(big, Math.Max(k, 1));
        var sht = Tensor<double>.Uninitialized(p, Math.Max(k, 1));
        lng.Span.Clear();
        sht.Span.Clear();
        var buffer = new double[p];
        for (int i = 0; i < k; i++)
        {
            DynamicMap.DequantizeVector(f.LongCodes.AsSpan(i * p, p), f.LongAbsmax[i], buffer);
            for (int r = 0; r < p; r++) lng[r, i] = buffer[r];
            for (int r = p; r < big; r++) lng[r, i] = f.Remainder[i * (big - p) + r - p];
            DynamicMap.DequantizeVector(f.ShortCodes.AsSpan(i * p, p), f.ShortAbsmax[i], buffer);
            for (int r = 0; r < p; r++) sht[r, i] = buffer[r];
        }
        return (lng, sht);
    }

    /// <summary>The dense W' [m, n] from the dequantized factors (new tensor).</summary>
    public static Tensor<double> Dequantize(RemappedFactors f)
    {
        var (lng, sht) = DequantizeFactors(f);
        using (lng)
        using (sht)
            return f.LongSideIsRows ? DenseMath.MatMul(lng, false, sht, true) : DenseMath.MatMul(sht, false, lng, true);
    }
}
