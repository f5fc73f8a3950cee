using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace SvdLlm.Models.Tests.Reference;

/// <summary>Tests of the test reference itself (TinyCheckpoint writer and NaiveTransformer).</summary>
public sealed class ReferenceSelfTests : IDisposable
{
    private readonly string _root =
        Path.Combine(Path.GetTempPath(), "svdllm-reference-" + Guid.NewGuid().ToString("N"));

    public ReferenceSelfTests() => Directory.CreateDirectory(_root);

    public void Dispose()
    {
        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Variants used by several theories.
    // ---------------------------------------------------------------------------------------------
    private static TinyConfig Variant(string name) => name switch
    {
        "llama2" => TinyConfig.Preset(TinyArch.Llama2),
        "llama3" => TinyConfig.Preset(TinyArch.Llama3),
        "mistral" => TinyConfig.Preset(TinyArch.Mistral),
        "qwen2" => TinyConfig.Preset(TinyArch.Qwen2),
        "opt" => TinyConfig.Preset(TinyArch.Opt),
        "llama-bias-linear" => TinyConfig.Preset(TinyArch.Llama2) with
        {
            AttentionBias = true, MlpBias = true, RopeScaling = new TinyRopeScaling("linear", 2.0),
            TieWordEmbeddings = true, HeadDim = 16, NumKvHeads = 2,
        },
        "qwen2-window" => TinyConfig.Preset(TinyArch.Qwen2) with { UseSlidingWindow = true },
        "opt-350m-like" => TinyConfig.Preset(TinyArch.Opt) with { DoLayerNormBefore = false, WordEmbedProjDim = 16 },
        "opt-plain" => TinyConfig.Preset(TinyArch.Opt) with
        {
            EnableBias = false, LayerNormElementwiseAffine = false, TieWordEmbeddings = false, WordEmbedProjDim = 24,
        },
        _ => throw new ArgumentOutOfRangeException(nameof(name)),
    };

    private TinyCheckpoint Make(string variant, int seed = 7, string dtype = "F32")
        => TinyCheckpoint.Create(Path.Combine(_root, $"{variant}-{seed}-{dtype}"), Variant(variant), seed, dtype);

    private static int[] RandomTokens(int count, int vocab, int seed)
    {
        var rng = new Random(seed);
        var tokens = new int[count];
        for (int i = 0; i < count; i++)
        {
            tokens[i] = rng.Next(vocab);
        }

        return tokens;
    }

    private static double MaxAbsRowDiff(double[,] a, double[,] b, int row)
    {
        double max = 0.0;
        for (int j = 0; j < a.GetLength(1); j++)
        {
            max = Math.Max(max, Math.Abs(a[row, j] - b[row, j]));
        }

        return max;
    }

    private static double MaxAbsDiff(double[,] a, double[,] b)
    {
        Assert.Equal(a.GetLength(0), b.GetLength(0));
        Assert.Equal(a.GetLength(1), b.GetLength(1));
        double max = 0.0;
        for (int i = 0; i < a.GetLength(0); i++)
        {
            max = Math.Max(max, MaxAbsRowDiff(a, b, i));
        }

        return max;
    }

    // =============================================================================================
    // (a) safetensors layout and config.json
    // =============================================================================================
    [Theory]
    [InlineData("llama2", "F32")]
    [InlineData("llama3", "BF16")]
    [InlineData("mistral", "F16")]
    [InlineData("qwen2", "BF16")]
    [InlineData("opt", "F32")]
    [InlineData("opt-350m-like", "F16")]
    [InlineData("llama-bias-linear", "F32")]
    public void SafeTensorsFileHasTheDocumentedLayout(string variant, string dtype)
    {
        TinyCheckpoint ckpt = Make(variant, seed: 3, dtype: dtype);
        byte[] file = File.ReadAllBytes(ckpt.ModelPath);

        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(file.AsSpan(0, 8));
        Assert.True(n > 0 && (ulong)file.Length >= 8 + n);
        Assert.Equal(0UL, (8 + n) % 8);

        string header = Encoding.UTF8.GetString(file, 8, (int)n);
        string trimmed = header.TrimEnd(' ');
        Assert.True(header.Length - trimmed.Length < 8, "padding is fewer than 8 spaces");
        Assert.EndsWith("}", trimmed, StringComparison.Ordinal);

        using JsonDocument doc = JsonDocument.Parse(trimmed);
        int dataStart = 8 + (int)n;
        long dataLength = file.Length - dataStart;
        int elementSize = TinyCheckpoint.ElementSize(dtype);
        var spans = new List<(long Begin, long End, string Name)>();
        var names = new HashSet<string>(StringComparer.Ordinal);

        foreach (JsonProperty tensor in doc.RootElement.EnumerateObject())
        {
            if (tensor.Name == "__metadata__")
            {
                Assert.Equal("pt", tensor.Value.GetProperty("format").GetString());
                continue;
            }

            names.Add(tensor.Name);
            Assert.Equal(dtype, tensor.Value.GetProperty("dtype").GetString());
            int[] shape = tensor.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            Assert.Equal(ckpt.Shapes[tensor.Name], shape);

            long[] offsets = tensor.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            Assert.Equal(2, offsets.Length);
            long count = shape.Aggregate(1L, (acc, d) => acc * d);
            Assert.Equal(count * elementSize, offsets[1] - offsets[0]);
            spans.Add((offsets[0], offsets[1], tensor.Name));

            // The stored bytes decode exactly to Weights[name].
            double[] expected = ckpt.Weights[tensor.Name];
            Assert.Equal(count, expected.Length);
            for (int i = 0; i < count; i++)
            {
                ReadOnlySpan<byte> src = file.AsSpan(dataStart + (int)offsets[0] + (i * elementSize), elementSize);
                double value = dtype switch
                {
                    "F32" => BinaryPrimitives.ReadSingleLittleEndian(src),
                    "BF16" => TinyCheckpoint.BFloat16BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(src)),
                    _ => (double)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(src)),
                };
                Assert.Equal(expected[i], value);
            }
        }

