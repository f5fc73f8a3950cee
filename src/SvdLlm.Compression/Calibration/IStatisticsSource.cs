namespace SvdLlm.Compression.Calibration;

/// <summary>
/// Where compression reads calibration statistics from: an in-memory <see cref="CalibrationStatistics"/> (small
/// models, tests) or a statistics file read one input at a time (a 7B's Grams do not fit in memory together).
/// Compression asks for the inputs of one decoder layer, uses them and releases them before the next layer.
/// </summary>
public interface IStatisticsSource
{
    /// <summary>Provenance stored with the statistics (model, text, samples, seed, key).</summary>
    IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Every input key (a Gram shared by the linears that read the same input).</summary>
    IReadOnlyCollection<string> InputKeys { get; }

    /// <summary>Whether Fisher row sums were collected.</summary>
    bool HasFisher { get; }

    /// <summary>
    /// The statistics of one input; owned by the source and valid until <see cref="Release"/> of that key (or the
    /// source's disposal). Throws <see cref="KeyNotFoundException"/> naming the key when absent.
    /// </summary>
    InputStatistics Input(string key);

    /// <summary>Frees what <see cref="Input"/> loaded for the key (a no-op for in-memory statistics).</summary>
    void Release(string key);

    /// <summary>FWSVD's row Fisher Σ_windows Σ_j (∂L/∂W_ij)² [out_features] of one linear, or null when not collected.</summary>
    double[]? FisherRowSums(string linearName);
}
