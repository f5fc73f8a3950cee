namespace SvdLlm.Compression;

/// <summary>A compressible matrix as the allocators see it: its name, shape and the group it shares a budget with.</summary>
public sealed record MatrixTarget(string Name, int M, int N, string Group);

/// <summary>The ratio (fraction of parameters removed) and rank chosen for one matrix.</summary>
public sealed record RankAllocation(string Name, string Group, double Ratio, int Rank, double? AllocationLoss = null, string? Note = null)
{
    public bool Clipped => Note?.Contains("clipped", StringComparison.Ordinal) == true;
}

/// <summary>Every matrix at the same ratio R (SVD, ASVD, FWSVD, SVD-LLM).</summary>
public static class UniformAllocation
{
    public static List<RankAllocation> Allocate(IEnumerable<MatrixTarget> targets, double ratio)
        => targets.Select(t => new RankAllocation(t.Name, t.Group, ratio, CheckedRank(t, ratio))).ToList();

    internal static int CheckedRank(MatrixTarget t, double ratio)
    {
        int k = Ranks.ForRemovedRatio(t.M, t.N, ratio);
        if (k < 1) throw new ArgumentOutOfRangeException(nameof(ratio), $"ratio {ratio} leaves {t.Name} ({t.M}×{t.N}) with rank {k}; the smallest valid rank is 1");
        return Math.Min(k, Math.Min(t.M, t.N));
    }
}

/// <summary>
/// SVD-LLM V2's heterogeneous allocation (paper Algorithm 1). Matrices of one type across layers form a
/// group g (all q_proj, all k_proj, …, all down_proj). For each member i, L_i is its theoretical truncation
/// loss at the uniform rank for R; ℓ_i = 1/log(L_i) and r_i = |g|·R·ℓ_i / Σ_j ℓ_j, so a matrix that loses
/// more is compressed less and the group's mean ratio stays R (members share a shape, so the parameter
/// budget is kept).
/// A structurally pruned model (MoDeGPT) has members of different shapes (down_proj [H, I_l]); there the mean of the
/// ratios is not the budget, so r_i = c·ℓ_i with c chosen so that the removed parameters Σ r_i·m_i·n_i are R·Σ m_i·n_i
/// (the paper's rule weighted by each member's size, which it reduces to when the shapes are equal; a group of one
/// shape keeps the unweighted arithmetic, bit for bit).
/// Edge cases, handled by documented rules rather than silently:
/// - Some L_i ≤ 1 (or not finite): 1/log L is then negative or infinite, so the formula is meaningless for
///   the group; the group falls back to the uniform ratio R and every member carries a note.
/// - r_i outside [0, r_max(i)] (r_max leaves rank 1): clipped to the bound, and the remaining budget is
///   redistributed over the unclipped members in proportion to ℓ (repeated until nothing new clips), which
///   keeps the group mean at R; every clipped member carries a note.
/// Ranks are then rounded down from the ratios.
/// </summary>
public static class TheoreticalLossAllocation
{
    /// <param name="lossAtRank">theoretical loss of a matrix truncated to a rank (V2: sqrt of the tail of σ(D)²)</param>
    public static List<RankAllocation> Allocate(IReadOnlyList<MatrixTarget> targets, double ratio, Func<MatrixTarget, int, double> lossAtRank)
    {
        var result = new List<RankAllocation>();
        foreach (var group in targets.GroupBy(t => t.Group))
        {
            var members = group.ToList();
            var losses = members.Select(t => lossAtRank(t, UniformAllocation.CheckedRank(t, ratio))).ToArray();
            if (losses.Any(l => !(l > 1) || !double.IsFinite(l)))
            {
                string why = $"group '{group.Key}': theoretical losses must all exceed 1 for 1/log L (min {losses.Min():G4}); uniform ratio used";
                result.AddRange(members.Select((t, i) => new RankAllocation(t.Name, t.Group, ratio, UniformAllocation.CheckedRank(t, ratio), losses[i], why)));
                continue;
            }
            var ell = losses.Select(l => 1 / Math.Log(l)).ToArray();
            var ratios = Distribute(members, ell, ratio, out var clipped);
            for (int i = 0; i < members.Count; i++)
            {
                var t = members[i];
                int k = Math.Clamp(Ranks.ForRemovedRatio(t.M, t.N, Math.Min(ratios[i], MaxRatio(t))), 1, Math.Min(t.M, t.N));
                result.Add(new RankAllocation(t.Name, t.Group, ratios[i], k, losses[i], clipped[i] is { } c ? c : null));
            }
        }
        // Keep the caller's order.
        var order = targets.Select((t, i) => (t.Name, i)).ToDictionary(x => x.Name, x => x.i);
        return result.OrderBy(a => order[a.Name]).ToList();
    }

    /// <summary>The largest removed ratio that still leaves rank 1: k = ⌊m n (1 − r)/(m + n)⌋ ≥ 1.</summary>
    internal static double MaxRatio(MatrixTarget t) => 1 - (double)(t.M + t.N) / ((double)t.M * t.N);

    /// <summary>
    /// r_i ∝ ℓ_i with Σ w_i r_i = R·Σ w_i, clipped to [0, r_max] with the excess redistributed over the free members. The
    /// weight w_i is 1 when the members share a shape (mean R; multiplying by 1.0 is exact, so the arithmetic is the
    /// unweighted one) and m_i·n_i otherwise (the parameter budget).
    /// </summary>
    internal static double[] Distribute(IReadOnlyList<MatrixTarget> members, double[] ell, double ratio, out string?[] notes)
    {
        int n = members.Count;
        var r = new double[n];
        var fixedAt = new bool[n];
        notes = new string?[n];
        bool oneShape = members.All(t => t.M == members[0].M && t.N == members[0].N);
        var w = members.Select(t => oneShape ? 1.0 : (double)t.M * t.N).ToArray();
        double budget = w.Sum() * ratio;
        for (int round = 0; round <= n; round++)
        {
            double fixedSum = 0, freeEll = 0;
            for (int i = 0; i < n; i++)
                if (fixedAt[i]) fixedSum += w[i] * r[i];
                else freeEll += w[i] * ell[i];
            bool changed = false;
            for (int i = 0; i < n; i++)
            {
                if (fixedAt[i]) continue;
                r[i] = (budget - fixedSum) * ell[i] / freeEll;
            }
            for (int i = 0; i < n; i++)
            {
                if (fixedAt[i]) continue;
                double max = MaxRatio(members[i]);
                if (r[i] < 0 || r[i] > max)
                {
                    double bound = r[i] < 0 ? 0 : max;
                    notes[i] = $"clipped from {r[i]:F4} to {bound:F4}";
                    r[i] = bound;
                    fixedAt[i] = true;
                    changed = true;
                }
            }
            if (!changed) break;
        }
        return r;
    }
}
