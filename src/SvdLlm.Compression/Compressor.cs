using SvdLlm.Models.Checkpoints;
using SvdLlm.Compression.Dobi;
using System.Diagnostics;
using SvdLlm.Compression.Calibration;
using SvdLlm.Compression.Truncation;
using SvdLlm.Models.Architectures;
using SvdLlm.Numerics;

namespace SvdLlm.Compression;

/// <summary>
/// Applies a <see cref="CompressionMethod"/> at ratio R (fraction of the decoder linears' parameters removed): allocate
/// ranks, truncate every linear with its calibration statistics, and measure ‖WX − W'X‖_F on the calibration Gram.
/// Work goes one decoder layer at a time: that layer's statistics are read from the <see cref="IStatisticsSource"/>,
/// its weights from the checkpoint, and its factors go to a sink (the model in memory, or one shard of the output
/// directory) before the next layer starts. V2's allocation needs every layer's spectrum before any truncation, so it
/// makes a first pass that keeps the spectra (a few KB per matrix) and writes each matrix's kept singular vectors to a
/// workspace file, which the second pass reads back instead of decomposing again. Every decomposition goes through
/// <see cref="WeightedLowRank"/> (one symmetric eigenproblem of size min(m, n) per matrix, shared whitenings per input).
/// </summary>
public static class Compressor
{
    /// <summary>
    /// Bump when a change to allocation, truncation or the checkpoint writer changes the compressed model
    /// produced from the same statistics; the experiment pipeline's cell keys hash it.
    /// v2: one eigenproblem per matrix (projection W' = U_k U_kᵀ W), balanced factors, sharded output.
    /// </summary>
    public const int CodeVersion = 2;

    /// <summary>Calibration windows the ASVD sensitivity search evaluates each probe on (it runs |linears| × 9 forward passes).</summary>
    public const int SensitivityProbeWindows = 8;

    /// <summary>GFWSVD's default K: gradient samples per linear, each the mean over windows / K calibration windows (the reference's K ≈ 16–32).</summary>
    public const int GradientSamplesPerLinear = 16;

    /// <summary>Rows of E = W − W' used to measure the loss when the exact tr(E C Eᵀ) would cost more than <see cref="ExactLossBudget"/> multiply-adds (and the block size of the exact sum).</summary>
    public const int MeasuredLossRows = 512;

    /// <summary>
    /// Multiply-adds up to which the measured loss is exact by default: every matrix of the default model, none of a 7B.
    /// Exact at 7B shape costs, measured on 2 cores at 98 GFLOP/s dgemm, 2.0 s (q_proj), 5.8 s (gate_proj), 14.0 s
    /// (down_proj), ≈ 34 s a layer against ≈ 3 s for the 512-row estimate: +26 % on V2's 117 s layer. The estimate is
    /// within 1e-3 of the exact figure (1.0003, 1.0010, 0.9999 there), enough to check a truncation, too coarse for the
    /// 1e-7 share of float32 numerics; a caller comparing numerics asks for exact losses (the scale benchmark's --exact-loss).
    /// </summary>
    public const double ExactLossBudget = 2e9;

    /// <summary>Compresses the model in memory (its linears become low-rank); see <see cref="CompressedCheckpoint.Write"/> to save it.</summary>
    public static CompressionReport Compress(CausalLanguageModel model, IStatisticsSource stats, string methodName, double ratio,
        Action<string>? log = null, CalibrationWindows? windows = null, string? workspaceDir = null, GfwsvdOptions? gfwsvd = null, DobiOptions? dobi = null,
        bool referenceNumerics = false, double exactLossBudget = ExactLossBudget)
    {
        var method = Validate(model, stats, methodName, ratio, windows);
        return Run(model, stats, method, ratio, log ?? (_ => { }), windows, workspaceDir, streamed: false, gfwsvd, dobi, referenceNumerics, exactLossBudget, (layer, done) =>
        {
            foreach (var (l, f) in done) l.SetLowRank(DenseMath.ToFloat(f.U), DenseMath.ToFloat(f.V), l.Bias?.Clone());
        });
    }

