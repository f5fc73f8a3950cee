namespace SvdLlm.Compression.Dobi;

/// <summary>How ρ = min(m, n)/L is evaluated (ambiguity 2: the reference truncates it to an integer in γ₀ only).</summary>
public enum RhoMode
{
    /// <summary>min(m, n)/L as a real number: what the reference's loss and weight updater use.</summary>
    Float,

    /// <summary>⌊min(m, n)/L⌋: what the reference's γ₀ initialisation uses.</summary>
    Integer,
}

/// <summary>
/// Dobi-SVD's storage-ratio bookkeeping over the compressed linears (all but lm_head). γ is an activation rank in
/// [0, L]; ρ = min(m, n)/L turns it into the weight rank ρ·γ. A layer stores min(c·ρ·γ, mn) values with
/// c = m + n for two plain factors and c = max(m, n) with remapping (two 8-bit halves count as one 16-bit value), and a
/// dense matrix once the factors would be larger. ratio = Σ stored / Σ mn is the fraction kept (0.4 keeps 40 %).
///
/// <para><b>ρ (ambiguity 2).</b> This type uses the real ρ everywhere, including γ₀, for one reason: it is the ρ of the
/// ratio the training then optimises, and with it γ₀ = target·L (remapping) or target·mn/((m + n)·ρ) (plain) puts
/// every uncapped layer exactly at the target. The reference's ⌊ρ⌋ in γ₀ starts LLaMA-13B (min = 5120, L = 2048:
/// ρ = 2.5 vs 2) 25 % above the target, and divides by zero whenever min(m, n) &lt; L. <see cref="RhoMode.Integer"/>
/// reproduces the reference's γ₀.</para>
/// </summary>
public static class DobiRatio
{
    /// <summary>ρ = min(m, n)/L, or its integer part.</summary>
    public static double Rho(int m, int n, int seqLen, RhoMode mode = RhoMode.Float)
    {
        Check(m, n, seqLen);
        double rho = (double)Math.Min(m, n) / seqLen;
        return mode == RhoMode.Float ? rho : Math.Floor(rho);
    }

    /// <summary>Values counted per unit of weight rank: m + n for two factors, max(m, n) with remapping.</summary>
    public static int PerRank(int m, int n, bool remap) => remap ? Math.Max(m, n) : m + n;

    /// <summary>Stored values of one layer at activation rank γ: min(c·ρ·γ, mn).</summary>
    public static double LayerStorage(int m, int n, double gamma, int seqLen, bool remap) =>
        Math.Min(PerRank(m, n, remap) * Rho(m, n, seqLen) * gamma, (double)m * n);

    /// <summary>
    /// Σ_l min(c_l ρ_l γ_l, m_l n_l) / Σ_l m_l n_l over the layers' shapes (m = out, n = in). When
    /// <paramref name="gradient"/> is non-empty it receives ∂ratio/∂γ_l = c_l ρ_l / Σ mn where the layer is below its
    /// cap and 0 where it is capped (the subgradient an autograd min would give: at equality the factor branch).
    /// </summary>
    public static double Ratio(IReadOnlyList<(int M, int N)> shapes, ReadOnlySpan<double> gammas, int seqLen, bool remap, Span<double> gradient = default)
    {
        ArgumentNullException.ThrowIfNull(shapes);
        if (gammas.Length != shapes.Count) throw new ArgumentException($"{gammas.Length} γ for {shapes.Count} layers");
        if (gradient.Length != 0 && gradient.Length != shapes.Count) throw new ArgumentException($"gradient has {gradient.Length} slots for {shapes.Count} layers");
        double stored = 0, total = 0;
        for (int l = 0; l < shapes.Count; l++)
        {
            var (m, n) = shapes[l];
            stored += LayerStorage(m, n, gammas[l], seqLen, remap);
            total += (double)m * n;
        }
        if (gradient.Length != 0)
            for (int l = 0; l < shapes.Count; l++)
            {
                var (m, n) = shapes[l];
                double slope = PerRank(m, n, remap) * Rho(m, n, seqLen);
                gradient[l] = slope * gammas[l] <= (double)m * n ? slope / total : 0;
            }
        return stored / total;
    }

    /// <summary>
    /// γ₀ = (1/ρ)·target·min(m, n) with remapping, (1/ρ)·target·mn/(m + n) without, ρ per <paramref name="mode"/>.
    /// </summary>
    public static double InitialGamma(int m, int n, int seqLen, double target, bool remap, RhoMode mode = RhoMode.Float)
    {
        double rho = Rho(m, n, seqLen, mode);
        if (rho <= 0) throw new ArgumentException($"⌊ρ⌋ = 0 for min({m}, {n}) < L = {seqLen}: the reference's γ₀ divides by zero; use RhoMode.Float");
        return target * (remap ? Math.Min(m, n) : (double)m * n / (m + n)) / rho;
    }

    /// <summary>The weight rank ρ·γ that an activation rank γ stands for (the reference's real_gamma, issue #3).</summary>
    public static double WeightRank(int m, int n, double gamma, int seqLen) => Rho(m, n, seqLen) * gamma;

    private static void Check(int m, int n, int seqLen)
    {
        if (m < 1 || n < 1) throw new ArgumentOutOfRangeException(nameof(m), $"invalid shape [{m}, {n}]");
        ArgumentOutOfRangeException.ThrowIfLessThan(seqLen, 1);
    }
}
