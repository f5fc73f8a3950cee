using SvdLlm.Models.Architectures;
using SvdLlm.Models.Checkpoints;
using SvdLlm.Numerics;
using SvdLlm.Numerics.Backends;
using K = SvdLlm.Numerics.Kernels.Kernels;

namespace SvdLlm.Models.Training;

// A LLaMA-architecture model for training, written the way llm.c's train_gpt2.c is: parameters in
// one arena, activations in explicit per-layer buffers, each layer's forward and backward side by
// side, no general autograd. Forward is numerically the inference forward of LlamaForCausalLM
// (same kernels in the same order), which a test checks.
// Shapes: B=batch, T=seq, N=B·T, C=hidden, NH=heads, NKV=kv heads, D=head_dim, I=intermediate, V=vocab.

/// <summary>The activations one decoder layer keeps for its backward pass.</summary>
internal sealed class LlamaLayerActivations : IDisposable
{
    public required Tensor<float> Input { get; init; }   // [N, C] residual stream entering the layer
    public required Tensor<float> Ln1 { get; init; }     // [N, C]
    public required Tensor<float> Rstd1 { get; init; }   // [N]
    public required Tensor<float> Q { get; init; }       // [N, NH·D] after RoPE
    public required Tensor<float> K { get; init; }       // [N, NKV·D] after RoPE
    public required Tensor<float> V { get; init; }       // [N, NKV·D]
    public required Tensor<float> P { get; init; }       // [B·NH, T, T] attention probabilities
    public required Tensor<float> Atty { get; init; }    // [N, NH·D] attention output, o_proj input
    public required Tensor<float> Res2 { get; init; }    // [N, C] residual after attention
    public required Tensor<float> Ln2 { get; init; }     // [N, C]
    public required Tensor<float> Rstd2 { get; init; }   // [N]
    public required Tensor<float> Gate { get; init; }    // [N, I] gate_proj output (pre-activation)
    public required Tensor<float> Up { get; init; }      // [N, I]
    public required Tensor<float> Act { get; init; }     // [N, I] silu(gate)·up, down_proj input

    public void Dispose()
    {
        foreach (var t in new[] { Input, Ln1, Rstd1, Q, K, V, P, Atty, Res2, Ln2, Rstd2, Gate, Up, Act }) t.Dispose();
    }
}

internal sealed class LlamaTrainingLayer
{
    public required ParameterArena.Entry InputLayernorm { get; init; }
    public required ParameterArena.Entry PostAttentionLayernorm { get; init; }
    public required TrainableLinear QProj { get; init; }
    public required TrainableLinear KProj { get; init; }
    public required TrainableLinear VProj { get; init; }
    public required TrainableLinear OProj { get; init; }
    public required TrainableLinear GateProj { get; init; }
    public required TrainableLinear UpProj { get; init; }
    public required TrainableLinear DownProj { get; init; }

    public IEnumerable<TrainableLinear> Linears => [QProj, KProj, VProj, OProj, GateProj, UpProj, DownProj];
}

/// <summary>LlamaForCausalLM with a backward pass: mean next-token cross-entropy and its gradient w.r.t. every parameter.</summary>
public sealed class LlamaTrainingModel : IDisposable
{
    private readonly IComputeBackend _be;
    private readonly LlamaRotaryEmbedding _rotary;
    private readonly LlamaTrainingLayer[] _layers;
    private readonly ParameterArena.Entry _embed, _norm;
    private readonly ParameterArena.Entry? _lmHead;

    // Activation state of the last Forward.
    private int _batch, _seqLen;
    private LlamaLayerActivations[] _acts = [];
    private Tensor<float>? _final, _lnf, _rstdf, _dlogits; // [N, C], [N, C], [N], [N, V]
    private int[] _inputs = [], _positions = [];
    private bool _haveForward;

