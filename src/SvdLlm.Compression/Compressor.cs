using System.Diagnostics;
using SvdLlm.Compression.Calibration;
using SvdLlm.Compression.Truncation;
using SvdLlm.Models.Architectures;
using SvdLlm.Numerics;

namespace SvdLlm.Compression;

/// <summary>
/// Applies a <see cref="CompressionMethod"/> at ratio R (fraction of the decoder linears' parameters
/// removed) to a loaded model in memory: allocate ranks, truncate every linear with its calibration
/// statistics, replace it by its factors, and measure ‖WX − W'X‖_F on the calibration Gram.
/// </summary>
public static class Compressor
{
    /// <summary>
    /// Bump when a change to allocation, truncation or the checkpoint writer changes the compressed model
    /// produced from the same statistics; the experiment pipeline's cell keys hash it.
    /// </summary>
    public const int CodeVersion = 1;

    /// <summary>Calibration windows the ASVD sensitivity search evaluates each probe on (it runs |linears| × 9 forward passes).</summary>
    public const int SensitivityProbeWindows = 8;

    public static CompressionReport Compress(CausalLanguageModel model, CalibrationStatistics stats, string methodName, double ratio,
        Action<string>? log = null, int[]? windows = null, int seqLen = 0)
    {
        var method = CompressionMethod.Get(methodName);
        if (!(ratio > 0 && ratio < 1)) throw new ArgumentOutOfRangeException(nameof(ratio), $"ratio {ratio} must be in (0, 1): the fraction of the linears' parameters removed");
        if (model.Linears.Any(l => l.IsLowRank)) throw new InvalidOperationException($"{model.Directory} is already compressed (it has low-rank linears); compress the original model");
        if (method.NeedsFisher && stats.Fisher.Count == 0) throw new ArgumentException($"method '{methodName}' needs Fisher statistics; calibrate with Fisher enabled");
        log ??= _ => { };
        var report = new CompressionReport { Method = methodName, Ratio = ratio };
        report.LinearParamsBefore = model.LinearParameterCount;
        report.ModelParamsBefore = model.ParameterCount;
        foreach (var (k, v) in stats.Metadata) report.Calibration[k] = v;

        var targets = model.Linears.Select(l => new MatrixTarget(l.Name, l.OutFeatures, l.InFeatures, l.Kind)).ToList();
        var byName = model.Linears.ToDictionary(l => l.Name);
        var clock = Stopwatch.StartNew();
        TruncationInputs Inputs(Linear l) => new()
        {
            Gram = Stats(stats, l).Gram,
            MeanAbsInput = Stats(stats, l).MeanAbs(),
            FisherRowSums = stats.FisherRowSums(l.Name),
        };

        // 1. Rank allocation.
        List<RankAllocation> allocation;
        if (method.Allocation == AllocationKind.TheoreticalLoss)
        {
            var v2 = new EigenWhiteningTruncation();
            allocation = TheoreticalLossAllocation.Allocate(targets, ratio, (t, k) =>
            {
                var l = byName[t.Name];
                using var w = Weight(model, l);
                using var d = v2.WhitenedWeight(w, Inputs(l), out var us, out _, out double dropped, out _);
                us.Dispose();
                using var svd = Lapack.Svd(d);
                return Math.Sqrt(Math.Pow(DenseMath.TailNorm(svd.S, Math.Min(k, svd.S.Length)), 2) + dropped);
            });
            foreach (var a in allocation.Where(a => a.Note is not null)) report.Notes.Add($"{a.Name}: {a.Note}");
        }
        else if (method.Allocation == AllocationKind.Sensitivity)
        {
            if (windows is null || seqLen <= 0) throw new ArgumentException($"method '{methodName}' needs the calibration windows for its sensitivity search");
            var truncation0 = method.Truncation();
            int probeWindows = Math.Min(SensitivityProbeWindows, windows.Length / seqLen);
            var probeTokens = windows.AsSpan(0, probeWindows * seqLen).ToArray();
            allocation = SensitivityAllocation.Allocate(targets, ratio, (t, ranks) =>
            {
                var l = byName[t.Name];
                using var w = Weight(model, l);
                var ppls = new List<double>(ranks.Count);
                foreach (var f in truncation0.TruncateAtRanks(w, ranks, Inputs(l)))
                {
                    using (f)
                    {
                        var dense = l.Weight.Clone();
                        l.SetLowRank(DenseMath.ToFloat(f.U), DenseMath.ToFloat(f.V), l.Bias);
                        try
                        {
                            ppls.Add(Math.Exp(model.TokenNll(probeTokens, probeWindows, seqLen).Average()));
                        }
                        finally
                        {
                            l.SetDense(dense, l.Bias);
                        }
                    }
                }
                return ppls;
            }, out var probes);
            report.Notes.Add($"ASVD sensitivity search: {probes.Count} probes on {probeWindows} calibration windows; " +
                             $"candidate kept ratios {string.Join(", ", SensitivityAllocation.CandidateKeptRatios)}");
        }
        else
        {
            allocation = UniformAllocation.Allocate(targets, ratio);
        }
        report.StageSeconds["allocation"] = clock.Elapsed.TotalSeconds;
        log($"allocation ({method.Allocation}) done in {clock.Elapsed.TotalSeconds:F1} s");

        // 2. Truncation, matrix by matrix.
        clock.Restart();
        var truncation = method.Truncation();
        long largest = -1;
        foreach (var a in allocation)
        {
            var l = byName[a.Name];
            var sw = Stopwatch.StartNew();
            using var w = Weight(model, l);
            var inputs = Inputs(l);
            using var factors = truncation.Truncate(w, a.Rank, inputs);
            double seconds = sw.Elapsed.TotalSeconds;
            using var approx = factors.Product();
            double measured = DenseMath.MeasuredLoss(w, approx, inputs.Gram!);
            long before = l.ParameterCount;
            var bias = l.Bias?.Clone();
            l.SetLowRank(DenseMath.ToFloat(factors.U), DenseMath.ToFloat(factors.V), bias);
            if ((long)l.OutFeatures * l.InFeatures > largest)
            {
                largest = (long)l.OutFeatures * l.InFeatures;
                report.LargestSvdMatrix = $"{l.Name} [{l.OutFeatures}×{l.InFeatures}]";
                report.LargestSvdSeconds = seconds;
            }
            string? note = string.Join("; ", new[] { a.Note, factors.Note }.Where(n => n is not null));
            report.Matrices.Add(new MatrixReport(l.Name, [l.OutFeatures, l.InFeatures], a.Group, a.Ratio, a.Rank, factors.TheoreticalLoss,
                factors.LossObjective, measured, before, l.ParameterCount, sw.Elapsed.TotalSeconds, a.AllocationLoss, note.Length == 0 ? null : note));
            if (factors.Note is not null) report.Notes.Add($"{l.Name}: {factors.Note}");
        }
        report.StageSeconds["truncation"] = clock.Elapsed.TotalSeconds;
        log($"truncation ({truncation.Name}) of {allocation.Count} matrices done in {clock.Elapsed.TotalSeconds:F1} s");

        // 3. SVD-LLM's closed-form local update of W_u on inputs from the compressed preceding layers.
        if (method.LocalUpdate)
        {
            if (windows is null || seqLen <= 0) throw new ArgumentException($"method '{methodName}' needs the calibration windows for its local update");
            clock.Restart();
            LocalUpdate.Apply(model, windows, seqLen, report);
            report.StageSeconds["local_update"] = clock.Elapsed.TotalSeconds;
            log($"local update done in {clock.Elapsed.TotalSeconds:F1} s");
        }

        report.LinearParamsAfter = model.LinearParameterCount;
        report.ModelParamsAfter = model.ParameterCount;
        return report;
    }

