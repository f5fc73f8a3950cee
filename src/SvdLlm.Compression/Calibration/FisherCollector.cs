using SvdLlm.Models.Architectures;
using SvdLlm.Models.Training;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Calibration;

/// <summary>
/// FWSVD's Fisher information Î_ij = Σ_windows (∂L/∂W_ij)², L the next-token loss of one calibration window,
/// from backward passes of the training model (LLaMA family, dense checkpoints, no sliding window).
/// Each window is its own batch, so Î is the empirical Fisher over the calibration set. Only the row sums
/// Σ_j Î_ij are kept (all FWSVD uses), [out_features] per linear.
/// The training model holds every parameter and its gradient in float32 plus one window's activations of every
/// layer, so it is checked against the available memory first (<see cref="EstimateBytes"/>).
/// </summary>
public static class FisherCollector
{
    /// <summary>Adds the row sums into <paramref name="stats"/>.Fisher.</summary>
    public static void Collect(CausalLanguageModel model, int[] windows, int seqLen, CalibrationStatistics stats, Action<int, int>? progress = null, bool force = false)
        => Collect(model, windows, seqLen, stats.Fisher, progress, force);

    /// <summary>Adds the row sums per linear name into <paramref name="rowSums"/> (created on first use).</summary>
    public static void Collect(CausalLanguageModel model, int[] windows, int seqLen, Dictionary<string, double[]> rowSums, Action<int, int>? progress = null, bool force = false)
        => Backward(model, windows, seqLen, new SquaredGradientObserver(rowSums, model.Linears.ToDictionary(l => l.Name)), progress, force);

    /// <summary>
    /// One forward and backward pass of the training model per window (each window its own batch, its loss the mean
    /// next-token loss), every linear's (x, dy) shown to <paramref name="observer"/>: the one gradient loop behind
    /// FWSVD's Fisher and GFWSVD's gradient samples.
    /// </summary>
    internal static void Backward(CausalLanguageModel model, int[] windows, int seqLen, IGradientObserver observer, Action<int, int>? progress, bool force)
    {
        if (model is not LlamaForCausalLM llama)
            throw new NotSupportedException($"gradient statistics need the backward pass, which exists for the LLaMA family only (this model is {model.Architecture})");
        LlamaTrainingModel.RequireUniformShapes(llama.Config); // before the memory estimate, which assumes uniform shapes
        CheckMemory(llama.Config, seqLen, force);
        using var train = new LlamaTrainingModel(llama.Config);
        train.LoadFrom(model.Reader);
        train.GradientObserver = observer;
        int samples = windows.Length / seqLen;
        for (int s = 0; s < samples; s++)
        {
            var w = windows.AsSpan(s * seqLen, seqLen);
            train.ZeroGrad();
            train.Forward(w[..^1], w[1..], 1, seqLen - 1);
            train.Backward();
            progress?.Invoke(s + 1, samples);
        }
    }

    /// <summary>
    /// Bytes the Fisher pass allocates for a window of <paramref name="seqLen"/> tokens (one batch of seqLen − 1
    /// positions), from <see cref="LlamaTrainingModel"/>'s buffers: parameters and gradients (float32 each), every
    /// layer's forward activations (input, ln1, q, k, v, attention probabilities NH·T², attention output, res2, ln2,
    /// gate, up, act, two rstd), the final norm's buffers and dlogits [T, V], the backward's temporaries (dres, dln,
    /// dact/dgate/dup, datty/dq, dk/dv, a T² scratch, the forward's delta) and this collector's per-linear gradient [out, in].
    /// </summary>
    public static long EstimateBytes(LlamaConfig config, int seqLen) => TrainingModelBytes(config, seqLen, 1, DenseParameterCount(config))
        + 4 * Math.Max(Math.Max((long)config.NumAttentionHeads * config.HeadDim * config.HiddenSize, (long)config.IntermediateSize * config.HiddenSize),
            (long)config.NumKeyValueHeads * config.HeadDim * config.HiddenSize);

