namespace SvdLlm.Compression.Delta;

/// <summary>
/// ImPart's per-vector drop probabilities for one matrix.
/// </summary>
/// <param name="DropProbabilities">p_i for every singular triplet i = 0…n₀−1: the fraction of the entries of U's and of
/// V's column i that are zeroed. Non-decreasing in i; exactly 1 for the dropped triplets, which are the last n₀ − r.</param>
/// <param name="Rank">r, the triplets kept (p_i &lt; 1): where Algorithm 1's boundary stopped. May be 0 when the budget is
/// below what the first triplet needs at its own p.</param>
/// <param name="PrePruned">Triplets removed before the importance-aware step: ⌊β·n₀⌋ with β clamped to α.</param>
/// <param name="Gamma">γ = (α − β′)/(1 − β′), β′ = PrePruned/n₀: the sparsity the kept triplets must average.</param>
public sealed record ImpartRatios(double[] DropProbabilities, int Rank, int PrePruned, double Gamma)
{
    /// <summary>mean(p) over all n₀ triplets, dropped ones counting 1: the fraction of U's and V's entries zeroed.</summary>
    public double MeanDropProbability => DropProbabilities.Average();
}

/// <summary>
/// ImPart's Algorithm 1 (Yang, Li et al., "ImPart", ACL 2025, arXiv 2504.13237; <c>cal_sparsity_ratios</c> in the
/// authors' code): how sparse each singular vector of ΔW may be so that the whole of U and V drops a fraction α of
/// their entries, with the important (large-σ) vectors kept denser. Given σ descending, α, the pre-prune β and the
/// exponent C:
/// <list type="number">
/// <item>rescale σ_i ← σ_i^C (C = 0 makes every triplet equally important, C → ∞ all but the first unimportant);</item>
/// <item>pre-prune: drop the last ⌊β·n₀⌋ triplets outright;</item>
/// <item>γ = (α − β′)/(1 − β′), p_i = γ·(1 − σ_i^C/σ_max^C) for the kept i (so the first triplet is dense and the mean of
/// the kept p is at most γ);</item>
/// <item>while the mean falls short, set the last remaining p_i = 1 (the truncation boundary moves left).</item>
/// </list>
///
/// <para><b>Target over all n₀ triplets.</b> The loop compares Σ_i p_i over all n₀ triplets — pre-pruned and
/// loop-dropped ones counting 1 — with α·n₀. With β′ = PrePruned/n₀ (not the requested β) in γ this is the paper's test
/// "mean of the kept p &lt; γ" rewritten, and it makes α the fraction of U's and V's entries dropped whatever the
/// rounding of β·n₀. The loop stops at the first boundary that meets the target, so
/// α ≤ mean(p) &lt; α + 1/n₀: never over the budget, at most one vector's share under it (each step adds 1 − p_i ≤ 1 to
/// Σp). That share is the granularity of plain truncation, the baseline ImPart is compared with at an equal budget, and
/// below the authors' own 1e-3 check for every n₀ ≥ 1000 (all LLaMA-size matrices). Filling the remainder with a
/// fractional boundary vector would meet α exactly but would break the identity below (C = 0 is plain truncation).</para>
///
/// <para><b>Choices where the paper is silent.</b>
/// Pre-prune rounding: ⌊β·n₀⌋ triplets (the authors' code keeps ⌊(1 − β)n₀⌋, i.e. prunes ⌈β·n₀⌉); rounding down never
/// pre-prunes past α when β ≤ α, and the loop removes whatever more the target needs.
/// α &lt; β: the code assumes α ≥ β (γ &lt; 0 would give negative p). β is clamped to α rather than refused, because one
/// global β is applied to matrices whose α differs with their shape (a wide MLP matrix has a lower α than a square one
/// at the same CR): with β = α the pre-prune takes ⌊α·n₀⌋ triplets and γ &lt; 1/(n₀ − ⌊α·n₀⌋) (0 when α·n₀ is an
/// integer), which is plain truncation at the target up to that remainder: the limit of β → α. The clamped pre-prune
/// count is reported in <see cref="ImpartRatios.PrePruned"/>.
/// An all-zero σ (ΔW = 0) is treated as C = 0: every triplet equally (un)important.</para>
///
/// <para><b>C = 0.</b> Every σ_i^C/σ_max^C is exactly 1 (x⁰ = 1, computed as (σ_i/σ_max)^C), so every kept p_i = 0 and
/// the loop drops whole triplets until (n₀ − r)/n₀ ≥ α: rank r = ⌊(1 − α)·n₀⌋, plain truncation, and with α from
/// <see cref="DeltaBudget.Sparsity"/> the same rank as <see cref="DeltaBudget.LowRankRank"/> at the same CR.</para>
/// </summary>
public static class ImpartSparsity
{
    /// <summary>Algorithm 1 on <paramref name="singularValues"/> (σ₁ ≥ σ₂ ≥ … ≥ 0, length n₀).</summary>
    /// <param name="singularValues">σ of ΔW, descending.</param>
    /// <param name="alpha">α in [0, 1): the fraction of U's and V's entries to drop.</param>
    /// <param name="beta">β in [0, 1): the fraction of triplets to pre-prune; clamped to α.</param>
    /// <param name="c">C ≥ 0: the exponent of the importance rescaling.</param>
    public static ImpartRatios Compute(ReadOnlySpan<double> singularValues, double alpha, double beta, double c)
    {
        int n0 = singularValues.Length;
        if (n0 == 0) throw new ArgumentException("no singular values", nameof(singularValues));
        if (!(alpha >= 0 && alpha < 1)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "the target sparsity α must be in [0, 1)");
        if (!(beta >= 0 && beta < 1)) throw new ArgumentOutOfRangeException(nameof(beta), beta, "the pre-prune ratio β must be in [0, 1)");
        if (!(c >= 0) || !double.IsFinite(c)) throw new ArgumentOutOfRangeException(nameof(c), c, "the exponent C must be finite and ≥ 0");
        for (int i = 0; i < n0; i++)
        {
            double s = singularValues[i];
            if (!double.IsFinite(s) || s < 0) throw new ArgumentException($"σ[{i}] = {s}: singular values are finite and ≥ 0", nameof(singularValues));
            if (i > 0 && s > singularValues[i - 1])
                throw new ArgumentException($"σ[{i}] = {s} > σ[{i - 1}] = {singularValues[i - 1]}: singular values must be in descending order", nameof(singularValues));
        }

        beta = Math.Min(beta, alpha);
        // β < 1 keeps β·n₀ below n₀; the Min guards the slack at β within 1e-9/n₀ of 1.
        int prePruned = Math.Min((int)Math.Floor(beta * n0 + DeltaBudget.CountSlack), n0 - 1);
        int kept = n0 - prePruned;
        double betaEffective = (double)prePruned / n0;
        // α ≥ β′ up to the slack; a residue of −1e-17 is 0.
        double gamma = Math.Max(0, (alpha - betaEffective) / (1 - betaEffective));

        var p = new double[n0];
        double top = singularValues[0];
        double sum = prePruned;
        for (int i = 0; i < kept; i++)
        {
            double importance = top > 0 ? Math.Pow(singularValues[i] / top, c) : 1;
            p[i] = gamma * (1 - importance);
            sum += p[i];
        }
        for (int i = kept; i < n0; i++) p[i] = 1;

        double target = alpha * n0;
        int rank = kept;
        while (rank > 0 && sum < target - DeltaBudget.CountSlack)
        {
            sum += 1 - p[rank - 1];
            p[rank - 1] = 1;
            rank--;
        }
        return new ImpartRatios(p, rank, prePruned, gamma);
    }
}
