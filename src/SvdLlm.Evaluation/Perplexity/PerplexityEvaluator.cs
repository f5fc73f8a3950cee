using System.Diagnostics;
using SvdLlm.Models.Architectures;

namespace SvdLlm.Evaluation.Perplexity;

/// <summary>Perplexity over a token stream with the protocol named in <see cref="Protocol"/>.</summary>
public sealed record PerplexityResult(
    string Protocol,
    double Ppl,
    double MeanNll,
    long Tokens,
    int Chunks,
    int SeqLen,
    long DroppedTokens,
    double Seconds)
{
    /// <summary>Forward throughput: chunk tokens processed per second (all positions, not only predicted ones).</summary>
    public double TokensPerSecond => Seconds > 0 ? (double)Chunks * SeqLen / Seconds : 0;
}

/// <summary>A chunk produced NaN or ±∞ logits; the evaluation stops instead of skipping it.</summary>
public sealed class PerplexityException(string message, Exception? inner = null) : UserInputException(message, inner);

/// <summary>
/// SVD-LLM's perplexity protocol: the whole text is tokenized once (BOS, if wanted, only at the
/// start — the caller's token stream is taken as is), cut into non-overlapping chunks of seq_len
/// tokens with the remainder dropped, and PPL = exp(mean NLL over every shifted-token prediction,
/// seq_len − 1 per chunk). Unlike the reference, a chunk with non-finite logits is an error that
/// names the chunk, never silently skipped.
/// </summary>
public static class PerplexityEvaluator
{
    public const string ProtocolName = "svdllm-nonoverlapping";

    /// <param name="progress">called after each batch with (chunks done, chunks total)</param>
    public static PerplexityResult Evaluate(CausalLanguageModel model, ReadOnlySpan<int> ids, int seqLen,
        int? maxChunks = null, int batchSize = 1, Action<int, int>? progress = null)
    {
        if (seqLen < 2) throw new ArgumentException($"seq_len must be at least 2 (one context and one predicted token), got {seqLen}");
        // Perplexity past the trained context measures extrapolation, not the model; and OPT's learned positions end there.
        if (seqLen > model.MaxPositionEmbeddings)
            throw new ArgumentException($"seq_len {seqLen} exceeds {model.Directory}'s max_position_embeddings ({model.MaxPositionEmbeddings}, config.json): use chunks the model was built for");
        if (batchSize < 1) throw new ArgumentException($"batch size must be positive, got {batchSize}");
        if (maxChunks is <= 0) throw new ArgumentException($"max chunks must be positive, got {maxChunks}");
        int available = ids.Length / seqLen;
        if (available == 0)
            throw new ArgumentException($"the token stream has {ids.Length} tokens, fewer than one chunk of seq_len {seqLen}");
        int chunks = maxChunks is int k ? Math.Min(k, available) : available;

        var clock = Stopwatch.StartNew();
        double sum = 0;
        long count = 0;
        for (int c0 = 0; c0 < chunks; c0 += batchSize)
        {
            int b = Math.Min(batchSize, chunks - c0);
            var batch = ids.Slice(c0 * seqLen, b * seqLen);
            double[] nll;
            try
            {
                nll = model.TokenNll(batch, b, seqLen);
            }
            catch (NonFiniteLogitsException e)
            {
                int chunk = c0 + e.Sequence;
                throw new PerplexityException(
                    $"chunk {chunk} (tokens [{(long)chunk * seqLen}, {(long)(chunk + 1) * seqLen})) has non-finite logits at position {e.Position}; " +
                    "the reference evaluator would have skipped this chunk silently, which biases perplexity", e);
            }
            // Sum in chunk order, so the result does not depend on the batch size.
            foreach (double v in nll) sum += v;
            count += nll.Length;
            progress?.Invoke(c0 + b, chunks);
        }
        double mean = sum / count;
        return new PerplexityResult(ProtocolName, Math.Exp(mean), mean, count, chunks, seqLen,
            ids.Length - (long)chunks * seqLen, clock.Elapsed.TotalSeconds);
    }
}
