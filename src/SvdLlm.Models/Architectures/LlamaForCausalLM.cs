using SvdLlm.Models.Checkpoints;
using SvdLlm.Numerics;
using SvdLlm.Numerics.Backends;

namespace SvdLlm.Models.Architectures;

// The LLaMA family (LLaMA 1/2/3, Vicuna, Mistral, Qwen2) in the reading order of Hugging Face's
// modeling_llama.py. Shapes: B=batch, T=seq, N=B·T rows, H=hidden_size, NH=heads, NKV=kv heads,
// D=head_dim, I=intermediate_size, V=vocab_size. Every activation is row-major [N, width].
// A structurally pruned layer l (MoDeGPT) has its own widths: Dqk = d_qk,l for q and k, Dv = d_v,l for v and the
// attention output, I = I_l for the MLP (LlamaConfig.IntermediateSizes and friends); otherwise Dqk = Dv = D.

/// <summary>Precomputed cos/sin tables [P, D/2] for rotary embeddings, grown on demand.</summary>
internal sealed class LlamaRotaryEmbedding
{
    private readonly double[] _invFreq;
    private float[] _cos = [], _sin = [];
    private int _positions;

    public LlamaRotaryEmbedding(LlamaConfig config)
    {
        // Rounded to float32 as PyTorch holds inv_freq, so angles match HF's float32 arithmetic.
        _invFreq = RopeScaling.InverseFrequencies(config.HeadDim, config.RopeTheta, config.RopeScaling)
            .Select(f => (double)(float)f).ToArray();
        HeadDim = config.HeadDim;
    }

    public int HeadDim { get; }

    public (float[] Cos, float[] Sin) Tables(int positions)
    {
        if (positions > _positions)
        {
            int half = HeadDim / 2;
            int p = Math.Max(positions, 2 * _positions);
            var cos = new float[p * half];
            var sin = new float[p * half];
            for (int t = 0; t < p; t++)
                for (int i = 0; i < half; i++)
                {
                    double angle = (float)(t * _invFreq[i]); // float32 product, as in HF
                    cos[t * half + i] = (float)Math.Cos(angle);
                    sin[t * half + i] = (float)Math.Sin(angle);
                }
            (_cos, _sin, _positions) = (cos, sin, p);
        }
        return (_cos, _sin);
    }
}

/// <summary>q/k/v/o projections and grouped-query causal attention with rotary positions.</summary>
internal sealed class LlamaAttention
{
    public required Linear QProj { get; init; }
    public required Linear KProj { get; init; }
    public required Linear VProj { get; init; }
    public required Linear OProj { get; init; }
}

/// <summary>
/// One decoder layer's widths: per-head query/key and value dimensions and MLP channels. Uniform (D, D, I) unless the
/// checkpoint was structurally pruned (MoDeGPT), when config.json's per-layer lists give them.
/// </summary>
internal readonly record struct LlamaLayerDims(int QkHeadDim, int VHeadDim, int Intermediate)
{
    public static LlamaLayerDims Of(LlamaConfig c, int layer) => new(c.QkHeadDimOf(layer), c.VHeadDimOf(layer), c.IntermediateSizeOf(layer));

    /// <summary>The widest of every layer's widths: buffers shared by all layers (a decode step's) are sized by it.</summary>
    public static LlamaLayerDims Widest(LlamaConfig c)
    {
        var widest = Of(c, 0);
        for (int l = 1; l < c.NumHiddenLayers; l++)
        {
            var d = Of(c, l);
            widest = new(Math.Max(widest.QkHeadDim, d.QkHeadDim), Math.Max(widest.VHeadDim, d.VHeadDim), Math.Max(widest.Intermediate, d.Intermediate));
        }
        return widest;
    }
}

/// <summary>down_proj(silu(gate_proj(x)) · up_proj(x)).</summary>
internal sealed class LlamaMlp
{
    public required Linear GateProj { get; init; }
    public required Linear UpProj { get; init; }
    public required Linear DownProj { get; init; }
}

