namespace SvdLlm.Models.Architectures;

/// <summary>
/// The config of the LLaMA family as Hugging Face writes it: LlamaForCausalLM (LLaMA 1/2/3, Vicuna),
/// MistralForCausalLM (adds sliding_window) and Qwen2ForCausalLM (q/k/v biases, optional sliding
/// window on upper layers). One record because the three share their block; the differences are flags.
/// </summary>
public sealed record LlamaConfig
{
    public required string Architecture { get; init; }
    public required string ModelType { get; init; }
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int NumHiddenLayers { get; init; }
    public required int NumAttentionHeads { get; init; }
    public required int NumKeyValueHeads { get; init; }
    public required int HeadDim { get; init; }
    public required int MaxPositionEmbeddings { get; init; }
    public required double RmsNormEps { get; init; }
    public required double RopeTheta { get; init; }
    public RopeScaling? RopeScaling { get; init; }
    public required bool TieWordEmbeddings { get; init; }
    /// <summary>Bias on q/k/v (Qwen2 always; LLaMA when attention_bias is true).</summary>
    public required bool QkvBias { get; init; }
    /// <summary>Bias on o_proj (LLaMA's attention_bias; never for Qwen2).</summary>
    public required bool OutputBias { get; init; }
    public required bool MlpBias { get; init; }
    /// <summary>Mistral/Qwen2 sliding attention window in tokens, or null for full causal attention.</summary>
    public int? SlidingWindow { get; init; }
    /// <summary>Layers with index ≥ this use the sliding window (0 for Mistral: every layer).</summary>
    public int SlidingWindowFromLayer { get; init; }
    public int? BosTokenId { get; init; }
    public int? EosTokenId { get; init; }

    /// <summary>
    /// Per-layer widths of a structurally compressed checkpoint (MoDeGPT, Lin et al., ICLR 2025), which keeps a different
    /// number of MLP channels and of query/key and value/output head dimensions in every layer and stores the result as
    /// smaller dense matrices. Each is an optional config.json list with one entry per layer; absent (null) means every
    /// layer has the uniform width (<see cref="IntermediateSize"/>, <see cref="HeadDim"/>), the ordinary checkpoint.
    /// <list type="bullet">
    /// <item>"intermediate_sizes" [I_l]: gate_proj and up_proj are [I_l, H], down_proj [H, I_l].</item>
    /// <item>"qk_head_dims" [d_qk,l]: even (whole rotary pairs) and ≤ head_dim; q_proj is [NH·d_qk, H], k_proj
    /// [NKV·d_qk, H]. Below head_dim the checkpoint says which pairs each key/value head kept, in the int32 tensor
    /// "model.layers.{l}.self_attn.rope_pairs" [NKV, d_qk/2] (see <see cref="LlamaForCausalLM"/>).</item>
    /// <item>"v_head_dims" [d_v,l]: ≤ head_dim; v_proj is [NKV·d_v, H], o_proj [H, NH·d_v].</item>
    /// </list>
    /// <see cref="HeadDim"/> stays the original head dimension: it sets the rotary frequencies and the softmax scale.
    /// </summary>
    public IReadOnlyList<int>? IntermediateSizes { get; init; }

    /// <inheritdoc cref="IntermediateSizes"/>
    public IReadOnlyList<int>? QkHeadDims { get; init; }

    /// <inheritdoc cref="IntermediateSizes"/>
    public IReadOnlyList<int>? VHeadDims { get; init; }

    /// <summary>The config.json this was parsed from (null when built in code), so later refusals can name it.</summary>
    public string? SourcePath { get; init; }

    /// <summary>True when config.json gives any per-layer width list (<see cref="IntermediateSizes"/>, <see cref="QkHeadDims"/>, <see cref="VHeadDims"/>).</summary>
    public bool HasPerLayerDims => IntermediateSizes is not null || QkHeadDims is not null || VHeadDims is not null;

    public int IntermediateSizeOf(int layer) => IntermediateSizes is { } l ? l[layer] : IntermediateSize;
    public int QkHeadDimOf(int layer) => QkHeadDims is { } l ? l[layer] : HeadDim;
    public int VHeadDimOf(int layer) => VHeadDims is { } l ? l[layer] : HeadDim;

    /// <summary>The config.json field layer <paramref name="layer"/>'s MLP width comes from, for errors ("intermediate_sizes[2]").</summary>
    internal string IntermediateField(int layer) => IntermediateSizes is null ? "intermediate_size" : $"intermediate_sizes[{layer}]";

    /// <summary>The field layer <paramref name="layer"/>'s query/key head width comes from ("head_dim" or "qk_head_dims[l]").</summary>
    internal string QkField(int layer) => QkHeadDims is null ? "head_dim" : $"qk_head_dims[{layer}]";

    /// <summary>The field layer <paramref name="layer"/>'s value head width comes from ("head_dim" or "v_head_dims[l]").</summary>
    internal string VField(int layer) => VHeadDims is null ? "head_dim" : $"v_head_dims[{layer}]";

    public int KeyValueGroups => NumAttentionHeads / NumKeyValueHeads;

    public static readonly string[] Architectures = ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"];

