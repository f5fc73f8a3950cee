using SvdLlm.Numerics;

namespace SvdLlm.Models.Architectures;

/// <summary>
/// Keys and values of every decoder layer for a batch of sequences being generated, preallocated to
/// <see cref="MaxLength"/> positions, plus the scratch buffers one decode step needs, so that a decode
/// step allocates no tensors. Made by <see cref="CausalLanguageModel.CreateKvCache"/>, filled by
/// <see cref="CausalLanguageModel.Prefill"/> and extended by <see cref="CausalLanguageModel.DecodeStep(ReadOnlySpan{int}, KvCache, Tensor{float})"/>.
/// Layout per layer: K and V are [B·MaxLength, NKV·D]; sequence b, position t is row b·MaxLength + t,
/// holding the key after RoPE (so a cached key never needs rotating again) and the value.
/// Every position is kept, also under a sliding window: the window is applied when attending, which
/// keeps absolute positions trivial at the cost of window-independent memory.
/// </summary>
public sealed class KvCache : IDisposable
{
    private readonly Tensor<float>[] _keys, _values;

    internal KvCache(CausalLanguageModel model, int layers, int batch, int maxLength, int kvHeads, int headDim, IDisposable workspace)
    {
        Model = model;
        Batch = batch;
        MaxLength = maxLength;
        KvHeads = kvHeads;
        HeadDim = headDim;
        _keys = new Tensor<float>[layers];
        _values = new Tensor<float>[layers];
        Workspace = workspace;
        try
        {
            for (int l = 0; l < layers; l++)
            {
                _keys[l] = Tensor<float>.Uninitialized(batch * maxLength, kvHeads * headDim);
                _values[l] = Tensor<float>.Uninitialized(batch * maxLength, kvHeads * headDim);
            }
            Hidden = Tensor<float>.Uninitialized(batch, model.HiddenSize);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The model that made the cache (a cache's widths and workspace fit only that model).</summary>
    public CausalLanguageModel Model { get; }

    public int Batch { get; }
    public int MaxLength { get; }
    public int NumLayers => _keys.Length;
    public int KvHeads { get; }
    public int HeadDim { get; }

    /// <summary>Positions filled in every sequence; the next token fed is at absolute position <see cref="Length"/>.</summary>
    public int Length { get; private set; }

    /// <summary>Bytes of the key and value buffers (float32).</summary>
    public long Bytes => 2L * NumLayers * Batch * MaxLength * KvHeads * HeadDim * sizeof(float);

    /// <summary>Forgets the cached positions; the buffers are kept for the next prompt.</summary>
    public void Reset() => Length = 0;

    /// <summary>Hidden states [B, H] of the token being decoded.</summary>
    internal Tensor<float> Hidden { get; } = null!;

    /// <summary>The architecture's per-layer scratch for one decode step (B rows).</summary>
    internal IDisposable Workspace { get; }

    /// <summary>Layer <paramref name="layer"/>'s keys [B·MaxLength, NKV·D].</summary>
    internal ReadOnlySpan<float> Keys(int layer) => _keys[layer].Span;

    internal ReadOnlySpan<float> Values(int layer) => _values[layer].Span;

    /// <summary>
    /// Stores k and v [B·T, NKV·D] of T new tokens per sequence at positions [Length, Length + T) of
    /// layer <paramref name="layer"/>. <see cref="Length"/> moves only in <see cref="Advance"/>, after every layer wrote.
    /// </summary>
    internal void Write(int layer, ReadOnlySpan<float> k, ReadOnlySpan<float> v, int seqLen)
    {
        if (Length + seqLen > MaxLength)
            throw new InvalidOperationException($"KV cache holds {MaxLength} positions; {Length} are filled and {seqLen} more do not fit");
        int width = KvHeads * HeadDim;
        var keys = _keys[layer];
        var values = _values[layer];
        for (int b = 0; b < Batch; b++)
        {
            int count = seqLen * width;
            k.Slice(b * count, count).CopyTo(keys.RowRange(b * MaxLength + Length, seqLen));
            v.Slice(b * count, count).CopyTo(values.RowRange(b * MaxLength + Length, seqLen));
        }
    }

    internal void Advance(int seqLen) => Length += seqLen;

    public void Dispose()
    {
        foreach (var t in _keys) t?.Dispose();
        foreach (var t in _values) t?.Dispose();
        Hidden?.Dispose();
        Workspace?.Dispose();
    }
}