internal sealed class LlamaDecoderLayer
{
    public required int Index { get; init; }
    public required string Prefix { get; init; }
    public required LlamaAttention SelfAttn { get; init; }
    public required LlamaMlp Mlp { get; init; }
    public required LlamaLayerDims Dims { get; init; }

    /// <summary>
    /// The rotary pairs each key/value head kept, [NKV, Dqk/2] row-major, as original frequency indices (the checkpoint's
    /// self_attn.rope_pairs); null when the layer has every pair in its original order (the unpruned layer).
    /// </summary>
    public int[]? RopePairs { get; init; }

    public Tensor<float>? InputLayernorm { get; set; }
    public Tensor<float>? PostAttentionLayernorm { get; set; }

    public IEnumerable<Linear> Linears => [SelfAttn.QProj, SelfAttn.KProj, SelfAttn.VProj, SelfAttn.OProj, Mlp.GateProj, Mlp.UpProj, Mlp.DownProj];

    public void Load(CheckpointReader reader, int hidden)
    {
        InputLayernorm ??= Weights.Vector(reader, Prefix + "input_layernorm.weight", hidden);
        PostAttentionLayernorm ??= Weights.Vector(reader, Prefix + "post_attention_layernorm.weight", hidden);
        foreach (var l in Linears) l.Load(reader);
    }

    public void Unload()
    {
        InputLayernorm?.Dispose();
        PostAttentionLayernorm?.Dispose();
        InputLayernorm = PostAttentionLayernorm = null;
        foreach (var l in Linears) l.Unload();
    }
}

/// <summary>
/// Scratch of one decoder layer over N rows. The plain forward makes one per layer call, sized by that layer's
/// widths; a <see cref="KvCache"/> keeps one for B rows sized by the widest layer, so that decode steps allocate
/// nothing (a narrower layer uses the front of each buffer).
/// </summary>
internal sealed class LlamaLayerBuffers : IDisposable
{
    public LlamaLayerBuffers(LlamaConfig c, LlamaLayerDims dims, int rows, int scores)
    {
        Normed = Tensor<float>.Uninitialized(rows, c.HiddenSize);
        Q = Tensor<float>.Uninitialized(rows, c.NumAttentionHeads * dims.QkHeadDim);
        K = Tensor<float>.Uninitialized(rows, c.NumKeyValueHeads * dims.QkHeadDim);
        V = Tensor<float>.Uninitialized(rows, c.NumKeyValueHeads * dims.VHeadDim);
        Attn = Tensor<float>.Uninitialized(rows, c.NumAttentionHeads * dims.VHeadDim);
        Scores = Tensor<float>.Uninitialized(scores);
        Delta = Tensor<float>.Uninitialized(rows, c.HiddenSize);
        Gate = Tensor<float>.Uninitialized(rows, dims.Intermediate);
        Up = Tensor<float>.Uninitialized(rows, dims.Intermediate);
        Positions = new int[rows];
    }

    public Tensor<float> Normed { get; }    // [N, H]
    public Tensor<float> Q { get; }         // [N, NH·Dqk]
    public Tensor<float> K { get; }         // [N, NKV·Dqk]
    public Tensor<float> V { get; }         // [N, NKV·Dv]
    public Tensor<float> Attn { get; }      // [N, NH·Dv]
    public Tensor<float> Scores { get; }    // [T, T] for a chunk; [NH/NKV, max length] for decoding
    public Tensor<float> Delta { get; }     // [N, H] sublayer output
    public Tensor<float> Gate { get; }      // [N, I]
    public Tensor<float> Up { get; }        // [N, I]
    public int[] Positions { get; }         // [N] absolute positions

    public void Dispose()
    {
        foreach (var t in new[] { Normed, Q, K, V, Attn, Scores, Delta, Gate, Up }) t.Dispose();
    }
}

