using System.Diagnostics;
using SvdLlm.Compression.Calibration;
using SvdLlm.Models.Architectures;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Quantization;

/// <summary>One quantized tensor of a linear: its checkpoint module name (the linear's, or its u/v factor's) and codes.</summary>
/// <param name="Result">a Hessian-aware quantizer's loss and damping, or null for round-to-nearest</param>
public sealed record QuantizedPart(string Module, IQuantizedMatrix Matrix, QuantizationOutcome? Result);

/// <summary>
/// One quantized linear, for the sink and the report: W itself, or a low-rank linear's factors V then U (both padded to
/// a rank <see cref="Rank"/> that is a multiple of 32, as the GPTQ layout packs; the padding is zero and stays zero).
/// </summary>
public sealed record QuantizedLinear(Linear Linear, IReadOnlyList<QuantizedPart> Parts, int? Rank, double Seconds);

/// <summary>
/// GPTQ's sequential calibration (the reference's llama_sequential with true-sequential), for any Hessian-aware
/// <see cref="MatrixQuantizer"/> (GPTQ, GPTVQ): the inputs of decoder layer l
/// come from the already quantized layers before it, and inside a layer the linears are quantized one input at a time in
/// forward order (q/k/v, then o, then gate/up, then down), each H collected after the linears before it were quantized.
/// A layer costs (distinct inputs + 1) forward passes over the calibration windows: one per input, one to produce the
/// next layer's inputs. Memory: one layer's weights, one H (float64) with GPTQ's two n² work matrices, and the hidden
/// states of all windows (in memory up to 1 GiB, else a temporary file, as in calibration).
/// </summary>
public static class SequentialGptq
{
    /// <param name="sink">receives each layer's quantized linears (their weights in the model are the dequantized ones) before the layer is released</param>
    public static void Run(CausalLanguageModel model, CalibrationWindows windows, MatrixQuantizer quantizer, Action<int, IReadOnlyList<QuantizedLinear>> sink,
        Action<string>? log = null, int batchSize = 4, string? spillDirectory = null)
    {
        if (!quantizer.NeedsHessian) throw new ArgumentException($"{quantizer.Name} uses no calibration; quantize each layer directly");
        log ??= _ => { };
        int seqLen = windows.SeqLen, samples = windows.Count, h = model.HiddenSize;
        var layers = CompressedCheckpoint.LinearsByLayer(model);
        if (layers.Count != model.NumLayers || layers[0].Key != 0)
            throw new InvalidOperationException($"{model.Directory}: expected the linears of {model.NumLayers} decoder layers, found layers {string.Join(", ", layers.Select(g => g.Key))}");
        var previousObserver = model.Observer;
        bool previousStreaming = model.StreamWeights;
        using var observer = new Calibrator.GramObserver();
        using var hidden = Calibrator.HiddenStore.Create((long)samples * seqLen, h, Calibrator.DefaultHiddenInMemoryLimit, spillDirectory ?? Path.GetTempPath());
        using var part = Tensor<float>.Uninitialized(Math.Min(batchSize, samples) * seqLen, h);
        try
        {
            model.StreamWeights = false;
            Calibrator.EmbedAll(model, windows.Tokens, seqLen, batchSize, hidden);
            foreach (var layer in layers)
            {
                var clock = Stopwatch.StartNew();
                var done = new List<QuantizedLinear>();
                var inputs = layer.Select(l => l.InputKey).Distinct().ToList();
                try
                {
                    foreach (string key in inputs)
                    {
                        observer.Only = key;
                        model.Observer = observer;
                        Calibrator.RunLayer(model, layer.Key, hidden, part, samples, seqLen, batchSize, observer, writeBack: false, releaseAfterLastBatch: false);
                        model.Observer = previousObserver;
                        var taken = observer.TakeLayer();
                        var stats = taken.Single(t => t.Key == key).S;
                        using (stats)
                        {
                            Blas.SymmetrizeFromLower(stats.Gram.Span, stats.Features);
                            foreach (var l in layer.Where(l => l.InputKey == key))
                                done.Add(Quantize(model, l, (w, hu) => quantizer.Quantize(w, hu ?? stats.Gram), qv => FactorHessian(qv, stats.Gram)));
                        }
                    }
                    model.Observer = previousObserver;
                    Calibrator.RunLayer(model, layer.Key, hidden, part, samples, seqLen, batchSize, observer: null, writeBack: true, releaseAfterLastBatch: false);
                    sink(layer.Key, done);
                }
                finally
                {
                    foreach (var l in layer) l.Unload();
                }
                log($"{quantizer.Name}: layer {layer.Key} ({done.Count} matrices, {inputs.Count + 1} passes) in {clock.Elapsed.TotalSeconds:F1} s");
            }
        }
        finally
        {
            model.Observer = previousObserver;
            model.StreamWeights = previousStreaming;
            NativeBufferPool.Trim();
        }
    }