    /// <summary>
    /// Layer-streamed compression of a checkpoint into a sharded Hugging Face directory at <paramref name="outDir"/>
    /// (one shard per decoder layer plus one for the rest, and model.safetensors.index.json): one decoder layer's
    /// statistics, weights and factors are in memory at a time. Two-pass methods keep only spectra between passes
    /// (and the singular vectors they will reuse, in a workspace under <paramref name="workspaceDir"/>). Methods that
    /// run the model between truncations (asvd-search's probes, svdllm-update's local update) compress in memory.
    /// </summary>
    /// <param name="referenceNumerics">SVD-LLM's truncation in its public code's float32 steps (<see cref="CholeskyWhiteningTruncation"/>)</param>
    /// <param name="exactLossBudget">multiply-adds up to which a matrix's measured loss is exact (<see cref="MeasuredLoss"/>); infinity measures every matrix exactly</param>
    public static CompressionReport CompressToDirectory(CausalLanguageModel model, IStatisticsSource stats, string methodName, double ratio, string outDir,
        Action<string>? log = null, string? workspaceDir = null, CalibrationWindows? windows = null, GfwsvdOptions? gfwsvd = null, DobiOptions? dobi = null,
        bool referenceNumerics = false, double exactLossBudget = ExactLossBudget)
    {
        if (referenceNumerics && !CompressionMethod.Get(methodName).TakesReferenceNumerics)
            throw new ArgumentException($"numerics: reference reproduces SVD-LLM's Cholesky truncation; {methodName} has none");
        var method = Validate(model, stats, methodName, ratio, windows);
        log ??= _ => { };
        // Dobi-SVD runs the original checkpoint (read from disk) between its layers, so it streams like the others.
        if (method.NeedsCalibrationWindows && method.Allocation != AllocationKind.Learned)
        {
            var inMemory = Compress(model, stats, methodName, ratio, log, windows, workspaceDir, gfwsvd, dobi, referenceNumerics, exactLossBudget);
            var clock = Stopwatch.StartNew();
            inMemory.StageSeconds["write"] = 0;
            CompressedCheckpoint.Write(model, outDir, inMemory);
            inMemory.StageSeconds["write"] = clock.Elapsed.TotalSeconds;
            SvdLlm.Models.Training.AtomicFile.WriteAllText(Path.Combine(outDir, "compression-report.json"),
                CompressedCheckpoint.ReportJson(inMemory).ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
            return inMemory;
        }
        using var writer = new CompressedCheckpoint.Writer(model, outDir);
        double writeSeconds = 0;
        var report = Run(model, stats, method, ratio, log, windows, workspaceDir, streamed: true, gfwsvd, dobi, referenceNumerics, exactLossBudget, (layer, done) =>
        {
            var clock = Stopwatch.StartNew();
            var factors = new Dictionary<string, (Tensor<float>, Tensor<float>)>(StringComparer.Ordinal);
            try
            {
                if (dobi?.Remap == true) writer.WriteLayer(layer, done.ToDictionary(x => x.Item1.Name, x => Remapped(x.Item1, x.Item2)));
                else
                {
                    foreach (var (l, f) in done) factors[l.Name] = (DenseMath.ToFloat(f.U), DenseMath.ToFloat(f.V));
                    writer.WriteLayer(layer, factors);
                }
            }
            finally
            {
                foreach (var (u, v) in factors.Values)
                {
                    u.Dispose();
                    v.Dispose();
                }
            }
            writeSeconds += clock.Elapsed.TotalSeconds;
        });
        var commit = Stopwatch.StartNew();
        writer.Commit(report);
        report.StageSeconds["write"] = writeSeconds + commit.Elapsed.TotalSeconds;
        report.StageSeconds["truncation"] -= writeSeconds;
        // The report inside the directory gets the final stage times (atomic rewrite of one small file).
        SvdLlm.Models.Training.AtomicFile.WriteAllText(Path.Combine(outDir, "compression-report.json"),
            CompressedCheckpoint.ReportJson(report).ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
        return report;
    }

    private static CompressionMethod Validate(CausalLanguageModel model, IStatisticsSource stats, string methodName, double ratio, CalibrationWindows? windows)
    {
        var method = CompressionMethod.Get(methodName);
        if (method.IsQuantization) throw new ArgumentException($"{methodName} quantizes; it is run through MethodRecipe (QuantizedCheckpoint), not the low-rank compressor");
        if (!(ratio > 0 && ratio < 1)) throw new ArgumentOutOfRangeException(nameof(ratio), $"ratio {ratio} must be in (0, 1): the fraction of the linears' parameters removed");
        if (model.Linears.Any(l => l.IsLowRank)) throw new InvalidOperationException($"{model.Directory} is already compressed (it has low-rank linears); compress the original model");
        if (method.NeedsFisher && !stats.HasFisher) throw new ArgumentException($"method '{methodName}' needs Fisher statistics; calibrate with Fisher enabled");
        // Checked before any work: these methods run the model on the windows (after the allocation pass, for the update).
        if (method.NeedsCalibrationWindows && windows is null)
            throw new ArgumentException($"method '{methodName}' runs the model on the calibration windows while compressing; pass them (CalibrationWindows)");
        return method;
    }

    /// <summary>Dobi-SVD's remapped storage of W' = U V (Checkpoints/RemapLayout): the full SVD of W', k triplets remapped.</summary>
    private static LinearReplacement Remapped(Linear l, LowRankFactors f)
    {
        using var product = f.Product();
        var r = DobiRemap.Quantize(product, f.Rank, halfPrecision: true);
        int p = Math.Min(l.OutFeatures, l.InFeatures), big = Math.Max(l.OutFeatures, l.InFeatures);
        string u = Linear.UName(l.Name);
        return new LinearReplacement(_ => RemapLayout.Tensors(u, r.Rank, p, big, r.LongCodes, r.LongAbsmax, r.ShortCodes, r.ShortAbsmax, r.Remainder, DynamicMap.Codes),
            u + ".bias", r.Rank);
    }

    private static CompressionReport Run(CausalLanguageModel model, IStatisticsSource stats, CompressionMethod method, double ratio, Action<string> log,
        CalibrationWindows? windows, string? workspaceDir, bool streamed, GfwsvdOptions? gfwsvd, DobiOptions? dobi, bool referenceNumerics, double exactLossBudget, Action<int, List<(Linear, LowRankFactors)>> sink)
    {
        try
        {
            return RunLayers(model, stats, method, ratio, log, windows, workspaceDir, streamed, gfwsvd ?? new GfwsvdOptions(), dobi ?? new DobiOptions(), referenceNumerics, exactLossBudget, sink);
        }
        finally
        {
            NativeBufferPool.Trim(); // the layers' reused buffers; the next stage starts from its own peak
        }
    }

    private static CompressionReport RunLayers(CausalLanguageModel model, IStatisticsSource stats, CompressionMethod method, double ratio, Action<string> log,
        CalibrationWindows? windows, string? workspaceDir, bool streamed, GfwsvdOptions gfwsvd, DobiOptions dobi, bool referenceNumerics, double exactLossBudget, Action<int, List<(Linear, LowRankFactors)>> sink)
    {
        var report = new CompressionReport { Method = method.Name, Ratio = ratio };
        report.LinearParamsBefore = model.LinearParameterCount;
        report.ModelParamsBefore = model.ParameterCount;
        foreach (var (k, v) in stats.Metadata) report.Calibration[k] = v;
        var layers = CompressedCheckpoint.LinearsByLayer(model).Select(g => (Index: g.Key, Linears: g.ToList())).ToList();
        var targets = layers.SelectMany(g => g.Linears).Select(l => new MatrixTarget(l.Name, l.OutFeatures, l.InFeatures, l.Kind)).ToList();
        var byName = model.Linears.ToDictionary(l => l.Name);
        var seconds = model.Linears.ToDictionary(l => l.Name, _ => 0.0);
        var routes = new Dictionary<string, string>(StringComparer.Ordinal);
        var clock = Stopwatch.StartNew();
        Tensor<double> Weight(Linear l) => streamed ? DenseMath.ToDouble(model.Reader.ReadAsFloat32(l.Name + ".weight"), l.OutFeatures, l.InFeatures) : Compressor.Weight(model, l);

        // Singular vectors kept between V2's passes when its truncation is the allocation's own decomposition.
        bool reuse = method.Allocation == AllocationKind.TheoreticalLoss && method.Truncation == TruncationKind.EigenWhitening;
        using var workspace = reuse ? new BasisWorkspace(workspaceDir, CompactWorkspace(model)) : null;

        // 1. Rank allocation.
        List<RankAllocation> allocation;
        DobiGammas? learned = null;
        if (method.Allocation == AllocationKind.Learned)
        {
            learned = DobiSvd.Learn(model, windows!, targets, ratio, dobi, log);
            int elementBytes = model.Reader.GetInfo(model.Linears[0].Name + ".weight").DType.ElementSize();
            allocation = DobiSvd.Ranks(targets, learned, ratio, dobi.Remap, elementBytes);
            // The batch's next-token cross-entropy (log of the PPL the objective holds), on the axis LoRA's curves use.
            report.TrainingCurves["dobi_gamma"] = learned.Perplexity.Select(p => Math.Log(p)).ToList();
            report.Notes.Add($"Dobi-SVD stage 1: {learned.Loss.Length} steps; ratio kept by the trained γ {learned.FinalRatio:F4} (target {1 - ratio:F4}); "
                + "weight ranks ⌊c·ρ·γ⌋ with one c fitted to the uniform ranks' parameter budget");
            foreach (var a in allocation) report.Notes.Add($"{a.Name}: γ {learned.Gamma[a.Name]:F2} (activation rank of {learned.SeqLen}) → rank {a.Rank}");
        }
        else if (method.Allocation == AllocationKind.TheoreticalLoss)
        {
            var spectra = new Dictionary<string, (double[] Lambda, double Dropped)>(StringComparer.Ordinal);
            foreach (var (index, linears) in layers)
            {
                var layerClock = Stopwatch.StartNew();
                using var inputs = new LayerInputs(stats, TruncationKind.EigenWhitening);
                foreach (var l in linears)
                {
                    var sw = Stopwatch.StartNew();
                    using var w = Weight(l);
                    using var basis = WeightedLowRank.Decompose(w, inputs.For(l), reuse ? WeightedLowRank.MaxUsefulRank(l.OutFeatures, l.InFeatures) : 0);
                    spectra[l.Name] = (basis.Lambda, basis.DroppedSquared);
                    routes[l.Name] = basis.Route;
                    workspace?.Write(l.Name, basis);
                    seconds[l.Name] += sw.Elapsed.TotalSeconds;
                }
                log($"allocation pass: layer {index} ({linears.Count} matrices) in {layerClock.Elapsed.TotalSeconds:F1} s");
            }
            allocation = TheoreticalLossAllocation.Allocate(targets, ratio, (t, k) => WeightedBasis.LossAtRank(spectra[t.Name].Lambda, spectra[t.Name].Dropped, k));
            foreach (var a in allocation.Where(a => a.Note is not null)) report.Notes.Add($"{a.Name}: {a.Note}");
        }
        else if (method.Allocation == AllocationKind.Sensitivity)
        {
            int seqLen = windows!.SeqLen;
            int probeWindows = Math.Min(SensitivityProbeWindows, windows.Count);
            var probeTokens = windows.Tokens.AsSpan(0, probeWindows * seqLen).ToArray();
            allocation = SensitivityAllocation.Allocate(targets, ratio, (t, ranks) =>
            {
                var l = byName[t.Name];
                using var inputs = new LayerInputs(stats, method.Truncation, release: false);
                var weighting = inputs.For(l);
                using var w = Weight(l);
                using var basis = WeightedLowRank.Decompose(w, weighting, ranks.Max());
                var ppls = new List<double>(ranks.Count);
                foreach (int k in ranks)
                {
                    using var f = WeightedLowRank.Truncate(w, basis, k, weighting);
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

        // 2. Truncation, layer by layer; each finished layer goes to the sink.
        clock.Restart();
        var byAllocation = allocation.ToDictionary(a => a.Name);
        long largest = -1;
        bool kronecker = method.Truncation == TruncationKind.Kronecker;
        bool subspaces = method.Truncation == TruncationKind.ActivationSubspace;
        double gradientSeconds = 0, subspaceSeconds = 0;
        foreach (var (index, linears) in layers)
        {
            var layerClock = Stopwatch.StartNew();
            // From the workspace, the decomposition is done: only the Gram (for the measured loss) is read, no whitening is built.
            // GFWSVD reads the Gram for the measured loss only; its weighting is the layer's Kronecker factors.
            using var inputs = new LayerInputs(stats, kronecker || subspaces || referenceNumerics ? TruncationKind.Svd : method.Truncation, decomposes: workspace is null);
            var done = new List<(Linear, LowRankFactors)>();
            Dictionary<string, KroneckerFactors>? kfac = null;
            Dictionary<string, DobiSubspace>? subs = null;
            try
            {
                if (kronecker)
                {
                    var gradientClock = Stopwatch.StartNew();
                    kfac = KroneckerFactorsOfLayer(model, windows!, linears, gfwsvd, report);
                    gradientSeconds += gradientClock.Elapsed.TotalSeconds;
                }
                if (subspaces)
                {
                    var subspaceClock = Stopwatch.StartNew();
                    subs = DobiSvd.OutputSubspacesOfLayer(model, windows!, learned!, linears, index, dobi.Beta, dobi.BatchSize);
                    subspaceSeconds += subspaceClock.Elapsed.TotalSeconds;
                }
                foreach (var l in linears)
                {
                    var a = byAllocation[l.Name];
                    var sw = Stopwatch.StartNew();
                    using var w = Weight(l);
                    var weighting = inputs.For(l);
                    LowRankFactors factors;
                    if (subs is not null)
                    {
                        factors = method.Reference().Truncate(w, a.Rank, new TruncationInputs { OutputSubspace = subs[l.Name] });
                        routes[l.Name] = "Dobi-SVD: V_k V_kᵀ W on the output activations' subspace";
                    }
                    else if (kfac is not null)
                    {
                        factors = method.Reference().Truncate(w, a.Rank, new TruncationInputs { Kronecker = kfac[l.Name] });
                        routes[l.Name] = "GFWSVD: SVD of L_Bᵀ W L_A";
                    }
                    else if (referenceNumerics)
                    {
                        factors = new CholeskyWhiteningTruncation(referenceNumerics: true).Truncate(w, a.Rank, new TruncationInputs { Gram = inputs.Gram(l) });
                        routes[l.Name] = "SVD-LLM's public code: float64 Cholesky, float32 inverse and SVD of W·S";
                    }
                    else if (workspace is not null)
                    {
                        using var basis = workspace.Read(l.Name);
                        factors = WeightedLowRank.Truncate(w, basis, a.Rank, weighting);
                    }
                    else
                    {
                        factors = WeightedLowRank.DecomposeAndTruncate(w, weighting, a.Rank, out string route);
                        routes[l.Name] = route;
                    }
                    done.Add((l, factors));
                    seconds[l.Name] += sw.Elapsed.TotalSeconds;
                    double measured = MeasuredLoss(w, factors, inputs.Gram(l), exactLossBudget);
                    if ((long)l.OutFeatures * l.InFeatures > largest)
                    {
                        largest = (long)l.OutFeatures * l.InFeatures;
                        report.LargestSvdMatrix = $"{l.Name} [{l.OutFeatures}×{l.InFeatures}]";
                        report.LargestSvdSeconds = seconds[l.Name];
                    }
                    string? note = string.Join("; ", new[] { a.Note, factors.Note }.Where(n => n is not null));
                    long after = (long)factors.Rank * (l.InFeatures + l.OutFeatures) + (l.HasBias ? l.OutFeatures : 0);
                    report.Matrices.Add(new MatrixReport(l.Name, [l.OutFeatures, l.InFeatures], a.Group, a.Ratio, a.Rank, factors.TheoreticalLoss,
                        factors.LossObjective, measured, l.DenseParameterCount, after, seconds[l.Name], a.AllocationLoss, note.Length == 0 ? null : note)
                    { Route = routes[l.Name] });
                    if (factors.Note is not null) report.Notes.Add($"{l.Name}: {factors.Note}");
                }
                sink(index, done);
            }
            finally
            {
                foreach (var (_, f) in done) f.Dispose();
                if (kfac is not null) foreach (var k in kfac.Values) k.Dispose();
                if (subs is not null) foreach (var sub in subs.Values) sub.Dispose();
            }
            log($"truncation: layer {index} ({linears.Count} matrices) in {layerClock.Elapsed.TotalSeconds:F1} s");
        }
        report.StageSeconds["truncation"] = clock.Elapsed.TotalSeconds - gradientSeconds - subspaceSeconds;
        if (kronecker) report.StageSeconds["gradients"] = gradientSeconds;
        if (subspaces) report.StageSeconds["subspaces"] = subspaceSeconds;
        log($"truncation ({method.Truncation}) of {allocation.Count} matrices done in {clock.Elapsed.TotalSeconds:F1} s");
        report.Notes.Add("decomposition routes: " + string.Join(", ", routes.Values.Distinct()) +
                         " (each matrix's route is in its entry; W' = U_k U_kᵀ W, so W keeps its component on C's null space)");

        // 3. SVD-LLM's closed-form local update of W_u on inputs from the compressed preceding layers.
        if (method.LocalUpdate)
        {
            clock.Restart();
            LocalUpdate.Apply(model, windows!, report);
            report.StageSeconds["local_update"] = clock.Elapsed.TotalSeconds;
            log($"local update done in {clock.Elapsed.TotalSeconds:F1} s");
        }

        report.LinearParamsAfter = report.Matrices.Sum(m => m.ParamsAfter) + model.Linears.Where(l => !byAllocation.ContainsKey(l.Name)).Sum(l => l.ParameterCount);
        report.ModelParamsAfter = report.ModelParamsBefore - (report.LinearParamsBefore - report.LinearParamsAfter);
        return report;
    }

    /// <summary>
    /// GFWSVD's Kronecker factors of one layer's linears: K = <see cref="GradientSamplesPerLinear"/> mini-batch mean
    /// gradients per linear from backward passes of the original checkpoint's training model over the calibration windows
    /// (the first K·⌊windows/K⌋ of them; fewer than K windows give one sample per window), then the nearest Kronecker
    /// product of their Fisher. One layer's samples at a time: K float64 copies of the layer's weights. The layer costs one
    /// backward pass over the windows (every layer's, since the loss needs the whole model).
    /// </summary>
    private static Dictionary<string, KroneckerFactors> KroneckerFactorsOfLayer(CausalLanguageModel model, CalibrationWindows windows, List<Linear> linears,
        GfwsvdOptions options, CompressionReport report)
    {
        int k = Math.Min(options.GradientSamples, windows.Count), batch = windows.Count / k;
        var tokens = windows.Tokens.AsSpan(0, k * batch * windows.SeqLen).ToArray();
        var names = linears.Select(l => l.Name).ToHashSet(StringComparer.Ordinal);
        var samples = GradientSamples.Collect(model, tokens, windows.SeqLen, batch, names.Contains);
        var result = new Dictionary<string, KroneckerFactors>(StringComparer.Ordinal);
        try
        {
            foreach (var l in linears)
            {
                result[l.Name] = KroneckerFisher.Nearest(samples[l.Name], options.PowerIterations);
                if (result[l.Name].RegularisationNote is { } note) report.Notes.Add($"{l.Name}: Kronecker factors regularised ({note})");
            }
        }
        catch
        {
            foreach (var f in result.Values) f.Dispose();
            throw;
        }
        finally
        {
            foreach (var list in samples.Values) foreach (var g in list) g.Dispose();
        }
        if (!report.Notes.Any(n => n.StartsWith("GFWSVD:", StringComparison.Ordinal)))
            report.Notes.Add($"GFWSVD: K = {k} gradient samples per linear, each the mean over {batch} calibration window(s); at most {options.PowerIterations} power iterations");
        return result;
    }

    /// <summary>
    /// ‖(W − W')X‖_F = sqrt(tr(E C Eᵀ)), E = W − U V, in float64. Exact when that costs at most <see cref="ExactLossBudget"/>
    /// multiply-adds, computed over blocks of <see cref="MeasuredLossRows"/> rows so memory stays two [512, n] buffers;
    /// otherwise from <see cref="MeasuredLossRows"/> evenly spaced rows of E, scaled by m / rows (an unbiased estimate over
    /// rows; the theoretical loss is the exact figure).
    /// </summary>
    internal static double MeasuredLoss(Tensor<double> w, LowRankFactors f, Tensor<double> c, double exactBudget = ExactLossBudget)
    {
        int m = w.Rows, n = w.Cols, k = f.Rank;
        bool exact = (double)m * n * n <= exactBudget;
        int rows = exact ? m : Math.Min(m, MeasuredLossRows);
        int block = Math.Min(rows, MeasuredLossRows);
        using var e = Tensor<double>.Uninitialized(block, n);
        using var us = Tensor<double>.Uninitialized(block, k);
        using var ec = Tensor<double>.Uninitialized(block, n);
        double s = 0;
        for (int r0 = 0; r0 < rows; r0 += block)
        {
            int b = Math.Min(block, rows - r0);
            for (int r = 0; r < b; r++)
            {
                int i = exact ? r0 + r : (int)((long)(r0 + r) * m / rows);
                w.Row(i).CopyTo(e.Row(r));
                f.U.Row(i).CopyTo(us.Row(r));
            }
            Blas.Dgemm(Transpose.No, Transpose.No, b, n, k, -1.0, us.Span, k, f.V.Span, n, 1.0, e.Span, n);
            Blas.Dgemm(Transpose.No, Transpose.No, b, n, n, 1.0, e.Span, n, c.Span, n, 0.0, ec.Span, n);
            s += System.Numerics.Tensors.TensorPrimitives.Dot<double>(e.Span[..(b * n)], ec.Span[..(b * n)]);
        }
        return Math.Sqrt(Math.Max(0, s) * m / rows);
    }

    /// <summary>Float32 workspace when every linear is stored in 16 bits (its factors will be rounded far more coarsely anyway).</summary>
    internal static bool CompactWorkspace(CausalLanguageModel model)
        => model.Linears.All(l => model.Reader.Contains(l.Name + ".weight") && model.Reader.GetInfo(l.Name + ".weight").DType is SvdLlm.Models.Checkpoints.SafeTensorsDType.BF16 or SvdLlm.Models.Checkpoints.SafeTensorsDType.F16);

    /// <summary>The linear's dense weight as float64, read from memory or from the checkpoint.</summary>
    internal static Tensor<double> Weight(CausalLanguageModel model, Linear l)
    {
        if (l.IsLowRank) return DenseMath.ToDouble(model.Reader.ReadAsFloat32(l.Name + ".weight"), l.OutFeatures, l.InFeatures);
        model.Load(l);
        return DenseMath.ToDouble(l.Weight.Span, l.OutFeatures, l.InFeatures);
    }
}

/// <summary>GFWSVD's settings: K gradient samples per linear (each the mean over windows / K calibration windows) and the power iteration's cap.</summary>
public sealed record GfwsvdOptions(int GradientSamples = Compressor.GradientSamplesPerLinear, int PowerIterations = 50)
{
    public void Check()
    {
        if (GradientSamples < 1) throw new ArgumentOutOfRangeException(nameof(GradientSamples), $"gradient samples must be ≥ 1, got {GradientSamples}");
        if (PowerIterations < 1) throw new ArgumentOutOfRangeException(nameof(PowerIterations), $"power iterations must be ≥ 1, got {PowerIterations}");
    }
}
