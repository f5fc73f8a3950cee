using SvdLlm.Compression.Truncation;
using SvdLlm.Models.Architectures;
using SvdLlm.Numerics;

namespace SvdLlm.Compression;

/// <summary>The resources one calibrate + compress job needs, estimated from the model's shapes before any work starts.</summary>
public sealed record ResourceEstimate(long CalibrationMemoryBytes, long CompressionMemoryBytes, long StatisticsDiskBytes, long WorkspaceDiskBytes, long OutputDiskBytes)
{
    public long PeakMemoryBytes => Math.Max(CalibrationMemoryBytes, CompressionMemoryBytes);
    public long DiskBytes => StatisticsDiskBytes + WorkspaceDiskBytes + OutputDiskBytes;

    public string Describe() =>
        $"memory: calibration {Gb(CalibrationMemoryBytes)}, compression {Gb(CompressionMemoryBytes)}; " +
        $"disk: statistics {Gb(StatisticsDiskBytes)}, workspace {Gb(WorkspaceDiskBytes)}, output {Gb(OutputDiskBytes)}";

    internal static string Gb(long bytes) => $"{bytes / 1e9:F2} GB";
}

/// <summary>Thrown when the preflight finds the job does not fit the machine (a user error: exit 1, nothing written).</summary>
public sealed class InsufficientResourcesException(string message) : UserInputException(message);

/// <summary>
/// Estimates memory and disk of calibration and compression from config.json's shapes (the model is not loaded) and
/// refuses work that does not fit, unless forced. The estimates follow the layer-streamed data flow: one layer's
/// statistics, one matrix's decomposition workspace and one layer's factors are resident at a time.
/// </summary>
public static class Preflight
{
    private const long Mb = 1L << 20;

    /// <param name="statisticsCached">the statistics file exists already (no calibration memory or statistics disk)</param>
    /// <param name="gradientSamples">GFWSVD's K (gradient samples per linear)</param>
    public static ResourceEstimate Estimate(CausalLanguageModel model, CompressionMethod method, double ratio, int samples, int seqLen, bool statisticsCached,
        int gradientSamples = Compressor.GradientSamplesPerLinear)
    {
        RequireTrainableShapes(model, method.NeedsFisher || method.NeedsGradientSamples || method.Allocation == AllocationKind.Learned);
        var layers = CompressedCheckpoint.LinearsByLayer(model);
        long hidden = model.HiddenSize;
        // Largest single tensor outside the layers (embedding or lm_head), converted to float32 when read.
        long vocabTensor = (long)model.VocabSize * hidden * 4;

        // Calibration: hidden states of all windows (spilled to disk above 1 GiB), one layer's weights in float32,
        // its Grams (float64 [n, n] per distinct input) and a batch's activations (≈ 12 hidden-sized and 3 intermediate-sized rows per token).
        long hiddenStates = HiddenStateBytes(model, samples, seqLen);
        long layerWeights = LayerWeightBytes(layers);
        // One full float64 Gram per distinct input key of a layer (the file's packed triangles are unpacked on read).
        long layerGrams = layers.Max(g => g.GroupBy(l => l.InputKey).Sum(k => (long)k.First().InFeatures * k.First().InFeatures * 8));
        long calibration = statisticsCached ? 0 : hiddenStates + layerWeights + layerGrams + BatchActivationBytes(model, seqLen) + vocabTensor + 300 * Mb;

        // Compression: one layer's Grams and whitenings, the largest matrix's decomposition, one layer's factors.
        long decomposition = model.Linears.Max(l => DecompositionBytes(l.OutFeatures, l.InFeatures));
        long layerFactors = layers.Max(g => g.Sum(l => FactorBytes(l, ratio)));
        // Whitenings: one [n, n] factor per input some square or tall linear reads (LayerInputs builds them for those only).
        long layerWhitenings = layers.Max(g => g.GroupBy(l => l.InputKey).Where(k => k.Any(l => l.OutFeatures >= l.InFeatures))
            .Sum(k => (long)k.First().InFeatures * k.First().InFeatures * 8));
        long compression = layerGrams + layerWhitenings + decomposition + layerFactors + vocabTensor + 300 * Mb;
        if (method.NeedsGradientSamples && model is LlamaForCausalLM llama)
        {
            // GFWSVD, per layer: the training model's backward over one window, K float64 gradient samples of the layer's
            // linears, and each linear's Kronecker factors (A, B and the power iteration's and regularisation's copies).
            int k = Math.Min(gradientSamples, samples);
            compression += Calibration.FisherCollector.EstimateBytes(llama.Config, seqLen)
                + layers.Max(g => Calibration.GradientSamples.EstimateBytes(g, k))
                + layers.Max(g => g.Sum(l => 3L * 8 * ((long)l.InFeatures * l.InFeatures + (long)l.OutFeatures * l.OutFeatures)));
        }

        // Freed blocks kept for the next layer (NativeBufferPool): never more than its capacity, nor more than the stage
        // itself had live, so at most that much on top of the stage's own peak.
        calibration += Math.Min(NativeBufferPool.CapacityBytes, calibration);
        compression += Math.Min(NativeBufferPool.CapacityBytes, compression);

        long statsDisk = statisticsCached ? 0 : layers.Sum(g => g.GroupBy(l => l.InputKey).Sum(k => (long)k.First().InFeatures * (k.First().InFeatures + 1) / 2 * 8 + k.First().InFeatures * 8L));
        bool twoPass = method.Allocation == AllocationKind.TheoreticalLoss && method.Truncation == TruncationKind.EigenWhitening;
        int workspaceElement = Compressor.CompactWorkspace(model) ? 4 : 8;
        long workspace = twoPass ? model.Linears.Sum(l => (long)l.OutFeatures * WeightedLowRank.MaxUsefulRank(l.OutFeatures, l.InFeatures) * workspaceElement) : 0;
        long output = NonLinearBytes(model) + (long)(model.Linears.Sum(l => l.StoredWeightBytes(model.Reader)) * (1 - ratio));
        return new ResourceEstimate(calibration, compression, statsDisk, workspace, output);
    }