    /// <summary>
    /// Quantizes one linear in place (its float32 weights become the dequantized ones) with <paramref name="quantize"/>:
    /// W, or for a low-rank linear V (on the linear's input) then U (on V's quantized output: H_U = V' H V'ᵀ, built by
    /// <paramref name="uHessian"/>, the Gram of t = V'x without another pass).
    /// </summary>
    internal static QuantizedLinear Quantize(CausalLanguageModel model, Linear l,
        Func<Tensor<double>, Tensor<double>?, (IQuantizedMatrix Matrix, QuantizationOutcome? Result)> quantize, Func<Tensor<double>, Tensor<double>>? uHessian = null)
    {
        var sw = Stopwatch.StartNew();
        model.Load(l);
        if (!l.IsLowRank)
        {
            using var w = Compressor.Weight(model, l);
            var (matrix, result) = quantize(w, null);
            using (var q = matrix.Dequantize()) l.SetDense(DenseMath.ToFloat(q), l.Bias?.Clone());
            return new QuantizedLinear(l, [new QuantizedPart(l.Name, matrix, result)], null, sw.Elapsed.TotalSeconds);
        }
        int k = l.Rank!.Value, padded = (k + 31) / 32 * 32;
        if (padded > Math.Min(l.InFeatures, l.OutFeatures))
            throw new ArgumentException($"{l.Name}: rank {k} rounds up to {padded} for the GPTQ layout, more than min({l.OutFeatures}, {l.InFeatures})");
        using var v = Tensor<double>.Zeros(padded, l.InFeatures);
        using var u = Tensor<double>.Zeros(l.OutFeatures, padded);
        var lv = l.V.Span;
        for (int i = 0; i < lv.Length; i++) v.Span[i] = lv[i];
        for (int i = 0; i < l.OutFeatures; i++)
        {
            var src = l.U.Row(i);
            var dst = u.Row(i);
            for (int j = 0; j < k; j++) dst[j] = src[j];
        }
        var (mv, rv) = quantize(v, null);
        using var qv = mv.Dequantize();
        using var hu = uHessian?.Invoke(qv);
        var (mu, ru) = quantize(u, hu);
        using var qu = mu.Dequantize();
        l.SetLowRank(DenseMath.ToFloat(qu), DenseMath.ToFloat(qv), l.Bias?.Clone());
        return new QuantizedLinear(l, [new QuantizedPart(Linear.VName(l.Name), mv, rv), new QuantizedPart(Linear.UName(l.Name), mu, ru)],
            padded, sw.Elapsed.TotalSeconds);
    }

    /// <summary>H of U's input t = V'x: V' C V'ᵀ in float64 (the Gram an observer of t would collect, without its float32 rounding).</summary>
    internal static Tensor<double> FactorHessian(Tensor<double> quantizedV, Tensor<double> c)
    {
        int k = quantizedV.Rows, n = quantizedV.Cols;
        using var vc = Tensor<double>.Uninitialized(k, n);
        Blas.Dgemm(Transpose.No, Transpose.No, k, n, n, 1.0, quantizedV.Span, n, c.Span, n, 0.0, vc.Span, n);
        var h = Tensor<double>.Uninitialized(k, k);
        Blas.Dgemm(Transpose.No, Transpose.Yes, k, k, n, 1.0, vc.Span, n, quantizedV.Span, n, 0.0, h.Span, k);
        for (int i = 0; i < k; i++)
            for (int j = 0; j < i; j++) h[i, j] = h[j, i] = 0.5 * (h[i, j] + h[j, i]);
        return h;
    }
}
