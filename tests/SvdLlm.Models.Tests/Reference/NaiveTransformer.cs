namespace SvdLlm.Models.Tests.Reference;

/// <summary>Which llama3 rope_scaling band a rotary frequency falls in.</summary>
public enum RopeBand
{
    /// <summary>wavelen &lt; original_max / high_freq_factor: frequency unchanged.</summary>
    Kept,

    /// <summary>wavelen &gt; original_max / low_freq_factor: frequency / factor.</summary>
    Scaled,

    /// <summary>In between: interpolation of the two.</summary>
    Smoothed,
}

/// <summary>
/// A deliberately naive float64 forward pass written from the Hugging Face transformers semantics
/// (modeling_llama.py, modeling_mistral.py, modeling_qwen2.py, modeling_opt.py, modeling_rope_utils.py,
/// masking_utils.py). Scalar loops only, one sequence, positions 0..T-1, no cache, no padding.
/// It reads only <see cref="TinyConfig"/> and the weight dictionary; it shares nothing with src/.
/// </summary>
public static class NaiveTransformer
{
    /// <summary>torch.nn.LayerNorm default eps, used by every OPT layer norm.</summary>
    public const double OptLayerNormEps = 1e-5;

    /// <summary>Logits [T, vocab] for <paramref name="tokens"/> at positions 0..T-1.</summary>
    public static double[,] Logits(TinyCheckpoint ckpt, int[] tokens) => Logits(ckpt.Config, ckpt.Weights, tokens);

    /// <summary>Logits with an explicit config and weight set (lets tests vary one of them).</summary>
    public static double[,] Logits(TinyConfig config, IReadOnlyDictionary<string, double[]> weights, int[] tokens)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        if (tokens.Length == 0)
        {
            throw new ArgumentException("Need at least one token.", nameof(tokens));
        }

        foreach (int t in tokens)
        {
            if (t < 0 || t >= config.VocabSize)
            {
                throw new ArgumentOutOfRangeException(nameof(tokens), $"Token {t} outside [0, {config.VocabSize}).");
            }
        }

