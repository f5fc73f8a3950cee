namespace SvdLlm.Compression.Calibration;

/// <summary>
/// The calibration windows a request sampled: <see cref="Count"/> windows of <see cref="SeqLen"/> tokens, laid end to end
/// in <see cref="Tokens"/>. Methods that run the model while compressing (ASVD's sensitivity search, SVD-LLM's local
/// update) take them as this one value, so a caller cannot pass tokens without their window length.
/// </summary>
public sealed record CalibrationWindows
{
    public CalibrationWindows(int[] tokens, int seqLen)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        if (seqLen <= 0) throw new ArgumentOutOfRangeException(nameof(seqLen), $"seq_len {seqLen} must be positive");
        if (tokens.Length == 0 || tokens.Length % seqLen != 0)
            throw new ArgumentException($"{tokens.Length} calibration tokens are not a positive whole number of windows of {seqLen}", nameof(tokens));
        Tokens = tokens;
        SeqLen = seqLen;
    }

    public int[] Tokens { get; }
    public int SeqLen { get; }
    public int Count => Tokens.Length / SeqLen;
}
