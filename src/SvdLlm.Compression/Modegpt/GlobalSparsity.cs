namespace SvdLlm.Compression.Modegpt;

/// <summary>
/// MoDeGPT's global sparsity allocation (Lin et al., ICLR 2025, arXiv 2408.09632): block l of L gets the fraction
/// φ_l of its modules' hidden dimensions removed, from block importances s_l (<see cref="BlockInfluence"/>), by
///   max_φ Σ_l s_l(1 − φ_l) + ε·H(φ), H(φ) = −Σ_l φ_l log φ_l, subject to (1/L) Σ_l φ_l = φ_avg,
/// whose stationarity condition −s_l − ε(log φ_l + 1) − μ = 0 gives φ_l ∝ exp(−s_l/ε), i.e. the paper's closed form
/// φ = L·φ_avg·softmax(−s/ε): important blocks lose less. ε → ∞ is uniform, ε → 0 puts everything on the least important.
///
/// <para><b>Box.</b> A block cannot lose more than φ_max (nor less than 0, which the softmax never asks for). The paper
/// clips; where the clip would break the mean, the excess is handed to the unclipped blocks in proportion to their
/// softmax weights, repeatedly, until no block exceeds φ_max. This is the exact solution of the problem with the box
/// added: its KKT conditions give φ_l = min(φ_max, c·exp(−s_l/ε)) for one scalar c, and each round raises c while the
/// clipped set only grows, so at most L rounds reach it. Weights are renormalised in the log domain on the blocks still
/// free (max subtracted there), so a block whose weight underflowed in the first softmax is still scaled correctly.
/// φ_avg &gt; φ_max cannot satisfy both constraints and is refused.</para>
/// </summary>
public static class GlobalSparsity
{
    /// <summary>
    /// φ_l for the importances <paramref name="importance"/> (one per block), the mean sparsity
    /// <paramref name="averageSparsity"/> φ_avg ∈ [0, φ_max], the temperature <paramref name="smoothing"/> ε &gt; 0
    /// (+∞ allowed: uniform) and the cap <paramref name="maxSparsity"/> φ_max ∈ (0, 1]. The result has mean φ_avg (to
    /// rounding) and every entry in [0, φ_max].
    /// </summary>
    public static double[] Allocate(ReadOnlySpan<double> importance, double averageSparsity, double smoothing, double maxSparsity)
    {
        int n = importance.Length;
        if (n == 0) throw new ArgumentException("no blocks to allocate over", nameof(importance));
        for (int l = 0; l < n; l++)
            if (!double.IsFinite(importance[l])) throw new ArgumentException($"importance of block {l} is {importance[l]}", nameof(importance));
        if (!(maxSparsity > 0 && maxSparsity <= 1)) throw new ArgumentOutOfRangeException(nameof(maxSparsity), $"φ_max = {maxSparsity} must lie in (0, 1]");
        if (!(averageSparsity >= 0) || !double.IsFinite(averageSparsity)) throw new ArgumentOutOfRangeException(nameof(averageSparsity), $"φ_avg = {averageSparsity} must be a finite non-negative fraction");
        if (averageSparsity > maxSparsity)
            throw new ArgumentOutOfRangeException(nameof(averageSparsity),
                $"φ_avg = {averageSparsity} exceeds φ_max = {maxSparsity}: no allocation can have that mean with every block at most φ_max");
        if (!(smoothing > 0)) throw new ArgumentOutOfRangeException(nameof(smoothing), $"ε = {smoothing} must be positive");

        var logWeight = new double[n];
        for (int l = 0; l < n; l++) logWeight[l] = double.IsPositiveInfinity(smoothing) ? 0 : -importance[l] / smoothing;

        var phi = new double[n];
        var clipped = new bool[n];
        int clippedCount = 0;
        double budget = n * averageSparsity;
        while (clippedCount < n)
        {
            double remaining = budget - clippedCount * maxSparsity;
            double top = double.NegativeInfinity;
            for (int l = 0; l < n; l++) if (!clipped[l]) top = Math.Max(top, logWeight[l]);
            double total = 0;
            for (int l = 0; l < n; l++) if (!clipped[l]) total += Math.Exp(logWeight[l] - top);
            bool clippedMore = false;
            for (int l = 0; l < n; l++)
            {
                if (clipped[l]) continue;
                phi[l] = Math.Max(0, remaining) * Math.Exp(logWeight[l] - top) / total;
                if (phi[l] > maxSparsity) clippedMore = true;
            }
            if (!clippedMore) break;
            for (int l = 0; l < n; l++)
                if (!clipped[l] && phi[l] > maxSparsity)
                {
                    phi[l] = maxSparsity;
                    clipped[l] = true;
                    clippedCount++;
                }
        }
        return phi;
    }
}