    /// <summary>The dense model's parameter count (what the training model's arena holds without low-rank linears).</summary>
    public static long DenseParameterCount(LlamaConfig config)
    {
        long h = config.HiddenSize, d = config.HeadDim, qw = config.NumAttentionHeads * d, kvw = config.NumKeyValueHeads * d;
        long inter = config.IntermediateSize, v = config.VocabSize, layers = config.NumHiddenLayers;
        long perLayerParams = 2 * h + qw * h + 2 * kvw * h + h * qw + 3 * h * inter
            + (config.QkvBias ? qw + 2 * kvw : 0) + (config.OutputBias ? h : 0) + (config.MlpBias ? 2 * inter + h : 0);
        return v * h + layers * perLayerParams + h + (config.TieWordEmbeddings ? 0 : v * h);
    }

    /// <summary>
    /// Bytes of a <see cref="LlamaTrainingModel"/> holding <paramref name="parameters"/> float32 parameters and, unless
    /// only adapters train (<paramref name="weightGradients"/> false), as many gradients, running a batch of <paramref name="batch"/> windows of <paramref name="seqLen"/> tokens (seqLen − 1
    /// positions each): the forward activations every layer keeps, the final norm and dlogits, the backward's temporaries.
    /// </summary>
    public static long TrainingModelBytes(LlamaConfig config, int seqLen, int batch, long parameters, bool weightGradients = true)
    {
        long t = Math.Max(1, seqLen - 1), n = t * batch;
        long h = config.HiddenSize, d = config.HeadDim, qw = config.NumAttentionHeads * d, kvw = config.NumKeyValueHeads * d;
        long inter = config.IntermediateSize, v = config.VocabSize, heads = config.NumAttentionHeads, layers = config.NumHiddenLayers;
        long perLayerActs = 4 * n * h + 2 * n + 2 * n * qw + 2 * n * kvw + batch * heads * t * t + 3 * n * inter;
        long global = 2 * n * h + n + n * v;
        long backward = 2 * n * h + 3 * n * inter + 2 * n * qw + 2 * n * kvw + t * t + n * h;
        return 4 * ((weightGradients ? 2 : 1) * parameters + layers * perLayerActs + global + backward);
    }

    /// <summary>Refuses (unless forced) when the estimate exceeds MemAvailable.</summary>
    internal static void CheckMemory(LlamaConfig config, int seqLen, bool force, long? available = null)
    {
        long need = EstimateBytes(config, seqLen);
        available ??= Preflight.AvailableMemoryBytes();
        if (available is not long a || need <= a || force) return;
        throw new InsufficientResourcesException(
            $"Fisher statistics need the whole training model (float32 parameters and gradients plus one window's activations of every layer): "
            + $"about {need / 1e9:F1} GB for seq_len {seqLen}, but only {a / 1e9:F1} GB is available (MemAvailable). "
            + "Use a smaller model or seq_len, free memory, or force it (--force) to try anyway.");
    }

    private sealed class SquaredGradientObserver(Dictionary<string, double[]> fisher, Dictionary<string, Linear> linears) : IGradientObserver
    {
        public void OnLinearBackward(string name, ReadOnlySpan<float> x, ReadOnlySpan<float> dy, int rows)
        {
            var l = linears[name];
            if (!fisher.TryGetValue(name, out var rows_)) fisher[name] = rows_ = new double[l.OutFeatures];
            // This window's weight gradient dW = dyᵀ·x [out, in]; only its squared row sums are kept (FWSVD's I_i).
            using var g = Tensor<float>.Uninitialized(l.OutFeatures, l.InFeatures);
            Blas.Sgemm(Transpose.Yes, Transpose.No, l.OutFeatures, l.InFeatures, rows, 1f, dy, l.OutFeatures, x, l.InFeatures, 0f, g.Span, l.InFeatures);
            for (int i = 0; i < l.OutFeatures; i++)
            {
                double sum = 0;
                foreach (float v in g.Row(i)) sum += (double)v * v;
                rows_[i] += sum;
            }
        }
    }
}