    public LlamaConfig Config { get; }
    public ParameterArena Parameters { get; }
    /// <summary>
    /// The gradient of every parameter, same layout as the arena. Allocated on first use: a model that only trains LoRA
    /// adapters (<see cref="FreezeWeights"/>) never needs it, which saves a float32 copy of the whole model.
    /// </summary>
    public Tensor<float> Gradients => _gradients ??= Parameters.NewBlock();

    private Tensor<float>? _gradients;

    /// <summary>Seen by every linear's backward (Fisher statistics).</summary>
    public IGradientObserver? GradientObserver { get; set; }

    /// <summary>
    /// When set, <see cref="Backward"/> computes only what flows to the LoRA adapters: no gradient of the model's own
    /// weights (linears, embedding, lm_head, norms) is accumulated, and <see cref="Gradients"/> is not touched.
    /// </summary>
    public bool FreezeWeights { get; set; }

    /// <summary>
    /// Applied to every decoder linear's output (before RoPE for q/k, before the residual add for o/down) and, in the
    /// backward, to its output gradient before the linear's own backward: Dobi-SVD's activation truncation.
    /// </summary>
    public IActivationTransform? ActivationTransform { get; set; }

    /// <summary>The LoRA adapters' own arena (parameters) while adapters are attached, and its gradient block.</summary>
    public ParameterArena? Adapters { get; private set; }
    public Tensor<float>? AdapterGradients { get; private set; }

    /// <summary>
    /// Attaches a LoRA adapter of rank <paramref name="rank"/> (at most the factor's smaller side) to the U or the V factor
    /// of every low-rank linear, in their own arena, initialised from <paramref name="seed"/> in layer order (A uniform,
    /// B = 0, so the model's function is unchanged until a step is taken). Returns the adapter arena.
    /// </summary>
    public ParameterArena AttachLora(LoraTarget target, int rank, float alpha, int seed)
    {
        if (Adapters is not null) throw new InvalidOperationException("LoRA adapters are already attached; merge them first");
        var lowRank = _layers.SelectMany(l => l.Linears).Where(l => l.Rank is not null).ToList();
        if (lowRank.Count == 0) throw new InvalidOperationException("the model has no low-rank linear to adapt");
        var arena = new ParameterArena();
        var adapters = lowRank.Select(l => l.DeclareAdapter(arena, target, rank, alpha)).ToList();
        arena.Allocate();
        var grads = arena.NewBlock();
        var rng = new Random(seed);
        foreach (var a in adapters) a.Initialize(arena.Data, rng);
        foreach (var l in lowRank) l.BindAdapter(arena.Data, grads);
        (Adapters, AdapterGradients) = (arena, grads);
        return arena;
    }

    /// <summary>Merges every attached adapter into its factor (PEFT's merge_and_unload) and frees the adapter arena.</summary>
    public void MergeLora()
    {
        if (Adapters is null) return;
        foreach (var l in _layers.SelectMany(l => l.Linears)) l.MergeAdapter(Parameters.Data);
        Adapters.Dispose();
        AdapterGradients!.Dispose();
        (Adapters, AdapterGradients) = (null, null);
    }

