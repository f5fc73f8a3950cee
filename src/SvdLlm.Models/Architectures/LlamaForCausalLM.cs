using SvdLlm.Models.Checkpoints;
using SvdLlm.Numerics;
using SvdLlm.Numerics.Backends;

namespace SvdLlm.Models.Architectures;

// The LLaMA family (LLaMA 1/2/3, Vicuna, Mistral, Qwen2) in the reading order of Hugging Face's
// modeling_llama.py. Shapes: B=batch, T=seq, N=B·T rows, H=hidden_size, NH=heads, NKV=kv heads,
// D=head_dim, I=intermediate_size, V=vocab_size. Every activation is row-major [N, width].

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
/// Scratch of one decoder layer over N rows. The plain forward makes one per layer call; a
/// <see cref="KvCache"/> keeps one for B rows so that decode steps allocate nothing.
/// </summary>
internal sealed class LlamaLayerBuffers : IDisposable
{
    public LlamaLayerBuffers(LlamaConfig c, int rows, int scores)
    {
        int qw = c.NumAttentionHeads * c.HeadDim, kvw = c.NumKeyValueHeads * c.HeadDim;
        Normed = Tensor<float>.Uninitialized(rows, c.HiddenSize);
        Q = Tensor<float>.Uninitialized(rows, qw);
        K = Tensor<float>.Uninitialized(rows, kvw);
        V = Tensor<float>.Uninitialized(rows, kvw);
        Attn = Tensor<float>.Uninitialized(rows, qw);
        Scores = Tensor<float>.Uninitialized(scores);
        Delta = Tensor<float>.Uninitialized(rows, c.HiddenSize);
        Gate = Tensor<float>.Uninitialized(rows, c.IntermediateSize);
        Up = Tensor<float>.Uninitialized(rows, c.IntermediateSize);
        Positions = new int[rows];
    }

    public Tensor<float> Normed { get; }    // [N, H]
    public Tensor<float> Q { get; }         // [N, NH·D]
    public Tensor<float> K { get; }         // [N, NKV·D]
    public Tensor<float> V { get; }         // [N, NKV·D]
    public Tensor<float> Attn { get; }      // [N, NH·D]
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

/// <summary>LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM.</summary>
public sealed class LlamaForCausalLM : CausalLanguageModel
{
    private readonly LlamaDecoderLayer[] _layers;
    private readonly LlamaRotaryEmbedding _rotary;
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
        int h = config.HiddenSize, qw = config.NumAttentionHeads * config.HeadDim, kvw = config.NumKeyValueHeads * config.HeadDim, inter = config.IntermediateSize;

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
            Linear L(string name, string inputKey, int inF, int outF, bool bias)
                => Linear.FromCheckpoint(reader, p + name, p + inputKey, inF, outF, bias);
            var layer = new LlamaDecoderLayer
            {
                Index = i,
                Prefix = p,
                SelfAttn = new LlamaAttention
                {
                    QProj = L("self_attn.q_proj", "self_attn.input", h, qw, config.QkvBias),
                    KProj = L("self_attn.k_proj", "self_attn.input", h, kvw, config.QkvBias),
                    VProj = L("self_attn.v_proj", "self_attn.input", h, kvw, config.QkvBias),
                    OProj = L("self_attn.o_proj", "self_attn.o_proj.input", qw, h, config.OutputBias),
                },
                Mlp = new LlamaMlp
                {
                    GateProj = L("mlp.gate_proj", "mlp.input", h, inter, config.MlpBias),
                    UpProj = L("mlp.up_proj", "mlp.input", h, inter, config.MlpBias),
                    DownProj = L("mlp.down_proj", "mlp.down_proj.input", inter, h, config.MlpBias),
                },
            };
            foreach (var l in layer.Linears) Register(l);
            _layers[i] = layer;
        }
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

    protected override (int KvHeads, int HeadDim) KvShape => (Config.NumKeyValueHeads, Config.HeadDim);

    protected override IDisposable CreateDecodeWorkspace(int batch, int maxLength)
    {
        _rotary.Tables(maxLength); // grown once here rather than during decoding
        return new LlamaLayerBuffers(Config, batch, Config.KeyValueGroups * maxLength);
    }

