namespace SvdLlm.Compression;

/// <summary>One probe of ASVD's sensitivity search: the calibration perplexity with only <paramref name="Name"/> truncated to kept ratio ρ.</summary>
public sealed record SensitivityProbe(string Name, double KeptRatio, int Rank, double Ppl);

/// <summary>
/// ASVD's sensitivity-based rank search (Yuan et al. 2023, §3.3). For every linear and every candidate
/// kept ratio ρ, that one linear alone is truncated (ASVD) and the calibration perplexity measured. Given a
/// threshold τ, each linear takes the smallest candidate ρ whose perplexity is ≤ τ (the most compression
/// it tolerates at that sensitivity level); the total kept parameters fall as τ grows, so a binary search
/// over the sorted probe perplexities finds the smallest τ whose assignment meets the parameter budget.
/// </summary>
/// <remarks>
/// Deviations, documented rather than hidden: ASVD's released code searches ρ ∈ {0.4, …, 0.9} for mild
/// ratios; we search ρ ∈ {0.1, …, 0.9} so that removed ratios up to 0.8 stay reachable. A linear with no
/// candidate under τ keeps ρ = 0.9 (the largest candidate) rather than staying dense, so every compressed
/// linear is stored as two factors like in the other methods. The budget is Σ k_i (m_i + n_i) ≤ (1 − R) Σ m_i n_i.
/// </remarks>
public static class SensitivityAllocation
{
    public static IReadOnlyList<double> CandidateKeptRatios { get; } = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

    /// <param name="pplWithOnly">calibration perplexity when only that matrix is truncated, at each of the given
    /// ranks (one call per matrix, so the caller can decompose it once)</param>
    public static List<RankAllocation> Allocate(IReadOnlyList<MatrixTarget> targets, double ratio,
        Func<MatrixTarget, IReadOnlyList<int>, IReadOnlyList<double>> pplWithOnly, out List<SensitivityProbe> probes)
    {
        if (!(ratio > 0 && ratio < 1)) throw new ArgumentOutOfRangeException(nameof(ratio), $"ratio {ratio} must be in (0, 1)");
        probes = [];
        var table = new Dictionary<string, (double Kept, int Rank, double Ppl)[]>();
        foreach (var t in targets)
        {
            var candidates = CandidateKeptRatios
                .Select(kept => (Kept: kept, Rank: Math.Min(Ranks.ForRemovedRatio(t.M, t.N, 1 - kept), Math.Min(t.M, t.N))))
                .Where(c => c.Rank >= 1).ToList();
            if (candidates.Count == 0) throw new ArgumentException($"{t.Name} ({t.M}×{t.N}) has no valid rank at any candidate ratio");
            var ppls = pplWithOnly(t, candidates.Select(c => c.Rank).ToList());
            if (ppls.Count != candidates.Count) throw new InvalidOperationException($"{t.Name}: {ppls.Count} probe perplexities for {candidates.Count} ranks");
            var row = new List<(double, int, double)>();
            for (int i = 0; i < candidates.Count; i++)
            {
                var (kept, k) = candidates[i];
                double ppl = ppls[i];
                if (!double.IsFinite(ppl)) throw new ArithmeticException($"ASVD sensitivity probe of {t.Name} at rank {k} gave perplexity {ppl}");
                row.Add((kept, k, ppl));
                probes.Add(new SensitivityProbe(t.Name, kept, k, ppl));
            }
            table[t.Name] = row.ToArray();
        }

        double budget = (1 - ratio) * targets.Sum(t => (double)t.M * t.N);
        var thresholds = probes.Select(p => p.Ppl).Distinct().Order().ToArray();
        // Kept parameters are non-increasing in τ; find the first threshold index that fits the budget.
        int lo = 0, hi = thresholds.Length - 1;
        if (Kept(thresholds[hi]) > budget)
            throw new ArgumentException($"ratio {ratio}: even the smallest candidate kept ratio {CandidateKeptRatios[0]} for every matrix exceeds the budget");
        while (lo < hi)
        {
            int mid = (lo + hi) / 2;
            if (Kept(thresholds[mid]) <= budget) hi = mid; else lo = mid + 1;
        }
        double tau = thresholds[lo];
        return targets.Select(t =>
        {
            var (kept, k, ppl) = Choose(table[t.Name], tau);
            return new RankAllocation(t.Name, t.Group, 1 - kept, k, null,
                $"sensitivity search: τ = {tau:G6}, chose kept ratio {kept:F1} (probe ppl {ppl:G6})");
        }).ToList();

        double Kept(double threshold) => targets.Sum(t => (double)Choose(table[t.Name], threshold).Rank * (t.M + t.N));
    }

    /// <summary>The smallest kept ratio whose probe perplexity is ≤ τ, else the largest candidate.</summary>
    private static (double Kept, int Rank, double Ppl) Choose((double Kept, int Rank, double Ppl)[] row, double tau)
    {
        foreach (var c in row) // ascending kept ratio
            if (c.Ppl <= tau) return c;
        return row[^1];
    }
}
