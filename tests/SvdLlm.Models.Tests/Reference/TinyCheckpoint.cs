using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace SvdLlm.Models.Tests.Reference;

// Test-only tiny Hugging Face checkpoints with random weights. Nothing here uses code from src/:
// the safetensors writer and the config.json writer are written separately, so that a bug in the
// production reader or writer cannot cancel against the same bug here.

/// <summary>The architectures (and presets) the reference knows how to build.</summary>
public enum TinyArch
{
    Llama2,
    Llama3,
    Mistral,
    Qwen2,
    Opt,
}

/// <summary>
/// A config.json "rope_scaling" entry. <paramref name="RopeType"/> is "linear" or "llama3";
/// the frequency factors and the original context length are only used (and only written) for "llama3".
/// </summary>
public sealed record TinyRopeScaling(
    string RopeType,
    double Factor,
    double LowFreqFactor = 1.0,
    double HighFreqFactor = 4.0,
    int OriginalMaxPositionEmbeddings = 64);

/// <summary>
/// Every hyper-parameter of a tiny checkpoint. Start from <see cref="Preset"/> and override with
/// <c>with { ... }</c>. Fields that do not apply to an architecture are ignored for it.
/// </summary>
public sealed record TinyConfig
{
    public required TinyArch Arch { get; init; }

    public required int HiddenSize { get; init; }

    public required int NumHeads { get; init; }

    /// <summary>num_key_value_heads (LLaMA family). OPT has no GQA: always equal to heads there.</summary>
    public required int NumKvHeads { get; init; }

    /// <summary>Explicit config.json "head_dim". Null: the key is not written and head_dim = hidden / heads.</summary>
    public int? HeadDim { get; init; }

    /// <summary>intermediate_size (LLaMA family) or ffn_dim (OPT).</summary>
    public required int IntermediateSize { get; init; }

    public required int NumLayers { get; init; }

    public required int VocabSize { get; init; }

    public required int MaxPositionEmbeddings { get; init; }

    public required bool TieWordEmbeddings { get; init; }

    // ---- LLaMA / Mistral / Qwen2 ----
    public double RmsNormEps { get; init; } = 1e-5;

    public double RopeTheta { get; init; } = 10000.0;

    public TinyRopeScaling? RopeScaling { get; init; }

    /// <summary>LLaMA "attention_bias": biases on q, k, v AND o projections.</summary>
    public bool AttentionBias { get; init; }

    /// <summary>LLaMA "mlp_bias": biases on gate, up, down projections.</summary>
    public bool MlpBias { get; init; }

    /// <summary>Mistral: null = full causal attention. Qwen2: only used when <see cref="UseSlidingWindow"/>.</summary>
    public int? SlidingWindow { get; init; }

    /// <summary>Qwen2 "use_sliding_window".</summary>
    public bool UseSlidingWindow { get; init; }

    /// <summary>Qwen2 "max_window_layers": layers with index &gt;= this use the window (when enabled).</summary>
    public int MaxWindowLayers { get; init; }

    // ---- OPT ----
    public int WordEmbedProjDim { get; init; }

    public bool DoLayerNormBefore { get; init; } = true;

    public bool EnableBias { get; init; } = true;

    public bool LayerNormElementwiseAffine { get; init; } = true;

    // ---- special tokens ----
    public int BosTokenId { get; init; } = 1;

    public int EosTokenId { get; init; } = 2;

    public int? PadTokenId { get; init; }

    /// <summary>The per-head dimension actually used.</summary>
    public int EffectiveHeadDim => HeadDim ?? HiddenSize / NumHeads;

    public string ModelType => Arch switch
    {
        TinyArch.Llama2 or TinyArch.Llama3 => "llama",
        TinyArch.Mistral => "mistral",
        TinyArch.Qwen2 => "qwen2",
        TinyArch.Opt => "opt",
        _ => throw new ArgumentOutOfRangeException(nameof(Arch)),
    };

