using SvdLlm.Models.Checkpoints;
using SvdLlm.Numerics;
using SvdLlm.Numerics.Backends;

namespace SvdLlm.Models.Architectures;

// OPT in the reading order of Hugging Face's modeling_opt.py. Shapes: N=B·T rows, H=hidden_size,
// E=word_embed_proj_dim, F=ffn_dim, NH=heads, D=H/NH, V=vocab_size.

internal sealed class OptLayerNorm(string prefix)
{
    public string Prefix { get; } = prefix;
    public Tensor<float>? Weight { get; private set; }
    public Tensor<float>? Bias { get; private set; }

    public void Load(CheckpointReader reader, int width)
    {
        Weight ??= Weights.Vector(reader, Prefix + ".weight", width);
        Bias ??= Weights.Vector(reader, Prefix + ".bias", width);
    }

    public void Unload()
    {
        Weight?.Dispose(); Bias?.Dispose();
        Weight = Bias = null;
    }

    public void Forward(IComputeBackend backend, ReadOnlySpan<float> x, Span<float> y, int rows)
        => backend.LayerNorm(x, Weight!.Span, Bias!.Span, OptConfig.LayerNormEps, y, rows);
}

internal sealed class OptDecoderLayer
{
    public required OptLayerNorm SelfAttnLayerNorm { get; init; }
    public required Linear QProj { get; init; }
    public required Linear KProj { get; init; }
    public required Linear VProj { get; init; }
    public required Linear OutProj { get; init; }
    public required OptLayerNorm FinalLayerNorm { get; init; }
    public required Linear Fc1 { get; init; }
    public required Linear Fc2 { get; init; }

    public IEnumerable<Linear> Linears => [QProj, KProj, VProj, OutProj, Fc1, Fc2];

    public void Load(CheckpointReader reader, int hidden)
    {
        SelfAttnLayerNorm.Load(reader, hidden);
        FinalLayerNorm.Load(reader, hidden);
        foreach (var l in Linears) l.Load(reader);
    }

    public void Unload()
    {
        SelfAttnLayerNorm.Unload();
        FinalLayerNorm.Unload();
        foreach (var l in Linears) l.Unload();
    }
}

/// <summary>Scratch of one OPT decoder layer over N rows (see <see cref="LlamaLayerBuffers"/>).</summary>
internal sealed class OptLayerBuffers : IDisposable
{
    public OptLayerBuffers(OptConfig c, int rows, int scores)
    {
        X = Tensor<float>.Uninitialized(rows, c.HiddenSize);
        Q = Tensor<float>.Uninitialized(rows, c.HiddenSize);
        K = Tensor<float>.Uninitialized(rows, c.HiddenSize);
        V = Tensor<float>.Uninitialized(rows, c.HiddenSize);
        Attn = Tensor<float>.Uninitialized(rows, c.HiddenSize);
        Scores = Tensor<float>.Uninitialized(scores);
        Delta = Tensor<float>.Uninitialized(rows, c.HiddenSize);
        Ffn = Tensor<float>.Uninitialized(rows, c.FfnDim);
    }

    public Tensor<float> X { get; }       // [N, H] block input
    public Tensor<float> Q { get; }       // [N, NH·D]
    public Tensor<float> K { get; }
    public Tensor<float> V { get; }
    public Tensor<float> Attn { get; }
    public Tensor<float> Scores { get; }  // [T, T] for a chunk; [max length] for decoding
    public Tensor<float> Delta { get; }   // [N, H] sublayer output
    public Tensor<float> Ffn { get; }     // [N, F]

    public void Dispose()
    {
        foreach (var t in new[] { X, Q, K, V, Attn, Scores, Delta, Ffn }) t.Dispose();
    }
}

/// <summary>OPTForCausalLM: learned positions (offset 2), LayerNorm before (or after) each block, ReLU MLP, biases, tied output embedding.</summary>
public sealed class OptForCausalLM : CausalLanguageModel
{
    private readonly string _prefix;
    private readonly OptDecoderLayer[] _layers;
    private readonly OptLayerNorm? _finalLayerNorm;
    private readonly Linear? _projectIn, _projectOut;
    private Tensor<float>? _embedTokens, _embedPositions;

    public OptConfig Config { get; }

    public override string Architecture => OptConfig.ArchitectureName;
    public override int VocabSize => Config.VocabSize;
    public override int HiddenSize => Config.HiddenSize;
    public override int NumLayers => Config.NumHiddenLayers;
    public override int MaxPositionEmbeddings => Config.MaxPositionEmbeddings;
    public override int? BosTokenId => Config.BosTokenId;
    protected override int OutputWidth => Config.WordEmbedProjDim;