/// <summary>
/// LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM, including structurally pruned checkpoints with per-layer
/// widths (MoDeGPT; <see cref="LlamaConfig.IntermediateSizes"/>). A layer whose query/key heads keep d_qk &lt; D
/// dimensions kept whole rotary pairs; the int32 tensor "model.layers.{l}.self_attn.rope_pairs" [NKV, d_qk/2] gives, for
/// each key/value head (and so for its whole group of query heads, which must turn by the same angles as their key),
/// the original frequency index i ∈ [0, D/2) of each kept pair in stored order. The pruned head keeps Hugging Face's
/// rotate_half layout: kept pair j sits at positions j and j + d_qk/2 and turns with the original inv_freq[i_j]
/// (rope_scaling included), so its rotation is the one the unpruned head applied to that pair.
/// </summary>
public sealed class LlamaForCausalLM : CausalLanguageModel
{
    private readonly LlamaDecoderLayer[] _layers;
    private readonly LlamaRotaryEmbedding _rotary;
    private readonly LlamaLayerDims _widest;
    private Tensor<float>? _embedTokens, _norm, _lmHead;

    public LlamaConfig Config { get; }

    public override string Architecture => Config.Architecture;
    public override int VocabSize => Config.VocabSize;
    public override int HiddenSize => Config.HiddenSize;
    public override int NumLayers => Config.NumHiddenLayers;
    public override int MaxPositionEmbeddings => Config.MaxPositionEmbeddings;
    public override int? BosTokenId => Config.BosTokenId;
    protected override int OutputWidth => Config.HiddenSize;

    internal LlamaForCausalLM(string directory, CheckpointReader reader, IComputeBackend backend, LlamaConfig config)
        : base(directory, reader, backend)
    {
        Config = config;
        _rotary = new LlamaRotaryEmbedding(config);
        _widest = LlamaLayerDims.Widest(config);
        int h = config.HiddenSize, heads = config.NumAttentionHeads, kvHeads = config.NumKeyValueHeads;

        // Validate the presence and shapes of every tensor up front, without reading data.
        reader.RequireShape("model.embed_tokens.weight", config.VocabSize, h);
        reader.RequireShape("model.norm.weight", h);
        if (!config.TieWordEmbeddings) reader.RequireShape("lm_head.weight", config.VocabSize, h);

        _layers = new LlamaDecoderLayer[config.NumHiddenLayers];
        for (int i = 0; i < _layers.Length; i++)
        {
            string p = $"model.layers.{i}.";
            reader.RequireShape(p + "input_layernorm.weight", h);
            reader.RequireShape(p + "post_attention_layernorm.weight", h);
            var dims = LlamaLayerDims.Of(config, i);
            int qw = heads * dims.QkHeadDim, kw = kvHeads * dims.QkHeadDim, vw = kvHeads * dims.VHeadDim, ow = heads * dims.VHeadDim, inter = dims.Intermediate;
            string qk = config.QkField(i), vd = config.VField(i), mlp = config.IntermediateField(i);
            Linear L(string name, string inputKey, int inF, int outF, bool bias, string outFrom, string inFrom)
            {
                try
                {
                    return Linear.FromCheckpoint(reader, p + name, p + inputKey, inF, outF, bias);
                }
                catch (CheckpointFormatException e) when (e.TensorName is { } tensor && reader.Contains(tensor))
                {
                    // The tensor is there but does not fit: say which config.json fields set the shape it was held to,
                    // since with per-layer widths that is not obvious from the tensor alone.
                    throw CheckpointFormatException.WithMessage(e.FilePath, tensor,
                        $"{e.Message} (config.json makes {p + name} [out, in] = [{outF}, {inF}]: out = {outFrom}, in = {inFrom})", e);
                }
            }
            string hidden = $"hidden_size = {h}";
            var layer = new LlamaDecoderLayer
            {
                Index = i,
                Prefix = p,
                Dims = dims,
                SelfAttn = new LlamaAttention
                {
                    QProj = L("self_attn.q_proj", "self_attn.input", h, qw, config.QkvBias, $"num_attention_heads · {qk} = {heads} · {dims.QkHeadDim}", hidden),
                    KProj = L("self_attn.k_proj", "self_attn.input", h, kw, config.QkvBias, $"num_key_value_heads · {qk} = {kvHeads} · {dims.QkHeadDim}", hidden),
                    VProj = L("self_attn.v_proj", "self_attn.input", h, vw, config.QkvBias, $"num_key_value_heads · {vd} = {kvHeads} · {dims.VHeadDim}", hidden),
                    OProj = L("self_attn.o_proj", "self_attn.o_proj.input", ow, h, config.OutputBias, hidden, $"num_attention_heads · {vd} = {heads} · {dims.VHeadDim}"),
                },
                Mlp = new LlamaMlp
                {
                    GateProj = L("mlp.gate_proj", "mlp.input", h, inter, config.MlpBias, $"{mlp} = {inter}", hidden),
                    UpProj = L("mlp.up_proj", "mlp.input", h, inter, config.MlpBias, $"{mlp} = {inter}", hidden),
                    DownProj = L("mlp.down_proj", "mlp.down_proj.input", inter, h, config.MlpBias, hidden, $"{mlp} = {inter}"),
                },
                RopePairs = ReadRopePairs(reader, config, i),
            };
            foreach (var l in layer.Linears) Register(l);
            _layers[i] = layer;
        }
    }