        // Offsets tile [0, dataLength) with no gap and no overlap.
        spans.Sort((a, b) => a.Begin.CompareTo(b.Begin));
        long cursor = 0;
        foreach ((long begin, long end, string _) in spans)
        {
            Assert.Equal(cursor, begin);
            cursor = end;
        }

        Assert.Equal(dataLength, cursor);
        Assert.True(names.SetEquals(ckpt.Weights.Keys));
    }

    [Fact]
    public void TensorNamesFollowHuggingFace()
    {
        TinyCheckpoint llama2 = Make("llama2");
        Assert.Contains("lm_head.weight", llama2.Weights.Keys);
        Assert.Contains("model.layers.1.mlp.down_proj.weight", llama2.Weights.Keys);
        Assert.Equal([32, 80], llama2.Shapes["model.layers.1.mlp.down_proj.weight"]);
        Assert.DoesNotContain(llama2.Weights.Keys, k => k.EndsWith(".bias", StringComparison.Ordinal));

        TinyCheckpoint llama3 = Make("llama3");
        Assert.DoesNotContain("lm_head.weight", llama3.Weights.Keys);
        Assert.Equal([32, 64], llama3.Shapes["model.layers.0.self_attn.k_proj.weight"]); // 2 kv heads x 16

        TinyCheckpoint qwen = Make("qwen2");
        Assert.Contains("model.layers.0.self_attn.q_proj.bias", qwen.Weights.Keys);
        Assert.Contains("model.layers.0.self_attn.v_proj.bias", qwen.Weights.Keys);
        Assert.DoesNotContain("model.layers.0.self_attn.o_proj.bias", qwen.Weights.Keys);
        Assert.Contains("lm_head.weight", qwen.Weights.Keys);

        TinyCheckpoint opt = Make("opt");
        Assert.DoesNotContain("lm_head.weight", opt.Weights.Keys);
        Assert.Equal([66, 32], opt.Shapes["model.decoder.embed_positions.weight"]);
        Assert.Contains("model.decoder.layers.1.self_attn.out_proj.bias", opt.Weights.Keys);
        Assert.Contains("model.decoder.layers.0.fc1.bias", opt.Weights.Keys);
        Assert.Contains("model.decoder.final_layer_norm.weight", opt.Weights.Keys);
        Assert.DoesNotContain(opt.Weights.Keys, k => !k.StartsWith("model.decoder.", StringComparison.Ordinal));

        TinyCheckpoint opt350 = Make("opt-350m-like");
        Assert.Equal([32, 16], opt350.Shapes["model.decoder.project_in.weight"]);
        Assert.Equal([16, 32], opt350.Shapes["model.decoder.project_out.weight"]);
        Assert.DoesNotContain("model.decoder.final_layer_norm.weight", opt350.Weights.Keys);

        // Norm weights are not exactly 1, biases are not 0.
        Assert.All(llama2.Weights["model.norm.weight"], v => Assert.True(v != 1.0 && Math.Abs(v - 1.0) <= 0.2));
        Assert.All(qwen.Weights["model.layers.1.self_attn.k_proj.bias"], v => Assert.NotEqual(0.0, v));
    }

    [Fact]
    public void ConfigJsonLooksLikeHuggingFace()
    {
        using (JsonDocument llama3 = JsonDocument.Parse(File.ReadAllText(Make("llama3").ConfigPath)))
        {
            JsonElement r = llama3.RootElement;
            Assert.Equal("LlamaForCausalLM", r.GetProperty("architectures")[0].GetString());
            Assert.Equal("llama", r.GetProperty("model_type").GetString());
            Assert.Equal(2, r.GetProperty("num_key_value_heads").GetInt32());
            Assert.Equal(16, r.GetProperty("head_dim").GetInt32());
            Assert.True(r.GetProperty("tie_word_embeddings").GetBoolean());
            Assert.Equal("500000.0", r.GetProperty("rope_theta").GetRawText());
            Assert.Equal("1e-05", r.GetProperty("rms_norm_eps").GetRawText());
            JsonElement s = r.GetProperty("rope_scaling");
            Assert.Equal("llama3", s.GetProperty("rope_type").GetString());
            Assert.Equal(8.0, s.GetProperty("factor").GetDouble());
            Assert.Equal(64, s.GetProperty("original_max_position_embeddings").GetInt32());
            Assert.Equal("float32", r.GetProperty("torch_dtype").GetString());

            // Keys sorted like PretrainedConfig.to_json_string(sort_keys=True).
            string[] keys = r.EnumerateObject().Select(p => p.Name).ToArray();
            Assert.Equal(keys.OrderBy(k => k, StringComparer.Ordinal).ToArray(), keys);
        }

        using (JsonDocument llama2 = JsonDocument.Parse(File.ReadAllText(Make("llama2", dtype: "BF16").ConfigPath)))
        {
            JsonElement r = llama2.RootElement;
            Assert.Equal(JsonValueKind.Null, r.GetProperty("rope_scaling").ValueKind);
            Assert.False(r.TryGetProperty("head_dim", out _));
            Assert.False(r.GetProperty("attention_bias").GetBoolean());
            Assert.Equal("bfloat16", r.GetProperty("torch_dtype").GetString());
        }

        using (JsonDocument mistral = JsonDocument.Parse(File.ReadAllText(Make("mistral").ConfigPath)))
        {
            Assert.Equal("MistralForCausalLM", mistral.RootElement.GetProperty("architectures")[0].GetString());
            Assert.Equal(5, mistral.RootElement.GetProperty("sliding_window").GetInt32());
        }

        using (JsonDocument qwen = JsonDocument.Parse(File.ReadAllText(Make("qwen2").ConfigPath)))
        {
            JsonElement r = qwen.RootElement;
            Assert.Equal("qwen2", r.GetProperty("model_type").GetString());
            Assert.False(r.GetProperty("use_sliding_window").GetBoolean());
            Assert.Equal(4, r.GetProperty("sliding_window").GetInt32());
            Assert.Equal(1, r.GetProperty("max_window_layers").GetInt32());
            Assert.Equal("1000000.0", r.GetProperty("rope_theta").GetRawText());
            Assert.Equal("1e-06", r.GetProperty("rms_norm_eps").GetRawText());
        }

        using (JsonDocument opt = JsonDocument.Parse(File.ReadAllText(Make("opt").ConfigPath)))
        {
            JsonElement r = opt.RootElement;
            Assert.Equal("OPTForCausalLM", r.GetProperty("architectures")[0].GetString());
            Assert.Equal(64, r.GetProperty("ffn_dim").GetInt32());
            Assert.Equal(32, r.GetProperty("word_embed_proj_dim").GetInt32());
            Assert.True(r.GetProperty("do_layer_norm_before").GetBoolean());
            Assert.Equal("relu", r.GetProperty("activation_function").GetString());
            Assert.True(r.GetProperty("enable_bias").GetBoolean());
            Assert.True(r.GetProperty("layer_norm_elementwise_affine").GetBoolean());
            Assert.Equal(1, r.GetProperty("pad_token_id").GetInt32());
            Assert.Equal(2, r.GetProperty("bos_token_id").GetInt32());
            Assert.Equal(2, r.GetProperty("eos_token_id").GetInt32());
            Assert.False(r.TryGetProperty("intermediate_size", out _));
        }
    }

    [Fact]
    public void StorageDtypeOnlyRoundsTheSameRandomValues()
    {
        TinyCheckpoint f32 = Make("mistral", seed: 11, dtype: "F32");
        TinyCheckpoint bf16 = Make("mistral", seed: 11, dtype: "BF16");
        TinyCheckpoint f16 = Make("mistral", seed: 11, dtype: "F16");
        bool anyDifference = false;
        foreach ((string name, double[] v32) in f32.Weights)
        {
            for (int i = 0; i < v32.Length; i++)
            {
                Assert.Equal(TinyCheckpoint.RoundToStorage(v32[i], "BF16"), bf16.Weights[name][i]);
                Assert.Equal(TinyCheckpoint.RoundToStorage(v32[i], "F16"), f16.Weights[name][i]);
                anyDifference |= bf16.Weights[name][i] != v32[i];

                // BF16 values have zero low mantissa bits as float32.
                Assert.Equal(0u, BitConverter.SingleToUInt32Bits((float)bf16.Weights[name][i]) & 0xFFFFu);
            }
        }

        Assert.True(anyDifference);

        // Round to nearest even, including a tie.
        Assert.Equal((ushort)0x3F80, TinyCheckpoint.SingleToBFloat16Bits(BitConverter.UInt32BitsToSingle(0x3F808000u)));
        Assert.Equal((ushort)0x3F82, TinyCheckpoint.SingleToBFloat16Bits(BitConverter.UInt32BitsToSingle(0x3F818000u)));
        Assert.Equal((ushort)0x3F81, TinyCheckpoint.SingleToBFloat16Bits(BitConverter.UInt32BitsToSingle(0x3F808001u)));
    }

    [Theory]
    [InlineData("llama2")]
    [InlineData("llama3")]
    [InlineData("mistral")]
    [InlineData("qwen2")]
    [InlineData("opt")]
    [InlineData("opt-350m-like")]
    [InlineData("opt-plain")]
    [InlineData("llama-bias-linear")]
    public void LogitsAreOrderOneAndNontrivial(string variant)
    {
        TinyCheckpoint ckpt = Make(variant);
        int[] tokens = RandomTokens(16, ckpt.VocabSize, 5);
        double[,] logits = NaiveTransformer.Logits(ckpt, tokens);
        Assert.Equal(16, logits.GetLength(0));
        Assert.Equal(ckpt.VocabSize, logits.GetLength(1));

        double sum = 0.0;
        double sumSq = 0.0;
        var argmaxes = new HashSet<int>();
        for (int t = 0; t < 16; t++)
        {
            int best = 0;
            for (int j = 0; j < ckpt.VocabSize; j++)
            {
                Assert.True(double.IsFinite(logits[t, j]));
                sum += logits[t, j];
                sumSq += logits[t, j] * logits[t, j];
                if (logits[t, j] > logits[t, best])
                {
                    best = j;
                }
            }

            argmaxes.Add(best);
        }

        double count = 16.0 * ckpt.VocabSize;
        double std = Math.Sqrt((sumSq / count) - ((sum / count) * (sum / count)));
        Assert.InRange(std, 0.3, 10.0);
        Assert.True(argmaxes.Count >= 3, $"only {argmaxes.Count} distinct argmax tokens");
    }

    // =============================================================================================
    // (b) causality
    // =============================================================================================
    [Theory]
    [InlineData("llama2")]
    [InlineData("llama3")]
    [InlineData("mistral")]
    [InlineData("qwen2")]
    [InlineData("qwen2-window")]
    [InlineData("opt")]
    [InlineData("opt-350m-like")]
    [InlineData("opt-plain")]
    [InlineData("llama-bias-linear")]
    public void LogitsAreCausal(string variant)
    {
        TinyCheckpoint ckpt = Make(variant);
        const int T = 8; // with Mistral's window 5 and 2 layers, token 0 still reaches position 7
        int[] tokens = RandomTokens(T, ckpt.VocabSize, 21);
        double[,] baseLogits = NaiveTransformer.Logits(ckpt, tokens);

        int[] lastChanged = (int[])tokens.Clone();
        lastChanged[T - 1] = (tokens[T - 1] + 1) % ckpt.VocabSize;
        double[,] a = NaiveTransformer.Logits(ckpt, lastChanged);
        for (int t = 0; t < T - 1; t++)
        {
            Assert.Equal(0.0, MaxAbsRowDiff(baseLogits, a, t));
        }

        Assert.True(MaxAbsRowDiff(baseLogits, a, T - 1) > 1e-6);

        int[] firstChanged = (int[])tokens.Clone();
        firstChanged[0] = (tokens[0] + 1) % ckpt.VocabSize;
        double[,] b = NaiveTransformer.Logits(ckpt, firstChanged);
        Assert.True(MaxAbsRowDiff(baseLogits, b, T - 1) > 1e-6);
    }

    // =============================================================================================
    // (c) GQA
    // =============================================================================================

    /// <summary>Textbook multi-head attention: full score matrix, -inf mask, softmax, weighted sum.</summary>
    private static double[][] PlainMultiHead(double[][] q, double[][] k, double[][] v, int heads, int dim, int? window)
    {
        int n = q.Length;
        var output = new double[n][];
        for (int i = 0; i < n; i++)
        {
            output[i] = new double[heads * dim];
        }

        for (int h = 0; h < heads; h++)
        {
            var s = new double[n, n];
            for (int i = 0; i < n; i++)
            {
                for (int j = 0; j < n; j++)
                {
                    bool visible = j <= i && (window is null || i - j < window);
                    double dot = 0.0;
                    for (int d = 0; d < dim; d++)
                    {
                        dot += q[i][(h * dim) + d] * k[j][(h * dim) + d];
                    }

                    s[i, j] = visible ? dot / Math.Sqrt(dim) : double.NegativeInfinity;
                }

                double z = 0.0;
                for (int j = 0; j < n; j++)
                {
                    z += Math.Exp(s[i, j]);
                }

                for (int j = 0; j < n; j++)
                {
                    for (int d = 0; d < dim; d++)
                    {
                        output[i][(h * dim) + d] += Math.Exp(s[i, j]) / z * v[j][(h * dim) + d];
                    }
                }
            }
        }

        return output;
    }

    private static double[][] RandomRows(Random rng, int rows, int cols)
    {
        var m = new double[rows][];
        for (int i = 0; i < rows; i++)
        {
            m[i] = new double[cols];
            for (int j = 0; j < cols; j++)
            {
                m[i][j] = (rng.NextDouble() * 2.0) - 1.0;
            }
        }

        return m;
    }

    [Theory]
    [InlineData(null)]
    [InlineData(3)]
    public void GqaPathWithEqualHeadsMatchesPlainMultiHead(int? window)
    {
        var rng = new Random(42);
        const int heads = 4;
        const int dim = 8;
        const int n = 9;
        double[][] q = RandomRows(rng, n, heads * dim);
        double[][] k = RandomRows(rng, n, heads * dim);
        double[][] v = RandomRows(rng, n, heads * dim);

        double[][] gqa = NaiveTransformer.CausalAttention(q, k, v, heads, heads, dim, 1.0 / Math.Sqrt(dim), window);
        double[][] plain = PlainMultiHead(q, k, v, heads, dim, window);
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < heads * dim; j++)
            {
                Assert.True(Math.Abs(gqa[i][j] - plain[i][j]) <= 1e-12, $"({i},{j}) {gqa[i][j]} vs {plain[i][j]}");
            }
        }
    }

    [Theory]
    [InlineData("mistral")]
    [InlineData("llama3")]
    [InlineData("qwen2")]
    public void GqaEqualsMultiHeadWithRepeatedKvWeights(string variant)
    {
        // HF repeat_kv: query head h uses kv head h / (heads / kv_heads). Expanding k/v projections so that
        // each of the `heads` kv heads is a copy of kv head h / group must give the same logits with kv = heads.
        TinyCheckpoint ckpt = Make(variant);
        TinyConfig c = ckpt.Config;
        Assert.True(c.NumKvHeads < c.NumHeads);
        int group = c.NumHeads / c.NumKvHeads;
        int hd = c.EffectiveHeadDim;
        int hidden = c.HiddenSize;

        var expanded = new Dictionary<string, double[]>(ckpt.Weights, StringComparer.Ordinal);
        foreach ((string name, double[] value) in ckpt.Weights)
        {
            bool isKv = name.Contains("self_attn.k_proj", StringComparison.Ordinal)
                || name.Contains("self_attn.v_proj", StringComparison.Ordinal);
            if (!isKv)
            {
                continue;
            }

            int rowLength = name.EndsWith(".weight", StringComparison.Ordinal) ? hidden : 1;
            var copy = new double[c.NumHeads * hd * rowLength];
            for (int h = 0; h < c.NumHeads; h++)
            {
                Array.Copy(value, (h / group) * hd * rowLength, copy, h * hd * rowLength, hd * rowLength);
            }

            expanded[name] = copy;
        }

        int[] tokens = RandomTokens(10, c.VocabSize, 8);
        double[,] gqa = NaiveTransformer.Logits(ckpt, tokens);
        double[,] mha = NaiveTransformer.Logits(c with { NumKvHeads = c.NumHeads }, expanded, tokens);
        Assert.True(MaxAbsDiff(gqa, mha) <= 1e-12);
    }

    // =============================================================================================
    // (d) llama3 rope scaling
    // =============================================================================================
    [Fact]
    public void Llama3PresetHasAllThreeFrequencyBands()
    {
        TinyConfig c = TinyConfig.Preset(TinyArch.Llama3);
        RopeBand[] bands = NaiveTransformer.Llama3Bands(c);
        Assert.Equal(8, bands.Length); // head_dim 16
        Assert.Equal(RopeBand.Kept, bands[0]);
        Assert.Equal(RopeBand.Smoothed, bands[1]);
        Assert.All(bands.Skip(2), b => Assert.Equal(RopeBand.Scaled, b));

        double[] scaled = NaiveTransformer.InverseFrequencies(c);
        double[] plain = NaiveTransformer.InverseFrequencies(c with { RopeScaling = null });
        Assert.Equal(plain[0], scaled[0]);
        Assert.True(scaled[1] > plain[1] / 8.0 && scaled[1] < plain[1]);
        for (int i = 2; i < 8; i++)
        {
            Assert.Equal(plain[i] / 8.0, scaled[i], 1e-15);
        }

        // smooth = (64 / wavelen - 1) / 3 with wavelen = 2 pi 500000^(1/8); freq = (1 - smooth) f / 8 + smooth f.
        double f1 = Math.Pow(500000.0, -2.0 / 16.0);
        double smooth = ((64.0 * f1 / (2.0 * Math.PI)) - 1.0) / 3.0;
        Assert.InRange(smooth, 0.3, 0.35);
        Assert.Equal(((1.0 - smooth) * f1 / 8.0) + (smooth * f1), scaled[1], 1e-15);

        // The brief's original_max_position_embeddings = 16 would have no kept band (2 pi > 16 / 4).
        RopeBand[] with16 = NaiveTransformer.Llama3Bands(c with { RopeScaling = c.RopeScaling! with { OriginalMaxPositionEmbeddings = 16 } });
        Assert.DoesNotContain(RopeBand.Kept, with16);

        // Linear scaling divides every frequency.
        double[] linear = NaiveTransformer.InverseFrequencies(c with { RopeScaling = new TinyRopeScaling("linear", 4.0) });
        for (int i = 0; i < 8; i++)
        {
            Assert.Equal(plain[i] / 4.0, linear[i], 1e-15);
        }

        // And the scaling changes the model output.
        TinyCheckpoint ckpt = Make("llama3");
        int[] tokens = RandomTokens(12, c.VocabSize, 2);
        Assert.True(MaxAbsDiff(
            NaiveTransformer.Logits(ckpt, tokens),
            NaiveTransformer.Logits(c with { RopeScaling = null }, ckpt.Weights, tokens)) > 1e-6);
    }

    // =============================================================================================
    // (e) sliding windows
    // =============================================================================================
    [Fact]
    public void MistralSlidingWindowMasksExactlyTheOldKeys()
    {
        TinyCheckpoint ckpt = Make("mistral");
        TinyConfig c = ckpt.Config;
        Assert.Equal(5, c.SlidingWindow);
        const int T = 12;
        int[] tokens = RandomTokens(T, c.VocabSize, 99);

        double[,] full = NaiveTransformer.Logits(c with { SlidingWindow = null }, ckpt.Weights, tokens);
        double[,] wide = NaiveTransformer.Logits(c with { SlidingWindow = T }, ckpt.Weights, tokens);
        double[,] wider = NaiveTransformer.Logits(c with { SlidingWindow = 1000 }, ckpt.Weights, tokens);
        Assert.Equal(0.0, MaxAbsDiff(full, wide));
        Assert.Equal(0.0, MaxAbsDiff(full, wider));

        double[,] windowed = NaiveTransformer.Logits(ckpt, tokens);
        for (int t = 0; t < T; t++)
        {
            double diff = MaxAbsRowDiff(full, windowed, t);
            if (t < 5)
            {
                Assert.Equal(0.0, diff);
            }
            else
            {
                Assert.True(diff > 1e-6, $"position {t} should differ (diff {diff})");
            }
        }

        // Window 5 = keys i-4..i per layer; two layers reach back 8 positions. So token 0 influences
        // positions <= 8 and nothing at >= 9.
        int[] changed = (int[])tokens.Clone();
        changed[0] = (tokens[0] + 1) % c.VocabSize;
        double[,] other = NaiveTransformer.Logits(ckpt, changed);
        Assert.True(MaxAbsRowDiff(windowed, other, 8) > 1e-9);
        for (int t = 9; t < T; t++)
        {
            Assert.Equal(0.0, MaxAbsRowDiff(windowed, other, t));
        }
    }

    [Fact]
    public void Qwen2SlidingWindowOnlyWhenEnabledAndOnlyFromMaxWindowLayers()
    {
        TinyCheckpoint ckpt = Make("qwen2");
        TinyConfig c = ckpt.Config;
        int[] tokens = RandomTokens(12, c.VocabSize, 4);
        double[,] preset = NaiveTransformer.Logits(ckpt, tokens);
        double[,] full = NaiveTransformer.Logits(c with { SlidingWindow = null }, ckpt.Weights, tokens);
        Assert.Equal(0.0, MaxAbsDiff(preset, full)); // use_sliding_window = false: window ignored

        Assert.Null(NaiveTransformer.SlidingWindowForLayer(c with { UseSlidingWindow = true }, 0));
        Assert.Equal(4, NaiveTransformer.SlidingWindowForLayer(c with { UseSlidingWindow = true }, 1));

        double[,] enabled = NaiveTransformer.Logits(c with { UseSlidingWindow = true }, ckpt.Weights, tokens);
        Assert.True(MaxAbsDiff(full, enabled) > 1e-6);

        // max_window_layers = num_hidden_layers: no layer is windowed.
        double[,] none = NaiveTransformer.Logits(c with { UseSlidingWindow = true, MaxWindowLayers = 2 }, ckpt.Weights, tokens);
        Assert.Equal(0.0, MaxAbsDiff(full, none));
    }

    // =============================================================================================
    // (f) RoPE
    // =============================================================================================
    [Theory]
    [InlineData(TinyArch.Llama2)]
    [InlineData(TinyArch.Qwen2)]
    [InlineData(TinyArch.Mistral)]
    public void RopeDotProductDependsOnlyOnRelativePosition(TinyArch arch)
    {
        TinyConfig c = TinyConfig.Preset(arch) with { HeadDim = 16 };
        double[] invFreq = NaiveTransformer.InverseFrequencies(c);
        var rng = new Random(17);
        double[] q = RandomRows(rng, 1, 16)[0];
        double[] k = RandomRows(rng, 1, 16)[0];

        static double Dot(double[] a, double[] b)
        {
            double s = 0.0;
            for (int i = 0; i < a.Length; i++)
            {
                s += a[i] * b[i];
            }

            return s;
        }

        foreach ((int m, int n) in new[] { (0, 0), (3, 7), (7, 3), (11, 0), (5, 5), (2, 23) })
        {
            double reference = Dot(NaiveTransformer.ApplyRope(q, m, invFreq), NaiveTransformer.ApplyRope(k, n, invFreq));
            foreach (int shift in new[] { 1, 4, 9, 20 })
            {
                double shifted = Dot(
                    NaiveTransformer.ApplyRope(q, m + shift, invFreq),
                    NaiveTransformer.ApplyRope(k, n + shift, invFreq));
                Assert.True(Math.Abs(reference - shifted) <= 1e-12, $"m={m} n={n} s={shift}: {reference} vs {shifted}");
            }
        }

        // Rotation preserves the norm, and position 0 is the identity.
        double[] r = NaiveTransformer.ApplyRope(q, 13, invFreq);
        Assert.Equal(Dot(q, q), Dot(r, r), 1e-12);
        Assert.Equal(q, NaiveTransformer.ApplyRope(q, 0, invFreq));
    }

    [Fact]
    public void RopeUsesRotateHalfPairsNotInterleaved()
    {
        TinyConfig c = TinyConfig.Preset(TinyArch.Llama2); // head_dim 8
        double[] invFreq = NaiveTransformer.InverseFrequencies(c);
        Assert.Equal(1.0, invFreq[0]);
        Assert.Equal(Math.Pow(10000.0, -2.0 / 8.0), invFreq[1], 1e-15);

        var e0 = new double[8];
        e0[0] = 1.0;
        double[] r = NaiveTransformer.ApplyRope(e0, 1, invFreq);
        Assert.Equal(Math.Cos(1.0), r[0], 1e-15);
        Assert.Equal(Math.Sin(1.0), r[4], 1e-15); // partner is i + d/2
        Assert.Equal(0.0, r[1]);

        var e5 = new double[8];
        e5[5] = 1.0; // second half, frequency index 1
        double[] r5 = NaiveTransformer.ApplyRope(e5, 2, invFreq);
        Assert.Equal(-Math.Sin(2.0 * invFreq[1]), r5[1], 1e-15);
        Assert.Equal(Math.Cos(2.0 * invFreq[1]), r5[5], 1e-15);
    }

    // =============================================================================================
    // NLL
    // =============================================================================================
    [Fact]
    public void TokenNllIsStableNegativeLogSoftmax()
    {
        double[] ls = NaiveTransformer.LogSoftmax([1000.0, 1001.0, 999.0]);
        double z = Math.Log(Math.Exp(-1.0) + 1.0 + Math.Exp(-2.0));
        Assert.Equal(-1.0 - z, ls[0], 1e-12);
        Assert.Equal(-z, ls[1], 1e-12);
        Assert.Equal(-2.0 - z, ls[2], 1e-12);

        TinyCheckpoint ckpt = Make("opt");
        int[] tokens = RandomTokens(9, ckpt.VocabSize, 6);
        double[] nll = NaiveTransformer.TokenNll(ckpt, tokens);
        Assert.Equal(8, nll.Length);
        double[,] logits = NaiveTransformer.Logits(ckpt, tokens);
        for (int t = 0; t < 8; t++)
        {
            double sum = 0.0;
            for (int j = 0; j < ckpt.VocabSize; j++)
            {
                sum += Math.Exp(logits[t, j]);
            }

            Assert.True(nll[t] > 0.0);
            Assert.Equal(Math.Log(sum) - logits[t, tokens[t + 1]], nll[t], 1e-10);
        }
    }
}
