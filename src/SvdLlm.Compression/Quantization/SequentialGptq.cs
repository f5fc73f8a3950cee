using System.Diagnostics;
using SvdLlm.Compression.Calibration;
using SvdLlm.Models.Architectures;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Quantization;

/// <summary>One quantized linear, for the sink and the report.</summary>
public sealed record QuantizedLinear(Linear Linear, GptqResult Result, double Seconds);

/// <summary>
/// GPTQ's sequential calibration (the reference's llama_sequential with true-sequential): the inputs of decoder layer l
/// come from the already quantized layers before it, and inside a layer the linears are quantized one input at a time in
/// forward order (q/k/v, then o, then gate/up, then down), each H collected after the linears before it were quantized.
/// A layer costs (distinct inputs + 1) forward passes over the calibration windows: one per input, one to produce the
/// next layer's inputs. Memory: one layer's weights, one H (float64) with GPTQ's two n² work matrices, and the hidden
/// states of all windows (in memory up to 1 GiB, else a temporary file, as in calibration).
/// </summary>
public static class SequentialGptq
{
    /// <param name="sink">receives each layer's quantized linears (their weights in the model are the dequantized ones) before the layer is released</param>
    public static void Run(CausalLanguageModel model, CalibrationWindows windows, GptqOptions options, Action<int, IReadOnlyList<QuantizedLinear>> sink,
        Action<string>? log = null, int batchSize = 4, string? spillDirectory = null)
    {
        options.Check();
        log ??= _ => { };
        int seqLen = windows.SeqLen, samples = windows.Count, h = model.HiddenSize;
        var layers = model.Linears.GroupBy(l => CompressedCheckpoint.Writer.LayerIndex(l.Name + ".") ?? -1).OrderBy(g => g.Key).ToList();
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
            for (int s0 = 0; s0 < samples; s0 += batchSize)
            {
                int b = Math.Min(batchSize, samples - s0);
                using var e = model.Embed(windows.Tokens.AsSpan(s0 * seqLen, b * seqLen), b, seqLen);
                hidden.Write((long)s0 * seqLen, e.Span);
            }
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
                        Pass(model, layer.Key, hidden, part, samples, seqLen, batchSize, writeBack: false, observer);
                        model.Observer = previousObserver;
                        var taken = observer.TakeLayer();
                        var stats = taken.Single(t => t.Key == key).S;
                        using (stats)
                        {
                            Blas.SymmetrizeFromLower(stats.Gram.Span, stats.Features);
                            foreach (var l in layer.Where(l => l.InputKey == key))
                            {
                                var sw = Stopwatch.StartNew();
                                using var w = Compressor.Weight(model, l);
                                var result = Gptq.Quantize(w, stats.Gram, options);
                                using (var q = result.Matrix.Dequantize()) l.SetDense(DenseMath.ToFloat(q), l.Bias?.Clone());
                                done.Add(new QuantizedLinear(l, result, sw.Elapsed.TotalSeconds));
                            }
                        }
                    }
                    model.Observer = previousObserver;
                    Pass(model, layer.Key, hidden, part, samples, seqLen, batchSize, writeBack: true, observer: null);
                    sink(layer.Key, done);
                }
                finally
                {
                    foreach (var l in layer) l.Unload();
                }
                log($"gptq: layer {layer.Key} ({done.Count} matrices, {inputs.Count + 1} passes) in {clock.Elapsed.TotalSeconds:F1} s");
            }
        }
        finally
        {
            model.Observer = previousObserver;
            model.StreamWeights = previousStreaming;
            NativeBufferPool.Trim();
        }
    }

    /// <summary>Layer <paramref name="layer"/> over every window; its outputs replace the inputs only when <paramref name="writeBack"/>.</summary>
    private static void Pass(CausalLanguageModel model, int layer, Calibrator.HiddenStore hidden, Tensor<float> part, int samples, int seqLen, int batchSize,
        bool writeBack, Calibrator.GramObserver? observer)
    {
        int h = model.HiddenSize;
        for (int s0 = 0; s0 < samples; s0 += batchSize)
        {
            int b = Math.Min(batchSize, samples - s0);
            int rows = b * seqLen;
            using var x = rows == part.Rows ? null : Tensor<float>.Uninitialized(rows, h);
            var t = x ?? part;
            hidden.Read((long)s0 * seqLen, t.Span);
            observer?.BeginCall();
            model.ForwardLayer(layer, t, b, seqLen);
            if (writeBack) hidden.Write((long)s0 * seqLen, t.Span);
        }
    }
}
