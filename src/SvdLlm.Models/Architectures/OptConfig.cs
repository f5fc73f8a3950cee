namespace SvdLlm.Models.Architectures;

/// <summary>Hugging Face OPTConfig fields that change the computation.</summary>
public sealed record OptConfig
{
    public const string ArchitectureName = "OPTForCausalLM";

    /// <summary>OPT's learned positions start at row 2 (fairseq reserved rows 0–1 for padding).</summary>
    public const int PositionOffset = 2;

    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int FfnDim { get; init; }
    public required int NumHiddenLayers { get; init; }
    public required int NumAttentionHeads { get; init; }
    public required int MaxPositionEmbeddings { get; init; }
    public required int WordEmbedProjDim { get; init; }
    public required bool DoLayerNormBefore { get; init; }
    public required bool EnableBias { get; init; }
    public required bool LayerNormElementwiseAffine { get; init; }
    public required bool RemoveFinalLayerNorm { get; init; }
    public int? BosTokenId { get; init; }
    public int? EosTokenId { get; init; }

    public int HeadDim => HiddenSize / NumAttentionHeads;

    /// <summary>OPT LayerNorms use PyTorch's default eps.</summary>
    public const float LayerNormEps = 1e-5f;

    public static OptConfig Parse(ConfigJson c)
    {
        string act = c.String("activation_function") ?? "relu";
        if (act != "relu") throw c.Invalid($"'activation_function' = \"{act}\" is not supported for OPT (expected \"relu\")");
        int hidden = c.PositiveInt("hidden_size");
        int heads = c.PositiveInt("num_attention_heads");
        if (hidden % heads != 0) throw c.Invalid($"'hidden_size' = {hidden} is not a multiple of 'num_attention_heads' = {heads}");
        var config = new OptConfig
        {
            VocabSize = c.PositiveInt("vocab_size"),
            HiddenSize = hidden,
            FfnDim = c.PositiveInt("ffn_dim"),
            NumHiddenLayers = c.PositiveInt("num_hidden_layers"),
            NumAttentionHeads = heads,
            MaxPositionEmbeddings = c.PositiveInt("max_position_embeddings"),
            WordEmbedProjDim = c.PositiveInt("word_embed_proj_dim", hidden),
            DoLayerNormBefore = c.Bool("do_layer_norm_before", true),
            EnableBias = c.Bool("enable_bias", true),
            LayerNormElementwiseAffine = c.Bool("layer_norm_elementwise_affine", true),
            RemoveFinalLayerNorm = c.Bool("_remove_final_layer_norm", false),
            BosTokenId = LlamaConfig.TokenId(c, "bos_token_id"),
            EosTokenId = LlamaConfig.TokenId(c, "eos_token_id"),
        };
        if (!config.LayerNormElementwiseAffine)
            throw c.Invalid("'layer_norm_elementwise_affine' = false is not supported");
        return config;
    }
}
