using SvdLlm.Models.Checkpoints;
using SvdLlm.Numerics;
using SvdLlm.Numerics.Backends;

namespace SvdLlm.Models.Architectures;

/// <summary>A logit or token NLL came out NaN or ±∞.</summary>
public sealed class NonFiniteLogitsException(string message, int sequence, int position) : UserInputException(message)
{
    /// <summary>Index of the sequence in the batch.</summary>
    public int Sequence { get; } = sequence;

    /// <summary>Position of the offending logit row within the sequence.</summary>
    public int Position { get; } = position;
}

/// <summary>
/// A decoder-only language model loaded from a Hugging Face directory. The forward pass is split
/// into <see cref="Embed"/>, <see cref="ForwardLayer"/> and <see cref="FinalNorm"/> so that
/// calibration can run one decoder layer at a time; <see cref="Logits"/> and <see cref="TokenNll"/>
/// compose them. Weights are read lazily from the memory-mapped checkpoint; with
/// <see cref="StreamWeights"/> each layer is released right after use, so only one layer's weights
/// are resident.
/// </summary>
public abstract class CausalLanguageModel : IDisposable
{
    /// <summary>Rows of logits materialised at once when computing NLL (bounds memory for 128k vocabularies).</summary>
    private const int LogitRowsPerBlock = 64;

    private readonly List<Linear> _linears = [];
    private Dictionary<string, Linear>? _byName;

    protected CausalLanguageModel(string directory, CheckpointReader reader, IComputeBackend backend)
    {
        Directory = directory;
        Reader = reader;
        Backend = backend;
    }

    public string Directory { get; }
    public IComputeBackend Backend { get; }
    /// <summary>The checkpoint the weights come from (memory-mapped; original values stay readable after in-memory edits).</summary>
    public CheckpointReader Reader { get; }

    /// <summary>Reads a linear's weights from the checkpoint if they are not in memory.</summary>
    public void Load(Linear linear) => linear.Load(Reader);

    public abstract string Architecture { get; }
    public abstract int VocabSize { get; }
    public abstract int HiddenSize { get; }
    public abstract int NumLayers { get; }

    /// <summary>config.json's max_position_embeddings: the longest sequence the model was built (and trained) for.</summary>
    public abstract int MaxPositionEmbeddings { get; }

    /// <summary>
    /// The longest sequence a forward pass takes: attention's [T, T] score scratch is indexed by int, so T² must stay
    /// below 2³¹ (46340² = 2 147 395 600).
    /// </summary>
    public const int MaxSequenceLength = 46340;
    public abstract int? BosTokenId { get; }

    /// <summary>Width of the final hidden state that multiplies the output embedding.</summary>
    protected abstract int OutputWidth { get; }

    /// <summary>Sees every linear's input during forward passes (calibration).</summary>
    public ILinearObserver? Observer { get; set; }

    /// <summary>Release each decoder layer's weights after it ran (for models larger than memory).</summary>
    public bool StreamWeights { get; set; }

    /// <summary>The compressible linears of the decoder layers, in layer order; embeddings and lm_head are not among them.</summary>
    public IReadOnlyList<Linear> Linears => _linears;

    /// <summary>The linear with Hugging Face name <paramref name="name"/> ("model.layers.3.self_attn.q_proj").</summary>
    public Linear GetLinear(string name)
    {
        _byName ??= _linears.ToDictionary(l => l.Name);
        if (_byName.TryGetValue(name, out var linear)) return linear;
        string? close = NameSuggestions.Closest(name, _linears.Select(l => l.Name));
        throw new KeyNotFoundException($"{Directory}: no linear named '{name}'" + (close is null ? "" : $"; did you mean '{close}'?"));
    }

    protected void Register(Linear linear)
    {
        _linears.Add(linear);
        _byName = null;
    }

    /// <summary>All parameters the model computes with (a tied output embedding counted once).</summary>
    public abstract long ParameterCount { get; }

    /// <summary>Parameters of the decoder linears (the part SVD compression touches).</summary>
    public long LinearParameterCount => _linears.Sum(l => l.ParameterCount);

