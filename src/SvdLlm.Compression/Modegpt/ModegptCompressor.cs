using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using SvdLlm.Compression.Calibration;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Checkpoints;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Modegpt;

/// <summary>
/// MoDeGPT's settings. <see cref="Smoothing"/> is ε of the global allocation φ = L·φ_avg·softmax(−s/ε); the paper does
/// not give it, the third-party readings use 0.015–0.15, and 0.15 is taken because block-influence scores of a small
/// model differ by a few hundredths, where ε = 0.015 would put the whole budget on the two least influential blocks.
/// </summary>
public sealed record ModegptOptions
{
    public double Ridge { get; init; } = NystromMlp.DefaultRidge;
    public double Smoothing { get; init; } = 0.15;
    public double MaxSparsity { get; init; } = 0.8;
    public PairScore PairScore { get; init; } = PairScore.SumOfRoots;

    /// <summary>Calibration windows per forward pass of the block-influence pass.</summary>
    public int BatchSize { get; init; } = 8;
}

/// <summary>
/// MoDeGPT (Lin et al., ICLR 2025, arXiv 2408.09632) on a LLaMA-family model: block influence from one forward pass
/// over the calibration windows, the global allocation of per-block sparsity φ_l with mean R, then per block the MLP by
/// Nyström (ridge-leverage channel selection, least-squares down_proj), Q/K by CR decomposition (whole RoPE pairs per
/// key head, shared by its query group) and V/O by SVD of the whitened product, all from the calibration Grams
/// (pre-RoPE q/k covariances are W C Wᵀ of the attention-input Gram, so no other statistics are needed). Every
/// module of block l keeps a fraction 1 − φ_l of its width, so every decoder linear loses a fraction φ_l of its
/// parameters and the mean over equally sized blocks is R. The output is a dense checkpoint with per-layer widths
/// (config.json's intermediate_sizes, qk_head_dims, v_head_dims and each layer's int32 rope_pairs), which the LLaMA
/// loader reads; one block's float64 work in memory at a time.
/// <para>
/// Choices where the paper is silent: calibration is not sequential (every Gram comes from the uncompressed model, as
/// both third-party readings do); block influence is measured on the uncompressed model; widths round down to a whole
/// count (q/k to whole pairs), at least one. Qwen2's attention biases: q/k biases follow their kept rows (the pair
/// scores use W C Wᵀ without the bias cross terms, for want of Σx in the statistics); the value bias becomes its
/// least-squares fit on the kept V/O subspace (exact at full width).
/// </para>
/// </summary>
public static class ModegptCompressor
{
    public const string MethodName = "modegpt";