    public string ArchitectureName => Arch switch
    {
        TinyArch.Llama2 or TinyArch.Llama3 => "LlamaForCausalLM",
        TinyArch.Mistral => "MistralForCausalLM",
        TinyArch.Qwen2 => "Qwen2ForCausalLM",
        TinyArch.Opt => "OPTForCausalLM",
        _ => throw new ArgumentOutOfRangeException(nameof(Arch)),
    };

    /// <summary>The presets described in the test plan.</summary>
    public static TinyConfig Preset(TinyArch arch) => arch switch
    {
        TinyArch.Llama2 => new TinyConfig
        {
            Arch = arch, HiddenSize = 32, NumHeads = 4, NumKvHeads = 4, IntermediateSize = 80, NumLayers = 2,
            VocabSize = 99, MaxPositionEmbeddings = 64, TieWordEmbeddings = false,
            RmsNormEps = 1e-5, RopeTheta = 10000.0,
        },

        // head_dim 16, theta 500000: wavelengths 2*pi*500000^(i/8) = 6.28, 32.4, 167, 862, ...
        // With original_max_position_embeddings = 64, low 1, high 4 the band edges are 64/4 = 16 and 64/1 = 64,
        // so i = 0 is kept (6.28 < 16), i = 1 is smoothed (16 <= 32.4 <= 64, smooth = 0.325), i >= 2 are
        // divided by 8. (An original length of 16 would give edges 4 and 16 and NO kept band, because the
        // shortest possible wavelength is 2*pi > 4.) ReferenceSelfTests.Llama3PresetHasAllThreeFrequencyBands
        // asserts this.
        TinyArch.Llama3 => new TinyConfig
        {
            Arch = arch, HiddenSize = 64, NumHeads = 4, NumKvHeads = 2, HeadDim = 16, IntermediateSize = 96,
            NumLayers = 2, VocabSize = 99, MaxPositionEmbeddings = 512, TieWordEmbeddings = true,
            RmsNormEps = 1e-5, RopeTheta = 500000.0,
            RopeScaling = new TinyRopeScaling("llama3", 8.0, 1.0, 4.0, 64),
        },
        TinyArch.Mistral => new TinyConfig
        {
            Arch = arch, HiddenSize = 32, NumHeads = 4, NumKvHeads = 2, IntermediateSize = 64, NumLayers = 2,
            VocabSize = 99, MaxPositionEmbeddings = 64, TieWordEmbeddings = false,
            RmsNormEps = 1e-5, RopeTheta = 10000.0, SlidingWindow = 5,
        },

        // Like the real Qwen2 checkpoints, sliding_window is present but disabled by use_sliding_window = false
        // (a loader that applies it anyway changes the logits, because 4 < sequence length).
        TinyArch.Qwen2 => new TinyConfig
        {
            Arch = arch, HiddenSize = 32, NumHeads = 4, NumKvHeads = 2, IntermediateSize = 64, NumLayers = 2,
            VocabSize = 99, MaxPositionEmbeddings = 64, TieWordEmbeddings = false,
            RmsNormEps = 1e-6, RopeTheta = 1000000.0,
            SlidingWindow = 4, UseSlidingWindow = false, MaxWindowLayers = 1,
        },
        TinyArch.Opt => new TinyConfig
        {
            Arch = arch, HiddenSize = 32, NumHeads = 4, NumKvHeads = 4, IntermediateSize = 64, NumLayers = 2,
            VocabSize = 99, MaxPositionEmbeddings = 64, TieWordEmbeddings = true,
            WordEmbedProjDim = 32, DoLayerNormBefore = true, EnableBias = true, LayerNormElementwiseAffine = true,
            BosTokenId = 2, EosTokenId = 2, PadTokenId = 1,
        },
        _ => throw new ArgumentOutOfRangeException(nameof(arch)),
    };
}

/// <summary>A tiny Hugging Face model directory (config.json + model.safetensors) with seeded random weights.</summary>
public sealed class TinyCheckpoint
{
    public const string ModelFileName = "model.safetensors";
    public const string ConfigFileName = "config.json";

