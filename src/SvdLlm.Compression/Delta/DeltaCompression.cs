using SvdLlm.Numerics;

namespace SvdLlm.Compression.Delta;

/// <summary>
/// A compressed delta as the model would see it, and what storing it costs.
/// </summary>
/// <param name="Delta">The reconstructed ΔŴ [m, n] (owned: dispose it).</param>
/// <param name="StoredValues">Values the compressed form stores, counted as <see cref="DeltaBudget"/> does: the kept
/// positions of the masks (a kept value that happens to be exactly 0 still counts — a position-indexed sparse store
/// holds it), S not counted. Exact, not an expectation.</param>
/// <param name="Rank">Singular triplets kept (LowRank, ImPart); null for DARE, which does not factor ΔW.</param>
/// <param name="Ratios">ImPart's drop probabilities; null for the other methods.</param>
/// <param name="QuantizedBits">ImPart-Qt: the bits of the stored codes (scales and zero points not counted, as ImPart
/// counts); null when the values are stored in float16.</param>
public sealed record CompressedDelta(Tensor<double> Delta, long StoredValues, int? Rank, ImpartRatios? Ratios = null, long? QuantizedBits = null) : IDisposable
{
    /// <summary>mn: the dense values of ΔW.</summary>
    public long DenseValues => (long)Delta.Rows * Delta.Cols;

    /// <summary>Bits of the stored values: 16 each (float16, as ImPart counts), or the quantized codes' bits (ImPart-Qt).</summary>
    public long StoredBits => QuantizedBits ?? 16 * StoredValues;

    /// <summary>
    /// The CR achieved, 16·DenseValues / StoredBits (infinite when nothing is stored): DenseValues / StoredValues for
    /// float16 values, and ImPart's CR_qt (bits relative to 16) for quantized ones.
    /// </summary>
    public double AchievedRatio => StoredBits == 0 ? double.PositiveInfinity : 16.0 * DenseValues / StoredBits;

    public void Dispose() => Delta.Dispose();
}

/// <summary>
/// The numerical core of delta compression: one ΔW [m, n] in, its compressed reconstruction and stored-value count out,
/// at a compression ratio CR = mn / stored values (<see cref="DeltaBudget"/>). Pure functions: nothing is cached, the
/// input is never modified, and every random choice comes from <see cref="SplitMix64"/> seeded by the caller (use
/// <see cref="DeltaSeed.ForMatrix"/> to give each matrix its own stream), so a result is the same bits on every machine.
/// Float64 throughout: ImPart's SVD runs in float32 on a delta formed in half precision, which loses the small singular
/// values the sparsification then weighs; <see cref="Difference"/> takes both weights in float64, so the subtraction
/// and everything after it round at 2⁻⁵³.
/// </summary>
public static class DeltaCompression
{
    /// <summary>ΔW = W_ft − W_base in float64, after checking the shapes agree and both are finite.</summary>
    public static Tensor<double> Difference(Tensor<double> fineTuned, Tensor<double> baseWeights)
    {
        ArgumentNullException.ThrowIfNull(fineTuned);
        ArgumentNullException.ThrowIfNull(baseWeights);
        if (!fineTuned.Shape.SequenceEqual(baseWeights.Shape))
            throw new ArgumentException($"fine-tuned weight {fineTuned.ShapeString} and base weight {baseWeights.ShapeString} differ in shape");
        CheckFinite(fineTuned, "the fine-tuned weight");
        CheckFinite(baseWeights, "the base weight");
        var d = Tensor<double>.Uninitialized(fineTuned.Shape);
        ReadOnlySpan<double> f = fineTuned.Span, b = baseWeights.Span;
        var o = d.Span;
        for (int i = 0; i < o.Length; i++) o[i] = f[i] - b[i];
        return d;
    }

    /// <summary>
    /// Truncated SVD at the equal-budget rank r = ⌊mn/(CR·(m + n))⌋, clipped to [1, min(m, n)]
    /// (<see cref="DeltaBudget.LowRankRank"/>): the best rank-r approximation in Frobenius norm (Eckart–Young), r(m + n)
    /// stored values.
    /// </summary>
    public static CompressedDelta LowRank(Tensor<double> delta, double compressionRatio)
    {
        var (m, n) = CheckDelta(delta, nameof(LowRank));
        int r = DeltaBudget.LowRankRank(m, n, compressionRatio);
        using var svd = Lapack.Svd(delta);
        using var left = Tensor<double>.Uninitialized(m, r);
        for (int a = 0; a < m; a++)
        {
            var u = svd.U.Row(a);
            var l = left.Row(a);
            for (int i = 0; i < r; i++) l[i] = u[i] * svd.S[i];
        }
        var result = Product(left, svd.Vt.RowRange(0, r), m, n, r);
        return new CompressedDelta(result, (long)r * (m + n), r);
    }

