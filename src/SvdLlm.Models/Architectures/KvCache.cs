using SvdLlm.Numerics;

namespace SvdLlm.Models.Architectures;

/// <summary>
/// Keys and values of every decoder layer for a batch of sequences being generated, preallocated to
/// <see cref="MaxLength"/> positions, plus the scratch buffers one decode step needs, so that a decode
/// step allocates no tensors. Made by <see cref="CausalLanguageModel.CreateKvCache"/>, filled by
/// <see cref="CausalLanguageModel.Prefill"/> and extended by <see cref="CausalLanguageModel.DecodeStep(ReadOnlySpan{int}, KvCache, Tensor{float})"/>.
/// Layout per layer l: K is [B·MaxLength, KeyWidth(l)] and V [B·MaxLength, ValueWidth(l)] (NKV·D each, or NKV·d_qk,l and
/// NKV·d_v,l for a structurally pruned layer); sequence b, position t is row b·MaxLength + t, holding the key after RoPE
/// (so a cached key never needs rotating again) and the value.
/// Every position is kept, also under a sliding window: the window is applied when attending, which
/// keeps absolute positions trivial at the cost of window-independent memory.
/// </summary>
public sealed class KvCache : IDisposable
{
    private readonly Tensor<float>[] _keys, _values;
    private readonly int[] _keyWidths, _valueWidths;

    internal KvCache(CausalLanguageModel model, int batch, int maxLength, int[] keyWidths, int[] valueWidths, IDisposable workspace)
    {
        if (keyWidths.Length != valueWidths.Length) throw new ArgumentException($"KV cache: {keyWidths.Length} key widths but {valueWidths.Length} value widths");
        Model = model;
        Batch = batch;
        MaxLength = maxLength;
        _keyWidths = keyWidths;
        _valueWidths = valueWidths;
        int layers = keyWidths.Length;
        _keys = new Tensor<float>[layers];
        _values = new Tensor<float>[layers];
        Workspace = workspace;
        try
        {
            for (int l = 0; l < layers; l++)
            {
                _keys[l] = Tensor<float>.Uninitialized(batch * maxLength, keyWidths[l]);
                _values[l] = Tensor<float>.Uninitialized(batch * maxLength, valueWidths[l]);
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

    /// <summary>Floats of one cached key in layer <paramref name="layer"/> (NKV·D, or NKV·d_qk,l when pruned).</summary>
    public int KeyWidth(int layer) => _keyWidths[layer];

    /// <summary>Floats of one cached value in layer <paramref name="layer"/> (NKV·D, or NKV·d_v,l when pruned).</summary>
    public int ValueWidth(int layer) => _valueWidths[layer];

    /// <summary>Positions filled in every sequence; the next token fed is at absolute position <see cref="Length"/>.</summary>
    public int Length { get; private set; }

    /// <summary>Bytes of the key and value buffers (float32).</summary>
    public long Bytes => ((long)_keyWidths.Sum() + _valueWidths.Sum()) * Batch * MaxLength * sizeof(float);

    /// <summary>Forgets the cached positions; the buffers are kept for the next prompt.</summary>
    public void Reset() => Length = 0;

    /// <summary>Hidden states [B, H] of the token being decoded.</summary>
    internal Tensor<float> Hidden { get; } = null!;

    /// <summary>The architecture's per-layer scratch for one decode step (B rows).</summary>
    internal IDisposable Workspace { get; }

    /// <summary>Layer <paramref name="layer"/>'s keys [B·MaxLength, KeyWidth(layer)].</summary>
    internal ReadOnlySpan<float> Keys(int layer) => _keys[layer].Span;

    internal ReadOnlySpan<float> Values(int layer) => _values[layer].Span;

    /// <summary>
    /// Stores k [B·T, KeyWidth] and v [B·T, ValueWidth] of T new tokens per sequence at positions [Length, Length + T) of
    /// layer <paramref name="layer"/>. <see cref="Length"/> moves only in <see cref="Advance"/>, after every layer wrote.
    /// </summary>
    internal void Write(int layer, ReadOnlySpan<float> k, ReadOnlySpan<float> v, int seqLen)
    {
        if (Length + seqLen > MaxLength)
            throw new InvalidOperationException($"KV cache holds {MaxLength} positions; {Length} are filled and {seqLen} more do not fit");
        int kCount = seqLen * _keyWidths[layer], vCount = seqLen * _valueWidths[layer];
        var keys = _keys[layer];
        var values = _values[layer];
        for (int b = 0; b < Batch; b++)
        {
            k.Slice(b * kCount, kCount).CopyTo(keys.RowRange(b * MaxLength + Length, seqLen));
            v.Slice(b * vCount, vCount).CopyTo(values.RowRange(b * MaxLength + Length, seqLen));
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