    private TinyCheckpoint(
        string directory,
        TinyConfig config,
        string dtype,
        IReadOnlyDictionary<string, double[]> weights,
        IReadOnlyDictionary<string, int[]> shapes)
    {
        Directory = directory;
        Config = config;
        DType = dtype;
        Weights = weights;
        Shapes = shapes;
    }

    public string Directory { get; }

    public TinyConfig Config { get; }

    public TinyArch Arch => Config.Arch;

    /// <summary>Storage dtype of every tensor in the file: "F32", "BF16" or "F16".</summary>
    public string DType { get; }

    /// <summary>Tensor values exactly as stored in the file (after BF16/F16 rounding), row-major.</summary>
    public IReadOnlyDictionary<string, double[]> Weights { get; }

    /// <summary>Tensor shapes, e.g. [out_features, in_features] for a linear weight.</summary>
    public IReadOnlyDictionary<string, int[]> Shapes { get; }

    public string ModelPath => Path.Combine(Directory, ModelFileName);

    public string ConfigPath => Path.Combine(Directory, ConfigFileName);

    // Config shortcuts.
    public int HiddenSize => Config.HiddenSize;
    public int NumHeads => Config.NumHeads;
    public int NumKvHeads => Config.NumKvHeads;
    public int HeadDim => Config.EffectiveHeadDim;
    public int IntermediateSize => Config.IntermediateSize;
    public int NumLayers => Config.NumLayers;
    public int VocabSize => Config.VocabSize;
    public int MaxPositionEmbeddings => Config.MaxPositionEmbeddings;
    public bool TieWordEmbeddings => Config.TieWordEmbeddings;
    public int? SlidingWindow => Config.SlidingWindow;

    /// <summary>Writes the preset for <paramref name="arch"/> into <paramref name="directory"/>.</summary>
    public static TinyCheckpoint Create(string directory, TinyArch arch, int seed, string dtype = "F32")
        => Create(directory, TinyConfig.Preset(arch), seed, dtype);

    /// <summary>Writes <paramref name="config"/> with random weights from <c>new Random(seed)</c>.</summary>
    public static TinyCheckpoint Create(string directory, TinyConfig config, int seed, string dtype = "F32")
    {
        if (dtype is not ("F32" or "BF16" or "F16"))
        {
            throw new ArgumentException($"Unsupported dtype '{dtype}'.", nameof(dtype));
        }

        Validate(config);
        System.IO.Directory.CreateDirectory(directory);

        var rng = new Random(seed);
        var weights = new Dictionary<string, double[]>(StringComparer.Ordinal);
        var shapes = new Dictionary<string, int[]>(StringComparer.Ordinal);
        var order = new List<string>();

        // Values are drawn in declaration order (independent of dtype), then rounded to float32 and
        // to the storage dtype; Weights keeps the rounded values.
        foreach (TensorSpec spec in TensorSpecs(config))
        {
            int count = 1;
            foreach (int d in spec.Shape)
            {
                count *= d;
            }

            var values = new double[count];
            for (int i = 0; i < count; i++)
            {
                double raw = spec.Kind switch
                {
                    Init.Linear => Normal(rng) / Math.Sqrt(spec.Shape[1]),
                    Init.Embedding => 0.3 * Normal(rng),
                    Init.NormWeight => 1.0 + (0.4 * rng.NextDouble()) - 0.2,
                    Init.Bias => 0.1 * Normal(rng),
                    _ => throw new InvalidOperationException(),
                };
                values[i] = RoundToStorage(raw, dtype);
            }

            weights.Add(spec.Name, values);
            shapes.Add(spec.Name, spec.Shape);
            order.Add(spec.Name);
        }

        order.Sort(StringComparer.Ordinal);
        File.WriteAllBytes(Path.Combine(directory, ModelFileName), SafeTensorsBytes(order, weights, shapes, dtype));
        File.WriteAllText(Path.Combine(directory, ConfigFileName), ConfigJson(config, dtype));
        return new TinyCheckpoint(directory, config, dtype, weights, shapes);
    }