    /// <summary>
    /// DARE (Yu et al. 2024, "Language Models are Super Mario"): keep each entry of ΔW independently with probability
    /// q = 1/CR and rescale the kept ones by 1/q, so E[ΔŴ] = ΔW; per entry Var = ΔW²·(CR − 1). CR ≥ 1 (q ≤ 1).
    /// Entries are visited in row-major order, one <see cref="SplitMix64.NextDouble"/> each (kept when u &lt; q), so the
    /// stored count is Binomial(mn, q), exact for the draw.
    /// </summary>
    public static CompressedDelta Dare(Tensor<double> delta, double compressionRatio, ulong seed)
    {
        var (m, n) = CheckDelta(delta, nameof(Dare));
        DeltaBudget.CheckRatio(compressionRatio);
        if (compressionRatio < 1)
            throw new ArgumentOutOfRangeException(nameof(compressionRatio), compressionRatio, "DARE keeps a fraction 1/CR of the entries, so CR must be ≥ 1");
        double q = 1 / compressionRatio;
        double scale = 1 / q;
        var rng = new SplitMix64(seed);
        var result = Tensor<double>.Zeros(m, n);
        ReadOnlySpan<double> src = delta.Span;
        var dst = result.Span;
        long kept = 0;
        for (int i = 0; i < dst.Length; i++)
        {
            if (rng.NextDouble() < q)
            {
                dst[i] = src[i] * scale;
                kept++;
            }
        }
        return new CompressedDelta(result, kept, null);
    }

    /// <summary>
    /// ImPart (Yang, Li et al., "ImPart", ACL 2025, arXiv 2504.13237): full SVD ΔW = U diag(σ) Vᵀ, per-vector drop
    /// probabilities p from <see cref="ImpartSparsity"/> at α = <see cref="DeltaBudget.Sparsity"/>(m, n, CR), then for
    /// every kept triplet i &lt; r: zero d = ⌊len·p_i⌋ entries of U's column i (len = m) chosen uniformly without
    /// replacement, independently the same for V's column i (len = n), rescale each column by len/(len − d), and
    /// reconstruct U_s diag(σ_r) V_sᵀ. Stored values: Σ_{i&lt;r} (m − d_U,i) + (n − d_V,i).
    ///
    /// <para><b>Independent masks for U and V.</b> ImPart's code draws one permutation per factor. Independence is what
    /// makes the product unbiased: E[u_s v_sᵀ] = E[u_s] E[v_s]ᵀ = u vᵀ; one shared mask (possible when m = n) would
    /// scale the entries where both keep the same index by 1/q instead of 1.</para>
    ///
    /// <para><b>Rescale by the realized keep fraction.</b> ImPart divides by 1 − p_i, which is unbiased only when len·p_i
    /// is an integer: with d = ⌊len·p_i⌋ dropped, an entry survives with probability (len − d)/len ≥ 1 − p_i, so the
    /// column is inflated by (len − d)/(len·(1 − p_i)) &lt; 1 + 1/(len·(1 − p_i)). That is 0.2 % at len = 4096, p = 0.9
    /// but 16 % at len = 64; rescaling by len/(len − d) is exactly unbiased at every size and identical when len·p_i is an
    /// integer.</para>
    ///
    /// <para><b>Draw order.</b> One <see cref="SplitMix64"/> per call; for i = 0…r−1, U's column i then V's column i,
    /// each a partial Fisher–Yates over the indices 0…len−1 (d draws; the first d positions after the swaps are
    /// dropped).</para>
    /// </summary>
    /// <param name="delta">ΔW [m, n].</param>
    /// <param name="compressionRatio">CR, at least <see cref="DeltaBudget.FullRankRatio"/>.</param>
    /// <param name="beta">ImPart's pre-prune ratio β in [0, 1), clamped to α.</param>
    /// <param name="c">ImPart's importance exponent C ≥ 0; 0 gives plain truncation (<see cref="LowRank"/>).</param>
    /// <param name="seed">The mask stream's seed.</param>
    public static CompressedDelta Impart(Tensor<double> delta, double compressionRatio, double beta, double c, ulong seed)
    {
        var (m, n) = CheckDelta(delta, nameof(Impart));
        double alpha = DeltaBudget.Sparsity(m, n, compressionRatio);
        using var svd = Lapack.Svd(delta);
        var ratios = ImpartSparsity.Compute(svd.S, alpha, beta, c);
        using var f = SparseFactors(svd, ratios, seed, foldSingularValues: true);
        var result = Product(f.Left, f.Right.Span, m, n, ratios.Rank);
        return new CompressedDelta(result, f.StoredValues, ratios.Rank, ratios);
    }