    /// <param name="ranks">optional low-rank linears: HF linear name → rank k (U·V factors instead of W)</param>
    public LlamaTrainingModel(LlamaConfig config, IComputeBackend? backend = null, IReadOnlyDictionary<string, int>? ranks = null)
    {
        if (config.SlidingWindow is not null) throw new NotSupportedException("training with a sliding window is not supported");
        RequireUniformShapes(config);
        Config = config;
        _be = backend ?? CpuBackend.Instance;
        _rotary = new LlamaRotaryEmbedding(config);
        var arena = new ParameterArena();
        int c = config.HiddenSize, qw = config.NumAttentionHeads * config.HeadDim, kvw = config.NumKeyValueHeads * config.HeadDim, inter = config.IntermediateSize;
        _embed = arena.Add("model.embed_tokens.weight", config.VocabSize, c);
        _layers = new LlamaTrainingLayer[config.NumHiddenLayers];
        for (int l = 0; l < _layers.Length; l++)
        {
            string p = $"model.layers.{l}.";
            TrainableLinear L(string name, int inF, int outF, bool bias)
            {
                var lin = new TrainableLinear { Name = p + name, In = inF, Out = outF, HasBias = bias, Rank = ranks is not null && ranks.TryGetValue(p + name, out int k) ? k : null };
                return lin;
            }
            var layer = new LlamaTrainingLayer
            {
                InputLayernorm = arena.Add(p + "input_layernorm.weight", c),
                QProj = L("self_attn.q_proj", c, qw, config.QkvBias),
                KProj = L("self_attn.k_proj", c, kvw, config.QkvBias),
                VProj = L("self_attn.v_proj", c, kvw, config.QkvBias),
                OProj = L("self_attn.o_proj", qw, c, config.OutputBias),
                PostAttentionLayernorm = arena.Add(p + "post_attention_layernorm.weight", c),
                GateProj = L("mlp.gate_proj", c, inter, config.MlpBias),
                UpProj = L("mlp.up_proj", c, inter, config.MlpBias),
                DownProj = L("mlp.down_proj", inter, c, config.MlpBias),
            };
            foreach (var lin in layer.Linears) lin.Declare(arena);
            _layers[l] = layer;
        }
        _norm = arena.Add("model.norm.weight", c);
        if (!config.TieWordEmbeddings) _lmHead = arena.Add("lm_head.weight", config.VocabSize, c);
        arena.Allocate();
        Parameters = arena;
    }

    public long ParameterCount => Parameters.Length;

    /// <summary>
    /// Deterministic initialisation from <paramref name="seed"/>: matrices ~ N(0, std²), with the two
    /// projections that write into the residual stream (o_proj, down_proj) scaled by 1/sqrt(2L) as in
    /// GPT-2, so the residual variance does not grow with depth; norm weights 1; biases 0.
    /// </summary>
    public void InitializeRandom(int seed, float std = 0.02f)
    {
        var rng = new Random(seed);
        float residualStd = std / MathF.Sqrt(2f * Config.NumHiddenLayers);
        foreach (var e in Parameters.Entries)
        {
            var view = Parameters.View(e);
            if (e.Shape.Length == 1)
            {
                view.Fill(e.Name.EndsWith("layernorm.weight") || e.Name.EndsWith("norm.weight") ? 1f : 0f);
                continue;
            }
            float s = e.Name.Contains("o_proj") || e.Name.Contains("o_u_proj") || e.Name.Contains("o_v_proj") || e.Name.Contains("down_") ? residualStd : std;
            for (int i = 0; i < view.Length; i += 2)
            {
                // Box–Muller: two normals per pair of uniforms.
                double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
                double r = Math.Sqrt(-2 * Math.Log(u1));
                view[i] = (float)(r * Math.Cos(2 * Math.PI * u2)) * s;
                if (i + 1 < view.Length) view[i + 1] = (float)(r * Math.Sin(2 * Math.PI * u2)) * s;
            }
        }
    }

    /// <summary>
    /// Refuses a structurally pruned config (MoDeGPT's per-layer widths): every layer here has the uniform shapes, and the
    /// backward pass has no kept-rotary-pairs RoPE, so such a model cannot be trained, fine-tuned, LoRA-recovered or give
    /// gradient statistics. Callers that estimate memory first call this before, so the refusal is the error they see.
    /// </summary>
    /// <exception cref="ModelConfigException">config.json has intermediate_sizes, qk_head_dims or v_head_dims.</exception>
    public static void RequireUniformShapes(LlamaConfig config)
    {
        if (!config.HasPerLayerDims) return;
        var fields = new[] { ("intermediate_sizes", config.IntermediateSizes), ("qk_head_dims", config.QkHeadDims), ("v_head_dims", config.VHeadDims) }
            .Where(f => f.Item2 is not null).Select(f => $"'{f.Item1}'");
        throw new ModelConfigException($"{config.SourcePath ?? "the model's config"}: the model has per-layer reduced dimensions (MoDeGPT: {string.Join(", ", fields)}); "
            + "training supports uniform LLaMA shapes");
    }