    /// <summary>Rounds a value to float32 and then to the storage dtype, returning what a reader gets back.</summary>
    public static double RoundToStorage(double value, string dtype)
    {
        float f = (float)value;
        return dtype switch
        {
            "F32" => f,
            "BF16" => BFloat16BitsToSingle(SingleToBFloat16Bits(f)),
            "F16" => (double)(float)(Half)f,
            _ => throw new ArgumentException($"Unsupported dtype '{dtype}'.", nameof(dtype)),
        };
    }

    /// <summary>float32 -&gt; bfloat16 bits, round to nearest, ties to even (finite inputs only).</summary>
    public static ushort SingleToBFloat16Bits(float f)
    {
        uint bits = BitConverter.SingleToUInt32Bits(f);
        uint lsb = (bits >> 16) & 1u;
        return (ushort)((bits + 0x7FFFu + lsb) >> 16);
    }

    public static float BFloat16BitsToSingle(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

    public static int ElementSize(string dtype) => dtype switch
    {
        "F32" => 4,
        "BF16" or "F16" => 2,
        _ => throw new ArgumentException($"Unsupported dtype '{dtype}'.", nameof(dtype)),
    };

    private enum Init
    {
        Linear,
        Embedding,
        NormWeight,
        Bias,
    }

    private sealed record TensorSpec(string Name, int[] Shape, Init Kind);

    private static void Validate(TinyConfig c)
    {
        if (c.HiddenSize <= 0 || c.NumHeads <= 0 || c.NumKvHeads <= 0 || c.NumLayers <= 0 || c.VocabSize <= 0
            || c.IntermediateSize <= 0 || c.MaxPositionEmbeddings <= 0)
        {
            throw new ArgumentException("All dimensions must be positive.");
        }

        if (c.NumHeads % c.NumKvHeads != 0)
        {
            throw new ArgumentException("num_attention_heads must be a multiple of num_key_value_heads.");
        }

        if (c.EffectiveHeadDim % 2 != 0)
        {
            throw new ArgumentException("head_dim must be even for RoPE.");
        }

        if (c.Arch == TinyArch.Opt)
        {
            if (c.HiddenSize % c.NumHeads != 0 || c.HeadDim is not null || c.NumKvHeads != c.NumHeads)
            {
                throw new ArgumentException("OPT: hidden must be divisible by heads; no head_dim override; no GQA.");
            }

            if (c.WordEmbedProjDim <= 0)
            {
                throw new ArgumentException("OPT: word_embed_proj_dim must be positive.");
            }
        }
    }

    private static IEnumerable<TensorSpec> TensorSpecs(TinyConfig c)
    {
        if (c.Arch == TinyArch.Opt)
        {
            foreach (TensorSpec s in OptSpecs(c))
            {
                yield return s;
            }

            yield break;
        }

        int h = c.HiddenSize;
        int qDim = c.NumHeads * c.EffectiveHeadDim;
        int kvDim = c.NumKvHeads * c.EffectiveHeadDim;
        int inter = c.IntermediateSize;
        bool qkvBias = c.Arch == TinyArch.Qwen2 || (IsLlama(c.Arch) && c.AttentionBias);
        bool oBias = IsLlama(c.Arch) && c.AttentionBias;
        bool mlpBias = IsLlama(c.Arch) && c.MlpBias;

        yield return new TensorSpec("model.embed_tokens.weight", [c.VocabSize, h], Init.Embedding);
        for (int l = 0; l < c.NumLayers; l++)
        {
            string p = $"model.layers.{l}.";
            yield return new TensorSpec(p + "input_layernorm.weight", [h], Init.NormWeight);
            yield return new TensorSpec(p + "self_attn.q_proj.weight", [qDim, h], Init.Linear);
            yield return new TensorSpec(p + "self_attn.k_proj.weight", [kvDim, h], Init.Linear);
            yield return new TensorSpec(p + "self_attn.v_proj.weight", [kvDim, h], Init.Linear);
            if (qkvBias)
            {
                yield return new TensorSpec(p + "self_attn.q_proj.bias", [qDim], Init.Bias);
                yield return new TensorSpec(p + "self_attn.k_proj.bias", [kvDim], Init.Bias);
                yield return new TensorSpec(p + "self_attn.v_proj.bias", [kvDim], Init.Bias);
            }

            yield return new TensorSpec(p + "self_attn.o_proj.weight", [h, qDim], Init.Linear);
            if (oBias)
            {
                yield return new TensorSpec(p + "self_attn.o_proj.bias", [h], Init.Bias);
            }

            yield return new TensorSpec(p + "post_attention_layernorm.weight", [h], Init.NormWeight);
            yield return new TensorSpec(p + "mlp.gate_proj.weight", [inter, h], Init.Linear);
            yield return new TensorSpec(p + "mlp.up_proj.weight", [inter, h], Init.Linear);
            yield return new TensorSpec(p + "mlp.down_proj.weight", [h, inter], Init.Linear);
            if (mlpBias)
            {
                yield return new TensorSpec(p + "mlp.gate_proj.bias", [inter], Init.Bias);
                yield return new TensorSpec(p + "mlp.up_proj.bias", [inter], Init.Bias);
                yield return new TensorSpec(p + "mlp.down_proj.bias", [h], Init.Bias);
            }
        }

        yield return new TensorSpec("model.norm.weight", [h], Init.NormWeight);
        if (!c.TieWordEmbeddings)
        {
            yield return new TensorSpec("lm_head.weight", [c.VocabSize, h], Init.Embedding);
        }
    }

    private static IEnumerable<TensorSpec> OptSpecs(TinyConfig c)
    {
        int h = c.HiddenSize;
        int proj = c.WordEmbedProjDim;
        int ffn = c.IntermediateSize;
        const string d = "model.decoder.";

        yield return new TensorSpec(d + "embed_tokens.weight", [c.VocabSize, proj], Init.Embedding);
        yield return new TensorSpec(d + "embed_positions.weight", [c.MaxPositionEmbeddings + 2, h], Init.Embedding);
        if (proj != h)
        {
            yield return new TensorSpec(d + "project_in.weight", [h, proj], Init.Linear);
            yield return new TensorSpec(d + "project_out.weight", [proj, h], Init.Linear);
        }

        for (int l = 0; l < c.NumLayers; l++)
        {
            string p = $"{d}layers.{l}.";
            foreach (string name in new[] { "q_proj", "k_proj", "v_proj", "out_proj" })
            {
                yield return new TensorSpec($"{p}self_attn.{name}.weight", [h, h], Init.Linear);
                if (c.EnableBias)
                {
                    yield return new TensorSpec($"{p}self_attn.{name}.bias", [h], Init.Bias);
                }
            }

            if (c.LayerNormElementwiseAffine)
            {
                yield return new TensorSpec(p + "self_attn_layer_norm.weight", [h], Init.NormWeight);
                yield return new TensorSpec(p + "self_attn_layer_norm.bias", [h], Init.Bias);
            }

            yield return new TensorSpec(p + "fc1.weight", [ffn, h], Init.Linear);
            if (c.EnableBias)
            {
                yield return new TensorSpec(p + "fc1.bias", [ffn], Init.Bias);
            }

            yield return new TensorSpec(p + "fc2.weight", [h, ffn], Init.Linear);
            if (c.EnableBias)
            {
                yield return new TensorSpec(p + "fc2.bias", [h], Init.Bias);
            }

            if (c.LayerNormElementwiseAffine)
            {
                yield return new TensorSpec(p + "final_layer_norm.weight", [h], Init.NormWeight);
                yield return new TensorSpec(p + "final_layer_norm.bias", [h], Init.Bias);
            }
        }

        // HF builds model.decoder.final_layer_norm only when do_layer_norm_before (OPT-350m has none).
        if (c.DoLayerNormBefore && c.LayerNormElementwiseAffine)
        {
            yield return new TensorSpec(d + "final_layer_norm.weight", [h], Init.NormWeight);
            yield return new TensorSpec(d + "final_layer_norm.bias", [h], Init.Bias);
        }

        if (!c.TieWordEmbeddings)
        {
            yield return new TensorSpec("lm_head.weight", [c.VocabSize, proj], Init.Embedding);
        }
    }

    private static bool IsLlama(TinyArch a) => a is TinyArch.Llama2 or TinyArch.Llama3;

    private static double Normal(Random rng)
    {
        // Box-Muller; 1 - NextDouble() is in (0, 1], so the log is finite.
        double u1 = 1.0 - rng.NextDouble();
        double u2 = rng.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
    }

    // ---------------------------------------------------------------------------------------------
    // safetensors: u64 LE header length N | N bytes of JSON, space padded so 8 + N % 8 == 0 | data.
    // ---------------------------------------------------------------------------------------------
    private static byte[] SafeTensorsBytes(
        List<string> order,
        Dictionary<string, double[]> weights,
        Dictionary<string, int[]> shapes,
        string dtype)
    {
        int elementSize = ElementSize(dtype);
        var headerStream = new MemoryStream();
        using (var w = new Utf8JsonWriter(headerStream))
        {
            w.WriteStartObject();
            w.WriteStartObject("__metadata__");
            w.WriteString("format", "pt");
            w.WriteEndObject();
            long offset = 0;
            foreach (string name in order)
            {
                long size = (long)weights[name].Length * elementSize;
                w.WriteStartObject(name);
                w.WriteString("dtype", dtype);
                w.WriteStartArray("shape");
                foreach (int dim in shapes[name])
                {
                    w.WriteNumberValue(dim);
                }

                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + size);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += size;
            }

            w.WriteEndObject();
        }

        byte[] json = headerStream.ToArray();
        int padded = json.Length;
        while ((8 + padded) % 8 != 0)
        {
            padded++;
        }

        long dataLength = 0;
        foreach (string name in order)
        {
            dataLength += (long)weights[name].Length * elementSize;
        }

        var bytes = new byte[checked(8 + padded + (int)dataLength)];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(0, 8), (ulong)padded);
        json.CopyTo(bytes, 8);
        for (int i = 8 + json.Length; i < 8 + padded; i++)
        {
            bytes[i] = (byte)' ';
        }

