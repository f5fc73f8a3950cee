using System.Text;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Tokenizers;
using SvdLlm.Numerics;

namespace SvdLlm.Evaluation.Tasks;

/// <summary>One scored option: the log-likelihood of <paramref name="Continuation"/> given <paramref name="Context"/>.</summary>
public sealed record ChoiceRequest(string Context, string Continuation);

/// <summary>
/// One multiple-choice item as lm-evaluation-harness builds it: one request per choice (the contexts differ only
/// for WinoGrande's partial scoring), the character length each choice's log-likelihood is divided by for
/// <c>acc_norm</c>, and the index of the right choice.
/// </summary>
/// <param name="Source">"file:line" of the record, for messages</param>
public sealed record MultipleChoiceItem(string Source, IReadOnlyList<ChoiceRequest> Requests, IReadOnlyList<int> NormLengths, int Gold)
{
    /// <summary>
    /// The usual shape: a shared context, continuations target-delimiter + choice, <c>acc_norm</c> dividing by the
    /// choice's length in characters (Python <c>len</c>: code points), as lm-eval's <c>process_results</c> does.
    /// </summary>
    public static MultipleChoiceItem SharedContext(string source, string context, IReadOnlyList<string> choices, int gold)
    {
        if (gold < 0 || gold >= choices.Count) throw new TaskDataException($"{source}: the answer index {gold} is outside the {choices.Count} choices");
        return new MultipleChoiceItem(source,
            choices.Select(c => new ChoiceRequest(context, LoglikelihoodScorer.TargetDelimiter + c)).ToArray(),
            choices.Select(LoglikelihoodScorer.CodePoints).ToArray(), gold);
    }
}

/// <summary>Per-item log-likelihoods and the accuracies they give.</summary>
public sealed record MultipleChoiceScores(IReadOnlyList<MultipleChoiceItem> Items, IReadOnlyList<double[]> LogLikelihoods)
{
    /// <summary>1 where argmax of the summed log-likelihood is the gold choice (first index on ties, as numpy's argmax).</summary>
    public double[] Correct() => Items.Select((item, i) => ArgMax(LogLikelihoods[i], null) == item.Gold ? 1.0 : 0.0).ToArray();

    /// <summary>1 where argmax of log-likelihood / character length is the gold choice.</summary>
    public double[] CorrectNorm() => Items.Select((item, i) => ArgMax(LogLikelihoods[i], item.NormLengths) == item.Gold ? 1.0 : 0.0).ToArray();

    private static int ArgMax(double[] ll, IReadOnlyList<int>? lengths)
    {
        int best = 0;
        double bestValue = double.NegativeInfinity;
        for (int i = 0; i < ll.Length; i++)
        {
            double v = lengths is null ? ll[i] : ll[i] / lengths[i];
            if (v > bestValue) { best = i; bestValue = v; }
        }
        return best;
    }
}

/// <summary>Aggregation as lm-eval: the mean, and its standard error <c>mean_stderr</c> = sample standard deviation / √n.</summary>
public static class Aggregation
{
    public static double Mean(IReadOnlyList<double> x) => x.Count == 0 ? double.NaN : x.Sum() / x.Count;

    /// <summary>sqrt(Σ(x − μ)² / (n − 1)) / sqrt(n); null for fewer than two values, where it is undefined.</summary>
    public static double? MeanStderr(IReadOnlyList<double> x)
    {
        int n = x.Count;
        if (n < 2) return null;
        double mu = Mean(x);
        double ss = 0;
        foreach (double v in x) ss += (v - mu) * (v - mu);
        return Math.Sqrt(ss / (n - 1)) / Math.Sqrt(n);
    }
}

/// <summary>
/// lm-evaluation-harness's <c>loglikelihood</c> for a Hugging Face causal LM (<c>HFLM</c>), on our forward pass.
/// </summary>
/// <remarks>
/// <para><b>Tokenization</b> (<c>HFLM._encode_pair</c>): trailing whitespace of the context moves to the start of the
/// continuation; context + continuation is encoded as one string and split at the length of the context's own
/// encoding, so a BPE merge across the boundary counts toward the continuation. No special tokens are added (lm-eval's
/// default <c>add_bos_token=False</c>); an empty context becomes the single prefix token (BOS, else EOS).</para>
/// <para><b>Window</b>: at most <c>maxLength</c> tokens go through the model; a longer request keeps its last
/// <c>maxLength</c> tokens (lm-eval's left truncation; the continuation itself must fit).</para>
/// <para><b>Batching and reuse</b>: the requests of <c>itemsPerBatch</c> consecutive items run in one forward pass,
/// right-padded (a causal model's outputs at a position do not depend on later tokens, so padding changes nothing).
/// A request whose model input (window minus its last token) is a prefix of another request's input reads its
/// log-probabilities from that sequence's logits instead of running its own: choices that share the context and differ
/// only in the last token (one-token answers), and duplicate requests, cost one sequence.</para>
/// <para>Log-probabilities come from float32 logits with the row maximum subtracted before exponentiation
/// (see <see cref="LogProb"/>).</para>
/// </remarks>
public static class LoglikelihoodScorer
{
    /// <summary>lm-eval's default <c>target_delimiter</c>, put between context and each choice.</summary>
    public const string TargetDelimiter = " ";