        return config.Arch == TinyArch.Opt ? OptLogits(config, weights, tokens) : LlamaLogits(config, weights, tokens);
    }

    /// <summary>NLL of token t+1 given tokens 0..t, for t = 0..T-2 (length T-1).</summary>
    public static double[] TokenNll(TinyCheckpoint ckpt, int[] tokens) => TokenNll(ckpt.Config, ckpt.Weights, tokens);

    public static double[] TokenNll(TinyConfig config, IReadOnlyDictionary<string, double[]> weights, int[] tokens)
    {
        double[,] logits = Logits(config, weights, tokens);
        int vocab = logits.GetLength(1);
        var nll = new double[tokens.Length - 1];
        for (int t = 0; t < tokens.Length - 1; t++)
        {
            var row = new double[vocab];
            for (int j = 0; j < vocab; j++)
            {
                row[j] = logits[t, j];
            }

            nll[t] = -LogSoftmax(row)[tokens[t + 1]];
        }

        return nll;
    }

    /// <summary>Numerically stable log-softmax: x - max - log(sum(exp(x - max))).</summary>
    public static double[] LogSoftmax(double[] row)
    {
        double max = double.NegativeInfinity;
        foreach (double v in row)
        {
            max = Math.Max(max, v);
        }

        double sum = 0.0;
        foreach (double v in row)
        {
            sum += Math.Exp(v - max);
        }

        double logSum = Math.Log(sum);
        var result = new double[row.Length];
        for (int i = 0; i < row.Length; i++)
        {
            result[i] = row[i] - max - logSum;
        }

        return result;
    }

    // =============================================================================================
    // LLaMA / Mistral / Qwen2
    // =============================================================================================
    private static double[,] LlamaLogits(TinyConfig c, IReadOnlyDictionary<string, double[]> w, int[] tokens)
    {
        int T = tokens.Length;
        int hidden = c.HiddenSize;
        int nh = c.NumHeads;
        int nkv = c.NumKvHeads;
        int hd = c.EffectiveHeadDim;
        int inter = c.IntermediateSize;
        bool isLlama = c.Arch is TinyArch.Llama2 or TinyArch.Llama3;
        bool qkvBias = c.Arch == TinyArch.Qwen2 || (isLlama && c.AttentionBias);
        bool oBias = isLlama && c.AttentionBias;
        bool mlpBias = isLlama && c.MlpBias;
        double[] invFreq = InverseFrequencies(c);

        // Embedding lookup.
        double[] embed = Get(w, "model.embed_tokens.weight");
        var x = new double[T][];
        for (int t = 0; t < T; t++)
        {
            x[t] = new double[hidden];
            for (int i = 0; i < hidden; i++)
            {
                x[t][i] = embed[(tokens[t] * hidden) + i];
            }
        }

        for (int l = 0; l < c.NumLayers; l++)
        {
            string p = $"model.layers.{l}.";

            // --- self attention block ---
            var q = new double[T][];
            var k = new double[T][];
            var v = new double[T][];
            for (int t = 0; t < T; t++)
            {
                double[] hn = RmsNorm(x[t], Get(w, p + "input_layernorm.weight"), c.RmsNormEps);
                q[t] = Linear(hn, Get(w, p + "self_attn.q_proj.weight"), nh * hd, hidden,
                    qkvBias ? Get(w, p + "self_attn.q_proj.bias") : null);
                k[t] = Linear(hn, Get(w, p + "self_attn.k_proj.weight"), nkv * hd, hidden,
                    qkvBias ? Get(w, p + "self_attn.k_proj.bias") : null);
                v[t] = Linear(hn, Get(w, p + "self_attn.v_proj.weight"), nkv * hd, hidden,
                    qkvBias ? Get(w, p + "self_attn.v_proj.bias") : null);

                // RoPE on every head of q and k; position = t.
                for (int h = 0; h < nh; h++)
                {
                    RopeInPlace(q[t], h * hd, hd, t, invFreq);
                }

                for (int h = 0; h < nkv; h++)
                {
                    RopeInPlace(k[t], h * hd, hd, t, invFreq);
                }
            }

            double[][] attn = CausalAttention(q, k, v, nh, nkv, hd, 1.0 / Math.Sqrt(hd), SlidingWindowForLayer(c, l));
            for (int t = 0; t < T; t++)
            {
                double[] o = Linear(attn[t], Get(w, p + "self_attn.o_proj.weight"), hidden, nh * hd,
                    oBias ? Get(w, p + "self_attn.o_proj.bias") : null);
                for (int i = 0; i < hidden; i++)
                {
                    x[t][i] += o[i];
                }
            }

            // --- MLP block: down(silu(gate(x)) * up(x)) ---
            for (int t = 0; t < T; t++)
            {
                double[] hn = RmsNorm(x[t], Get(w, p + "post_attention_layernorm.weight"), c.RmsNormEps);
                double[] gate = Linear(hn, Get(w, p + "mlp.gate_proj.weight"), inter, hidden,
                    mlpBias ? Get(w, p + "mlp.gate_proj.bias") : null);
                double[] up = Linear(hn, Get(w, p + "mlp.up_proj.weight"), inter, hidden,
                    mlpBias ? Get(w, p + "mlp.up_proj.bias") : null);
                var act = new double[inter];
                for (int i = 0; i < inter; i++)
                {
                    act[i] = Silu(gate[i]) * up[i];
                }

                double[] down = Linear(act, Get(w, p + "mlp.down_proj.weight"), hidden, inter,
                    mlpBias ? Get(w, p + "mlp.down_proj.bias") : null);
                for (int i = 0; i < hidden; i++)
                {
                    x[t][i] += down[i];
                }
            }
        }

        double[] head = c.TieWordEmbeddings ? embed : Get(w, "lm_head.weight");
        var logits = new double[T, c.VocabSize];
        for (int t = 0; t < T; t++)
        {
            double[] hn = RmsNorm(x[t], Get(w, "model.norm.weight"), c.RmsNormEps);
            double[] row = Linear(hn, head, c.VocabSize, hidden, null);
            for (int j = 0; j < c.VocabSize; j++)
            {
                logits[t, j] = row[j];
            }
        }

        return logits;
    }

    /// <summary>
    /// The sliding window for layer <paramref name="layer"/>, or null for full causal attention.
    /// Mistral: config.sliding_window on every layer (modeling_mistral.py picks
    /// create_sliding_window_causal_mask whenever sliding_window is not None).
    /// Qwen2: configuration_qwen2.py sets sliding_window = None unless use_sliding_window, and
    /// layer_types[i] = "sliding_attention" iff sliding_window is not None and i &gt;= max_window_layers.
    /// </summary>
    public static int? SlidingWindowForLayer(TinyConfig c, int layer) => c.Arch switch
    {
        TinyArch.Mistral => c.SlidingWindow,
        TinyArch.Qwen2 => c.UseSlidingWindow && c.SlidingWindow is not null && layer >= c.MaxWindowLayers
            ? c.SlidingWindow
            : null,
        _ => null,
    };

    /// <summary>
    /// Causal softmax attention for one sequence. q[t] has numHeads*headDim entries, k[t]/v[t] have
    /// numKvHeads*headDim; query head h reads kv head h / (numHeads / numKvHeads) (HF repeat_kv).
    /// scores = (q . k) * scale. Query i sees key j iff j &lt;= i and, with a window W, j &gt; i - W
    /// (huggingface/transformers src/transformers/masking_utils.py: causal_mask_function
    /// "kv_idx &lt;= q_idx" AND sliding_window_overlay "kv_idx &gt; q_idx - sliding_window").
    /// </summary>
    public static double[][] CausalAttention(
        double[][] q,
        double[][] k,
        double[][] v,
        int numHeads,
        int numKvHeads,
        int headDim,
        double scale,
        int? slidingWindow)
    {
        int T = q.Length;
        int group = numHeads / numKvHeads;
        var output = new double[T][];
        for (int i = 0; i < T; i++)
        {
            output[i] = new double[numHeads * headDim];
        }

        for (int h = 0; h < numHeads; h++)
        {
            int kvh = h / group;
            for (int i = 0; i < T; i++)
            {
                var scores = new double[T];
                var allowed = new bool[T];
                double max = double.NegativeInfinity;
                for (int j = 0; j < T; j++)
                {
                    allowed[j] = j <= i && (slidingWindow is not int wnd || j > i - wnd);
                    if (!allowed[j])
                    {
                        continue;
                    }

                    double dot = 0.0;
                    for (int d = 0; d < headDim; d++)
                    {
                        dot += q[i][(h * headDim) + d] * k[j][(kvh * headDim) + d];
                    }

                    scores[j] = dot * scale;
                    max = Math.Max(max, scores[j]);
                }

                double sum = 0.0;
                for (int j = 0; j < T; j++)
                {
                    scores[j] = allowed[j] ? Math.Exp(scores[j] - max) : 0.0;
                    sum += scores[j];
                }

                for (int j = 0; j < T; j++)
                {
                    if (!allowed[j])
                    {
                        continue;
                    }

                    double pj = scores[j] / sum;
                    for (int d = 0; d < headDim; d++)
                    {
                        output[i][(h * headDim) + d] += pj * v[j][(kvh * headDim) + d];
                    }
                }
            }
        }

        return output;
    }

    /// <summary>
    /// inv_freq[i] = theta^(-2i/d), i = 0..d/2-1, d = head_dim, then rope_scaling
    /// (modeling_rope_utils.py: "linear" divides by factor; "llama3" per-band adjustment).
    /// </summary>
    public static double[] InverseFrequencies(TinyConfig c)
    {
        int d = c.EffectiveHeadDim;
        var inv = new double[d / 2];
        for (int i = 0; i < d / 2; i++)
        {
            inv[i] = 1.0 / Math.Pow(c.RopeTheta, 2.0 * i / d);
        }

        TinyRopeScaling? s = c.RopeScaling;
        if (s is null || s.RopeType == "default")
        {
            return inv;
        }

        switch (s.RopeType)
        {
            case "linear":
                for (int i = 0; i < inv.Length; i++)
                {
                    inv[i] /= s.Factor;
                }

                return inv;

            case "llama3":
                RopeBand[] bands = Llama3Bands(c);
                for (int i = 0; i < inv.Length; i++)
                {
                    double f = inv[i];
                    double wavelen = 2.0 * Math.PI / f;
                    inv[i] = bands[i] switch
                    {
                        RopeBand.Kept => f,
                        RopeBand.Scaled => f / s.Factor,
                        _ => SmoothedFrequency(f, wavelen, s),
                    };
                }

                return inv;

            default:
                throw new NotSupportedException($"rope_type '{s.RopeType}' is not implemented in the reference.");
        }
    }

    /// <summary>The llama3 band of each unscaled frequency (requires rope_type "llama3").</summary>
    public static RopeBand[] Llama3Bands(TinyConfig c)
    {
        TinyRopeScaling s = c.RopeScaling is { RopeType: "llama3" } r
            ? r
            : throw new InvalidOperationException("Not a llama3 rope_scaling config.");
        int d = c.EffectiveHeadDim;
        double lowFreqWavelen = s.OriginalMaxPositionEmbeddings / s.LowFreqFactor;
        double highFreqWavelen = s.OriginalMaxPositionEmbeddings / s.HighFreqFactor;
        var bands = new RopeBand[d / 2];
        for (int i = 0; i < d / 2; i++)
        {
            double f = 1.0 / Math.Pow(c.RopeTheta, 2.0 * i / d);
            double wavelen = 2.0 * Math.PI / f;
            bands[i] = wavelen < highFreqWavelen ? RopeBand.Kept
                : wavelen > lowFreqWavelen ? RopeBand.Scaled
                : RopeBand.Smoothed;
        }

        return bands;
    }

    private static double SmoothedFrequency(double f, double wavelen, TinyRopeScaling s)
    {
        double smooth = ((s.OriginalMaxPositionEmbeddings / wavelen) - s.LowFreqFactor)
            / (s.HighFreqFactor - s.LowFreqFactor);
        return ((1.0 - smooth) * f / s.Factor) + (smooth * f);
    }

    /// <summary>
    /// HF rotate_half RoPE on one head vector: pairs (i, i + d/2), angle = position * invFreq[i];
    /// out[i] = x[i] cos - x[i+d/2] sin, out[i+d/2] = x[i+d/2] cos + x[i] sin.
    /// </summary>
    public static double[] ApplyRope(double[] head, int position, double[] invFreq)
    {
        var copy = (double[])head.Clone();
        RopeInPlace(copy, 0, head.Length, position, invFreq);
        return copy;
    }

    private static void RopeInPlace(double[] x, int offset, int headDim, int position, double[] invFreq)
    {
        int half = headDim / 2;
        for (int i = 0; i < half; i++)
        {
            double angle = position * invFreq[i];
            double cos = Math.Cos(angle);
            double sin = Math.Sin(angle);
            double a = x[offset + i];
            double b = x[offset + i + half];
            x[offset + i] = (a * cos) - (b * sin);
            x[offset + i + half] = (b * cos) + (a * sin);
        }
    }

    // =============================================================================================
    // OPT
    // =============================================================================================
    private static double[,] OptLogits(TinyConfig c, IReadOnlyDictionary<string, double[]> w, int[] tokens)
    {
        int T = tokens.Length;
        int hidden = c.HiddenSize;
        int proj = c.WordEmbedProjDim;
        int nh = c.NumHeads;
        int hd = hidden / nh;
        int ffn = c.IntermediateSize;
        bool bias = c.EnableBias;
        bool affine = c.LayerNormElementwiseAffine;
        const string d = "model.decoder.";

        if (T > c.MaxPositionEmbeddings)
        {
            throw new ArgumentException("Sequence longer than max_position_embeddings.", nameof(tokens));
        }

        double[] embed = Get(w, d + "embed_tokens.weight");
        double[] positions = Get(w, d + "embed_positions.weight");
        var x = new double[T][];
        for (int t = 0; t < T; t++)
        {
            var e = new double[proj];
            for (int i = 0; i < proj; i++)
            {
                e[i] = embed[(tokens[t] * proj) + i];
            }

            if (proj != hidden)
            {
                e = Linear(e, Get(w, d + "project_in.weight"), hidden, proj, null);
            }

            // OPTLearnedPositionalEmbedding: row = position + 2.
            x[t] = new double[hidden];
            for (int i = 0; i < hidden; i++)
            {
                x[t][i] = e[i] + positions[((t + 2) * hidden) + i];
            }
        }

        double[]? LnW(string name) => affine ? Get(w, name + ".weight") : null;
        double[]? LnB(string name) => affine ? Get(w, name + ".bias") : null;
        double[]? B(string name) => bias ? Get(w, name + ".bias") : null;

        for (int l = 0; l < c.NumLayers; l++)
        {
            string p = $"{d}layers.{l}.";
            string ln1 = p + "self_attn_layer_norm";
            string ln2 = p + "final_layer_norm";

            // --- self attention block ---
            var q = new double[T][];
            var k = new double[T][];
            var v = new double[T][];
            for (int t = 0; t < T; t++)
            {
                double[] hn = c.DoLayerNormBefore ? LayerNorm(x[t], LnW(ln1), LnB(ln1), OptLayerNormEps) : x[t];
                q[t] = Linear(hn, Get(w, p + "self_attn.q_proj.weight"), hidden, hidden, B(p + "self_attn.q_proj"));
                for (int i = 0; i < hidden; i++)
                {
                    q[t][i] *= Math.Pow(hd, -0.5); // OPT scales the projected query, then attends with scaling 1.0
                }

                k[t] = Linear(hn, Get(w, p + "self_attn.k_proj.weight"), hidden, hidden, B(p + "self_attn.k_proj"));
                v[t] = Linear(hn, Get(w, p + "self_attn.v_proj.weight"), hidden, hidden, B(p + "self_attn.v_proj"));
            }

            double[][] attn = CausalAttention(q, k, v, nh, nh, hd, 1.0, null);
            for (int t = 0; t < T; t++)
            {
                double[] o = Linear(attn[t], Get(w, p + "self_attn.out_proj.weight"), hidden, hidden,
                    B(p + "self_attn.out_proj"));
                for (int i = 0; i < hidden; i++)
                {
                    x[t][i] += o[i];
                }

                if (!c.DoLayerNormBefore)
                {
                    x[t] = LayerNorm(x[t], LnW(ln1), LnB(ln1), OptLayerNormEps);
                }
            }

            // --- feed forward block: fc2(relu(fc1(x))) ---
            for (int t = 0; t < T; t++)
            {
                double[] hn = c.DoLayerNormBefore ? LayerNorm(x[t], LnW(ln2), LnB(ln2), OptLayerNormEps) : x[t];
                double[] h1 = Linear(hn, Get(w, p + "fc1.weight"), ffn, hidden, B(p + "fc1"));
                for (int i = 0; i < ffn; i++)
                {
                    h1[i] = Math.Max(0.0, h1[i]);
                }

                double[] h2 = Linear(h1, Get(w, p + "fc2.weight"), hidden, ffn, B(p + "fc2"));
                for (int i = 0; i < hidden; i++)
                {
                    x[t][i] += h2[i];
                }

                if (!c.DoLayerNormBefore)
                {
                    x[t] = LayerNorm(x[t], LnW(ln2), LnB(ln2), OptLayerNormEps);
                }
            }
        }

        double[] head = c.TieWordEmbeddings ? embed : Get(w, "lm_head.weight");
        var logits = new double[T, c.VocabSize];
        for (int t = 0; t < T; t++)
        {
            double[] h = x[t];
            if (c.DoLayerNormBefore)
            {
                // HF creates the decoder-level final_layer_norm only when do_layer_norm_before.
                h = LayerNorm(h, LnW(d + "final_layer_norm"), LnB(d + "final_layer_norm"), OptLayerNormEps);
            }

            if (proj != hidden)
            {
                h = Linear(h, Get(w, d + "project_out.weight"), proj, hidden, null);
            }

            double[] row = Linear(h, head, c.VocabSize, proj, null);
            for (int j = 0; j < c.VocabSize; j++)
            {
                logits[t, j] = row[j];
            }
        }

        return logits;
    }

    // =============================================================================================
    // Scalar building blocks
    // =============================================================================================

    /// <summary>y = W x + b with W stored [outFeatures, inFeatures] row-major (torch nn.Linear).</summary>
    public static double[] Linear(double[] x, double[] weight, int outFeatures, int inFeatures, double[]? bias)
    {
        if (x.Length != inFeatures || weight.Length != outFeatures * inFeatures
            || (bias is not null && bias.Length != outFeatures))
        {
            throw new ArgumentException("Linear: shape mismatch.");
        }

        var y = new double[outFeatures];
        for (int o = 0; o < outFeatures; o++)
        {
            double acc = bias?[o] ?? 0.0;
            for (int i = 0; i < inFeatures; i++)
            {
                acc += weight[(o * inFeatures) + i] * x[i];
            }

            y[o] = acc;
        }

        return y;
    }

    /// <summary>LlamaRMSNorm: w * x / sqrt(mean(x^2) + eps).</summary>
    public static double[] RmsNorm(double[] x, double[] weight, double eps)
    {
        double sumSq = 0.0;
        foreach (double v in x)
        {
            sumSq += v * v;
        }

        double inv = 1.0 / Math.Sqrt((sumSq / x.Length) + eps);
        var y = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            y[i] = weight[i] * (x[i] * inv);
        }

        return y;
    }

    /// <summary>torch LayerNorm: (x - mean) / sqrt(biased var + eps) * w + b (w, b optional).</summary>
    public static double[] LayerNorm(double[] x, double[]? weight, double[]? bias, double eps)
    {
        double mean = 0.0;
        foreach (double v in x)
        {
            mean += v;
        }

        mean /= x.Length;
        double variance = 0.0;
        foreach (double v in x)
        {
            variance += (v - mean) * (v - mean);
        }

        variance /= x.Length;
        double inv = 1.0 / Math.Sqrt(variance + eps);
        var y = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            y[i] = ((x[i] - mean) * inv * (weight?[i] ?? 1.0)) + (bias?[i] ?? 0.0);
        }

        return y;
    }

    public static double Silu(double z) => z / (1.0 + Math.Exp(-z));

    private static double[] Get(IReadOnlyDictionary<string, double[]> w, string name)
        => w.TryGetValue(name, out double[]? value)
            ? value
            : throw new KeyNotFoundException($"Reference forward pass needs tensor '{name}', which is missing.");
}