    /// <summary>hidden [B·T, H] for tokens [B·T] (row-major batch of equal-length sequences starting at position 0).</summary>
    public Tensor<float> Embed(ReadOnlySpan<int> tokens, int batch, int seqLen)
    {
        var hidden = Tensor<float>.Uninitialized(tokens.Length, HiddenSize);
        try
        {
            EmbedAt(tokens, batch, seqLen, 0, hidden);
            return hidden;
        }
        catch
        {
            hidden.Dispose();
            throw;
        }
    }

    /// <summary>Runs decoder layer <paramref name="layer"/> on hidden [B·T, H] in place.</summary>
    public abstract void ForwardLayer(int layer, Tensor<float> hidden, int batch, int seqLen);

    /// <summary>Final normalisation (and projection) in place of hidden; returns the tensor to multiply by the output embedding.</summary>
    public abstract Tensor<float> FinalNorm(Tensor<float> hidden);

    /// <summary>The output embedding [V, OutputWidth] (lm_head, or embed_tokens when tied), loaded on demand.</summary>
    protected abstract Tensor<float> OutputEmbedding();

    /// <summary>Loads every weight now (otherwise they load on first use).</summary>
    public abstract void LoadAll();

    /// <summary>
    /// Floats of one position's key and value in layer <paramref name="layer"/> (what a <see cref="KvCache"/> stores):
    /// NKV·D each, unless the layer was structurally pruned (MoDeGPT: NKV·d_qk,l and NKV·d_v,l).
    /// </summary>
    protected abstract (int Key, int Value) KvWidths(int layer);

    /// <summary>Positions the architecture can represent (OPT's learned table), or null when unbounded (RoPE).</summary>
    protected virtual int? MaxPositions => null;

    /// <summary>The architecture's scratch buffers for one decode step over <paramref name="batch"/> rows.</summary>
    protected abstract IDisposable CreateDecodeWorkspace(int batch, int maxLength);

    /// <summary>Writes embeddings [B·T, H] of tokens at absolute positions start … start + T − 1 into hidden.</summary>
    protected abstract void EmbedAt(ReadOnlySpan<int> tokens, int batch, int seqLen, int start, Tensor<float> hidden);

    /// <summary>
    /// Runs decoder layer <paramref name="layer"/> on hidden [B·T, H] for tokens at positions
    /// cache.Length … cache.Length + T − 1, storing their keys and values in the cache. With an empty
    /// cache this is the plain causal forward; with entries, T must be 1 and the token attends over the cache.
    /// </summary>
    protected abstract void ForwardLayerCached(int layer, Tensor<float> hidden, int batch, int seqLen, KvCache cache);

    /// <summary>
    /// A key/value cache for <paramref name="batch"/> sequences of up to <paramref name="maxLength"/>
    /// positions (prompt plus generated tokens), allocated now so that decoding allocates nothing.
    /// </summary>
    public KvCache CreateKvCache(int batch, int maxLength)
    {
        if (batch <= 0 || maxLength <= 0) throw new ArgumentException($"KV cache: batch {batch} and max length {maxLength} must be positive");
        if (MaxPositions is int limit && maxLength > limit)
            throw new ArgumentException($"KV cache: max length {maxLength} exceeds {Architecture}'s {limit} positions (learned positions cannot extrapolate)");
        var widths = Enumerable.Range(0, NumLayers).Select(KvWidths).ToArray();
        return new KvCache(this, batch, maxLength, widths.Select(w => w.Key).ToArray(), widths.Select(w => w.Value).ToArray(), CreateDecodeWorkspace(batch, maxLength));
    }

