namespace SvdLlm.Compression;

/// <summary>One compressed matrix in compression-report.json.</summary>
public sealed record MatrixReport(
    string Name,
    int[] Shape,
    string Group,
    double AllocatedRatio,
    int Rank,
    double TheoreticalLoss,
    string LossObjective,
    double MeasuredLoss,
    long ParamsBefore,
    long ParamsAfter,
    double Seconds,
    double? AllocationLoss,
    string? Note)
{
    /// <summary>Which decomposition produced the factors (e.g. "L: eig(W C Wᵀ) 4096"), see WeightedLowRank.</summary>
    public string? Route { get; init; }
}

/// <summary>compression-report.json: per-matrix ranks and losses, totals, and wall time per stage.</summary>
public sealed class CompressionReport
{
    public required string Method { get; init; }
    public required double Ratio { get; init; }
    public List<MatrixReport> Matrices { get; } = [];
    public long LinearParamsBefore { get; set; }
    public long LinearParamsAfter { get; set; }
    public long ModelParamsBefore { get; set; }
    public long ModelParamsAfter { get; set; }

    /// <summary>Fraction of the compressed linears' parameters removed (the ratio as defined here).</summary>
    public double AchievedLinearRatio => 1 - (double)LinearParamsAfter / LinearParamsBefore;

    /// <summary>Fraction of all model parameters removed (what some papers call the ratio).</summary>
    public double AchievedModelRatio => 1 - (double)ModelParamsAfter / ModelParamsBefore;

    /// <summary>Stored bytes of the decoder linears' weights (factors, codes, scales) in the source and in the output, when known.</summary>
    public long? LinearBytesBefore { get; set; }
    public long? LinearBytesAfter { get; set; }

    /// <summary>Stored bits per weight of the dense decoder linears: 8 · bytes after / dense linear parameters.</summary>
    public double? BitsPerWeight => LinearBytesAfter is long b && LinearParamsBefore > 0 ? 8.0 * b / LinearParamsBefore : null;

    /// <summary>The method with its parameters as tables name it ("SVD-LLM V2 + GPTQ 4-bit g128"), when it has parameters.</summary>
    public string? Label { get; set; }

    /// <summary>The quantization's own report (grid, per-matrix losses and damping), when anything was quantized.</summary>
    public System.Text.Json.Nodes.JsonObject? Quantization { get; set; }

    /// <summary>
    /// The loss of every training step the method took while compressing, per stage ("lora_u", "lora_v" for LoRA
    /// recovery; "dobi_gamma" for Dobi-SVD's stage 1): the next-token cross-entropy of the step's batch.
    /// </summary>
    public Dictionary<string, List<double>> TrainingCurves { get; } = [];

    /// <summary>SVD-LLM's LoRA recovery when it ran: settings, and per stage its steps, seconds and training loss per step.</summary>
    public System.Text.Json.Nodes.JsonObject? Recovery { get; set; }

    public Dictionary<string, double> StageSeconds { get; } = [];
    public string? LargestSvdMatrix { get; set; }
    public double LargestSvdSeconds { get; set; }
    public Dictionary<string, string> Calibration { get; } = [];
    public List<string> Notes { get; } = [];
}
