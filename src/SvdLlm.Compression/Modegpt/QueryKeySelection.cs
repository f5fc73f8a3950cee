using SvdLlm.Numerics;

namespace SvdLlm.Compression.Modegpt;

/// <summary>How a rotary pair (i, i + d_h/2) is scored from the diagonals of the query and key covariances.</summary>
public enum PairScore
{
    /// <summary>
    /// √(Cq_ii·Ck_ii) + √(Cq_jj·Ck_jj): the paper's column score summed over the pair's two columns (the default).
    /// Dropping the pair's two columns from Q Kᵀ adds at most this much to the CR error bound
    /// ‖Q Kᵀ − Q S Sᵀ Kᵀ‖_F ≤ Σ_dropped ‖Q e_i‖·‖K e_i‖ (triangle inequality, Cauchy–Schwarz), without rotation.
    /// </summary>
    SumOfRoots,

    /// <summary>
    /// √((Cq_ii + Cq_jj)·(Ck_ii + Ck_jj)): the CR score of the pair as one 2-column block, ‖Q_p‖_F·‖K_p‖_F. This is the
    /// bound that survives RoPE (|q_pᵀ R(θ) k_p| ≤ ‖q_p‖·‖k_p‖ for any rotation R), and it is the same whether the
    /// covariances are taken before or after RoPE, because a rotation keeps each token's pair norm.
    /// </summary>
    Block,
}

/// <summary>
/// The rotary pairs one K head (and its query heads) keeps. <see cref="KeptDimensions"/> (length k) lists the original
/// head dimensions in the order the reduced head must hold them: first the kept i's ascending, then their partners
/// i + d_h/2 in the same order. With that layout the reduced head's rotate_half pairs position a with a + k/2, i.e.
/// exactly the original pairs. <see cref="KeptFrequencies"/> (length k/2) are those i's: the reduced head must rotate
/// position a with the ORIGINAL inverse frequency inv_freq[i_a] = θ^(−2·i_a/d_h) (<see cref="InverseFrequencies"/>),
/// not with the frequencies a d' = k head would compute for itself. <see cref="PairScores"/> has one score per pair
/// i &lt; d_h/2 (summed over the group's query heads).
/// </summary>
public sealed record RotaryPairSelection(int[] KeptDimensions, int[] KeptFrequencies, double[] PairScores)
{
    /// <summary>inv_freq of the reduced head: <paramref name="fullInverseFrequencies"/>[i] for each kept i, in order.</summary>
    public double[] InverseFrequencies(ReadOnlySpan<double> fullInverseFrequencies)
    {
        if (fullInverseFrequencies.Length != PairScores.Length)
            throw new ArgumentException($"{fullInverseFrequencies.Length} inverse frequencies for a head of {PairScores.Length} rotary pairs");
        var r = new double[KeptFrequencies.Length];
        for (int a = 0; a < r.Length; a++) r[a] = fullInverseFrequencies[KeptFrequencies[a]];
        return r;
    }
}

/// <summary>
/// MoDeGPT's Type II module (Lin et al., ICLR 2025, arXiv 2408.09632), by CR decomposition: the bilinear form
/// σ_r(X W_Q,hᵀ) σ_r(X W_K,hᵀ)ᵀ of one head keeps k of its d_h dimensions in both W_Q,h and W_K,h (rows in HF layout);
/// nothing is refit. The paper's column score is ‖C_q^½ e_i‖·‖C_k^½ e_i‖, which with the symmetric square root is
/// √(Cq_ii·Ck_ii), since ‖C^½ e_i‖² = (C^½ C^½)_ii = C_ii; so only the covariance diagonals are read.
///
/// <para><b>RoPE.</b> Hugging Face's rotate_half pairs dimension i with i + d_h/2 (i &lt; d_h/2) and rotates the pair
/// by position·inv_freq[i]. A selection commutes with RoPE only if it keeps whole pairs, so pairs are scored and kept
/// (k even, k/2 pairs). The two ways of scoring a pair are <see cref="PairScore"/>; the default sums the paper's
/// per-dimension score over the pair. A third reading, Cq_ii·Ck_ii + Cq_jj·Ck_jj (the cbacary third-party code), sums
/// the squares instead and is not offered: it is not a bound on anything the paper states.</para>
///
/// <para><b>Pre- or post-RoPE covariances.</b> This type takes the covariances of the q/k projections' outputs before
/// RoPE, Σ_t q_t q_tᵀ (a sum or a mean: a common factor does not change the ranking). Pairs are what is kept, and the
/// selection commutes with RoPE whatever the scores were. Pre-RoPE statistics need no positions and follow from the
/// attention input's Gram C, Cq,h = W_Q,h C W_Q,hᵀ (<see cref="HeadCovariance"/>; with a q/k bias, as in Qwen2, the bias
/// terms W s bᵀ + b sᵀ Wᵀ + T b bᵀ with s = Σ_t x_t would have to be added). <see cref="PairScore.Block"/> gives the
/// same scores for post-RoPE covariances; <see cref="PairScore.SumOfRoots"/> does not (RoPE moves energy between i and j
/// token by token).</para>
///
/// <para><b>GQA.</b> A K head is shared by the G query heads of its group (HF repeat_kv: query head q uses K head
/// q / G), and q·k is only defined on dimensions both keep, so one selection serves the whole group. Its pair score is
/// the sum over the group of each query head's pair score against the shared K head (as the cbacary code sums): the
/// sum of the G heads' CR bounds, each head's score error counting on its own. The alternative, scoring the queries
/// stacked as one matrix (√(Σ_g Cq_g,ii)·√Ck_ii), rates a dimension's query energy concentrated in one head the same
/// as that energy spread over the G heads, while the sum of the heads' bounds is √G times larger when it is spread.</para>
///
/// <para>A loader of the reduced heads must keep the original attention scale 1/√d_h (the dot products are partial
/// sums of the original ones), rotate with <see cref="RotaryPairSelection.KeptFrequencies"/>, and allow the q/k head
/// size (this k) to differ from the v head size (Type III's rank, <see cref="ValueOutputSvd"/>).</para>
/// </summary>
public static class QueryKeySelection
{
    /// <summary>
    /// One score per rotary pair i &lt; d_h/2 for a K head with covariance <paramref name="keyCovariance"/> [d_h, d_h]
    /// shared by the query heads of <paramref name="queryCovariances"/> (one [d_h, d_h] each; one for MHA).
    /// </summary>
    public static double[] PairScores(IReadOnlyList<Tensor<double>> queryCovariances, Tensor<double> keyCovariance, PairScore score = PairScore.SumOfRoots)
    {
        ArgumentNullException.ThrowIfNull(queryCovariances);
        if (queryCovariances.Count == 0) throw new ArgumentException("a K head needs at least one query head", nameof(queryCovariances));
        var ck = Diagonal(keyCovariance, "C_k");
        int d = ck.Length;
        if (d % 2 != 0) throw new ArgumentException($"head_dim {d} must be even for rotary pairs", nameof(keyCovariance));
        int half = d / 2;
        var s = new double[half];
        foreach (var q in queryCovariances)
        {
            var cq = Diagonal(q, "C_q");
            if (cq.Length != d) throw new ArgumentException($"C_q {q.ShapeString} and C_k {keyCovariance.ShapeString} differ in head_dim");
            for (int i = 0; i < half; i++)
            {
                int j = i + half;
                s[i] += score switch
                {
                    PairScore.SumOfRoots => Math.Sqrt(cq[i] * ck[i]) + Math.Sqrt(cq[j] * ck[j]),
                    PairScore.Block => Math.Sqrt((cq[i] + cq[j]) * (ck[i] + ck[j])),
                    _ => throw new ArgumentOutOfRangeException(nameof(score), score, null),
                };
            }
        }
        return s;
    }

