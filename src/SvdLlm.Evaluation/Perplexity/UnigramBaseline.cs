namespace SvdLlm.Evaluation.Perplexity;

/// <summary>
/// The unigram reference a language model must beat: p(token) from counts on a training stream with
/// add-one smoothing over the vocabulary, scored on exactly the tokens <see cref="PerplexityEvaluator"/>
/// predicts (non-overlapping chunks of seq_len, the first token of each chunk only as context).
/// </summary>
public sealed class UnigramBaseline
{
    private readonly double[] _logProb;

    public UnigramBaseline(ReadOnlySpan<int> trainIds, int vocabSize)
    {
        var counts = new long[vocabSize];
        foreach (int id in trainIds)
        {
            if ((uint)id >= (uint)vocabSize) throw new ArgumentException($"token id {id} outside the vocabulary [0, {vocabSize})");
            counts[id]++;
        }
        double total = trainIds.Length + (double)vocabSize;
        _logProb = counts.Select(c => Math.Log((c + 1) / total)).ToArray();
    }

    /// <summary>Perplexity on the predicted positions of the SVD-LLM chunking of <paramref name="ids"/>.</summary>
    public double Perplexity(ReadOnlySpan<int> ids, int seqLen)
    {
        int chunks = ids.Length / seqLen;
        if (chunks == 0) throw new ArgumentException($"{ids.Length} tokens are fewer than one chunk of {seqLen}");
        double sum = 0;
        long n = 0;
        for (int c = 0; c < chunks; c++)
            for (int t = 1; t < seqLen; t++)
            {
                sum -= _logProb[ids[c * seqLen + t]];
                n++;
            }
        return Math.Exp(sum / n);
    }
}
