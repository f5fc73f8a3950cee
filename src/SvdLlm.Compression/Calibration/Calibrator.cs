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
    /// <summary>The most calibration tokens one request may ask for (2²⁸: the window ids alone are 1 GB).</summary>
    public const long MaxCalibrationTokens = 1L << 28;

    /// <summary>
    /// <paramref name="samples"/> windows of <paramref name="seqLen"/> tokens at random offsets of
    /// <paramref name="stream"/> (seeded; the same seed gives the same windows), as one [samples·seqLen] array.
    /// </summary>
    public static int[] SampleWindows(ReadOnlySpan<int> stream, int samples, int seqLen, int seed)
    {
        if (samples <= 0 || seqLen <= 0) throw new ArgumentException($"samples ({samples}) and seq_len ({seqLen}) must be positive");
        if (stream.Length <= seqLen) throw new ArgumentException($"the calibration text has {stream.Length} tokens, not more than one window of {seqLen}");
        // Checked in long: samples × seq_len beyond int silently wrapped (67108865 × 64 gave 64 tokens).
        long tokens = (long)samples * seqLen;
        if (tokens > MaxCalibrationTokens)
            throw new ArgumentException($"samples × seq_len = {samples} × {seqLen} = {tokens} calibration tokens; at most {MaxCalibrationTokens} are supported (the paper uses 256 × 2048 = 524288)");
        var rng = new Random(seed);
        var windows = new int[tokens];
        for (int s = 0; s < samples; s++)
        {
            int at = rng.Next(0, stream.Length - seqLen);
            stream.Slice(at, seqLen).CopyTo(windows.AsSpan(s * seqLen, seqLen));
        }
        return windows;
    }

    /// <summary>
    /// The windows of <paramref name="request"/>: its text file tokenized whole with the model's tokenizer
    /// (BOS at the start only), then <see cref="SampleWindows(ReadOnlySpan{int}, int, int, int)"/>.
    /// </summary>
    public static CalibrationWindows SampleWindows(CalibrationRequest request)
    {
        string text = SvdLlm.Models.Data.Utf8Text.ReadFile(request.TextFile, "calibration text");
        var tokenizer = SvdLlm.Models.Tokenizers.HfTokenizer.Load(request.ModelDirectory);
        var ids = tokenizer.Encode(text, addSpecialTokens: true);
        if (ids.Length <= request.SeqLen)
            throw new ArgumentException($"{Path.GetFullPath(request.TextFile)}: the calibration text is {ids.Length} tokens long with this model's tokenizer; " +
                                        $"it needs more than one window of seq_len {request.SeqLen}");
        return new CalibrationWindows(SampleWindows(ids, request.Samples, request.SeqLen, request.Seed), request.SeqLen);
    }

    /// <summary>Hidden states of all windows up to this size stay in memory; larger ones go to a temporary file.</summary>
    internal const long DefaultHiddenInMemoryLimit = 1L << 30;

    /// <summary>Accumulates the input statistics of every linear, layer by layer, in memory.</summary>
    /// <param name="batchSize">windows per forward call (memory/speed trade-off; does not change the sums beyond rounding)</param>
    public static CalibrationStatistics Collect(CausalLanguageModel model, int[] windows, int seqLen, int batchSize = 4, Action<int, int>? progress = null)
        => Collect(model, windows, seqLen, batchSize, progress, DefaultHiddenInMemoryLimit);

    internal static CalibrationStatistics Collect(CausalLanguageModel model, int[] windows, int seqLen, int batchSize, Action<int, int>? progress, long hiddenInMemoryLimit)
    {
        var stats = new CalibrationStatistics();
        try
        {
            Run(model, windows, seqLen, batchSize, progress, hiddenInMemoryLimit, Path.GetTempPath(), float32Gram: false, (key, s) => stats.Inputs.Add(key, s));
            return stats;
        }
        catch
        {
            stats.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Layer-streamed calibration: like <see cref="Collect"/>, but each layer's statistics are written to the statistics
    /// file at <paramref name="path"/> as soon as the layer is done and then freed, so peak memory is one layer's Grams.
    /// The file appears complete or not at all.
    /// </summary>
    /// <param name="float32Gram">accumulate the Grams in float32 as SVD-LLM's public code does (<see cref="GramObserver.Float32Accumulation"/>)</param>
    public static void CollectToFile(CausalLanguageModel model, int[] windows, int seqLen, string path, IReadOnlyDictionary<string, string> metadata,
        int batchSize = 4, Action<int, int>? progress = null, bool float32Gram = false)
        => CollectToFile(model, windows, seqLen, path, metadata, batchSize, progress, fisher: null, DefaultHiddenInMemoryLimit, float32Gram);

    /// <param name="fisher">FWSVD's row sums per linear, written after the layer entries (they are small)</param>
    /// <param name="hiddenInMemoryLimit">bytes of hidden states kept in memory; above, they go to a temporary file next to <paramref name="path"/></param>
    internal static void CollectToFile(CausalLanguageModel model, int[] windows, int seqLen, string path, IReadOnlyDictionary<string, string> metadata,
        int batchSize, Action<int, int>? progress, IReadOnlyDictionary<string, double[]>? fisher, long hiddenInMemoryLimit, bool float32Gram = false)
    {
        using var writer = new CalibrationStatisticsWriter(path);
        Run(model, windows, seqLen, batchSize, progress, hiddenInMemoryLimit, Path.GetDirectoryName(writer.TargetPath)!, float32Gram, (key, s) =>
        {
            using (s) writer.WriteInput(key, s);
        });
        if (fisher is not null)
            foreach (var (name, rows) in fisher.OrderBy(kv => kv.Key, StringComparer.Ordinal)) writer.WriteFisher(name, rows);
        writer.Commit(metadata);
    }

    /// <summary>
    /// The one layer loop: layer i's forward over every window (in batches, the layer's weights loaded once and released
    /// after its last batch), its inputs' Grams symmetrised and handed to <paramref name="layerDone"/> (which takes
    /// ownership) before layer i + 1 starts. An input belongs to the layer during whose forward the observer saw it,
    /// so every key handed over is complete.
    /// </summary>
    private static void Run(CausalLanguageModel model, int[] windows, int seqLen, int batchSize, Action<int, int>? progress,
        long hiddenInMemoryLimit, string spillDirectory, bool float32Gram, Action<string, InputStatistics> layerDone)
    {
        if (seqLen <= 0 || windows.Length == 0 || windows.Length % seqLen != 0)
            throw new ArgumentException($"{windows.Length} window tokens are not a positive multiple of seq_len {seqLen}");
        if (batchSize <= 0) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "must be positive");
        int samples = windows.Length / seqLen;
        int h = model.HiddenSize;
        var observer = new GramObserver { Float32Accumulation = float32Gram };
        var previousObserver = model.Observer;
        bool previousStreaming = model.StreamWeights;
        var done = new HashSet<string>(StringComparer.Ordinal);
        using var hidden = HiddenStore.Create(windows.Length, h, hiddenInMemoryLimit, spillDirectory);
        using var part = Tensor<float>.Uninitialized(Math.Min(batchSize, samples) * seqLen, h);
        try
        {
            EmbedAll(model, windows, seqLen, batchSize, hidden);
            model.Observer = observer;
            for (int layer = 0; layer < model.NumLayers; layer++)
            {
                // One load of the layer's weights (and one BF16→float32 conversion) for all batches; released after the last.
                RunLayer(model, layer, hidden, part, samples, seqLen, batchSize, observer, writeBack: true, releaseAfterLastBatch: true);
                foreach (var (key, s) in observer.TakeLayer())
                {
                    if (!done.Add(key)) { s.Dispose(); throw new InvalidOperationException($"input '{key}' seen again in layer {layer}; inputs must belong to one layer"); }
                    Blas.SymmetrizeFromLower(s.Gram.Span, s.Features);
                    layerDone(key, s);
                }
                progress?.Invoke(layer + 1, model.NumLayers);
            }
        }
        finally
        {
            observer.Dispose();
            model.Observer = previousObserver;
            model.StreamWeights = previousStreaming;
            NativeBufferPool.Trim(); // the layers' reused buffers; the next stage starts from its own peak
        }
    }

    /// <summary>The embeddings of every window into <paramref name="hidden"/>, a batch at a time.</summary>
    internal static void EmbedAll(CausalLanguageModel model, ReadOnlySpan<int> windows, int seqLen, int batchSize, HiddenStore hidden)
    {
        int samples = windows.Length / seqLen;
        for (int s0 = 0; s0 < samples; s0 += batchSize)
        {
            int b = Math.Min(batchSize, samples - s0);
            using var e = model.Embed(windows.Slice(s0 * seqLen, b * seqLen), b, seqLen);
            hidden.Write((long)s0 * seqLen, e.Span);
        }
    }

    /// <summary>
    /// Decoder layer <paramref name="layer"/> over every window, a batch at a time through <paramref name="part"/>; its outputs
    /// replace the inputs when <paramref name="writeBack"/>. The observer (set on the model by the caller) starts a call per
    /// batch. With <paramref name="releaseAfterLastBatch"/> the layer's weights are released after its last batch.
    /// </summary>
    internal static void RunLayer(CausalLanguageModel model, int layer, HiddenStore hidden, Tensor<float> part, int samples, int seqLen, int batchSize,
        GramObserver? observer, bool writeBack, bool releaseAfterLastBatch)
    {
        for (int s0 = 0; s0 < samples; s0 += batchSize)
        {
            int b = Math.Min(batchSize, samples - s0);
            int rows = b * seqLen;
            using var x = rows == part.Rows ? null : Tensor<float>.Uninitialized(rows, model.HiddenSize);
            var t = x ?? part;
            hidden.Read((long)s0 * seqLen, t.Span);
            observer?.BeginCall();
            if (releaseAfterLastBatch) model.StreamWeights = s0 + batchSize >= samples;
            model.ForwardLayer(layer, t, b, seqLen);
            if (writeBack) hidden.Write((long)s0 * seqLen, t.Span);
        }
    }

    /// <summary>The hidden states of all windows [samples·seqLen, hidden] float32, read and written one batch at a time.</summary>
    internal abstract class HiddenStore : IDisposable
    {
        /// <summary>In memory up to <paramref name="inMemoryLimit"/> bytes, else a temporary file in <paramref name="spillDirectory"/>.</summary>
        public static HiddenStore Create(long rows, int cols, long inMemoryLimit, string spillDirectory)
            => rows * cols * sizeof(float) <= inMemoryLimit ? new MemoryHiddenStore(checked((int)rows), cols) : new FileHiddenStore(spillDirectory, cols);

        public abstract void Read(long row, Span<float> into);
        public abstract void Write(long row, ReadOnlySpan<float> from);
        public abstract void Dispose();
    }

    private sealed class MemoryHiddenStore(int rows, int cols) : HiddenStore
    {
        private readonly Tensor<float> _t = Tensor<float>.Uninitialized(rows, cols);
        public override void Read(long row, Span<float> into) => _t.Span.Slice(checked((int)(row * cols)), into.Length).CopyTo(into);
        public override void Write(long row, ReadOnlySpan<float> from) => from.CopyTo(_t.Span.Slice(checked((int)(row * cols)), from.Length));
        public override void Dispose() => _t.Dispose();
    }

    /// <summary>Spilled hidden states (8.6 GB for 256×2048 tokens at hidden 4096): a temporary file, deleted on disposal.</summary>
    private sealed class FileHiddenStore : HiddenStore
    {
        private const string HiddenPrefix = ".calibration-hidden";

        private readonly string _path;
        private readonly FileStream _fs;
        private readonly int _cols;

        public FileHiddenStore(string directory, int cols)
        {
            Directory.CreateDirectory(directory);
            // As large as the calibration activations, and kill -9 skips DeleteOnClose: remove what dead runs left.
            SvdLlm.Models.Data.Leftovers.Sweep(directory, HiddenPrefix);
            _path = SvdLlm.Models.Data.Leftovers.TempPath(Path.Combine(directory, HiddenPrefix));
            _fs = new FileStream(_path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 20, FileOptions.DeleteOnClose);
            _cols = cols;
        }

        public string FilePath => _path;

        public override void Read(long row, Span<float> into)
        {
            _fs.Position = row * _cols * sizeof(float);
            _fs.ReadExactly(System.Runtime.InteropServices.MemoryMarshal.AsBytes(into));
        }

        public override void Write(long row, ReadOnlySpan<float> from)
        {
            _fs.Position = row * _cols * sizeof(float);
            _fs.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(from));
        }

        public override void Dispose()
        {
            _fs.Dispose();
            if (File.Exists(_path)) File.Delete(_path);
        }
    }

    /// <summary>
    /// Adds each distinct input once per forward call (q/k/v and gate/up share one Gram) into the current layer's
    /// statistics. Precision: C += xᵀx by dsyrk in float64 on the float32 activations converted exactly to float64
    /// (products of two float32 are exact in float64), so the only rounding is float64 accumulation, relative
    /// ≈ T·u₆₄ ≈ 1e-12 over T = 10⁶ tokens. Float32 blocks (ssyrk per call, added into float64) would have per-entry
    /// error ≤ T_b·u₃₂·√(C_ii C_jj) for a block of T_b = batch·seq_len rows (≈ 1.2e-4 relative at T_b = 2048, Cauchy–Schwarz
    /// carrying the bound across blocks); LLaMA Grams are ill-conditioned far beyond 10⁴ (SVD-LLM needs jitter for
    /// Cholesky even in float64), so that would perturb the very eigen-directions whitening weights most, and measured at
    /// 7B shape it saves only 0.8 of ≈ 4.7 ms per token-layer. We keep float64.
    /// </summary>
    internal sealed class GramObserver : ILinearObserver, IDisposable
    {
        private readonly HashSet<string> _seenThisCall = [];

        /// <summary>When set, only this input key is accumulated (GPTQ's sequential passes need one input at a time).</summary>
        public string? Only { get; set; }

        /// <summary>
        /// SVD-LLM's public code (its profiling hook): each forward call's xᵀx is a float32 product added into a float32
        /// accumulator. Reproduced for <c>numerics: reference</c> only (ssyrk per call into a float32 scratch, then a
        /// float32 add); the result is handed over in float64, exactly the float32 values.
        /// </summary>
        public bool Float32Accumulation { get; init; }

        private readonly Dictionary<string, float[]> _float32 = new(StringComparer.Ordinal);
        private float[]? _scratch32;
        private Dictionary<string, InputStatistics> _layer = new(StringComparer.Ordinal);
        private Tensor<double>? _scratch;

        public void BeginCall() => _seenThisCall.Clear();

        /// <summary>The finished layer's inputs (ownership passes to the caller), in the order the forward pass saw them.</summary>
        public List<(string Key, InputStatistics S)> TakeLayer()
        {
            foreach (var (key, acc) in _float32)
            {
                var g = _layer[key].Gram.Span;
                int n = _layer[key].Features;
                for (int i = 0; i < n; i++)
                    for (int j = 0; j <= i; j++) g[i * n + j] = acc[i * n + j];
            }
            _float32.Clear();
            var list = _layer.Select(kv => (kv.Key, kv.Value)).ToList();
            _layer = new(StringComparer.Ordinal);
            return list;
        }

        public void OnInput(Linear linear, ReadOnlySpan<float> x, int rows)
        {
            if (Only is not null && linear.InputKey != Only) return;
            if (!_seenThisCall.Add(linear.InputKey)) return;
            int n = linear.InFeatures;
            if (!_layer.TryGetValue(linear.InputKey, out var s)) _layer[linear.InputKey] = s = new InputStatistics(n);
            else if (s.Features != n) throw new InvalidOperationException($"input '{linear.InputKey}' seen with {n} features, earlier with {s.Features}");
            var abs = s.AbsSum.AsSpan();
            s.Tokens += rows;
            if (Float32Accumulation)
            {
                // The reference's route reads the float32 activations as they are: no float64 copy.
                for (int r = 0; r < rows; r++)
                {
                    var xr = x.Slice(r * n, n);
                    for (int j = 0; j < n; j++) abs[j] += Math.Abs((double)xr[j]);
                }
                if (!_float32.TryGetValue(linear.InputKey, out var acc)) _float32[linear.InputKey] = acc = new float[n * n];
                if (_scratch32 is null || _scratch32.Length < n * n) _scratch32 = new float[n * n];
                Blas.Ssyrk(lower: true, Transpose.Yes, n, rows, 1f, x[..(rows * n)], n, 0f, _scratch32, n);
                for (int i = 0; i < n; i++)
                    for (int j = 0; j <= i; j++) acc[i * n + j] += _scratch32[i * n + j];
                return;
            }
            // One scratch reused across calls: a fresh 180 MB buffer per call costs its page faults every time.
            if (_scratch is null || _scratch.Length < (long)rows * n)
            {
                _scratch?.Dispose();
                _scratch = Tensor<double>.Uninitialized(rows, n);
            }
            var d = _scratch.Span[..(rows * n)];
            for (int r = 0; r < rows; r++)
            {
                var xr = x.Slice(r * n, n);
                var dr = d.Slice(r * n, n);
                for (int j = 0; j < n; j++)
                {
                    double v = xr[j];
                    dr[j] = v;
                    abs[j] += Math.Abs(v);
                }
            }
            // C += xᵀx (lower triangle; symmetrised when the layer is done).
            Blas.Dsyrk(lower: true, Transpose.Yes, n, rows, 1.0, d, n, 1.0, s.Gram.Span, n);
        }

        public void Dispose()
        {
            _scratch?.Dispose();
            foreach (var s in _layer.Values) s.Dispose();
            _layer.Clear();
        }
    }
}
