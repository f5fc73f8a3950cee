namespace SvdLlm.Compression.Modegpt;

/// <summary>
/// The importance MoDeGPT's allocation (<see cref="GlobalSparsity"/>) takes per block: the Block Influence score of
/// ShortGPT (Men et al., 2024), BI = 1 − mean over tokens t of cos(x_in,t, x_out,t), with x_in and x_out the block's
/// input and output hidden states (residual stream). A block that barely turns the residual stream scores near 0 and is
/// compressed most. Feed batches with <see cref="Add"/> (the calibrator sees tokens in batches) and read
/// <see cref="Score"/>; <see cref="Compute"/> is the one-batch shortcut.
///
/// <para>Rows are float32 as the model produces them; dot products and norms are accumulated in float64: a float32 sum
/// of d = 4096 terms may be off by up to d·u₃₂ ≈ 2e-4 relative, and BI = 1 − cos is small exactly where blocks are
/// hard to tell apart (cos near 1), so an absolute error in cos is a large relative error in BI. A row pair in which
/// either vector has zero norm has no direction: it counts as cos = 0 and is included in the mean, as
/// torch.nn.functional.cosine_similarity (whose norms are clamped from below) returns; residual-stream states are never
/// exactly zero in practice, so this only keeps the score defined. Non-finite values are refused with their token.</para>
/// </summary>
public sealed class BlockInfluence
{
    private double _cosineSum;

    /// <summary>d, the hidden size of every row.</summary>
    public int Dimension { get; }

    /// <summary>Tokens added so far.</summary>
    public long Tokens { get; private set; }

    public BlockInfluence(int dimension)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(dimension, 1);
        Dimension = dimension;
    }

    /// <summary>1 − (Σ cos)/tokens over everything added. Refused before any token.</summary>
    public double Score => Tokens > 0
        ? 1 - _cosineSum / Tokens
        : throw new InvalidOperationException("no tokens were added: the block influence is undefined");

    /// <summary>
    /// Adds one batch: <paramref name="input"/> and <paramref name="output"/> are both [T, d] row-major, row t of each
    /// the same token.
    /// </summary>
    public void Add(ReadOnlySpan<float> input, ReadOnlySpan<float> output)
    {
        int d = Dimension;
        if (input.Length != output.Length) throw new ArgumentException($"input has {input.Length} values, output {output.Length}");
        if (input.Length % d != 0) throw new ArgumentException($"{input.Length} values are not whole rows of {d}");
        int tokens = input.Length / d;
        double sum = 0;
        for (int t = 0; t < tokens; t++)
        {
            var a = input.Slice(t * d, d);
            var b = output.Slice(t * d, d);
            double ab = 0, aa = 0, bb = 0;
            for (int i = 0; i < d; i++)
            {
                double x = a[i], y = b[i];
                ab += x * y;
                aa += x * x;
                bb += y * y;
            }
            if (!double.IsFinite(ab) || !double.IsFinite(aa) || !double.IsFinite(bb))
                throw new ArgumentException($"token {Tokens + t} holds a non-finite value");
            if (aa > 0 && bb > 0) sum += ab / (Math.Sqrt(aa) * Math.Sqrt(bb));
        }
        _cosineSum += sum;
        Tokens += tokens;
    }

    /// <summary>BI of one batch of [T, d] input and output rows.</summary>
    public static double Compute(ReadOnlySpan<float> input, ReadOnlySpan<float> output, int dimension)
    {
        var bi = new BlockInfluence(dimension);
        bi.Add(input, output);
        return bi.Score;
    }
}
