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
public sealed record CompressedDelta(Tensor<double> Delta, long StoredValues, int? Rank, ImpartRatios? Ratios = null) : IDisposable
{
    /// <summary>mn: the dense values of ΔW.</summary>
    public long DenseValues => (long)Delta.Rows * Delta.Cols;

    /// <summary>The CR achieved, DenseValues / StoredValues (infinite when nothing is stored).</summary>
    public double AchievedRatio => StoredValues == 0 ? double.PositiveInfinity : (double)DenseValues / StoredValues;

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
        int r = ratios.Rank;
        int k = svd.S.Length;
        var rng = new SplitMix64(seed);
        var indices = new int[Math.Max(m, n)];
        var columnU = new double[m];
        using var left = Tensor<double>.Uninitialized(m, r);
        using var right = Tensor<double>.Uninitialized(r, n);
        long stored = 0;
        ReadOnlySpan<double> u = svd.U.Span;
        for (int i = 0; i < r; i++)
        {
            double p = ratios.DropProbabilities[i];
            for (int a = 0; a < m; a++) columnU[a] = u[a * k + i];
            stored += Sparsify(columnU, p, svd.S[i], rng, indices);
            var l = left.Span;
            for (int a = 0; a < m; a++) l[a * r + i] = columnU[a];

            var v = right.Row(i);
            svd.Vt.Row(i).CopyTo(v);
            stored += Sparsify(v, p, 1, rng, indices);
        }
        var result = Product(left, right.Span, m, n, r);
        return new CompressedDelta(result, stored, r, ratios);
    }

    /// <summary>
    /// Zeroes d = ⌊len·p⌋ entries of <paramref name="x"/> chosen uniformly without replacement (partial Fisher–Yates),
    /// multiplies the rest by <paramref name="factor"/>·len/(len − d), and returns the kept count len − d.
    /// </summary>
    private static int Sparsify(Span<double> x, double p, double factor, SplitMix64 rng, int[] indices)
    {
        int len = x.Length;
        // p < 1 for a kept triplet, so d < len; the Min guards the slack at p within 1e-9/len of 1.
        int d = Math.Min((int)Math.Floor(len * p + DeltaBudget.CountSlack), len - 1);
        for (int t = 0; t < len; t++) indices[t] = t;
        for (int t = 0; t < d; t++)
        {
            int j = t + rng.NextInt(len - t);
            (indices[t], indices[j]) = (indices[j], indices[t]);
            x[indices[t]] = 0;
        }
        // d = 0 gives exactly factor·1, so C = 0 reproduces LowRank's products bit for bit.
        double scale = factor * ((double)len / (len - d));
        for (int t = 0; t < len; t++) x[t] *= scale;
        return len - d;
    }

    /// <summary>[m, r]·[r, n] → a new [m, n]; zeros when r = 0.</summary>
    private static Tensor<double> Product(Tensor<double> left, ReadOnlySpan<double> right, int m, int n, int r)
    {
        var result = Tensor<double>.Zeros(m, n);
        if (r > 0) Blas.Dgemm(Transpose.No, Transpose.No, m, n, r, 1, left.Span, r, right, n, 0, result.Span, n);
        return result;
    }

    private static (int M, int N) CheckDelta(Tensor<double> delta, string method)
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
