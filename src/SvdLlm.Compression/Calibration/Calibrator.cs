using SvdLlm.Models.Architectures;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Calibration;

/// <summary>
/// SVD-LLM's calibration: random windows of a token stream, run through the model one decoder layer at
/// a time. The inputs of layer i are the outputs of the ORIGINAL layer i−1 (every window's hidden state
/// is kept, one layer's worth), and the weights are streamed, so peak memory is one layer's activations,
/// one layer's weights and that layer's Gram matrices.
/// </summary>
public static class Calibrator
{
    /// <summary>
    /// <paramref name="samples"/> windows of <paramref name="seqLen"/> tokens at random offsets of
    /// <paramref name="stream"/> (seeded; the same seed gives the same windows), as one [samples·seqLen] array.
    /// </summary>
    public static int[] SampleWindows(ReadOnlySpan<int> stream, int samples, int seqLen, int seed)
    {
        if (samples <= 0 || seqLen <= 0) throw new ArgumentException($"samples ({samples}) and seq_len ({seqLen}) must be positive");
        if (stream.Length <= seqLen) throw new ArgumentException($"the calibration text has {stream.Length} tokens, not more than one window of {seqLen}");
        var rng = new Random(seed);
        var windows = new int[samples * seqLen];
        for (int s = 0; s < samples; s++)
        {
            int at = rng.Next(0, stream.Length - seqLen);
            stream.Slice(at, seqLen).CopyTo(windows.AsSpan(s * seqLen, seqLen));
        }
        return windows;
    }

    /// <summary>
    /// The windows of <paramref name="request"/>: its text file tokenized whole with the model's tokenizer
    /// (BOS at the start only), then <see cref="SampleWindows"/>.
    /// </summary>
    public static int[] SampleWindows(CalibrationRequest request)
    {
        if (!File.Exists(request.TextFile)) throw new FileNotFoundException($"calibration text not found: {request.TextFile}", request.TextFile);
        var tokenizer = SvdLlm.Models.Tokenizers.HfTokenizer.Load(request.ModelDirectory);
        var ids = tokenizer.Encode(File.ReadAllText(request.TextFile), addSpecialTokens: true);
        return SampleWindows(ids, request.Samples, request.SeqLen, request.Seed);
    }

    /// <summary>Accumulates the input statistics of every linear, layer by layer.</summary>
    /// <param name="batchSize">windows per forward call (memory/speed trade-off; does not change the sums beyond rounding)</param>
    public static CalibrationStatistics Collect(CausalLanguageModel model, int[] windows, int seqLen, int batchSize = 4, Action<int, int>? progress = null)
    {
        int samples = windows.Length / seqLen;
        var stats = new CalibrationStatistics();
        var observer = new GramObserver(stats);
        var previousObserver = model.Observer;
        bool previousStreaming = model.StreamWeights;
        model.StreamWeights = true;
        using var hidden = model.Embed(windows, samples, seqLen);
        int h = hidden.Cols;
        try
        {
            model.Observer = observer;
            for (int layer = 0; layer < model.NumLayers; layer++)
            {
                for (int s0 = 0; s0 < samples; s0 += batchSize)
                {
                    int b = Math.Min(batchSize, samples - s0);
                    using var part = Tensor<float>.From(hidden.RowRange(s0 * seqLen, b * seqLen), b * seqLen, h);
                    observer.BeginCall();
                    model.ForwardLayer(layer, part, b, seqLen);
                    part.Span.CopyTo(hidden.RowRange(s0 * seqLen, b * seqLen));
                }
                progress?.Invoke(layer + 1, model.NumLayers);
            }
        }
        finally
        {
            model.Observer = previousObserver;
            model.StreamWeights = previousStreaming;
        }
        foreach (var s in stats.Inputs.Values) Blas.SymmetrizeFromLower(s.Gram.Span, s.Features);
        return stats;
    }

    /// <summary>
    /// Layer-streamed calibration: like <see cref="Collect"/>, but each layer's statistics are written to the statistics
    /// file at <paramref name="path"/> as soon as the layer is done and then freed, so peak memory is one layer's Grams.
    /// The file appears complete or not at all.
    /// </summary>
    public static void CollectToFile(CausalLanguageModel model, int[] windows, int seqLen, string path, IReadOnlyDictionary<string, string> metadata,
        int batchSize = 4, Action<int, int>? progress = null)
        => throw new NotImplementedException("streamed calibration lands with issue 11");

    /// <summary>Adds each distinct input once per forward call: q/k/v (and gate/up) share one Gram.</summary>
    private sealed class GramObserver(CalibrationStatistics stats) : ILinearObserver
    {
        private readonly HashSet<string> _seenThisCall = [];

        public void BeginCall() => _seenThisCall.Clear();

        public void OnInput(Linear linear, ReadOnlySpan<float> x, int rows)
        {
            if (!_seenThisCall.Add(linear.InputKey)) return;
            int n = linear.InFeatures;
            var s = stats.GetOrAdd(linear.InputKey, n);
            using var xd = Tensor<double>.Uninitialized(rows, n);
            var d = xd.Span;
            for (int i = 0; i < d.Length; i++)
            {
                double v = x[i];
                d[i] = v;
                s.AbsSum[i % n] += Math.Abs(v);
            }
            // C += xᵀx (lower triangle; symmetrised once at the end).
            Blas.Dsyrk(lower: true, Transpose.Yes, n, rows, 1.0, d, n, 1.0, s.Gram.Span, n);
            s.Tokens += rows;
        }
    }
}