    /// <summary>The name of layer <paramref name="layer"/>'s kept-rotary-pairs tensor (present only in pruned checkpoints).</summary>
    public static string RopePairsName(int layer) => $"model.layers.{layer}.self_attn.rope_pairs";

    /// <summary>
    /// Layer <paramref name="layer"/>'s kept rotary pairs (see the class summary), validated: int32 [NKV, d_qk/2], every
    /// row distinct frequency indices in [0, D/2). Null when the tensor is absent and d_qk = D (the unpruned layer).
    /// A few hundred integers, so they are read now and kept, also when weights are streamed.
    /// </summary>
    private static int[]? ReadRopePairs(CheckpointReader reader, LlamaConfig c, int layer)
    {
        string name = RopePairsName(layer);
        int dqk = c.QkHeadDimOf(layer), kept = dqk / 2, half = c.HeadDim / 2, kvHeads = c.NumKeyValueHeads;
        string expected = $"int32 [num_key_value_heads, {c.QkField(layer)} / 2] = [{kvHeads}, {kept}]: for each key/value head the original "
            + $"frequency index in [0, head_dim / 2 = {half}) of each kept rotary pair, in stored order";
        if (!reader.Contains(name))
        {
            if (dqk == c.HeadDim) return null;
            throw new CheckpointFormatException(reader.Directory,
                $"missing; config.json's {c.QkField(layer)} = {dqk} is below head_dim = {c.HeadDim}, so the checkpoint must say which rotary pairs were kept ({expected})", name);
        }
        var shape = reader.GetInfo(name).Shape;
        if (shape.Length != 2 || shape[0] != kvHeads || shape[1] != kept)
            throw new CheckpointFormatException(reader.Directory, $"has shape [{string.Join(", ", shape)}]; expected {expected}", name, "shape");
        var pairs = reader.ReadInt32(name);
        var seen = new bool[half];
        for (int g = 0; g < kvHeads; g++)
        {
            Array.Clear(seen);
            for (int j = 0; j < kept; j++)
            {
                int i = pairs[g * kept + j];
                if ((uint)i >= (uint)half)
                    throw new CheckpointFormatException(reader.Directory, $"row {g} (key/value head {g}) entry {j} is {i}, outside [0, {half}); expected {expected}", name);
                if (seen[i])
                    throw new CheckpointFormatException(reader.Directory, $"row {g} (key/value head {g}) keeps frequency index {i} twice; a pair can be kept once", name);
                seen[i] = true;
            }
        }
        return pairs;
    }

    public override long ParameterCount
    {
        get
        {
            long h = Config.HiddenSize, v = Config.VocabSize;
            long embeddings = v * h * (Config.TieWordEmbeddings ? 1 : 2);
            long norms = (2L * Config.NumHiddenLayers + 1) * h;
            return embeddings + norms + LinearParameterCount;
        }
    }

