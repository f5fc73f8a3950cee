using System.Globalization;
using SvdLlm.Compression.Quantization;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Delta;

/// <summary>
/// ImPart-Qt's bit widths by singular-vector index: runs of (bits, count) from the first (most important) vector, then
/// one width for the rest. Written "8x2,3x32,2": 8 bits for vectors 1–2, 3 bits for the next 32, 2 bits after that
/// (ImPart's 7B configuration); a single number gives every vector that width.
/// </summary>
public sealed record DeltaBitPlan(IReadOnlyList<(int Bits, int Count)> Runs, int RestBits)
{
    /// <summary>ImPart's configuration (int8 columns 2, int3 columns 32, int2 for the rest).</summary>
    public static DeltaBitPlan Impart { get; } = new([(8, 2), (3, 32)], 2);

    public int BitsOf(int vector)
    {
        foreach (var (bits, count) in Runs)
        {
            if (vector < count) return bits;
            vector -= count;
        }
        return RestBits;
    }

    public static DeltaBitPlan Parse(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var parts = spec.Split(',', StringSplitOptions.TrimEntries);
        var runs = new List<(int, int)>();
        for (int i = 0; i < parts.Length; i++)
        {
            string part = parts[i];
            var bc = part.Split('x');
            bool last = i == parts.Length - 1;
            if (last != (bc.Length == 1) || bc.Length > 2
                || !int.TryParse(bc[0], NumberStyles.None, CultureInfo.InvariantCulture, out int bits) || bits < 2 || bits > 8
                || (bc.Length == 2 && (!int.TryParse(bc[1], NumberStyles.None, CultureInfo.InvariantCulture, out int count) || count < 1)))
                throw new ArgumentException($"--bits '{spec}': expected BITSxCOUNT,…,BITS (e.g. 8x2,3x32,2: 8 bits for the first 2 singular vectors, "
                    + "3 for the next 32, 2 for the rest) or one width; widths are 2..8, counts ≥ 1, and only the last part has no count");
            if (!last) runs.Add((bits, int.Parse(bc[1], CultureInfo.InvariantCulture)));
            else return new DeltaBitPlan(runs, bits);
        }
        throw new ArgumentException($"--bits '{spec}': empty");
    }

    public override string ToString() => string.Concat(Runs.Select(r => $"{r.Bits}x{r.Count},")) + RestBits.ToString(CultureInfo.InvariantCulture);
}

/// <summary>
/// ImPart-Qt (Yang, Li et al., "ImPart", ACL 2025, §4.3 and Algorithm 2): ImPart's sparse singular vectors quantized
/// with GPTQ at a width per vector, to a compression ratio CR_qt = 16·mn / (bits stored) that counts bits relative to
/// float16. Per matrix:
/// <list type="number">
/// <item>the SVD of ΔW, and the sparsity α for which ImPart's kept entries, each at its vector's width, fill the bit
/// budget 16·mn/CR_qt (a bisection on α over Algorithm 1; ImPart searches the same quantity);</item>
/// <item>ImPart's masks and rescaling (<see cref="DeltaCompression.Impart"/>'s draw, the same stream), the singular
/// values kept apart in 16 bits and not counted, as in ImPart;</item>
/// <item>V's sparse rows [r, n] quantized by masked GPTQ (<see cref="GptqEntryPlan"/>) on the linear's input Gram C,
/// each row at its vector's width; then U's sparse columns [m, r] on the Gram of their input diag(σ)·V̂ᵀx, which is
/// diag(σ) V̂ C V̂ᵀ diag(σ) with the quantized V̂ (what U sees at inference), each column at its vector's width;</item>
/// <item>ΔŴ = Û diag(σ) V̂ᵀ.</item>
/// </list>
/// <para><b>Differences from ImPart's code, and why.</b> The Gram C is the fine-tuned model's, from one calibration
/// pass, not collected sequentially through the partly quantized model (ImPart's true-sequential): the delta's inputs
/// are the fine-tuned model's activations up to the compression error of the layers before, and one pass keeps the cost
/// at the calibration the SVD methods share. Columns are quantized in order, without act-order, because GPTQ's groups
/// must not span two widths (<see cref="GptqEntryPlan"/>). Bits are counted at the width quantized with (ImPart's
/// accounting counts a 3-bit code as 4 bits); group scales and zero points are not counted, as in ImPart, and are
/// reported apart (<see cref="ScaleBits"/>).</para>
/// </summary>
public static class ImpartQuantization
{
    /// <summary>Bits of ImPart's kept entries at drop probabilities <paramref name="ratios"/>, each at its vector's width.</summary>
    public static long StoredBits(ImpartRatios ratios, int m, int n, DeltaBitPlan bits)
    {
        long total = 0;
        for (int i = 0; i < ratios.Rank; i++)
        {
            double p = ratios.DropProbabilities[i];
            total += (long)bits.BitsOf(i) * (m - DeltaCompression.Dropped(m, p) + (n - DeltaCompression.Dropped(n, p)));
        }
        return total;
    }