    /// <summary>Logit floats materialised by one forward pass at most (256 MB); bigger batches are split.</summary>
    private const long MaxLogitFloats = 64L << 20;

    /// <summary>Python's <c>len</c> of a string: Unicode code points, not UTF-16 units.</summary>
    public static int CodePoints(string s)
    {
        int n = 0;
        foreach (Rune _ in s.EnumerateRunes()) n++;
        return n;
    }

    /// <summary>The token ids of (context, continuation) as lm-eval's HFLM makes them.</summary>
    public static (int[] Context, int[] Continuation) EncodePair(HfTokenizer tokenizer, string context, string continuation, int prefixToken)
        => EncodePair(tokenizer, context, continuation, prefixToken, null);

    /// <param name="contextCache">encodings of (whitespace-stripped) contexts already seen: the choices of an item share one</param>
    private static (int[] Context, int[] Continuation) EncodePair(HfTokenizer tokenizer, string context, string continuation, int prefixToken,
        Dictionary<string, int[]>? contextCache)
    {
        if (context.Length == 0) return ([prefixToken], tokenizer.Encode(continuation, addSpecialTokens: false));
        int spaces = context.Length - context.TrimEnd().Length;
        if (spaces > 0)
        {
            continuation = context[^spaces..] + continuation;
            context = context[..^spaces];
        }
        int[] whole = tokenizer.Encode(context + continuation, addSpecialTokens: false);
        if (contextCache is null || !contextCache.TryGetValue(context, out int[]? ctx))
        {
            ctx = tokenizer.Encode(context, addSpecialTokens: false);
            contextCache?.Add(context, ctx);
        }
        // A context of only whitespace leaves nothing to condition on; lm-eval would then slice before the window's
        // start. Treat it as the empty context.
        if (ctx.Length == 0) return ([prefixToken], whole);
        return (ctx, whole[Math.Min(ctx.Length, whole.Length)..]);
    }

    /// <summary>The token lm-eval puts before a continuation that has no context: BOS if the tokenizer has one, else EOS.</summary>
    public static int PrefixToken(HfTokenizer tokenizer, CausalLanguageModel model) =>
        tokenizer.BosTokenId ?? tokenizer.EosTokenId ?? model.BosTokenId
        ?? throw new ArgumentException("the tokenizer has neither a BOS nor an EOS token, needed before a continuation with an empty context");

    private sealed class Encoded(int[] window, int continuationLength)
    {
        public int[] Window { get; } = window;
        public int ContinuationLength { get; } = continuationLength;
        public int InputLength => Window.Length - 1;
    }

    /// <summary>Summed continuation log-likelihoods, one array per item in item order.</summary>
    /// <param name="progress">called with (items done, items total)</param>
    public static MultipleChoiceScores Score(CausalLanguageModel model, HfTokenizer tokenizer, IReadOnlyList<MultipleChoiceItem> items,
        int maxLength, int itemsPerBatch = 1, Action<int, int>? progress = null)
    {
        if (maxLength < 2) throw new ArgumentException($"max length must be at least 2 tokens, got {maxLength}");
        if (itemsPerBatch < 1) throw new ArgumentException($"batch size must be positive, got {itemsPerBatch}");
        int prefix = PrefixToken(tokenizer, model);
        var results = new double[items.Count][];
        for (int i0 = 0; i0 < items.Count; i0 += itemsPerBatch)
        {
            int count = Math.Min(itemsPerBatch, items.Count - i0);
            var encoded = new List<(int Item, int Choice, Encoded E)>();
            var contextCache = new Dictionary<string, int[]>(StringComparer.Ordinal);
            for (int i = i0; i < i0 + count; i++)
            {
                var item = items[i];
                results[i] = new double[item.Requests.Count];
                for (int c = 0; c < item.Requests.Count; c++)
                    encoded.Add((i, c, Encode(tokenizer, item, item.Requests[c], prefix, maxLength, model.VocabSize, contextCache)));
            }
            var ll = RunBatch(model, encoded.Select(e => e.E).ToArray(), items, encoded.Select(e => e.Item).ToArray());
            for (int k = 0; k < encoded.Count; k++) results[encoded[k].Item][encoded[k].Choice] = ll[k];
            progress?.Invoke(i0 + count, items.Count);
        }
        return new MultipleChoiceScores(items, results);
    }