    /// <summary>
    /// MoDeGPT: the calibration statistics as for an SVD method; compressing holds one block's float64 work (its two
    /// Grams, the symmetric root of the attention input's and its eigenvectors, the block's weights in float64 and
    /// their float32 results) plus the block-influence pass (a batch of 8 windows' hidden states and their copy);
    /// the output is the dense checkpoint at 1 − R of the linears in their dtype plus the rest.
    /// </summary>
    private static ResourceEstimate EstimateStructured(CausalLanguageModel model, double ratio, int samples, int seqLen, bool statisticsCached)
    {
        var plain = Estimate(model, CompressionMethod.Get("svdllm"), ratio, samples, seqLen, statisticsCached, Compressor.GradientSamplesPerLinear);
        var layers = CompressedCheckpoint.LinearsByLayer(model).Where(g => g.Key >= 0).ToList();
        long grams = layers.Max(g => g.GroupBy(l => l.InputKey).Sum(k => 8L * k.First().InFeatures * k.First().InFeatures));
        // The largest Gram's eigenbasis and dsyevd's workspace (2n²), a working copy of it for the leverage solve, and the
        // attention input's symmetric root and inverse root: measured 9.17 GB on a 7B-shaped block; this estimate gives about 10.8 GB there (pool included).
        long widest = layers.Max(g => g.Max(l => 8L * l.InFeatures * l.InFeatures));
        long narrowest = layers.Max(g => g.Min(l => 8L * l.InFeatures * l.InFeatures));
        long attention = 4 * widest + 2 * narrowest;
        long weights = layers.Max(g => g.Sum(l => 12L * l.OutFeatures * l.InFeatures));
        long hidden = 2L * 4 * Math.Min(8, samples) * seqLen * model.Linears.Max(l => l.InFeatures);
        long compression = grams + attention + weights + hidden + 300L * (1 << 20);
        long output = NonLinearBytes(model) + (long)(model.Linears.Sum(l => l.StoredWeightBytes(model.Reader)) * (1 - ratio));
        return plain with { CompressionMemoryBytes = compression + Math.Min(NativeBufferPool.CapacityBytes, compression), WorkspaceDiskBytes = 0, OutputDiskBytes = output };
    }

    /// <summary>
    /// A method that runs the training model (Fisher or gradient statistics, Dobi-SVD, LoRA recovery) cannot run on a
    /// structurally pruned model (per-layer widths): refused here, where the plan is checked and before any estimate
    /// built on the uniform shapes of the config, with the training model's own error.
    /// </summary>
    private static void RequireTrainableShapes(CausalLanguageModel model, bool trains)
    {
        if (trains && model is LlamaForCausalLM llama) SvdLlm.Models.Training.LlamaTrainingModel.RequireUniformShapes(llama.Config);
    }