        int pos = 8 + padded;
        foreach (string name in order)
        {
            foreach (double v in weights[name])
            {
                Span<byte> dst = bytes.AsSpan(pos, elementSize);
                switch (dtype)
                {
                    case "F32":
                        BinaryPrimitives.WriteSingleLittleEndian(dst, (float)v);
                        break;
                    case "BF16":
                        BinaryPrimitives.WriteUInt16LittleEndian(dst, SingleToBFloat16Bits((float)v));
                        break;
                    default:
                        BinaryPrimitives.WriteUInt16LittleEndian(dst, BitConverter.HalfToUInt16Bits((Half)(float)v));
                        break;
                }

                pos += elementSize;
            }
        }

        return bytes;
    }

    // ---------------------------------------------------------------------------------------------
    // config.json as PretrainedConfig.to_json_string writes it: keys sorted, indent 2, floats in
    // Python repr (10000.0, 1e-05), null for absent rope_scaling / sliding_window.
    // ---------------------------------------------------------------------------------------------
    private static string ConfigJson(TinyConfig c, string dtype)
    {
        var keys = new SortedDictionary<string, Action<Utf8JsonWriter>>(StringComparer.Ordinal);

        void Int(string k, int v) => keys[k] = w => w.WriteNumberValue(v);
        void Float(string k, double v) => keys[k] = w => w.WriteRawValue(PyFloat(v));
        void Bool(string k, bool v) => keys[k] = w => w.WriteBooleanValue(v);
        void Str(string k, string v) => keys[k] = w => w.WriteStringValue(v);
        void NullableInt(string k, int? v) => keys[k] = w =>
        {
            if (v is int i)
            {
                w.WriteNumberValue(i);
            }
            else
            {
                w.WriteNullValue();
            }
        };

        keys["architectures"] = w =>
        {
            w.WriteStartArray();
            w.WriteStringValue(c.ArchitectureName);
            w.WriteEndArray();
        };
        Str("model_type", c.ModelType);
        Int("hidden_size", c.HiddenSize);
        Int("num_hidden_layers", c.NumLayers);
        Int("num_attention_heads", c.NumHeads);
        Int("max_position_embeddings", c.MaxPositionEmbeddings);
        Int("vocab_size", c.VocabSize);
        Int("bos_token_id", c.BosTokenId);
        Int("eos_token_id", c.EosTokenId);
        if (c.PadTokenId is int pad)
        {
            Int("pad_token_id", pad);
        }

        Bool("tie_word_embeddings", c.TieWordEmbeddings);
        Str("torch_dtype", dtype switch { "F32" => "float32", "BF16" => "bfloat16", _ => "float16" });
        Str("transformers_version", "4.46.0");
        Bool("use_cache", true);
        Float("attention_dropout", 0.0);

        if (c.Arch == TinyArch.Opt)
        {
            Int("ffn_dim", c.IntermediateSize);
            Int("word_embed_proj_dim", c.WordEmbedProjDim);
            Bool("do_layer_norm_before", c.DoLayerNormBefore);
            Str("activation_function", "relu");
            Bool("enable_bias", c.EnableBias);
            Bool("layer_norm_elementwise_affine", c.LayerNormElementwiseAffine);
            Float("activation_dropout", 0.0);
            Float("dropout", 0.1);
            Float("layerdrop", 0.0);
            Float("init_std", 0.02);
            Bool("_remove_final_layer_norm", false);
            Str("prefix", "</s>");
        }
        else
        {
            Int("intermediate_size", c.IntermediateSize);
            Int("num_key_value_heads", c.NumKvHeads);
            if (c.HeadDim is int hd)
            {
                Int("head_dim", hd);
            }

            Str("hidden_act", "silu");
            Float("initializer_range", 0.02);
            Float("rms_norm_eps", c.RmsNormEps);
            Float("rope_theta", c.RopeTheta);
            keys["rope_scaling"] = w => WriteRopeScaling(w, c.RopeScaling);
            switch (c.Arch)
            {
                case TinyArch.Llama2:
                case TinyArch.Llama3:
                    Bool("attention_bias", c.AttentionBias);
                    Bool("mlp_bias", c.MlpBias);
                    Int("pretraining_tp", 1);
                    break;
                case TinyArch.Mistral:
                    NullableInt("sliding_window", c.SlidingWindow);
                    break;
                case TinyArch.Qwen2:
                    Bool("use_sliding_window", c.UseSlidingWindow);
                    NullableInt("sliding_window", c.SlidingWindow);
                    Int("max_window_layers", c.MaxWindowLayers);
                    break;
            }
        }

        var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            foreach (KeyValuePair<string, Action<Utf8JsonWriter>> kv in keys)
            {
                w.WritePropertyName(kv.Key);
                kv.Value(w);
            }

            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(stream.ToArray()) + "\n";
    }

    private static void WriteRopeScaling(Utf8JsonWriter w, TinyRopeScaling? s)
    {
        if (s is null)
        {
            w.WriteNullValue();
            return;
        }

        // Sorted like the rest of the file.
        w.WriteStartObject();
        w.WritePropertyName("factor");
        w.WriteRawValue(PyFloat(s.Factor));
        if (s.RopeType == "llama3")
        {
            w.WritePropertyName("high_freq_factor");
            w.WriteRawValue(PyFloat(s.HighFreqFactor));
            w.WritePropertyName("low_freq_factor");
            w.WriteRawValue(PyFloat(s.LowFreqFactor));
            w.WriteNumber("original_max_position_embeddings", s.OriginalMaxPositionEmbeddings);
        }

        w.WriteString("rope_type", s.RopeType);
        w.WriteEndObject();
    }

    /// <summary>Python's repr(float) for the moderate values used here: "10000.0", "1e-05", "0.02".</summary>
    public static string PyFloat(double v)
    {
        string s = v.ToString("R", CultureInfo.InvariantCulture);
        if (s.Contains('E', StringComparison.Ordinal))
        {
            return s.Replace('E', 'e');
        }

        return s.Contains('.', StringComparison.Ordinal) ? s : s + ".0";
    }
}