    /// <summary>Copies every parameter from a checkpoint (names and shapes must match the arena's).</summary>
    /// <exception cref="ModelConfigException">the checkpoint holds kept rotary pairs (a pruned model), which training cannot apply.</exception>
    public void LoadFrom(CheckpointReader reader)
    {
        if (reader.TensorNames.FirstOrDefault(n => n.EndsWith(".self_attn.rope_pairs", StringComparison.Ordinal)) is { } pairs)
            throw new ModelConfigException($"{reader.Directory}: tensor '{pairs}' says the model has per-layer reduced dimensions (MoDeGPT: kept rotary pairs); "
                + "training supports uniform LLaMA shapes");
        foreach (var e in Parameters.Entries)
        {
            reader.RequireShape(e.Name, e.Shape.Select(x => (long)x).ToArray());
            reader.ReadAsFloat32(e.Name, Parameters.View(e));
        }
    }

    /// <summary>The arena's tensors in checkpoint order, as writer input (float32).</summary>
    public IEnumerable<WriterTensor> ToWriterTensors()
        => Parameters.Entries.Select(e => new WriterTensor(e.Name, SafeTensorsDType.F32, e.Shape.Select(x => (long)x).ToArray(),
            Parameters.View(e).ToArray()));

    public void ZeroGrad()
    {
        _gradients?.Span.Clear();
        AdapterGradients?.Span.Clear();
    }

    /// <summary>
    /// Forward pass over inputs [B·T] with next-token targets [B·T]; returns the mean cross-entropy and
    /// prepares dlogits = gradScale·(softmax − onehot)/N for <see cref="Backward"/>. Throws on a non-finite loss.
    /// </summary>
    public double Forward(ReadOnlySpan<int> inputs, ReadOnlySpan<int> targets, int batch, int seqLen, float gradScale = 1f)
    {
        int n = batch * seqLen;
        if (inputs.Length != n || targets.Length != n) throw new ArgumentException($"inputs ({inputs.Length}) and targets ({targets.Length}) must both hold B·T = {n} tokens");
        EnsureActivations(batch, seqLen);
        _inputs = inputs.ToArray();
        var c = Config;
        int h = c.HiddenSize, d = c.HeadDim, qw = c.NumAttentionHeads * d, kvw = c.NumKeyValueHeads * d, v = c.VocabSize;
        var p = Parameters.Data;
        var (cos, sin) = _rotary.Tables(seqLen);
        float eps = (float)c.RmsNormEps, scale = (float)(1.0 / Math.Sqrt(d));

        // Embedding lookup into layer 0's input.
        var embed = Parameters.View(_embed);
        for (int r = 0; r < n; r++)
        {
            int tok = inputs[r];
            if ((uint)tok >= (uint)v) throw new ArgumentException($"token id {tok} at index {r} is outside the vocabulary [0, {v})");
            embed.Slice(tok * h, h).CopyTo(_acts[0].Input.Row(r));
        }

        using var delta = Tensor<float>.Uninitialized(n, h);
        for (int l = 0; l < _layers.Length; l++)
        {
            var L = _layers[l];
            var a = _acts[l];
            K.RmsNormForward(a.Input.Span, Parameters.View(L.InputLayernorm), eps, a.Ln1.Span, a.Rstd1.Span, n);
            L.QProj.Forward(_be, p, a.Ln1.Span, n, a.Q.Span);
            L.KProj.Forward(_be, p, a.Ln1.Span, n, a.K.Span);
            L.VProj.Forward(_be, p, a.Ln1.Span, n, a.V.Span);
            Transform(L.QProj, a.Q.Span, n, seqLen);
            Transform(L.KProj, a.K.Span, n, seqLen);
            Transform(L.VProj, a.V.Span, n, seqLen);
            _be.ApplyRope(a.Q.Span, n, c.NumAttentionHeads, d, cos, sin, _positions);
            _be.ApplyRope(a.K.Span, n, c.NumKeyValueHeads, d, cos, sin, _positions);
            CausalAttention.Forward(_be, a.Q.Span, a.K.Span, a.V.Span, a.Atty.Span, batch, seqLen, c.NumAttentionHeads, c.NumKeyValueHeads, d, scale, null, a.P.Span);
            L.OProj.Forward(_be, p, a.Atty.Span, n, delta.Span);
            Transform(L.OProj, delta.Span, n, seqLen);
            _be.Add(a.Input.Span, delta.Span, a.Res2.Span);

            K.RmsNormForward(a.Res2.Span, Parameters.View(L.PostAttentionLayernorm), eps, a.Ln2.Span, a.Rstd2.Span, n);
            L.GateProj.Forward(_be, p, a.Ln2.Span, n, a.Gate.Span);
            L.UpProj.Forward(_be, p, a.Ln2.Span, n, a.Up.Span);
            Transform(L.GateProj, a.Gate.Span, n, seqLen);
            Transform(L.UpProj, a.Up.Span, n, seqLen);
            _be.SiluMul(a.Gate.Span, a.Up.Span, a.Act.Span, n);
            L.DownProj.Forward(_be, p, a.Act.Span, n, delta.Span);
            Transform(L.DownProj, delta.Span, n, seqLen);
            var next = l + 1 < _layers.Length ? _acts[l + 1].Input : _final!;
            _be.Add(a.Res2.Span, delta.Span, next.Span);
        }

        K.RmsNormForward(_final!.Span, Parameters.View(_norm), eps, _lnf!.Span, _rstdf!.Span, n);
        var head = Parameters.View(_lmHead ?? _embed);
        _be.Sgemm(Transpose.No, Transpose.Yes, n, v, h, 1f, _lnf.Span, h, head, h, 0f, _dlogits!.Span, v);
        double loss = 0;
        float rowScale = gradScale / n;
        for (int r = 0; r < n; r++)
        {
            double lr = K.CrossEntropyForwardBackward(_dlogits.Row(r), targets[r], rowScale);
            if (!double.IsFinite(lr))
                throw new NonFiniteLogitsException($"non-finite loss {lr} at sequence {r / seqLen}, position {r % seqLen}", r / seqLen, r % seqLen);
            loss += lr;
        }
        _haveForward = true;
        return loss / n;
    }