    public static CompressionReport CompressToDirectory(CausalLanguageModel model, IStatisticsSource stats, CalibrationWindows windows, double ratio,
        string outDir, Action<string> log, ModegptOptions? options = null, Action<CompressionReport>? annotate = null)
    {
        options ??= new ModegptOptions();
        if (model is not LlamaForCausalLM llama) throw new NotSupportedException($"MoDeGPT is implemented for the LLaMA family; {model.Directory} is {model.Architecture}");
        var c = llama.Config;
        if (c.HasPerLayerDims) throw new ArgumentException($"{model.Directory} already has per-layer reduced dimensions; MoDeGPT starts from a uniform model");
        if (c.OutputBias || c.MlpBias) throw new NotSupportedException($"{model.Directory} has o_proj or MLP biases; MoDeGPT here rewrites bias-free LLaMA blocks");
        if (!(ratio > 0 && ratio < 1)) throw new ArgumentException($"ratio {ratio} must be in (0, 1): the fraction of the decoder linears' parameters removed");
        outDir = Path.GetFullPath(outDir);
        if (Directory.Exists(outDir)) throw new IOException($"{outDir} already exists; refusing to overwrite (delete it or choose another --out)");
        var clock = Stopwatch.StartNew();
        int layers = c.NumHiddenLayers, d = c.HiddenSize, heads = c.NumAttentionHeads, kvHeads = c.NumKeyValueHeads, headDim = c.HeadDim, ff = c.IntermediateSize;

        var influence = BlockInfluenceScores(model, windows, options.BatchSize, d, layers);
        log($"block influence: {string.Join(", ", influence.Select(s => s.ToString("F4", System.Globalization.CultureInfo.InvariantCulture)))}");
        var phi = GlobalSparsity.Allocate(influence, ratio, options.Smoothing, options.MaxSparsity);
        var report = new CompressionReport { Method = MethodName, Ratio = ratio, Label = $"MoDeGPT" };
        report.StageSeconds["block_influence"] = Math.Round(clock.Elapsed.TotalSeconds, 3);
        report.Notes.Add($"block influence per layer: [{string.Join(", ", influence.Select(s => s.ToString("G6", System.Globalization.CultureInfo.InvariantCulture)))}]; "
            + $"sparsity φ per layer: [{string.Join(", ", phi.Select(p => p.ToString("F4", System.Globalization.CultureInfo.InvariantCulture)))}] (ε {options.Smoothing}, φ_max {options.MaxSparsity})");

        // Kept widths round down (q/k to whole pairs), so each block removes at least φ_l of its linears' parameters and
        // the model at least R; the 1e-6 slack keeps a width that is whole up to rounding (φ ≈ 0 keeps everything).
        static int Kept(double phi, int width, int unit) => unit * Math.Clamp((int)Math.Floor((1 - phi) * width / unit + 1e-6), 1, width / unit);
        var dims = Enumerable.Range(0, layers).Select(l => (Ff: Kept(phi[l], ff, 1), Qk: Kept(phi[l], headDim, 2), V: Kept(phi[l], headDim, 1))).ToArray();

        string staging = SvdLlm.Models.Data.Leftovers.TempPath(outDir);
        Directory.CreateDirectory(staging);
        try
        {
            // Each block is computed when the writer reaches its first tensor and each array dropped once written, so
            // only one block's results are ever held (the writer needs every shape first, and those follow from dims).
            // Written in the source's dtype (bfloat16 weights stay bfloat16), so the output is the size the ratio says.
            var dtype = model.Reader.GetInfo(model.Linears[0].Name + ".weight").DType;
            var tensors = new List<WriterTensor>();
            long before = 0, after = 0;
            double truncationSeconds = 0;
            for (int l = 0; l < layers; l++)
            {
                int layer = l;
                var (ffL, qkL, vL) = dims[l];
                Dictionary<string, Array>? computed = null;
                Array Take(string name)
                {
                    if (computed is null)
                    {
                        var sw = Stopwatch.StartNew();
                        computed = CompressLayer(model, stats, layer, dims[layer], options, report, phi[layer]);
                        truncationSeconds += sw.Elapsed.TotalSeconds;
                        log($"layer {layer}: φ {phi[layer]:F3} → intermediate {ffL}, q/k head dim {qkL}, v head dim {vL} ({sw.Elapsed.TotalSeconds:F1} s)");
                    }
                    var a = computed[name];
                    computed.Remove(name);
                    return a;
                }
                string p = $"model.layers.{l}.";
                foreach (var (name, rows, cols) in new (string, int, int)[]
                {
                    ("input_layernorm", d, 0), ("self_attn.q_proj", heads * qkL, d), ("self_attn.k_proj", kvHeads * qkL, d), ("self_attn.v_proj", kvHeads * vL, d),
                    ("self_attn.o_proj", d, heads * vL), ("post_attention_layernorm", d, 0), ("mlp.gate_proj", ffL, d), ("mlp.up_proj", ffL, d), ("mlp.down_proj", d, ffL),
                })
                {
                    string full = p + name + ".weight";
                    tensors.Add(WriterTensor.Lazy(full, cols == 0 ? model.Reader.GetInfo(full).DType : dtype, cols == 0 ? [rows] : [rows, cols], () => (float[])Take(full)));
                }
                if (c.QkvBias)
                    foreach (var (name, length) in new[] { ("self_attn.q_proj", heads * qkL), ("self_attn.k_proj", kvHeads * qkL), ("self_attn.v_proj", kvHeads * vL) })
                    {
                        string full = p + name + ".bias";
                        tensors.Add(WriterTensor.Lazy(full, model.Reader.GetInfo(full).DType, [length], () => (float[])Take(full)));
                    }
                string pairsName = p + "self_attn.rope_pairs";
                tensors.Add(WriterTensor.Int32(pairsName, [kvHeads, qkL / 2], () => (int[])Take(pairsName)));
                before += (long)d * (heads * headDim * 2 + kvHeads * headDim * 2) + 3L * d * ff;
                after += (long)d * (heads * qkL + kvHeads * qkL + kvHeads * vL + heads * vL) + 3L * d * ffL;
            }
            foreach (string name in model.Reader.TensorNames)
            {
                // Every tensor of a block is rewritten above; anything else in a block (e.g. a stored rotary inv_freq) is derived.
                if (name.StartsWith("model.layers.", StringComparison.Ordinal)) continue;
                var info = model.Reader.GetInfo(name);
                string n = name;
                tensors.Add(WriterTensor.Lazy(n, info.DType, info.Shape, () => model.Reader.ReadAsFloat32(n)));
            }
            SafeTensorsWriter.Write(Path.Combine(staging, CheckpointReader.SingleFileName), tensors);
            report.StageSeconds["truncation"] = Math.Round(truncationSeconds, 3);

            var config = JsonNode.Parse(File.ReadAllText(Path.Combine(model.Directory, "config.json")))!.AsObject();
            config["intermediate_sizes"] = new JsonArray(dims.Select(x => (JsonNode)x.Ff).ToArray());
            config["qk_head_dims"] = new JsonArray(dims.Select(x => (JsonNode)x.Qk).ToArray());
            config["v_head_dims"] = new JsonArray(dims.Select(x => (JsonNode)x.V).ToArray());
            config["modegpt"] = new JsonObject { ["ratio"] = ratio, ["sparsity"] = new JsonArray(phi.Select(p => (JsonNode)p).ToArray()) };
            var indented = new JsonSerializerOptions { WriteIndented = true };
            File.WriteAllText(Path.Combine(staging, "config.json"), config.ToJsonString(indented));
            foreach (string f in CompressedCheckpoint.TokenizerFiles)
                if (File.Exists(Path.Combine(model.Directory, f))) File.Copy(Path.Combine(model.Directory, f), Path.Combine(staging, f));

            long modelBefore = model.ParameterCount;
            report.LinearParamsBefore = before;
            report.LinearParamsAfter = after;
            report.ModelParamsBefore = modelBefore;
            report.ModelParamsAfter = modelBefore - before + after;
            report.LinearBytesBefore = dtype.ElementSize() * before;
            report.LinearBytesAfter = dtype.ElementSize() * after;
            report.StageSeconds["write"] = Math.Round(clock.Elapsed.TotalSeconds - report.StageSeconds.Values.Sum(), 3);
            annotate?.Invoke(report);
            File.WriteAllText(Path.Combine(staging, "compression-report.json"), CompressedCheckpoint.ReportJson(report).ToJsonString(indented));
            Directory.Move(staging, outDir);
            log($"MoDeGPT at {ratio:P0}: {1 - (double)after / before:P2} of the decoder linears' parameters removed in {clock.Elapsed.TotalSeconds:F1} s → {outDir}");
            return report;
        }
        finally
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
        }
    }

    /// <summary>1 − mean cos(x_in, x_out) of every block over the calibration windows, on the uncompressed model.</summary>
    private static double[] BlockInfluenceScores(CausalLanguageModel model, CalibrationWindows windows, int batchSize, int d, int layers)
    {
        var scores = Enumerable.Range(0, layers).Select(_ => new BlockInfluence(d)).ToArray();
        int seq = windows.SeqLen;
        for (int first = 0; first < windows.Count; first += batchSize)
        {
            int b = Math.Min(batchSize, windows.Count - first);
            using var hidden = model.Embed(windows.Tokens.AsSpan(first * seq, b * seq), b, seq);
            var input = new float[hidden.Span.Length];
            for (int l = 0; l < layers; l++)
            {
                hidden.Span.CopyTo(input);
                model.ForwardLayer(l, hidden, b, seq);
                scores[l].Add(input, hidden.Span);
            }
        }
        return scores.Select(s => s.Score).ToArray();
    }

    /// <summary>Block l's seven new weights, its norms and its rope_pairs (one block's float64 work), by tensor name.</summary>
    private static Dictionary<string, Array> CompressLayer(CausalLanguageModel model, IStatisticsSource stats, int l, (int Ff, int Qk, int V) k, ModegptOptions o,
        CompressionReport report, double phi)
    {
        var c = ((LlamaForCausalLM)model).Config;
        int d = c.HiddenSize, heads = c.NumAttentionHeads, kvHeads = c.NumKeyValueHeads, headDim = c.HeadDim, groups = heads / kvHeads;
        string p = $"model.layers.{l}.";
        Linear Lin(string name) => model.Linears.Single(x => x.Name == p + name);
        Tensor<double> W(string name) => Compressor.Weight(model, Lin(name));
        var result = new Dictionary<string, Array>(StringComparer.Ordinal);
        void Add(string name, Tensor<double> t)
        {
            var data = new float[t.Span.Length];
            for (int i = 0; i < data.Length; i++)
            {
                data[i] = (float)t.Span[i];
                if (!float.IsFinite(data[i])) throw new ArithmeticException($"MoDeGPT produced a non-finite weight in {p}{name} at index {i}");
            }
            result[p + name + ".weight"] = data;
        }

        // MLP: Nyström on the down_proj input Gram.
        var down = Lin("mlp.down_proj");
        using (var wd = W("mlp.down_proj"))
        {
            var cs = stats.Input(down.InputKey);
            using var mlp = NystromMlp.Compress(wd, cs.Gram, k.Ff, o.Ridge);
            stats.Release(down.InputKey);
            using (var wg = W("mlp.gate_proj")) using (var g = RowSelection.Rows(wg, mlp.Kept)) Add("mlp.gate_proj", g);
            using (var wu = W("mlp.up_proj")) using (var u = RowSelection.Rows(wu, mlp.Kept)) Add("mlp.up_proj", u);
            Add("mlp.down_proj", mlp.DownProj);
            if (mlp.AddedRidge > 0) report.Notes.Add($"{p}mlp.down_proj: ridge {mlp.AddedRidge:E2} added to the kept channels' Gram for its Cholesky");
            Row(report, p + "mlp.gate_proj", c.IntermediateSize, d, k.Ff * (long)d, phi, k.Ff, null);
            Row(report, p + "mlp.up_proj", c.IntermediateSize, d, k.Ff * (long)d, phi, k.Ff, null);
            Row(report, p + "mlp.down_proj", d, c.IntermediateSize, k.Ff * (long)d, phi, k.Ff, null);
        }

        // Attention: Q/K pairs and V/O from the attention-input Gram.
        var q = Lin("self_attn.q_proj");
        var cAttn = stats.Input(q.InputKey).Gram;
        using var wq = W("self_attn.q_proj");
        using var wk = W("self_attn.k_proj");
        using var wv = W("self_attn.v_proj");
        using var wo = W("self_attn.o_proj");
        var qRows = new List<int>();
        var kRows = new List<int>();
        var pairs = new int[kvHeads * (k.Qk / 2)];
        for (int g = 0; g < kvHeads; g++)
        {
            var queryCovs = new List<Tensor<double>>();
            try
            {
                for (int h = g * groups; h < (g + 1) * groups; h++)
                {
                    using var rows = RowSelection.Rows(wq, Enumerable.Range(h * headDim, headDim).ToArray());
                    queryCovs.Add(QueryKeySelection.HeadCovariance(rows, cAttn));
                }
                using var kr = RowSelection.Rows(wk, Enumerable.Range(g * headDim, headDim).ToArray());
                using var keyCov = QueryKeySelection.HeadCovariance(kr, cAttn);
                var sel = QueryKeySelection.Select(queryCovs, keyCov, k.Qk, o.PairScore);
                for (int h = g * groups; h < (g + 1) * groups; h++) qRows.AddRange(RowSelection.HeadRows(h, headDim, sel.KeptDimensions));
                kRows.AddRange(RowSelection.HeadRows(g, headDim, sel.KeptDimensions));
                sel.KeptFrequencies.CopyTo(pairs, g * (k.Qk / 2));
            }
            finally
            {
                foreach (var t in queryCovs) t.Dispose();
            }
        }
        using (var nq = RowSelection.Rows(wq, qRows.ToArray())) Add("self_attn.q_proj", nq);
        using (var nk = RowSelection.Rows(wk, kRows.ToArray())) Add("self_attn.k_proj", nk);
        float[]? bv = null;
        if (c.QkvBias)
        {
            // Qwen2: a kept q/k row keeps its bias. The pair scores use W C Wᵀ alone (the statistics hold no Σx for the
            // bias cross terms), a documented approximation of the covariances of the biased outputs.
            var bq = model.Reader.ReadAsFloat32(p + "self_attn.q_proj.bias");
            var bk = model.Reader.ReadAsFloat32(p + "self_attn.k_proj.bias");
            result[p + "self_attn.q_proj.bias"] = qRows.Select(i => bq[i]).ToArray();
            result[p + "self_attn.k_proj.bias"] = kRows.Select(i => bk[i]).ToArray();
            bv = model.Reader.ReadAsFloat32(p + "self_attn.v_proj.bias");
        }
        result[p + "self_attn.rope_pairs"] = pairs;
        Row(report, p + "self_attn.q_proj", heads * headDim, d, (long)heads * k.Qk * d, phi, k.Qk, null);
        Row(report, p + "self_attn.k_proj", kvHeads * headDim, d, (long)kvHeads * k.Qk * d, phi, k.Qk, null);

        using var roots = ValueOutputSvd.Roots(cAttn);
        stats.Release(q.InputKey);
        if (roots.ClampedEigenvalues > 0) report.Notes.Add($"{p}self_attn: {roots.ClampedEigenvalues} eigenvalue(s) of the input Gram raised to {roots.Floor:E2} for C^½");
        using var newV = Tensor<double>.Zeros([kvHeads * k.V, d]);
        using var newO = Tensor<double>.Zeros([d, heads * k.V]);
        var newBv = bv is null ? null : new double[kvHeads * k.V];
        double tail2 = 0;
        for (int g = 0; g < kvHeads; g++)
        {
            var cols = new List<Tensor<double>>();
            try
            {
                for (int h = g * groups; h < (g + 1) * groups; h++)
                {
                    var col = Tensor<double>.Zeros([d, headDim]);
                    for (int i = 0; i < d; i++) wo.Span.Slice(i * heads * headDim + h * headDim, headDim).CopyTo(col.Span.Slice(i * headDim, headDim));
                    cols.Add(col);
                }
                using var vRows = RowSelection.Rows(wv, Enumerable.Range(g * headDim, headDim).ToArray());
                using var fit = ValueOutputSvd.Fit(cols, vRows, roots.Root, k.V);
                tail2 += fit.TailLoss * fit.TailLoss;
                if (bv is not null)
                {
                    // The value bias passes through attention unchanged (weights sum to 1) and reaches the output as
                    // W_O,g b_v per head; the new bias is its least-squares fit on the kept subspace,
                    // b' = Σ_g W_O,g'ᵀ W_O,g b_v (the W_O,g' blocks of U_k have orthonormal columns together); exact at full width.
                    for (int j = 0; j < groups; j++)
                    {
                        var oc = fit.OutputColumns[j];
                        for (int i = 0; i < d; i++)
                        {
                            double target = 0;
                            for (int t = 0; t < headDim; t++) target += cols[j].Span[i * headDim + t] * bv[g * headDim + t];
                            for (int r = 0; r < k.V; r++) newBv![g * k.V + r] += oc.Span[i * k.V + r] * target;
                        }
                    }
                }
                fit.ValueRows.Span.CopyTo(newV.Span.Slice(g * k.V * d, k.V * d));
                for (int j = 0; j < groups; j++)
                {
                    int h = g * groups + j;
                    var oc = fit.OutputColumns[j];
                    for (int i = 0; i < d; i++) oc.Span.Slice(i * k.V, k.V).CopyTo(newO.Span.Slice(i * heads * k.V + h * k.V, k.V));
                }
            }
            finally
            {
                foreach (var t in cols) t.Dispose();
            }
        }
        Add("self_attn.v_proj", newV);
        Add("self_attn.o_proj", newO);
        if (newBv is not null) result[p + "self_attn.v_proj.bias"] = newBv.Select(x => (float)x).ToArray();
        Row(report, p + "self_attn.v_proj", kvHeads * headDim, d, (long)kvHeads * k.V * d, phi, k.V, Math.Sqrt(tail2));
        Row(report, p + "self_attn.o_proj", d, heads * headDim, (long)heads * k.V * d, phi, k.V, Math.Sqrt(tail2));
        foreach (string n in new[] { "input_layernorm.weight", "post_attention_layernorm.weight" }) result[p + n] = model.Reader.ReadAsFloat32(p + n);
        return result;
    }

    /// <summary>
    /// One module's row: the kept width in the rank column; the V/O rows carry the group's Eckart–Young tail
    /// ‖(W_O W_V − W_O' W_V')Xᵀ‖_F as their loss; the MLP and Q/K rows have no closed-form loss and record 0 with
    /// that said in the objective.
    /// </summary>
    private static void Row(CompressionReport r, string name, int m, int n, long after, double phi, int width, double? loss)
        => r.Matrices.Add(new MatrixReport(name, [m, n], name[(name.LastIndexOf('.') + 1)..], phi, width, loss ?? 0,
            loss is null ? "none (MoDeGPT selects channels here; kept width in rank)" : "‖(W_O W_V − W_O' W_V')Xᵀ‖_F of the V/O pair", loss ?? 0,
            (long)m * n, after, 0, null, null));
}