    public override void LoadAll()
    {
        EmbedTokens();
        _norm ??= Weights.Vector(Reader, "model.norm.weight", Config.HiddenSize);
        OutputEmbedding();
        foreach (var layer in _layers) layer.Load(Reader, Config.HiddenSize);
    }

    private Tensor<float> EmbedTokens() => _embedTokens ??= Weights.Matrix(Reader, "model.embed_tokens.weight", Config.VocabSize, Config.HiddenSize);

    protected override Tensor<float> OutputEmbedding()
        => Config.TieWordEmbeddings ? EmbedTokens() : _lmHead ??= Weights.Matrix(Reader, "lm_head.weight", Config.VocabSize, Config.HiddenSize);

    protected override (int Key, int Value) KvWidths(int layer)
        => (Config.NumKeyValueHeads * _layers[layer].Dims.QkHeadDim, Config.NumKeyValueHeads * _layers[layer].Dims.VHeadDim);

    protected override IDisposable CreateDecodeWorkspace(int batch, int maxLength)
    {
        _rotary.Tables(maxLength); // grown once here rather than during decoding
        return new LlamaLayerBuffers(Config, _widest, batch, Config.KeyValueGroups * maxLength);
    }

    protected override void EmbedAt(ReadOnlySpan<int> tokens, int batch, int seqLen, int start, Tensor<float> hidden)
    {
        // RoPE carries the position, inside attention; the embedding is the token's row alone.
        var table = EmbedTokens();
        for (int r = 0; r < tokens.Length; r++) table.Row(tokens[r]).CopyTo(hidden.Row(r));
    }

    public override void ForwardLayer(int layerIndex, Tensor<float> hidden, int batch, int seqLen)
    {
        using var buffers = new LlamaLayerBuffers(Config, _layers[layerIndex].Dims, batch * seqLen, seqLen * seqLen);
        RunLayer(layerIndex, hidden, batch, seqLen, buffers, cache: null);
    }

    protected override void ForwardLayerCached(int layerIndex, Tensor<float> hidden, int batch, int seqLen, KvCache cache)
    {
        if (seqLen == 1 && cache.Length > 0)
        {
            RunLayer(layerIndex, hidden, batch, seqLen, (LlamaLayerBuffers)cache.Workspace, cache);
            return;
        }
        using var buffers = new LlamaLayerBuffers(Config, _layers[layerIndex].Dims, batch * seqLen, seqLen * seqLen);
        RunLayer(layerIndex, hidden, batch, seqLen, buffers, cache);
    }

