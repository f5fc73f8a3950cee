namespace SvdLlm.Compression.Delta;

// Delta compression: the fine-tuning delta ΔW = W_ft − W_base of one linear, compressed alone (data-free).
// Methods: truncated SVD (LowRank), DARE (Yu et al. 2024, "Language Models are Super Mario"), and ImPart
// (Yang, Li et al., "ImPart", ACL 2025, arXiv 2504.13237).

/// <summary>
/// The storage accounting shared by the delta methods, ImPart's (§ "compression ratio"): CR = dense values of ΔW over
/// the values stored. For the SVD methods the stored values are the kept entries of U [m, n₀] and V [n, n₀]
/// (n₀ = min(m, n)); the singular values, indices and any sparse-format overhead are not counted — the same rule for
/// LowRank and ImPart, so the two are compared at an equal budget. For DARE they are the kept entries of ΔW.
///
/// <para><b>Per-matrix sparsity from the shape.</b> ImPart turns one global CR into per-matrix targets with constants
/// fitted to LLaMA (α_attn = (1 + α_all)/2, α_mlp = (0.55 + 1.45·α_all)/2 with α_all = 1 − 1/CR). Both are
/// approximations of one identity: a matrix whose U and V keep a fraction 1 − α of their n₀(m + n) entries stores
/// (1 − α)·n₀·(m + n) values, and that equals mn/CR when α = 1 − mn/(CR·(m + n)·n₀). That formula is used here for
/// every shape, so no constant depends on one model family's d_ff/d (for a square matrix it is exactly
/// (1 + α_all)/2).</para>
/// </summary>
public static class DeltaBudget
{
    /// <summary>
    /// Slack for turning a real budget into a count: a quantity within 1e-9 below an integer counts as that integer, so
    /// 6144/(1.92·160) = 19.999999999999996 is rank 20, as the arithmetic meant. Far below one unit, so it never admits
    /// a real excess.
    /// </summary>
    internal const double CountSlack = 1e-9;

    /// <summary>Dense values of ΔW [m, n]: what CR divides.</summary>
    public static long DenseValues(int m, int n)
    {
        CheckShape(m, n);
        return (long)m * n;
    }

    /// <summary>
    /// The CR at which U and V at full rank, dense, hold exactly ΔW's mn values: mn/((m + n)·min(m, n)) (½ for a
    /// square matrix). Lower CRs ask for more storage than the full-rank factors, which no SVD method can use.
    /// </summary>
    public static double FullRankRatio(int m, int n)
    {
        CheckShape(m, n);
        return (double)m * n / ((double)(m + n) * Math.Min(m, n));
    }

    /// <summary>
    /// α = 1 − mn/(CR·(m + n)·n₀): the fraction of U's and V's entries to drop so that ΔW [m, n] is stored at
    /// <paramref name="compressionRatio"/>. Refused when α would be negative (CR below <see cref="FullRankRatio"/>: that
    /// CR needs more than full-rank storage). α &lt; 1 for every finite CR; an infinite or non-positive CR is refused.
    /// </summary>
    public static double Sparsity(int m, int n, double compressionRatio)
    {
        CheckRatio(compressionRatio);
        CheckShape(m, n);
        double fullRank = FullRankRatio(m, n);
        double alpha = 1 - fullRank / compressionRatio;
        // CR = FullRankRatio itself rounds to ±1e-17 rather than 0.
        if (alpha < 0 && alpha > -CountSlack) alpha = 0;
        if (alpha < 0)
            throw new ArgumentOutOfRangeException(nameof(compressionRatio), compressionRatio,
                $"CR {compressionRatio} for a [{m}, {n}] delta needs more than full-rank storage: its U and V at rank {Math.Min(m, n)} " +
                $"hold {(long)(m + n) * Math.Min(m, n)} values for {(long)m * n} dense ones; the lowest CR an SVD method can meet is {fullRank:G6}");
        return alpha;
    }

    /// <summary>
    /// The rank of plain truncation at the equal budget: r = ⌊mn/(CR·(m + n))⌋ (r(m + n) stored values ≤ mn/CR), clipped
    /// to [1, min(m, n)]. At a CR so high that not one triplet fits, r = 1 exceeds the budget (the stored count says by
    /// how much); below <see cref="FullRankRatio"/> full rank is the most there is to store.
    /// </summary>
    public static int LowRankRank(int m, int n, double compressionRatio)
    {
        CheckRatio(compressionRatio);
        CheckShape(m, n);
        double exact = (double)m * n / (compressionRatio * (m + n));
        double r = Math.Floor(exact + CountSlack);
        return (int)Math.Clamp(r, 1, Math.Min(m, n));
    }

    internal static void CheckRatio(double compressionRatio)
    {
        if (!double.IsFinite(compressionRatio) || compressionRatio <= 0)
            throw new ArgumentOutOfRangeException(nameof(compressionRatio), compressionRatio, "the compression ratio must be a finite number > 0");
    }

    internal static void CheckShape(int m, int n)
    {
        if (m < 1 || n < 1) throw new ArgumentOutOfRangeException(nameof(m), $"a delta needs at least one row and one column, not [{m}, {n}]");
    }
}