    /// <summary>
    /// Layer-streamed compression of a checkpoint into a sharded Hugging Face directory at <paramref name="outDir"/>
    /// (one shard per decoder layer plus one for the rest, and model.safetensors.index.json): one decoder layer's
    /// statistics, weights and factors are in memory at a time. Two-pass methods keep only spectra between passes
    /// (and the eigenvectors they will reuse, in a workspace file under <paramref name="workspaceDir"/>).
    /// </summary>
    public static CompressionReport CompressToDirectory(CausalLanguageModel model, IStatisticsSource stats, string methodName, double ratio, string outDir,
        Action<string>? log = null, string? workspaceDir = null)
        => throw new NotImplementedException("streamed compression lands with issue 11");

    internal static InputStatistics Stats(CalibrationStatistics stats, Linear l)
        => stats.Inputs.TryGetValue(l.InputKey, out var s) ? s
            : throw new ArgumentException($"no calibration statistics for the input of {l.Name} (key '{l.InputKey}'); were they collected on this model?");

    /// <summary>The linear's dense weight as float64, read from memory or from the checkpoint.</summary>
    internal static Tensor<double> Weight(CausalLanguageModel model, Linear l)
    {
        if (l.IsLowRank) return DenseMath.ToDouble(model.Reader.ReadAsFloat32(l.Name + ".weight"), l.OutFeatures, l.InFeatures);
        model.Load(l);
        return DenseMath.ToDouble(l.Weight.Span, l.OutFeatures, l.InFeatures);
    }
}