    /// <summary>
    /// One decoder layer on hidden [B·T, H] in place. Tokens are at positions start … start + T − 1 with
    /// start = cache.Length (0 without a cache). With a non-empty cache (T = 1) the token attends over the
    /// cached keys; otherwise attention is causal within the chunk and, with a cache, k and v are stored.
    /// </summary>
    private void RunLayer(int layerIndex, Tensor<float> hidden, int batch, int seqLen, LlamaLayerBuffers buf, KvCache? cache)
    {
        var layer = _layers[layerIndex];
        layer.Load(Reader, Config.HiddenSize);
        var c = Config;
        int n = batch * seqLen, d = c.HeadDim, dqk = layer.Dims.QkHeadDim, dv = layer.Dims.VHeadDim, inter = layer.Dims.Intermediate;
        int heads = c.NumAttentionHeads, kvHeads = c.NumKeyValueHeads;
        int start = cache?.Length ?? 0;
        var normed = buf.Normed.Span[..(n * c.HiddenSize)];
        // Exact extents: the decode workspace is sized by the widest layer (for an unpruned model these are the whole buffers).
        var q = buf.Q.Span[..(n * heads * dqk)];
        var k = buf.K.Span[..(n * kvHeads * dqk)];
        var v = buf.V.Span[..(n * kvHeads * dv)];
        var attn = buf.Attn.Span[..(n * heads * dv)];
        var gate = buf.Gate.Span[..(n * inter)];
        var up = buf.Up.Span[..(n * inter)];
        var delta = buf.Delta.Span;

        var positions = buf.Positions;
        for (int r = 0; r < n; r++) positions[r] = start + r % seqLen;
        var (cos, sin) = _rotary.Tables(start + seqLen);

        // Attention block: h += o_proj(attn(rope(q), rope(k), v)) on RMSNorm(h).
        Backend.RmsNorm(hidden.Span, layer.InputLayernorm!.Span, (float)c.RmsNormEps, normed, n);
        layer.SelfAttn.QProj.Forward(Backend, normed, n, q, Observer);
        layer.SelfAttn.KProj.Forward(Backend, normed, n, k, Observer);
        layer.SelfAttn.VProj.Forward(Backend, normed, n, v, Observer);
        if (layer.RopePairs is { } pairs)
        {
            // Kept pairs turn with their original frequencies: the tables are the unpruned head's [P, D/2].
            Backend.ApplyRopeKeptPairs(q, n, heads, dqk, cos, sin, d / 2, pairs, kvHeads, positions);
            Backend.ApplyRopeKeptPairs(k, n, kvHeads, dqk, cos, sin, d / 2, pairs, kvHeads, positions);
        }
        else
        {
            Backend.ApplyRope(q, n, heads, d, cos, sin, positions);
            Backend.ApplyRope(k, n, kvHeads, d, cos, sin, positions);
        }
        int? window = c.SlidingWindow is int w && layerIndex >= c.SlidingWindowFromLayer ? w : null;
        // 1/√D of the ORIGINAL head, also when the layer keeps d_qk < D dimensions: MoDeGPT keeps the bilinear form
        // q·k restricted to the kept dimensions (the dropped ones are the ones whose contribution it discards), so the
        // logits must be the same sums the unpruned head formed, scaled as it scaled them; 1/√d_qk would sharpen every
        // pruned layer's softmax by √(D/d_qk).
        float scale = (float)(1.0 / Math.Sqrt(d));
        cache?.Write(layerIndex, k, v, seqLen);
        if (cache is not null && start > 0)
            CausalAttention.Decode(Backend, q, cache.Keys(layerIndex), cache.Values(layerIndex), attn, batch, start + 1, cache.MaxLength,
                heads, kvHeads, dqk, dv, scale, window, buf.Scores.Span);
        else
            CausalAttention.Forward(Backend, q, k, v, attn, batch, seqLen, heads, kvHeads, dqk, dv, scale, window, buf.Scores.Span);
        layer.SelfAttn.OProj.Forward(Backend, attn, n, delta, Observer);
        Backend.Add(hidden.Span, delta, hidden.Span);

        // MLP block: h += down_proj(silu(gate_proj(x)) · up_proj(x)), x = RMSNorm(h).
        Backend.RmsNorm(hidden.Span, layer.PostAttentionLayernorm!.Span, (float)c.RmsNormEps, normed, n);
        layer.Mlp.GateProj.Forward(Backend, normed, n, gate, Observer);
        layer.Mlp.UpProj.Forward(Backend, normed, n, up, Observer);
        Backend.SiluMul(gate, up, gate, n);
        layer.Mlp.DownProj.Forward(Backend, gate, n, delta, Observer);
        Backend.Add(hidden.Span, delta, hidden.Span);

        if (StreamWeights) layer.Unload();
    }

    public override Tensor<float> FinalNorm(Tensor<float> hidden)
    {
        _norm ??= Weights.Vector(Reader, "model.norm.weight", Config.HiddenSize);
        Backend.RmsNorm(hidden.Span, _norm.Span, (float)Config.RmsNormEps, hidden.Span, hidden.Rows);
        return hidden;
    }

    public override void Dispose()
    {
        foreach (var layer in _layers) layer.Unload();
        _embedTokens?.Dispose(); _norm?.Dispose(); _lmHead?.Dispose();
        base.Dispose();
    }
}