    /// <summary>
    /// Runs a prompt batch tokens [B·P] through the model into an empty <paramref name="cache"/> and returns
    /// the logits of each sequence's last prompt token, [B, V] (what generation continues from), or with
    /// <paramref name="allPositions"/> the logits of every prompt position, [B·P, V] (as <see cref="Logits"/>).
    /// </summary>
    public Tensor<float> Prefill(ReadOnlySpan<int> tokens, int batch, int promptLen, KvCache cache, bool allPositions = false)
    {
        CheckTokens(tokens, batch, promptLen);
        CheckCache(cache, batch);
        if (cache.Length != 0) throw new InvalidOperationException($"prefill needs an empty KV cache; this one holds {cache.Length} positions (call Reset)");
        if (promptLen > cache.MaxLength) throw new ArgumentException($"prompt of {promptLen} tokens exceeds the KV cache's {cache.MaxLength} positions");
        using var hidden = Tensor<float>.Uninitialized(batch * promptLen, HiddenSize);
        EmbedAt(tokens, batch, promptLen, 0, hidden);
        for (int l = 0; l < NumLayers; l++) ForwardLayerCached(l, hidden, batch, promptLen, cache);
        cache.Advance(promptLen);
        var final = FinalNorm(hidden);
        try
        {
            if (allPositions) return OutputLogits(final, batch * promptLen, promptLen);
            using var last = Tensor<float>.Uninitialized(batch, OutputWidth);
            for (int b = 0; b < batch; b++) final.Row(b * promptLen + promptLen - 1).CopyTo(last.Row(b));
            var logits = Tensor<float>.Uninitialized(batch, VocabSize);
            ComputeLogits(last, batch, logits, promptLen - 1, 1);
            return logits;
        }
        finally
        {
            if (!ReferenceEquals(final, hidden)) final.Dispose();
        }
    }