    private static Encoded Encode(HfTokenizer tokenizer, MultipleChoiceItem item, ChoiceRequest r, int prefix, int maxLength, int vocab,
        Dictionary<string, int[]> contextCache)
    {
        var (ctx, cont) = EncodePair(tokenizer, r.Context, r.Continuation, prefix, contextCache);
        if (cont.Length == 0)
            throw new TaskDataException($"{item.Source}: the continuation {Quote(r.Continuation)} encodes to no tokens");
        if (cont.Length >= maxLength)
            throw new TaskDataException($"{item.Source}: the continuation has {cont.Length} tokens, more than fit a window of {maxLength} with one context token");
        int total = ctx.Length + cont.Length;
        int skip = Math.Max(0, total - maxLength);
        var window = new int[total - skip];
        for (int t = skip; t < total; t++)
        {
            int id = t < ctx.Length ? ctx[t] : cont[t - ctx.Length];
            if ((uint)id >= (uint)vocab)
                throw new ArgumentException($"{item.Source}: token id {id} is outside the model's vocabulary [0, {vocab}): tokenizer and model do not match");
            window[t - skip] = id;
        }
        return new Encoded(window, cont.Length);
    }

    private static string Quote(string s) => "\"" + (s.Length > 60 ? s[..60] + "…" : s).Replace("\n", "\\n") + "\"";

    private static bool IsPrefix(int[] a, int aLength, int[] b, int bLength)
    {
        if (aLength > bLength) return false;
        for (int i = 0; i < aLength; i++) if (a[i] != b[i]) return false;
        return true;
    }

    private static double[] RunBatch(CausalLanguageModel model, Encoded[] requests, IReadOnlyList<MultipleChoiceItem> items, int[] itemOf)
    {
        // Hosts: the requests whose input is not a prefix of a longer (or earlier equal) input; every other
        // request reads its rows from a host's logits.
        var order = Enumerable.Range(0, requests.Length).OrderByDescending(k => requests[k].InputLength).ThenBy(k => k).ToArray();
        var hosts = new List<int>();
        var hostOf = new int[requests.Length];
        foreach (int k in order)
        {
            int found = -1;
            foreach (int h in hosts)
                if (IsPrefix(requests[k].Window, requests[k].InputLength, requests[h].Window, requests[h].InputLength)) { found = h; break; }
            if (found < 0) { hosts.Add(k); found = k; }
            hostOf[k] = found;
        }

        var result = new double[requests.Length];
        int vocab = model.VocabSize;
        int start = 0;
        while (start < hosts.Count)
        {
            // Hosts are sorted by length, longest first, so the first of a group sets the padded length.
            int seqLen = requests[hosts[start]].InputLength;
            int b = 1;
            while (start + b < hosts.Count && (long)(b + 1) * seqLen * vocab <= MaxLogitFloats) b++;
            var tokens = new int[b * seqLen];
            for (int j = 0; j < b; j++)
            {
                var w = requests[hosts[start + j]];
                Array.Copy(w.Window, 0, tokens, j * seqLen, w.InputLength);
                // Right padding: any valid id; repeating the last input token keeps ids in range.
                for (int t = w.InputLength; t < seqLen; t++) tokens[j * seqLen + t] = w.Window[w.InputLength - 1];
            }
            var rowOf = new Dictionary<int, int>();
            for (int j = 0; j < b; j++) rowOf[hosts[start + j]] = j;
            Tensor<float> logits;
            try
            {
                logits = model.Logits(tokens, b, seqLen);
            }
            catch (NonFiniteLogitsException e)
            {
                int host = hosts[start + e.Sequence];
                throw new NonFiniteLogitsException($"{items[itemOf[host]].Source}: non-finite logits at position {e.Position}", e.Sequence, e.Position);
            }
            using (logits)
            {
                var scratch = new float[vocab];
                for (int k = 0; k < requests.Length; k++)
                {
                    if (!rowOf.TryGetValue(hostOf[k], out int row)) continue;
                    var r = requests[k];
                    double sum = 0;
                    for (int p = r.Window.Length - r.ContinuationLength; p < r.Window.Length; p++)
                        sum += LogProb(logits.Row(row * seqLen + p - 1), r.Window[p], scratch);
                    result[k] = sum;
                }
            }
            start += b;
        }
        return result;
    }

    /// <summary>
    /// log softmax(row)[target], the row maximum subtracted before exponentiation. The exponentials are SIMD float32
    /// (every term lies in (0, 1], so their sum has a relative error near 1e-7, below the logits' own float32 error);
    /// the result is formed in float64. <paramref name="scratch"/> holds at least row.Length floats.
    /// </summary>
    public static double LogProb(ReadOnlySpan<float> row, int target, Span<float> scratch)
    {
        float max = System.Numerics.Tensors.TensorPrimitives.Max(row);
        var shifted = scratch[..row.Length];
        System.Numerics.Tensors.TensorPrimitives.Subtract(row, max, shifted);
        System.Numerics.Tensors.TensorPrimitives.Exp(shifted, shifted);
        double sum = System.Numerics.Tensors.TensorPrimitives.Sum(shifted);
        double value = (double)row[target] - max - Math.Log(sum);
        if (!double.IsFinite(value)) throw new NonFiniteLogitsException($"log-probability {value} from a logit row", 0, 0);
        return value;
    }
}