    /// <summary>
    /// What a recipe needs: its SVD method's estimate (with LoRA recovery's training model when it recovers), its quantizer's, or both (an SVD method whose factors are then
    /// quantized: the stages run one after the other, so memory is the larger of the two; the SVD output is a scratch
    /// directory beside the quantized one, so both outputs count, and the quantizer's output is bounded by the dense
    /// layout's since the factors hold fewer weights).
    /// </summary>
    public static ResourceEstimate Estimate(CausalLanguageModel model, MethodRecipe recipe, double ratio, int samples, int seqLen, bool statisticsCached)
    {
        if (recipe.Method.IsQuantization) return EstimateQuantization(model, recipe.CreateQuantizer()!, samples, seqLen);
        if (recipe.Method.Structured) return EstimateStructured(model, ratio, samples, seqLen, statisticsCached);
        RequireTrainableShapes(model, recipe.Recovery is not null);
        var svd = Estimate(model, recipe.Method, ratio, samples, seqLen, statisticsCached, recipe.Gfwsvd?.GradientSamples ?? Compressor.GradientSamplesPerLinear);
        if (recipe.Recovery is { } lora && model is LlamaForCausalLM llama)
        {
            // LoRA recovery: the whole compressed model in training (parameters, gradients, a batch's activations), after
            // the SVD stage; its output is a second copy of the factors beside the scratch SVD directory.
            long compressedParameters = model.ParameterCount - (long)(model.LinearParameterCount * ratio);
            long recovery = Recovery.LoraRecovery.EstimateBytes(llama.Config, compressedParameters, seqLen, Math.Min(lora.BatchSize, samples));
            svd = svd with { CompressionMemoryBytes = Math.Max(svd.CompressionMemoryBytes, recovery), OutputDiskBytes = 2 * svd.OutputDiskBytes };
        }
        if (recipe.Dobi is { } dobi && model is LlamaForCausalLM dl)
        {
            // Dobi-SVD: the frozen training model (no gradient block) with a batch's activations, plus every linear's
            // float64 SVD factors of every window in the batch kept for the backward (U [L, q], V [m, q], Â [L, m], the
            // input copy and dL/dA), and in stage 2 one layer's m×m subspaces.
            long l = Math.Max(1, seqLen - 1);
            int batch = Math.Min(dobi.BatchSize, samples);
            long caches = model.Linears.Sum(x => { long q = Math.Min(l, x.OutFeatures); return batch * 8 * (l * q + x.OutFeatures * q + 3 * l * x.OutFeatures); });
            long layerSubspaces = CompressedCheckpoint.LinearsByLayer(model).Max(g => g.Sum(x => 8L * x.OutFeatures * x.OutFeatures * 2));
            long stage = Calibration.FisherCollector.TrainingModelBytes(dl.Config, seqLen, batch, model.ParameterCount, weightGradients: false) + caches + layerSubspaces;
            svd = svd with { CompressionMemoryBytes = Math.Max(svd.CompressionMemoryBytes, stage) };
        }
        if (recipe.CreateQuantizer() is not { } q) return svd;
        var quant = EstimateQuantization(model, q, samples, seqLen);
        return svd with
        {
            CompressionMemoryBytes = Math.Max(svd.CompressionMemoryBytes, quant.CompressionMemoryBytes),
            OutputDiskBytes = svd.OutputDiskBytes + quant.OutputDiskBytes,
        };
    }

    /// <summary>
    /// rtn/gptq (<see cref="Quantization.QuantizedCheckpoint"/>): one layer's float32 weights; for GPTQ the hidden states
    /// of all windows (spilled above 1 GiB), one H and GPTQ's one n×n work buffer, W in float64 twice (as read and
    /// permuted), the layer's codes, a batch's activations and the Gram observer's float64 copy of a batch's inputs.
    /// Output: the non-linear tensors as they are plus the layout's bytes of every linear.
    /// </summary>
    public static ResourceEstimate EstimateQuantization(CausalLanguageModel model, Quantization.MatrixQuantizer quantizer, int samples, int seqLen)
    {
        var layers = CompressedCheckpoint.LinearsByLayer(model);
        long vocabTensor = (long)model.VocabSize * model.HiddenSize * 4;
        long layerCodes = layers.Max(g => g.Sum(l => (long)l.InFeatures * l.OutFeatures));
        long matrix = model.Linears.Max(l => 2L * l.OutFeatures * l.InFeatures * 8);
        long memory = LayerWeightBytes(layers) + layerCodes + matrix + vocabTensor + 300 * Mb;
        if (quantizer.NeedsHessian)
        {
            int widest = model.Linears.Max(l => l.InFeatures);
            memory += HiddenStateBytes(model, samples, seqLen) + 2L * widest * widest * 8 + BatchActivationBytes(model, seqLen) + 4L * seqLen * widest * 8;
        }
        memory += Math.Min(NativeBufferPool.CapacityBytes, memory);
        long layout = model.Linears.Sum(l => quantizer.StoredBytes(l.OutFeatures, l.InFeatures));
        return new ResourceEstimate(0, memory, 0, 0, NonLinearBytes(model) + layout);
    }

    /// <summary>The hidden states of all windows in float32, spilled to a file above 1 GiB.</summary>
    private static long HiddenStateBytes(CausalLanguageModel model, int samples, int seqLen) => Math.Min((long)samples * seqLen * model.HiddenSize * 4, 1L << 30);