    /// <summary>Feeds one token per sequence (tokens [B]) at position cache.Length; returns its logits [B, V].</summary>
    public Tensor<float> DecodeStep(ReadOnlySpan<int> tokens, KvCache cache)
    {
        var logits = Tensor<float>.Uninitialized(cache.Batch, VocabSize);
        try
        {
            DecodeStep(tokens, cache, logits);
            return logits;
        }
        catch
        {
            logits.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Feeds one token per sequence (tokens [B]) at absolute position cache.Length, appends its keys and
    /// values to the cache and writes its logits into <paramref name="logits"/> [B, V]; no tensor is allocated.
    /// </summary>
    public void DecodeStep(ReadOnlySpan<int> tokens, KvCache cache, Tensor<float> logits)
    {
        CheckCache(cache, tokens.Length);
        CheckTokens(tokens, cache.Batch, 1);
        if (logits.Rows != cache.Batch || logits.Cols != VocabSize)
            throw new ArgumentException($"decode logits tensor is {logits.ShapeString}, expected [{cache.Batch}, {VocabSize}]");
        if (cache.Length >= cache.MaxLength) throw new InvalidOperationException($"KV cache is full ({cache.MaxLength} positions)");
        int position = cache.Length;
        var hidden = cache.Hidden;
        EmbedAt(tokens, cache.Batch, 1, position, hidden);
        for (int l = 0; l < NumLayers; l++) ForwardLayerCached(l, hidden, cache.Batch, 1, cache);
        cache.Advance(1);
        var final = FinalNorm(hidden);
        try
        {
            ComputeLogits(final, cache.Batch, logits, position, 1);
        }
        finally
        {
            if (!ReferenceEquals(final, hidden)) final.Dispose();
        }
    }

    private void CheckCache(KvCache cache, int batch)
    {
        if (!ReferenceEquals(cache.Model, this)) throw new ArgumentException($"the KV cache was made for another model ({cache.Model.Directory})");
        if (cache.Batch != batch) throw new ArgumentException($"the KV cache holds {cache.Batch} sequences, not {batch}");
    }

    /// <summary>Final hidden states [B·T, OutputWidth] for a batch of token sequences.</summary>
    public Tensor<float> Hidden(ReadOnlySpan<int> tokens, int batch, int seqLen)
    {
        CheckTokens(tokens, batch, seqLen);
        var hidden = Embed(tokens, batch, seqLen);
        try
        {
            for (int l = 0; l < NumLayers; l++) ForwardLayer(l, hidden, batch, seqLen);
            var final = FinalNorm(hidden);
            if (!ReferenceEquals(final, hidden)) hidden.Dispose();
            return final;
        }
        catch
        {
            hidden.Dispose();
            throw;
        }
    }

    /// <summary>Logits [B·T, V]. Throws <see cref="NonFiniteLogitsException"/> on NaN/∞.</summary>
    public Tensor<float> Logits(ReadOnlySpan<int> tokens, int batch, int seqLen)
    {
        using var hidden = Hidden(tokens, batch, seqLen);
        return OutputLogits(hidden, batch * seqLen, seqLen);
    }

    private Tensor<float> OutputLogits(Tensor<float> hidden, int rows, int seqLen)
    {
        var logits = Tensor<float>.Uninitialized(rows, VocabSize);
        try
        {
            ComputeLogits(hidden, rows, logits, 0, seqLen);
            return logits;
        }
        catch
        {
            logits.Dispose();
            throw;
        }
    }

    /// <summary>
    /// logits [rows, V] = hidden [rows, OutputWidth] · Wᵀ; row r is sequence r / seqLen at position
    /// firstPosition + r % seqLen, which names the offending token when a row is not finite.
    /// </summary>
    private void ComputeLogits(Tensor<float> hidden, int rows, Tensor<float> logits, int firstPosition, int seqLen)
    {
        var w = OutputEmbedding();
        Backend.Sgemm(Transpose.No, Transpose.Yes, rows, VocabSize, OutputWidth, 1f, hidden.Span, OutputWidth, w.Span, OutputWidth, 0f, logits.Span, VocabSize);
        for (int r = 0; r < rows; r++)
        {
            if (!float.IsFinite(System.Numerics.Tensors.TensorPrimitives.Sum(logits.Row(r))))
            {
                int position = firstPosition + r % seqLen;
                throw new NonFiniteLogitsException($"non-finite logits at sequence {r / seqLen}, position {position}", r / seqLen, position);
            }
        }
    }

    /// <summary>
    /// Negative log-likelihood of every next token: for each sequence b and position t &lt; T−1,
    /// −log softmax(logits[b, t])[tokens[b, t+1]]; returns [B·(T−1)] in float64. Logits are made
    /// in blocks of rows so the [B·T, V] matrix never exists at once.
    /// </summary>
    public double[] TokenNll(ReadOnlySpan<int> tokens, int batch, int seqLen)
    {
        if (seqLen < 2) throw new ArgumentException($"seq_len {seqLen}: at least 2 tokens are needed to predict one");
        using var hidden = Hidden(tokens, batch, seqLen);
        var w = OutputEmbedding();
        int predicted = seqLen - 1;
        var nll = new double[batch * predicted];
        int block = Math.Min(LogitRowsPerBlock, seqLen);
        using var logits = Tensor<float>.Uninitialized(block, VocabSize);
        for (int b = 0; b < batch; b++)
        {
            for (int t0 = 0; t0 < predicted; t0 += block)
            {
                int rows = Math.Min(block, predicted - t0);
                int row0 = b * seqLen + t0;
                Backend.Sgemm(Transpose.No, Transpose.Yes, rows, VocabSize, OutputWidth, 1f,
                    hidden.Span[(row0 * OutputWidth)..], OutputWidth, w.Span, OutputWidth, 0f, logits.Span, VocabSize);
                for (int r = 0; r < rows; r++)
                {
                    var row = logits.Row(r);
                    int target = tokens[row0 + r + 1];
                    double value = Backend.LogSumExp(row) - row[target];
                    if (!double.IsFinite(value))
                        throw new NonFiniteLogitsException($"non-finite logits (NLL {value}) at sequence {b}, position {t0 + r}", b, t0 + r);
                    nll[b * predicted + t0 + r] = value;
                }
            }
        }
        return nll;
    }

    private void CheckTokens(ReadOnlySpan<int> tokens, int batch, int seqLen)
    {
        if (batch <= 0 || seqLen <= 0) throw new ArgumentException($"batch {batch} and seq_len {seqLen} must be positive");
        if (seqLen > MaxSequenceLength)
            throw new ArgumentException($"seq_len {seqLen} exceeds the longest sequence a forward pass takes ({MaxSequenceLength}: the [T, T] attention scores are indexed by int)");
        if (tokens.Length != (long)batch * seqLen) throw new ArgumentException($"{tokens.Length} tokens do not form a [{batch}, {seqLen}] batch");
        for (int i = 0; i < tokens.Length; i++)
            if ((uint)tokens[i] >= (uint)VocabSize)
                throw new ArgumentException($"token id {tokens[i]} at index {i} is outside the vocabulary [0, {VocabSize})");
    }

    public virtual void Dispose()
    {
        foreach (var l in _linears) l.Dispose();
        Reader.Dispose();
        GC.SuppressFinalize(this);
    }
}
