using SvdLlm.Numerics;

namespace SvdLlm.Compression.Truncation;

/// <summary>
/// The result of truncating W [m, n] to rank k: W' = U·V with U [m, k] and V [k, n] (float64),
/// and the loss the method's own theory predicts for its objective (see each truncation).
/// </summary>
public sealed class LowRankFactors(Tensor<double> u, Tensor<double> v, double theoreticalLoss, string lossObjective, string? note = null) : IDisposable
{
    public Tensor<double> U { get; } = u;
    public Tensor<double> V { get; } = v;
    public int Rank => U.Cols;

    /// <summary>The truncation residual of the method's objective, e.g. sqrt(Σ_{i&gt;k} σ_i(WS)²).</summary>
    public double TheoreticalLoss { get; } = theoreticalLoss;

    /// <summary>What <see cref="TheoreticalLoss"/> measures: "‖(W−W')X‖_F", "‖W−W'‖_F", …</summary>
    public string LossObjective { get; } = lossObjective;

    /// <summary>Regularisation or clipping the truncation had to apply (recorded in the report, never silent).</summary>
    public string? Note { get; } = note;

    /// <summary>W' = U·V.</summary>
    public Tensor<double> Product() => DenseMath.MatMul(U, false, V, false);

    public void Dispose()
    {
        U.Dispose();
        V.Dispose();
    }
}

/// <summary>What a truncation may use besides W: the calibration statistics of the linear's input (and, for FWSVD and GFWSVD, its Fisher information).</summary>
public sealed class TruncationInputs
{
    /// <summary>C = Σ_t x_t x_tᵀ [n, n] (raw sum, float64).</summary>
    public Tensor<double>? Gram { get; init; }

    /// <summary>mean over tokens of |x_j| [n].</summary>
    public double[]? MeanAbsInput { get; init; }

    /// <summary>FWSVD's row Fisher Σ_batches Σ_j (∂L/∂W_ij)² [m].</summary>
    public double[]? FisherRowSums { get; init; }

    /// <summary>GFWSVD's Kronecker factors of the Fisher, F ≈ A ⊗ B (A [n, n] input side, B [m, m] output side).</summary>
    public KroneckerFactors? Kronecker { get; init; }

    /// <summary>Dobi-SVD's stage-2 subspace of the linear's output activations (its right singular vectors per window).</summary>
    public Dobi.DobiSubspace? OutputSubspace { get; init; }
}

/// <summary>A way to pick W' of rank k given W and calibration statistics.</summary>
public interface ITruncation
{
    string Name { get; }
    LowRankFactors Truncate(Tensor<double> w, int k, TruncationInputs inputs);

    /// <summary>
    /// The factors of one W at each of several ranks, in order (ASVD's sensitivity search probes nine). A
    /// truncation whose decomposition does not depend on k overrides this to decompose once.
    /// </summary>
    IEnumerable<LowRankFactors> TruncateAtRanks(Tensor<double> w, IReadOnlyList<int> ranks, TruncationInputs inputs)
        => ranks.Select(k => Truncate(w, k, inputs));
}