    /// <summary>Backward of the last <see cref="Forward"/>: accumulates (+=) every parameter gradient into <see cref="Gradients"/>.</summary>
    public void Backward()
    {
        if (!_haveForward) throw new InvalidOperationException("Backward needs a Forward first (and each Forward allows one Backward)");
        _haveForward = false;
        var c = Config;
        int batch = _batch, seqLen = _seqLen, n = batch * seqLen;
        int h = c.HiddenSize, d = c.HeadDim, qw = c.NumAttentionHeads * d, kvw = c.NumKeyValueHeads * d, v = c.VocabSize, inter = c.IntermediateSize;
        var p = Parameters.Data;
        bool weights = !FreezeWeights;
        // Frozen: the norms' weight gradients (the kernel always computes them) go to a scratch vector, not Gradients.
        var g = weights ? Gradients : null;
        var normScratch = weights ? null : new float[h];
        Span<float> NormGradient(ParameterArena.Entry e) => g is null ? normScratch : ParameterArena.View(g, e);
        var (cos, sin) = _rotary.Tables(seqLen);
        float scale = (float)(1.0 / Math.Sqrt(d));

        // lm_head: dlnf [N, C] = dlogits·W ; dW += dlogitsᵀ·lnf
        using var dres = Tensor<float>.Zeros(n, h);    // [N, C] gradient of the residual stream
        using var dln = Tensor<float>.Zeros(n, h);     // [N, C] gradient of a norm output
        var headEntry = _lmHead ?? _embed;
        _be.Sgemm(Transpose.No, Transpose.No, n, h, v, 1f, _dlogits!.Span, v, Parameters.View(headEntry), h, 0f, dln.Span, h);
        if (weights) _be.Sgemm(Transpose.Yes, Transpose.No, v, h, n, 1f, _dlogits.Span, v, _lnf!.Span, h, 1f, ParameterArena.View(g!, headEntry), h);
        K.RmsNormBackward(dln.Span, _final!.Span, Parameters.View(_norm), _rstdf!.Span, dres.Span, NormGradient(_norm), n);

        using var dAct = Tensor<float>.Uninitialized(n, inter);   // [N, I]
        using var dGate = Tensor<float>.Uninitialized(n, inter);  // [N, I]
        using var dUp = Tensor<float>.Uninitialized(n, inter);    // [N, I]
        using var dAtty = Tensor<float>.Uninitialized(n, qw);     // [N, NH·D]
        using var dq = Tensor<float>.Uninitialized(n, qw);        // [N, NH·D]
        using var dk = Tensor<float>.Uninitialized(n, kvw);       // [N, NKV·D]
        using var dv = Tensor<float>.Uninitialized(n, kvw);       // [N, NKV·D]
        using var scratch = Tensor<float>.Uninitialized(seqLen, seqLen);
        // o_proj's and down_proj's output gradient is the residual stream's, which flows on unchanged: a transform works on a copy.
        using var dOut = ActivationTransform is null ? null : Tensor<float>.Uninitialized(n, h);
        var observer = GradientObserver;
        for (int l = _layers.Length - 1; l >= 0; l--)
        {
            var L = _layers[l];
            var a = _acts[l];
            // MLP block: out = res2 + down(silu(gate)·up); dres flows through unchanged, plus the MLP's path.
            dAct.Span.Clear();
            L.DownProj.Backward(_be, p, g, a.Act.Span, TransformGradient(L.DownProj, dres.Span, dOut, n, seqLen), n, dAct.Span, observer, weights);
            dGate.Span.Clear();
            dUp.Span.Clear();
            K.SiluMulBackward(dAct.Span, a.Gate.Span, a.Up.Span, dGate.Span, dUp.Span);
            TransformGradient(L.GateProj, dGate.Span, null, n, seqLen);
            TransformGradient(L.UpProj, dUp.Span, null, n, seqLen);
            dln.Span.Clear();
            L.GateProj.Backward(_be, p, g, a.Ln2.Span, dGate.Span, n, dln.Span, observer, weights);
            L.UpProj.Backward(_be, p, g, a.Ln2.Span, dUp.Span, n, dln.Span, observer, weights);
            K.RmsNormBackward(dln.Span, a.Res2.Span, Parameters.View(L.PostAttentionLayernorm), a.Rstd2.Span, dres.Span,
                NormGradient(L.PostAttentionLayernorm), n);

            // Attention block: res2 = input + o_proj(attn(rope(q), rope(k), v)).
            dAtty.Span.Clear();
            L.OProj.Backward(_be, p, g, a.Atty.Span, TransformGradient(L.OProj, dres.Span, dOut, n, seqLen), n, dAtty.Span, observer, weights);
            dk.Span.Clear();
            dv.Span.Clear();
            CausalAttention.Backward(_be, dAtty.Span, a.Q.Span, a.K.Span, a.V.Span, a.P.Span, dq.Span, dk.Span, dv.Span,
                batch, seqLen, c.NumAttentionHeads, c.NumKeyValueHeads, d, scale, scratch.Span);
            K.ApplyRopeBackward(dq.Span, n, c.NumAttentionHeads, d, cos, sin, _positions);
            K.ApplyRopeBackward(dk.Span, n, c.NumKeyValueHeads, d, cos, sin, _positions);
            TransformGradient(L.QProj, dq.Span, null, n, seqLen);
            TransformGradient(L.KProj, dk.Span, null, n, seqLen);
            TransformGradient(L.VProj, dv.Span, null, n, seqLen);
            dln.Span.Clear();
            L.QProj.Backward(_be, p, g, a.Ln1.Span, dq.Span, n, dln.Span, observer, weights);
            L.KProj.Backward(_be, p, g, a.Ln1.Span, dk.Span, n, dln.Span, observer, weights);
            L.VProj.Backward(_be, p, g, a.Ln1.Span, dv.Span, n, dln.Span, observer, weights);
            K.RmsNormBackward(dln.Span, a.Input.Span, Parameters.View(L.InputLayernorm), a.Rstd1.Span, dres.Span,
                NormGradient(L.InputLayernorm), n);
        }

        // Embedding: scatter-add each position's gradient into its token's row (sequential: deterministic).
        if (!weights) return;
        var dEmbed = ParameterArena.View(g!, _embed);
        for (int r = 0; r < n; r++)
        {
            var row = dEmbed.Slice(_inputs[r] * h, h);
            System.Numerics.Tensors.TensorPrimitives.Add(row, dres.Row(r), row);
        }
    }