    /// <summary>
    /// ImPart's sparse factors of one SVD at drop probabilities <paramref name="ratios"/> (the draw described at
    /// <see cref="Impart"/>): Left [m, r] holds U's kept columns, times σ_i when <paramref name="foldSingularValues"/>,
    /// Right [r, n] V's kept columns as rows, both masked and rescaled; the keep masks say which entries are stored.
    /// </summary>
    internal static ImpartFactors SparseFactors(SvdResult<double> svd, ImpartRatios ratios, ulong seed, bool foldSingularValues)
    {
        int m = svd.U.Rows, n = svd.Vt.Cols, k = svd.S.Length, r = ratios.Rank;
        var rng = new SplitMix64(seed);
        var indices = new int[Math.Max(m, n)];
        var columnU = new double[m];
        var keepU = new bool[m];
        var left = Tensor<double>.Uninitialized(m, r);
        var right = Tensor<double>.Uninitialized(r, n);
        var keepLeft = new bool[(long)m * r];
        var keepRight = new bool[(long)r * n];
        long stored = 0;
        ReadOnlySpan<double> u = svd.U.Span;
        for (int i = 0; i < r; i++)
        {
            double p = ratios.DropProbabilities[i];
            for (int a = 0; a < m; a++) columnU[a] = u[a * k + i];
            stored += Sparsify(columnU, keepU, p, foldSingularValues ? svd.S[i] : 1, rng, indices);
            var l = left.Span;
            for (int a = 0; a < m; a++)
            {
                l[a * r + i] = columnU[a];
                keepLeft[(long)a * r + i] = keepU[a];
            }

            var v = right.Row(i);
            svd.Vt.Row(i).CopyTo(v);
            stored += Sparsify(v, keepRight.AsSpan(i * n, n), p, 1, rng, indices);
        }
        return new ImpartFactors(left, right, keepLeft, keepRight, stored);
    }

    /// <summary>
    /// Zeroes d = <see cref="Dropped"/>(len, p) entries of <paramref name="x"/> chosen uniformly without replacement
    /// (partial Fisher–Yates), multiplies the rest by <paramref name="factor"/>·len/(len − d), marks the kept ones in
    /// <paramref name="keep"/>, and returns the kept count len − d.
    /// </summary>
    private static int Sparsify(Span<double> x, Span<bool> keep, double p, double factor, SplitMix64 rng, int[] indices)
    {
        int len = x.Length;
        int d = Dropped(len, p);
        keep.Fill(true);
        for (int t = 0; t < len; t++) indices[t] = t;
        for (int t = 0; t < d; t++)
        {
            int j = t + rng.NextInt(len - t);
            (indices[t], indices[j]) = (indices[j], indices[t]);
            x[indices[t]] = 0;
            keep[indices[t]] = false;
        }
        // d = 0 gives exactly factor·1, so C = 0 reproduces LowRank's products bit for bit.
        double scale = factor * ((double)len / (len - d));
        for (int t = 0; t < len; t++) x[t] *= scale;
        return len - d;
    }

    /// <summary>How many of a kept singular vector's <paramref name="len"/> entries ImPart drops at probability p: ⌊len·p⌋.</summary>
    internal static int Dropped(int len, double p)
        // p < 1 for a kept triplet, so d < len; the Min guards the slack at p within 1e-9/len of 1.
        => Math.Min((int)Math.Floor(len * p + DeltaBudget.CountSlack), len - 1);

    /// <summary>[m, r]·[r, n] → a new [m, n]; zeros when r = 0.</summary>
    internal static Tensor<double> Product(Tensor<double> left, ReadOnlySpan<double> right, int m, int n, int r)
    {
        var result = Tensor<double>.Zeros(m, n);
        if (r > 0) Blas.Dgemm(Transpose.No, Transpose.No, m, n, r, 1, left.Span, r, right, n, 0, result.Span, n);
        return result;
    }

    internal static (int M, int N) CheckDelta(Tensor<double> delta, string method)
    {
        ArgumentNullException.ThrowIfNull(delta);
        if (delta.Shape.Length != 2) throw new ArgumentException($"{method}: ΔW must be a matrix, not {delta.ShapeString}");
        DeltaBudget.CheckShape(delta.Shape[0], delta.Shape[1]);
        CheckFinite(delta, $"{method}: ΔW");
        return (delta.Shape[0], delta.Shape[1]);
    }

    private static void CheckFinite(Tensor<double> t, string what)
    {
        ReadOnlySpan<double> s = t.Span;
        for (int i = 0; i < s.Length; i++)
            if (!double.IsFinite(s[i]))
                throw new ArgumentException(
                    $"{what} {t.ShapeString} holds {s[i]} at [{i / t.Cols}, {i % t.Cols}]; a non-finite delta cannot be compressed — check the checkpoint it came from");
    }
}

/// <summary>ImPart's sparse factors of one delta (<see cref="DeltaCompression.SparseFactors"/>); owns its tensors.</summary>
internal sealed record ImpartFactors(Tensor<double> Left, Tensor<double> Right, bool[] KeepLeft, bool[] KeepRight, long StoredValues) : IDisposable
{
    public void Dispose()
    {
        Left.Dispose();
        Right.Dispose();
    }
}
