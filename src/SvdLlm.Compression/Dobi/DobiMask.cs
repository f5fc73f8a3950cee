namespace SvdLlm.Compression.Dobi;

// Dobi-SVD (Wang, Ke et al., "Dobi-SVD: Differentiable SVD for LLM compression", ICLR 2025), numerical core.
// Notation of the paper: one sample's activation A = X Wᵀ [L, m] (L tokens, m outputs), its thin SVD
// A = U diag(σ) Vᵀ with σ descending, and a trainable truncation position γ (activation rank, in [0, L]).

/// <summary>
/// The smooth truncation mask of Dobi-SVD, T_i(γ) = ½·tanh(β(γ − i)) + ½ for the 1-based singular index i = 1…q.
/// T_i ≈ 1 for i well below γ and ≈ 0 well above it, with a transition of width ≈ 1/β; its derivative
/// dT_i/dγ = ½·β·sech²(β(γ − i)) is what lets the truncation position be trained by gradient descent.
/// As β → ∞ it tends to hard truncation at ⌊γ⌋ for non-integer γ; at an integer γ the γ-th value stays ½ for every β.
/// </summary>
public static class DobiMask
{
    /// <summary>β of the paper and the reference training script.</summary>
    public const double DefaultBeta = 10;

    /// <summary>T_i(γ) for one 1-based index i.</summary>
    public static double Value(double gamma, int i, double beta = DefaultBeta) => 0.5 * Math.Tanh(beta * (gamma - i)) + 0.5;

    /// <summary>
    /// dT_i/dγ = ½·β·sech²(β(γ − i)). Written with cosh rather than 1 − tanh², which cancels to exactly 0 once tanh
    /// rounds to ±1 (|β(γ − i)| ≳ 19) although the true value is still ≈ 2β·e^{−2|β(γ−i)|}; cosh overflowing to
    /// infinity far out gives the correct limit 0.
    /// </summary>
    public static double Derivative(double gamma, int i, double beta = DefaultBeta)
    {
        double c = Math.Cosh(beta * (gamma - i));
        return 0.5 * beta / (c * c);
    }

    /// <summary>T_1…T_q as an array (element p holds T_{p+1}).</summary>
    public static double[] Values(double gamma, int q, double beta = DefaultBeta)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(q);
        var t = new double[q];
        for (int p = 0; p < q; p++) t[p] = Value(gamma, p + 1, beta);
        return t;
    }

    /// <summary>dT_1/dγ…dT_q/dγ as an array (element p holds dT_{p+1}/dγ).</summary>
    public static double[] Derivatives(double gamma, int q, double beta = DefaultBeta)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(q);
        var d = new double[q];
        for (int p = 0; p < q; p++) d[p] = Derivative(gamma, p + 1, beta);
        return d;
    }
}