    internal OptForCausalLM(string directory, CheckpointReader reader, IComputeBackend backend, OptConfig config)
        : base(directory, reader, backend)
    {
        Config = config;
        // HF checkpoints name tensors "model.decoder.…"; some older exports drop the "model." prefix.
        _prefix = reader.Contains("model.decoder.embed_tokens.weight") || !reader.Contains("decoder.embed_tokens.weight") ? "model.decoder." : "decoder.";
        int h = config.HiddenSize, e = config.WordEmbedProjDim, f = config.FfnDim;
        reader.RequireShape(_prefix + "embed_tokens.weight", config.VocabSize, e);
        reader.RequireShape(_prefix + "embed_positions.weight", config.MaxPositionEmbeddings + OptConfig.PositionOffset, h);
        if (e != h)
        {
            _projectIn = Linear.FromCheckpoint(reader, _prefix + "project_in", _prefix + "project_in.input", e, h, bias: false);
            _projectOut = Linear.FromCheckpoint(reader, _prefix + "project_out", _prefix + "project_out.input", h, e, bias: false);
        }
        if (config.DoLayerNormBefore && !config.RemoveFinalLayerNorm)
        {
            _finalLayerNorm = new OptLayerNorm(_prefix + "final_layer_norm");
            reader.RequireShape(_finalLayerNorm.Prefix + ".weight", h);
        }

        _layers = new OptDecoderLayer[config.NumHiddenLayers];
        for (int i = 0; i < _layers.Length; i++)
        {
            string p = $"{_prefix}layers.{i}.";
            bool bias = config.EnableBias;
            Linear L(string name, string inputKey, int inF, int outF) => Linear.FromCheckpoint(reader, p + name, p + inputKey, inF, outF, bias);
            var layer = new OptDecoderLayer
            {
                SelfAttnLayerNorm = new OptLayerNorm(p + "self_attn_layer_norm"),
                QProj = L("self_attn.q_proj", "self_attn.input", h, h),
                KProj = L("self_attn.k_proj", "self_attn.input", h, h),
                VProj = L("self_attn.v_proj", "self_attn.input", h, h),
                OutProj = L("self_attn.out_proj", "self_attn.out_proj.input", h, h),
                FinalLayerNorm = new OptLayerNorm(p + "final_layer_norm"),
                Fc1 = L("fc1", "fc1.input", h, f),
                Fc2 = L("fc2", "fc2.input", f, h),
            };
            reader.RequireShape(layer.SelfAttnLayerNorm.Prefix + ".weight", h);
            reader.RequireShape(layer.SelfAttnLayerNorm.Prefix + ".bias", h);
            reader.RequireShape(layer.FinalLayerNorm.Prefix + ".weight", h);
            reader.RequireShape(layer.FinalLayerNorm.Prefix + ".bias", h);
            foreach (var l in layer.Linears) Register(l);
            _layers[i] = layer;
        }
    }

    public override long ParameterCount
    {
        get
        {
            long h = Config.HiddenSize;
            long embeddings = (long)Config.VocabSize * Config.WordEmbedProjDim + (long)(Config.MaxPositionEmbeddings + OptConfig.PositionOffset) * h;
            long norms = 4L * h * Config.NumHiddenLayers + (_finalLayerNorm is null ? 0 : 2 * h);
            long projections = (_projectIn?.ParameterCount ?? 0) + (_projectOut?.ParameterCount ?? 0);
            return embeddings + norms + projections + LinearParameterCount;
        }
    }

    public override void LoadAll()
    {
        EmbedTokens();
        EmbedPositions();
        _projectIn?.Load(Reader);
        _projectOut?.Load(Reader);
        _finalLayerNorm?.Load(Reader, Config.HiddenSize);
        foreach (var layer in _layers) layer.Load(Reader, Config.HiddenSize);
    }

    private Tensor<float> EmbedTokens() => _embedTokens ??= Weights.Matrix(Reader, _prefix + "embed_tokens.weight", Config.VocabSize, Config.WordEmbedProjDim);

    private Tensor<float> EmbedPositions()
        => _embedPositions ??= Weights.Matrix(Reader, _prefix + "embed_positions.weight", Config.MaxPositionEmbeddings + OptConfig.PositionOffset, Config.HiddenSize);

    protected override Tensor<float> OutputEmbedding() => EmbedTokens();

    protected override (int Key, int Value) KvWidths(int layer) => (Config.NumAttentionHeads * Config.HeadDim, Config.NumAttentionHeads * Config.HeadDim);

    protected override int? MaxPositions => Config.MaxPositionEmbeddings;

    protected override IDisposable CreateDecodeWorkspace(int batch, int maxLength) => new OptLayerBuffers(Config, batch, maxLength);

    protected override void EmbedAt(ReadOnlySpan<int> tokens, int batch, int seqLen, int start, Tensor<float> hidden)
    {
        if (start + seqLen > Config.MaxPositionEmbeddings)
            throw new ArgumentException($"positions up to {start + seqLen} exceed OPT's max_position_embeddings {Config.MaxPositionEmbeddings} (learned positions cannot extrapolate)");
        int n = tokens.Length, e = Config.WordEmbedProjDim;
        var table = EmbedTokens();
        if (_projectIn is null)
        {
            for (int r = 0; r < n; r++) table.Row(tokens[r]).CopyTo(hidden.Row(r));
        }
        else
        {
            using var words = Tensor<float>.Uninitialized(n, e);
            for (int r = 0; r < n; r++) table.Row(tokens[r]).CopyTo(words.Row(r));
            _projectIn.Load(Reader);
            _projectIn.Forward(Backend, words.Span, n, hidden.Span, Observer);
        }
        // Without padding, HF's position ids are cumsum(mask) − 1 (+ past length when decoding) = the
        // absolute position t, looked up at row t + 2.
        var positions = EmbedPositions();
        for (int r = 0; r < n; r++)
            Backend.Add(hidden.Row(r), positions.Row(start + r % seqLen + OptConfig.PositionOffset), hidden.Row(r));
    }