    /// <summary>
    /// Keeps the k/2 best-scoring rotary pairs (ties to the lower i) of a K head and its query heads; k even in [2, d_h].
    /// k = d_h keeps every dimension in the original order.
    /// </summary>
    public static RotaryPairSelection Select(IReadOnlyList<Tensor<double>> queryCovariances, Tensor<double> keyCovariance, int k, PairScore score = PairScore.SumOfRoots)
    {
        var s = PairScores(queryCovariances, keyCovariance, score);
        int half = s.Length;
        if (k < 2 || k > 2 * half || k % 2 != 0)
            throw new ArgumentOutOfRangeException(nameof(k), $"k = {k} must be even and in [2, {2 * half}]: rotary pairs are kept whole");
        var freqs = NystromMlp.TopIndices(s, k / 2);
        var dims = new int[k];
        for (int a = 0; a < freqs.Length; a++)
        {
            dims[a] = freqs[a];
            dims[a + k / 2] = freqs[a] + half;
        }
        return new RotaryPairSelection(dims, freqs, s);
    }

    /// <summary>
    /// The pre-RoPE output covariance of one head, W_h C W_hᵀ [d_h, d_h], from its rows <paramref name="headRows"/>
    /// [d_h, d] of q_proj or k_proj (no bias) and the attention input's Gram <paramref name="gram"/> C = Σ_t x_t x_tᵀ [d, d].
    /// </summary>
    public static Tensor<double> HeadCovariance(Tensor<double> headRows, Tensor<double> gram)
    {
        ArgumentNullException.ThrowIfNull(headRows);
        ArgumentNullException.ThrowIfNull(gram);
        int d = headRows.Cols, dh = headRows.Rows;
        if (headRows.Shape.Length != 2 || gram.Shape.Length != 2 || gram.Rows != d || gram.Cols != d)
            throw new ArgumentException($"head rows {headRows.ShapeString} and Gram {gram.ShapeString} do not match");
        using var wc = Tensor<double>.Uninitialized(dh, d);
        Blas.Dgemm(Transpose.No, Transpose.No, dh, d, d, 1.0, headRows.Span, d, gram.Span, d, 0.0, wc.Span, d);
        var r = Tensor<double>.Uninitialized(dh, dh);
        Blas.Dgemm(Transpose.No, Transpose.Yes, dh, dh, d, 1.0, wc.Span, d, headRows.Span, d, 0.0, r.Span, dh);
        return r;
    }

    private static double[] Diagonal(Tensor<double> c, string name)
    {
        ArgumentNullException.ThrowIfNull(c);
        if (c.Shape.Length != 2 || c.Rows != c.Cols || c.Rows == 0) throw new ArgumentException($"{name} must be a non-empty square matrix, got {c.ShapeString}");
        var d = new double[c.Rows];
        for (int i = 0; i < d.Length; i++)
        {
            d[i] = c[i, i];
            if (!(d[i] >= 0) || !double.IsFinite(d[i])) throw new ArgumentException($"{name}[{i}, {i}] = {d[i]}: a covariance diagonal is finite and non-negative");
        }
        return d;
    }
}