    /// <summary>One decoder layer's weights in float32.</summary>
    private static long LayerWeightBytes(IEnumerable<IGrouping<int, Linear>> layers) => layers.Max(g => g.Sum(l => (long)l.InFeatures * l.OutFeatures * 4));

    /// <summary>A batch of 4 windows' activations: ≈ 12 hidden-sized and 3 intermediate-sized rows per token, and the attention scores.</summary>
    private static long BatchActivationBytes(CausalLanguageModel model, int seqLen)
    {
        int maxIntermediate = model.Linears.Max(l => Math.Max(l.InFeatures, l.OutFeatures));
        return 4L * seqLen * (12L * model.HiddenSize + 3L * maxIntermediate) * 4 + 4L * seqLen * seqLen * 4 * 2;
    }

    /// <summary>Bytes of the checkpoint's files besides the decoder linears' weights (embeddings, norms, lm_head).</summary>
    private static long NonLinearBytes(CausalLanguageModel model)
        => model.Reader.FilePaths.Sum(f => new FileInfo(f).Length) - model.Linears.Sum(l => l.StoredWeightBytes(model.Reader));

    /// <summary>Route L (m ≤ n): W, Ŵ, W C, G, its eigenvectors and dsyevd workspace, the kept U. Route R: W, Ŵ, B, H and eig, B V, U.</summary>
    internal static long DecompositionBytes(int m, int n)
    {
        long keep = WeightedLowRank.MaxUsefulRank(m, n);
        long r = Math.Min(m, n);
        long common = 2L * m * n * 8;
        return m <= n
            ? common + (long)m * n * 8 + 4 * r * r * 8 + m * keep * 8
            : common + (long)m * n * 8 + 4 * r * r * 8 + 2 * m * keep * 8;
    }

    private static long FactorBytes(Linear l, double ratio)
    {
        long k = Ranks.ForRemovedRatio(l.OutFeatures, l.InFeatures, Math.Max(0, ratio - 0.1));
        return k * (l.OutFeatures + l.InFeatures) * (8 + 4);
    }

    /// <summary>Prints the estimate and refuses when memory (MemAvailable) or disk (free space where files go) is short.</summary>
    public static void Check(ResourceEstimate e, string statisticsDirectory, string outputDirectory, string? workspaceDirectory, bool force, Action<string> log)
    {
        log($"preflight: {e.Describe()}");
        var problems = new List<string>();
        long? available = AvailableMemoryBytes();
        if (available is long a && e.PeakMemoryBytes > a)
            problems.Add($"needs about {ResourceEstimate.Gb(e.PeakMemoryBytes)} of memory, {ResourceEstimate.Gb(a)} is available (MemAvailable)");
        var byDrive = new Dictionary<string, long>(StringComparer.Ordinal);
        void Need(string dir, long bytes)
        {
            string root = ExistingAncestor(dir);
            byDrive[root] = byDrive.GetValueOrDefault(root) + bytes;
        }
        Need(statisticsDirectory, e.StatisticsDiskBytes);
        Need(workspaceDirectory ?? Path.GetTempPath(), e.WorkspaceDiskBytes);
        Need(outputDirectory, e.OutputDiskBytes);
        // Directories on one file system share its free space.
        foreach (var group in byDrive.GroupBy(kv => new DriveInfo(kv.Key).RootDirectory.FullName + "|" + new DriveInfo(kv.Key).AvailableFreeSpace))
        {
            long need = group.Sum(kv => kv.Value);
            long free = new DriveInfo(group.First().Key).AvailableFreeSpace;
            if (need > free) problems.Add($"needs about {ResourceEstimate.Gb(need)} of disk under {string.Join(", ", group.Select(kv => kv.Key))}, {ResourceEstimate.Gb(free)} is free");
        }
        if (problems.Count == 0) return;
        string message = "preflight: " + string.Join("; ", problems);
        if (force)
        {
            log(message + " (continuing: --force)");
            return;
        }
        throw new InsufficientResourcesException(message + ". Nothing was written. Use a smaller calibration (--samples/--seq-len), free space, or pass --force to try anyway.");
    }

    /// <summary>MemAvailable from /proc/meminfo, or null where there is none.</summary>
    public static long? AvailableMemoryBytes()
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/meminfo"))
                if (line.StartsWith("MemAvailable:", StringComparison.Ordinal))
                    return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
        return null;
    }

    private static string ExistingAncestor(string dir)
    {
        string? d = Path.GetFullPath(dir);
        while (d is not null && !Directory.Exists(d)) d = Path.GetDirectoryName(d);
        return d ?? Path.GetPathRoot(Path.GetFullPath(dir))!;
    }
}