    public static LlamaConfig Parse(ConfigJson c, string architecture)
    {
        string modelType = c.String("model_type") ?? architecture switch
        {
            "MistralForCausalLM" => "mistral",
            "Qwen2ForCausalLM" => "qwen2",
            _ => "llama",
        };
        bool isQwen2 = architecture == "Qwen2ForCausalLM";
        bool isMistral = architecture == "MistralForCausalLM";
        string act = c.String("hidden_act") ?? "silu";
        if (act != "silu") throw c.Invalid($"'hidden_act' = \"{act}\" is not supported for {architecture} (expected \"silu\")");

        int hidden = c.PositiveInt("hidden_size");
        int heads = c.PositiveInt("num_attention_heads");
        int kvHeads = c.PositiveInt("num_key_value_heads", heads);
        int? headDim = c.IntOrNull("head_dim");
        if (headDim is null && hidden % heads != 0)
            throw c.Invalid($"'hidden_size' = {hidden} is not a multiple of 'num_attention_heads' = {heads} (and no 'head_dim' is given)");
        int d = headDim ?? hidden / heads;
        if (d <= 0 || d % 2 != 0) throw c.Invalid($"head dimension {d} must be a positive even number (rotary embedding pairs)");
        if (heads % kvHeads != 0)
            throw c.Invalid($"'num_key_value_heads' = {kvHeads} must divide 'num_attention_heads' = {heads}");

        int layers = c.PositiveInt("num_hidden_layers");
        int? window = null;
        int windowFrom = 0;
        if (isMistral && c.Has("sliding_window"))
        {
            window = c.PositiveInt("sliding_window");
        }
        else if (isQwen2 && c.Bool("use_sliding_window", false) && c.Has("sliding_window"))
        {
            window = c.PositiveInt("sliding_window");
            windowFrom = c.Int("max_window_layers", layers);
        }

        bool attentionBias = c.Bool("attention_bias", false);
        var config = new LlamaConfig
        {
            Architecture = architecture,
            ModelType = modelType,
            VocabSize = c.PositiveInt("vocab_size"),
            HiddenSize = hidden,
            IntermediateSize = c.PositiveInt("intermediate_size"),
            NumHiddenLayers = layers,
            NumAttentionHeads = heads,
            NumKeyValueHeads = kvHeads,
            HeadDim = d,
            MaxPositionEmbeddings = c.PositiveInt("max_position_embeddings", 2048),
            RmsNormEps = c.Double("rms_norm_eps", 1e-6),
            RopeTheta = c.Double("rope_theta", 10000.0),
            RopeScaling = RopeScaling.Parse(c),
            TieWordEmbeddings = c.Bool("tie_word_embeddings", false),
            QkvBias = isQwen2 || attentionBias,
            OutputBias = !isQwen2 && attentionBias,
            MlpBias = c.Bool("mlp_bias", false),
            SlidingWindow = window,
            SlidingWindowFromLayer = windowFrom,
            BosTokenId = TokenId(c, "bos_token_id"),
            EosTokenId = TokenId(c, "eos_token_id"),
            IntermediateSizes = PerLayer(c, "intermediate_sizes", layers, i => i > 0 ? null : "must be positive"),
            QkHeadDims = PerLayer(c, "qk_head_dims", layers,
                q => q > 0 && q <= d && q % 2 == 0 ? null : $"must be positive, even (whole rotary pairs are kept) and at most head_dim = {d}"),
            VHeadDims = PerLayer(c, "v_head_dims", layers, v => v > 0 && v <= d ? null : $"must be positive and at most head_dim = {d}"),
            SourcePath = c.Path,
        };
        if (config.RmsNormEps <= 0) throw c.Invalid($"'rms_norm_eps' = {config.RmsNormEps} must be positive");
        if (config.RopeTheta <= 0) throw c.Invalid($"'rope_theta' = {config.RopeTheta} must be positive");
        return config;
    }

    /// <summary>An optional per-layer list: one entry per layer, each accepted by <paramref name="problem"/> (null = fine).</summary>
    private static int[]? PerLayer(ConfigJson c, string field, int layers, Func<int, string?> problem)
    {
        var list = c.IntListOrNull(field);
        if (list is null) return null;
        if (list.Length != layers)
            throw c.Invalid($"'{field}' has {list.Length} entries; it needs one per decoder layer ('num_hidden_layers' = {layers})");
        for (int l = 0; l < list.Length; l++)
            if (problem(list[l]) is { } why) throw c.Invalid($"'{field}'[{l}] = {list[l]} {why}");
        return list;
    }

    /// <summary>Token ids may be an int or (Llama-3.1 eos) a list; the first is taken.</summary>
    internal static int? TokenId(ConfigJson c, string field)
    {
        if (!c.Root.TryGetProperty(field, out var v)) return null;
        return v.ValueKind switch
        {
            System.Text.Json.JsonValueKind.Number when v.TryGetInt32(out int i) => i,
            System.Text.Json.JsonValueKind.Array when v.GetArrayLength() > 0 && v[0].TryGetInt32(out int j) => j,
            _ => null,
        };
    }
}