    protected override void EmbedAt(ReadOnlySpan<int> tokens, int batch, int seqLen, int start, Tensor<float> hidden)
    {
        // RoPE carries the position, inside attention; the embedding is the token's row alone.
        var table = EmbedTokens();
        for (int r = 0; r < tokens.Length; r++) table.Row(tokens[r]).CopyTo(hidden.Row(r));
    }

    public override void ForwardLayer(int layerIndex, Tensor<float> hidden, int batch, int seqLen)
    {
        using var buffers = new LlamaLayerBuffers(Config, batch * seqLen, seqLen * seqLen);
        RunLayer(layerIndex, hidden, batch, seqLen, buffers, cache: null);
    }

    protected override void ForwardLayerCached(int layerIndex, Tensor<float> hidden, int batch, int seqLen, KvCache cache)
    {
        if (seqLen == 1 && cache.Length > 0)
        {
            RunLayer(layerIndex, hidden, batch, seqLen, (LlamaLayerBuffers)cache.Workspace, cache);
            return;
        }
        using var buffers = new LlamaLayerBuffers(Config, batch * seqLen, seqLen * seqLen);
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
        int n = batch * seqLen, d = c.HeadDim;
        int start = cache?.Length ?? 0;
        var normed = buf.Normed.Span[..(n * c.HiddenSize)];
        var q = buf.Q.Span;
        var k = buf.K.Span;
        var v = buf.V.Span;
        var delta = buf.Delta.Span;

        var positions = buf.Positions;
        for (int r = 0; r < n; r++) positions[r] = start + r % seqLen;
        var (cos, sin) = _rotary.Tables(start + seqLen);

        // Attention block: h += o_proj(attn(rope(q), rope(k), v)) on RMSNorm(h).
        Backend.RmsNorm(hidden.Span, layer.InputLayernorm!.Span, (float)c.RmsNormEps, normed, n);
        layer.SelfAttn.QProj.Forward(Backend, normed, n, q, Observer);
        layer.SelfAttn.KProj.Forward(Backend, normed, n, k, Observer);
        layer.SelfAttn.VProj.Forward(Backend, normed, n, v, Observer);
        Backend.ApplyRope(q, n, c.NumAttentionHeads, d, cos, sin, positions);
        Backend.ApplyRope(k, n, c.NumKeyValueHeads, d, cos, sin, positions);
        int? window = c.SlidingWindow is int w && layerIndex >= c.SlidingWindowFromLayer ? w : null;
        float scale = (float)(1.0 / Math.Sqrt(d));
        cache?.Write(layerIndex, k, v, seqLen);
        if (cache is not null && start > 0)
            CausalAttention.Decode(Backend, q, cache.Keys(layerIndex), cache.Values(layerIndex), buf.Attn.Span, batch, start + 1, cache.MaxLength,
                c.NumAttentionHeads, c.NumKeyValueHeads, d, scale, window, buf.Scores.Span);
        else
            CausalAttention.Forward(Backend, q, k, v, buf.Attn.Span, batch, seqLen, c.NumAttentionHeads, c.NumKeyValueHeads, d,
                scale, window, buf.Scores.Span);
        layer.SelfAttn.OProj.Forward(Backend, buf.Attn.Span, n, delta, Observer);
        Backend.Add(hidden.Span, delta, hidden.Span);

        // MLP block: h += down_proj(silu(gate_proj(x)) · up_proj(x)), x = RMSNorm(h).
        Backend.RmsNorm(hidden.Span, layer.PostAttentionLayernorm!.Span, (float)c.RmsNormEps, normed, n);
        layer.Mlp.GateProj.Forward(Backend, normed, n, buf.Gate.Span, Observer);
        layer.Mlp.UpProj.Forward(Backend, normed, n, buf.Up.Span, Observer);
        Backend.SiluMul(buf.Gate.Span, buf.Up.Span, buf.Gate.Span, n);
        layer.Mlp.DownProj.Forward(Backend, buf.Gate.Span, n, delta, Observer);
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