    public override void ForwardLayer(int layerIndex, Tensor<float> hidden, int batch, int seqLen)
    {
        using var buffers = new OptLayerBuffers(Config, batch * seqLen, seqLen * seqLen);
        RunLayer(layerIndex, hidden, batch, seqLen, buffers, cache: null);
    }

    protected override void ForwardLayerCached(int layerIndex, Tensor<float> hidden, int batch, int seqLen, KvCache cache)
    {
        if (seqLen == 1 && cache.Length > 0)
        {
            RunLayer(layerIndex, hidden, batch, seqLen, (OptLayerBuffers)cache.Workspace, cache);
            return;
        }
        using var buffers = new OptLayerBuffers(Config, batch * seqLen, seqLen * seqLen);
        RunLayer(layerIndex, hidden, batch, seqLen, buffers, cache);
    }

    /// <summary>One decoder layer on hidden [B·T, H] in place; the cache rules are those of the LLaMA family's.</summary>
    private void RunLayer(int layerIndex, Tensor<float> hidden, int batch, int seqLen, OptLayerBuffers buf, KvCache? cache)
    {
        var layer = _layers[layerIndex];
        layer.Load(Reader, Config.HiddenSize);
        var c = Config;
        int n = batch * seqLen, d = c.HeadDim;
        int start = cache?.Length ?? 0;
        bool pre = c.DoLayerNormBefore;
        var x = buf.X.Span;
        var delta = buf.Delta.Span;

        // Attention block. HF scales q by D^-1/2 after its bias; scaling the scores is the same product.
        if (pre) layer.SelfAttnLayerNorm.Forward(Backend, hidden.Span, x, n);
        else hidden.Span.CopyTo(x);
        layer.QProj.Forward(Backend, x, n, buf.Q.Span, Observer);
        layer.KProj.Forward(Backend, x, n, buf.K.Span, Observer);
        layer.VProj.Forward(Backend, x, n, buf.V.Span, Observer);
        float scale = (float)(1.0 / Math.Sqrt(d));
        cache?.Write(layerIndex, buf.K.Span, buf.V.Span, seqLen);
        if (cache is not null && start > 0)
            CausalAttention.Decode(Backend, buf.Q.Span, cache.Keys(layerIndex), cache.Values(layerIndex), buf.Attn.Span, batch, start + 1, cache.MaxLength,
                c.NumAttentionHeads, c.NumAttentionHeads, d, d, scale, null, buf.Scores.Span);
        else
            CausalAttention.Forward(Backend, buf.Q.Span, buf.K.Span, buf.V.Span, buf.Attn.Span, batch, seqLen, c.NumAttentionHeads, c.NumAttentionHeads, d,
                scale, null, buf.Scores.Span);
        layer.OutProj.Forward(Backend, buf.Attn.Span, n, delta, Observer);
        Backend.Add(hidden.Span, delta, hidden.Span);
        if (!pre) layer.SelfAttnLayerNorm.Forward(Backend, hidden.Span, hidden.Span, n);

        // MLP block: fc2(relu(fc1(x))).
        if (pre) layer.FinalLayerNorm.Forward(Backend, hidden.Span, x, n);
        else hidden.Span.CopyTo(x);
        layer.Fc1.Forward(Backend, x, n, buf.Ffn.Span, Observer);
        Backend.Relu(buf.Ffn.Span, buf.Ffn.Span);
        layer.Fc2.Forward(Backend, buf.Ffn.Span, n, delta, Observer);
        Backend.Add(hidden.Span, delta, hidden.Span);
        if (!pre) layer.FinalLayerNorm.Forward(Backend, hidden.Span, hidden.Span, n);

        if (StreamWeights) layer.Unload();
    }

    public override Tensor<float> FinalNorm(Tensor<float> hidden)
    {
        if (_finalLayerNorm is not null)
        {
            _finalLayerNorm.Load(Reader, Config.HiddenSize);
            _finalLayerNorm.Forward(Backend, hidden.Span, hidden.Span, hidden.Rows);
        }
        if (_projectOut is null) return hidden;
        _projectOut.Load(Reader);
        var projected = Tensor<float>.Uninitialized(hidden.Rows, Config.WordEmbedProjDim);
        _projectOut.Forward(Backend, hidden.Span, hidden.Rows, projected.Span, Observer);
        return projected;
    }

    public override void Dispose()
    {
        foreach (var layer in _layers) layer.Unload();
        _finalLayerNorm?.Unload();
        _projectIn?.Dispose(); _projectOut?.Dispose();
        _embedTokens?.Dispose(); _embedPositions?.Dispose();
        base.Dispose();
    }
}
