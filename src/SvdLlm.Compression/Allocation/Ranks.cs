using SvdLlm.Numerics;

namespace SvdLlm.Compression;

/// <summary>
/// Rank arithmetic. A matrix [m, n] kept at ratio ρ = 1 − r (r = fraction of its parameters removed)
/// gets rank k = ⌊m·n·ρ / (m + n)⌋, so its two factors hold k·(m + n) ≤ ρ·m·n parameters.
/// </summary>
public static class Ranks
{
    public static int ForRemovedRatio(int m, int n, double removed)
    {
        if (!(removed >= 0 && removed < 1)) throw new ArgumentOutOfRangeException(nameof(removed), $"ratio {removed} must be in [0, 1) (fraction of parameters removed)");
        double kept = 1 - removed;
        int k = (int)Math.Floor((double)m * n * kept / (m + n) + 1e-9);
        return k;
    }

    /// <summary>Rejects ranks outside [1, min(m, n)] with the matrix shape in the message.</summary>
    public static void Check(Tensor<double> w, int k) => Check(w.Rows, w.Cols, k);

    public static void Check(int m, int n, int k)
    {
        if (k < 1 || k > Math.Min(m, n))
            throw new ArgumentOutOfRangeException(nameof(k), $"rank {k} is invalid for a {m}×{n} matrix: it must be in [1, {Math.Min(m, n)}]");
    }
}