    private void Transform(TrainableLinear linear, Span<float> y, int rows, int seqLen)
        => ActivationTransform?.Forward(linear.Name, y[..(rows * linear.Out)], rows, seqLen);

    /// <summary>The linear's output gradient after the transform's backward: in place, or in <paramref name="copy"/> when dy must stay as it is.</summary>
    private ReadOnlySpan<float> TransformGradient(TrainableLinear linear, Span<float> dy, Tensor<float>? copy, int rows, int seqLen)
    {
        if (ActivationTransform is null) return dy;
        var target = dy[..(rows * linear.Out)];
        if (copy is not null)
        {
            target.CopyTo(copy.Span);
            target = copy.Span[..(rows * linear.Out)];
        }
        ActivationTransform.Backward(linear.Name, target, rows, seqLen);
        return target;
    }

    private void EnsureActivations(int batch, int seqLen)
    {
        if (batch == _batch && seqLen == _seqLen && _acts.Length > 0) return;
        DisposeActivations();
        var c = Config;
        int n = batch * seqLen, h = c.HiddenSize, d = c.HeadDim, qw = c.NumAttentionHeads * d, kvw = c.NumKeyValueHeads * d, inter = c.IntermediateSize;
        _acts = new LlamaLayerActivations[_layers.Length];
        for (int l = 0; l < _layers.Length; l++)
        {
            _acts[l] = new LlamaLayerActivations
            {
                Input = Tensor<float>.Zeros(n, h), Ln1 = Tensor<float>.Zeros(n, h), Rstd1 = Tensor<float>.Zeros(n),
                Q = Tensor<float>.Zeros(n, qw), K = Tensor<float>.Zeros(n, kvw), V = Tensor<float>.Zeros(n, kvw),
                P = Tensor<float>.Zeros(batch * c.NumAttentionHeads, seqLen, seqLen), Atty = Tensor<float>.Zeros(n, qw),
                Res2 = Tensor<float>.Zeros(n, h), Ln2 = Tensor<float>.Zeros(n, h), Rstd2 = Tensor<float>.Zeros(n),
                Gate = Tensor<float>.Zeros(n, inter), Up = Tensor<float>.Zeros(n, inter), Act = Tensor<float>.Zeros(n, inter),
            };
        }
        _final = Tensor<float>.Zeros(n, h);
        _lnf = Tensor<float>.Zeros(n, h);
        _rstdf = Tensor<float>.Zeros(n);
        _dlogits = Tensor<float>.Zeros(n, c.VocabSize);
        _positions = new int[n];
        for (int r = 0; r < n; r++) _positions[r] = r % seqLen;
        (_batch, _seqLen) = (batch, seqLen);
    }

    private void DisposeActivations()
    {
        foreach (var a in _acts) a.Dispose();
        _acts = [];
        _final?.Dispose(); _lnf?.Dispose(); _rstdf?.Dispose(); _dlogits?.Dispose();
    }

    public void Dispose()
    {
        Adapters?.Dispose();
        AdapterGradients?.Dispose();
        DisposeActivations();
        foreach (var l in _layers) foreach (var lin in l.Linears) lin.Dispose();
        Parameters.Dispose();
        _gradients?.Dispose();
    }
}