    /// <summary>
    /// ImPart's ratios at the smallest sparsity α whose stored bits fit 16·mn/CR_qt: α = 0 when even the dense full-rank
    /// factors fit, else a bisection (60 steps, α to 1e-18) that always returns an α that fits — Algorithm 1's storage is
    /// not exactly monotone in α because of the integer rounding of each vector's count, and the bisection keeps the
    /// feasible end. When not even one vector fits, the sparsest α is returned and the stored bits say by how much it exceeds.
    /// </summary>
    public static ImpartRatios RatiosForBudget(double[] singularValues, int m, int n, double compressionRatio, double beta, double c, DeltaBitPlan bits)
    {
        DeltaBudget.CheckRatio(compressionRatio);
        double budget = 16.0 * m * n / compressionRatio;
        bool Fits(ImpartRatios r) => StoredBits(r, m, n, bits) <= budget;
        var dense = ImpartSparsity.Compute(singularValues, 0, beta, c);
        if (Fits(dense)) return dense;
        double lo = 0, hi = Math.BitDecrement(1.0);
        var best = ImpartSparsity.Compute(singularValues, hi, beta, c);
        if (!Fits(best)) return best;
        for (int step = 0; step < 60; step++)
        {
            double mid = 0.5 * (lo + hi);
            var r = ImpartSparsity.Compute(singularValues, mid, beta, c);
            if (Fits(r)) (hi, best) = (mid, r);
            else lo = mid;
        }
        return best;
    }

    /// <summary>
    /// ImPart-Qt of one ΔW [m, n] against its linear's input Gram <paramref name="gram"/> [n, n] (any positive scale) at
    /// CR_qt = <paramref name="compressionRatio"/>. <paramref name="gptq"/> gives the group size and damping (its bits,
    /// act-order and static groups are not used: <paramref name="bits"/> sets the widths).
    /// </summary>
    public static CompressedDelta Compress(Tensor<double> delta, Tensor<double> gram, double compressionRatio, double beta, double c, ulong seed,
        DeltaBitPlan bits, GptqOptions gptq)
    {
        var (m, n) = DeltaCompression.CheckDelta(delta, "ImPart-Qt");
        if (gram.Rows != n || gram.Cols != n) throw new ArgumentException($"ImPart-Qt: the input Gram {gram.ShapeString} does not match ΔW {delta.ShapeString}");
        using var svd = Lapack.Svd(delta);
        var ratios = RatiosForBudget(svd.S, m, n, compressionRatio, beta, c, bits);
        return Compress(svd, gram, ratios, seed, bits, gptq);
    }

    /// <summary>ImPart-Qt's steps 2–4 at given drop probabilities (the budget search already done).</summary>
    internal static CompressedDelta Compress(SvdResult<double> svd, Tensor<double> gram, ImpartRatios ratios, ulong seed, DeltaBitPlan bits, GptqOptions gptq)
    {
        int m = svd.U.Rows, n = svd.Vt.Cols, r = ratios.Rank;
        var options = gptq with { ActOrder = false, StaticGroups = false };
        if (r == 0) return new CompressedDelta(Tensor<double>.Zeros(m, n), 0, 0, ratios, 0);
        using var f = DeltaCompression.SparseFactors(svd, ratios, seed, foldSingularValues: false);
        var widths = Enumerable.Range(0, r).Select(bits.BitsOf).ToArray();

        var v = Gptq.Quantize(f.Right, gram, options, new GptqEntryPlan(Keep: f.KeepRight, RowBits: widths));
        using var vHat = v.Matrix.Dequantize();
        using var hu = SequentialGptq.FactorHessian(vHat, gram);
        for (int i = 0; i < r; i++)
        {
            var row = hu.Row(i);
            for (int j = 0; j < r; j++) row[j] *= svd.S[i] * svd.S[j];
        }
        var u = Gptq.Quantize(f.Left, hu, options, new GptqEntryPlan(Keep: f.KeepLeft, ColumnBits: widths));
        using var uHat = u.Matrix.Dequantize();
        for (int a = 0; a < m; a++)
        {
            var row = uHat.Row(a);
            for (int i = 0; i < r; i++) row[i] *= svd.S[i];
        }
        var result = DeltaCompression.Product(uHat, vHat.Span, m, n, r);

        // The masks keep exactly the counts the budget search counted (both come from DeltaCompression.Dropped).
        return new CompressedDelta(result, f.StoredValues, r, ratios, StoredBits(ratios, m, n, bits));
    }

    /// <summary>Bits of the float16 scales and the zero points of one matrix's factors at group size <paramref name="groupSize"/>: what CR_qt leaves out.</summary>
    public static long ScaleBits(int m, int n, int rank, DeltaBitPlan bits, int groupSize)
    {
        if (rank == 0) return 0;
        int g = groupSize > 0 ? groupSize : int.MaxValue;
        // V [r, n]: each row has ⌈n/g⌉ groups at its own width; U [m, r]: each width's run of columns splits into groups of g.
        long total = 0;
        for (int i = 0; i < rank; i++) total += (long)((n + (long)g - 1) / g) * (16 + bits.BitsOf(i));
        for (int start = 0; start < rank;)
        {
            int w = bits.BitsOf(start), end = start;
            while (end < rank && bits.BitsOf(end) == w) end++;
            long groups = (end - start + (long)g - 1) / g;
            total += groups * m * (16 + w);
            start = end;
        }
        return total;
    }
}
