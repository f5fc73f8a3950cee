using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using SvdLlm.Compression;
using SvdLlm.Compression.Calibration;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Checkpoints;
using SvdLlm.Numerics;

namespace SvdLlm.Benchmarks;

/// <summary>
/// The scale benchmark (issue "Real-model scale"): LLaMA-2-7B-shaped checkpoints (hidden 4096, intermediate 11008,
/// 32 heads, vocab 32000, BF16, one shard per layer) with N layers and random weights of decaying spectrum, calibrated
/// and compressed at 20 % by each method in a child process (so peak RSS is per run), beside the floor measured in the
/// same run: 7 float64 eigendecompositions (dsyevd) of size 4096 per layer, the one eigenproblem per matrix every
/// method needs (docs/NUMERICS.md). Prints per-layer seconds, the ratio to the floor and peak RSS per depth.
/// rtn and gptq (4-bit, groups of 128) may be named among the methods; gptq's time includes its sequential calibration.
/// delta-impart, delta-svd and delta-dare compress the delta between the checkpoint and a second one of another seed at CR 32.
/// --exact-loss measures every matrix's loss exactly (plain SVD methods only), for comparing numerics at the 1e-7 level.
/// Usage: --scale [--layers 1,3] [--methods svdllm-v2,svdllm,asvd] [--samples 8] [--seq-len 512] [--work DIR] [--only-generate] [--exact-loss]
/// </summary>
internal static class ScaleBenchmark
{
    private const int Hidden = 4096, Intermediate = 11008, Heads = 32, Vocab = 32000;

    public static int Run(string[] args, int threads)
    {
        int[] depths = [1, 3];
        string[] methods = ["svdllm-v2", "svdllm", "asvd"];
        int samples = 8, seqLen = 512;
        string work = Path.Combine(Path.GetTempPath(), "svdllm-scale");
        bool onlyGenerate = false, exactLoss = false;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--scale": break;
                case "--threads": i++; break;
                case "--layers": depths = args[++i].Split(',').Select(int.Parse).ToArray(); break;
                case "--methods": methods = args[++i].Split(','); break;
                case "--samples": samples = int.Parse(args[++i]); break;
                case "--seq-len": seqLen = int.Parse(args[++i]); break;
                case "--work": work = args[++i]; break;
                case "--only-generate": onlyGenerate = true; break;
                case "--exact-loss": exactLoss = true; break;
                default:
                    Console.Error.WriteLine($"unknown argument '{args[i]}' (known with --scale: --layers, --methods, --samples, --seq-len, --work, --only-generate, --exact-loss)");
                    return 2;
            }
        }
        // A name is a method, SVD+quantizer ("svdllm-v2+gptq") or SVD+lora: checked before hours of work.
        foreach (string m in methods)
            if (SvdLlm.Compression.Delta.DeltaCheckpoint.IsMethodName(m)) SvdLlm.Compression.Delta.DeltaCheckpoint.ParseMethodName(m);
            else if (m.Contains('+')) Composite(m); else CompressionMethod.Get(m);
        Directory.CreateDirectory(work);
        Console.WriteLine($"scale bench: {NumericsRuntime.Describe()}");
        Console.WriteLine($"LLaMA-2-7B shape (hidden {Hidden}, intermediate {Intermediate}, {Heads} heads, vocab {Vocab}, BF16); calibration {samples} × {seqLen} random token ids; ratio 0.2");

        var floor = MeasureFloor();
        Console.WriteLine($"floor: dsyevd(4096) {floor.Eig:F2} s (min of 2) → {7 * floor.Eig:F1} s per layer; dgemm 4096³ {floor.GemmRate:F0} GFLOP/s");
        double formation = FormationGflop() / floor.GemmRate;
        Console.WriteLine($"forming the 7 eigenproblems' matrices by the cheapest exact routes: {FormationGflop():F0} GFLOP per layer → {formation:F1} s at that rate; " +
                          $"eigenproblems + formation {7 * floor.Eig + formation:F1} s per layer (the second ratio)");

        var rows = new JsonArray();
        Console.WriteLine();
        Console.WriteLine($"{"layers",6} {"method",-10} {"calib s/layer",13} {"ms/tok/layer",12} {"compress s/layer",16} {"floor s/layer",13} {"ratio",6} {"ratio+G",7} {"peak RSS GB",11}");
        foreach (int depth in depths)
        {
            string model = Checkpoint(work, depth);
            // Delta methods need a second checkpoint of the same shape: another seed stands in for a fine-tune (the cost of
            // a delta compression is a full SVD of every ΔW whatever the delta holds).
            if (methods.Any(SvdLlm.Compression.Delta.DeltaCheckpoint.IsMethodName)) Checkpoint(work, depth, fineTuned: true);
            if (onlyGenerate) continue;
            string stats = Path.Combine(work, $"stats-{depth}-{samples}x{seqLen}.svdstats");
            foreach (string method in methods)
            {
                var child = RunChild(model, stats, method, samples, seqLen, work, threads, exactLoss);
                double calib = child["calibration_seconds"]!.GetValue<double>();
                double compress = child["compression_seconds"]!.GetValue<double>();
                double rss = child["peak_rss_bytes"]!.GetValue<long>() / 1e9;
                double perLayer = compress / depth, floorLayer = 7 * floor.Eig;
                string calibText = calib > 0 ? $"{calib / depth,13:F1} {calib * 1000 / ((double)samples * seqLen * depth),12:F2}" : $"{"(cached)",13} {"",12}";
                Console.WriteLine($"{depth,6} {method,-10} {calibText} {perLayer,16:F1} {floorLayer,13:F1} {perLayer / floorLayer,6:F2} {perLayer / (floorLayer + formation),7:F2} {rss,11:F2}");
                child["layers"] = depth;
                child["method"] = method;
                child["floor_seconds_per_layer"] = floorLayer;
                child["formation_seconds_per_layer"] = formation;
                rows.Add(child);
            }
        }
        string outFile = Path.Combine(work, "scale-bench.json");
        File.WriteAllText(outFile, new JsonObject { ["numerics"] = NumericsRuntime.Describe(), ["floor_eig_seconds"] = floor.Eig, ["runs"] = rows }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine($"\nfigures: {outFile}; calibration at the paper's 256 × 2048 tokens × 32 layers ≈ (ms/tok/layer) × 16.8e6 / 1000 s");
        return 0;
    }

    /// <summary>
    /// GFLOP per 7B layer to form the matrices whose eigenproblems the floor times, by the cheapest exact float64 route
    /// (docs/NUMERICS.md; potrf n³/3, trmm m·n², syrk n²·k, gemm 2mnk): q/k/v through one shared Cholesky of C (trmm + syrk
    /// each), o through its own, gate/up through the shared whitening (trmm + syrk each), down either way (the Cholesky
    /// route is the cheaper when C is positive definite). No exact method can skip this step, so the eigenproblems alone
    /// are not a reachable floor: this is the second ratio's denominator.
    /// </summary>
    internal static double FormationGflop()
    {
        static double Chol(double n) => n * n * n / 3;
        static double TrmmSyrk(double m, double n) => m * n * n + Math.Min(m, n) * Math.Min(m, n) * Math.Max(m, n);
        double d = Hidden, f = Intermediate;
        double attention = Chol(d) + 3 * TrmmSyrk(d, d) + Chol(d) + TrmmSyrk(d, d);
        double mlp = Chol(d) + 2 * TrmmSyrk(f, d) + Math.Min(Chol(f) + TrmmSyrk(d, f), 2 * d * f * f + 2 * d * d * f);
        return (attention + mlp) / 1e9;
    }

    private static (double Eig, double GemmRate) MeasureFloor()
    {
        const int n = 4096;
        var rng = new Random(1);
        using var x = Tensor<double>.Uninitialized(n, n);
        var xs = x.Span;
        for (int i = 0; i < xs.Length; i++) xs[i] = rng.NextDouble() - 0.5;
        using var c = Tensor<double>.Zeros(n, n);
        var sw = Stopwatch.StartNew();
        Blas.Dgemm(Transpose.No, Transpose.Yes, n, n, n, 1.0, x.Span, n, x.Span, n, 0.0, c.Span, n);
        double gemm = 2.0 * n * n * n / sw.Elapsed.TotalSeconds / 1e9;
        double best = double.MaxValue;
        for (int r = 0; r < 2; r++)
        {
            sw.Restart();
            using var eig = Lapack.SymmetricEigen(c);
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }
        return (best, gemm);
    }

    /// <summary>Runs calibration (cached per depth and sampling) and one compression in a fresh process; returns its JSON line.</summary>
    private static JsonObject RunChild(string model, string stats, string method, int samples, int seqLen, string work, int threads, bool exactLoss)
    {
        var psi = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, UseShellExecute = false };
        string self = typeof(ScaleBenchmark).Assembly.Location;
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet") psi.ArgumentList.Add(self);
        foreach (string a in new[] { "--scale-child", model, stats, method, samples.ToString(), seqLen.ToString(), work, threads.ToString(), exactLoss ? "exact" : "sampled" }) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        JsonObject? result = null;
        string? line;
        while ((line = p.StandardOutput.ReadLine()) is not null)
        {
            if (line.StartsWith("{", StringComparison.Ordinal)) result = JsonNode.Parse(line)!.AsObject();
            else Console.Error.WriteLine("  " + line);
        }
        p.WaitForExit();
        if (p.ExitCode != 0 || result is null) throw new InvalidOperationException($"scale child for {method} on {model} failed (exit {p.ExitCode})");
        return result;
    }

    /// <summary>The child: calibrate if the statistics are missing, compress to a scratch directory, report times and VmHWM.</summary>
    public static int Child(string[] a)
    {
        string model = a[1], stats = a[2], method = a[3], work = a[6];
        int samples = int.Parse(a[4]), seqLen = int.Parse(a[5]);
        NumericsRuntime.SetThreads(int.Parse(a[7]));
        if (SvdLlm.Compression.Delta.DeltaCheckpoint.IsMethodName(method))
        {
            // CR 32 (ImPart's headline setting); the output is the full checkpoint, one linear's float64 work at a time.
            string dOut = Path.Combine(work, $"out-{Environment.ProcessId}");
            var options = new SvdLlm.Compression.Delta.DeltaOptions(SvdLlm.Compression.Delta.DeltaCheckpoint.ParseMethodName(method), 32);
            // ImPart-Qt (delta-impart-qt): ImPart's configuration, weighed by the fine-tuned checkpoint's own input Grams.
            double dCalibration = 0;
            CalibrationStatisticsFile? ftStats = null;
            if (method.EndsWith("-qt", StringComparison.Ordinal))
            {
                options = options with { Quantization = new SvdLlm.Compression.Delta.DeltaQuantization(SvdLlm.Compression.Delta.DeltaBitPlan.Impart) };
                string ftStatsPath = stats.Replace(".svdstats", "-ft.svdstats", StringComparison.Ordinal);
                if (!File.Exists(ftStatsPath))
                {
                    using var ftModel = ModelLoader.Load(model + "-ft");
                    var rng = new Random(3);
                    var sw = Stopwatch.StartNew();
                    Calibrator.CollectToFile(ftModel, Enumerable.Range(0, samples * seqLen).Select(_ => rng.Next(Vocab)).ToArray(), seqLen, ftStatsPath,
                        new Dictionary<string, string> { ["bench"] = "scale" }, progress: (l, n) => Console.WriteLine($"calibration layer {l}/{n}"));
                    dCalibration = sw.Elapsed.TotalSeconds;
                }
                ftStats = CalibrationStatisticsFile.Open(ftStatsPath);
            }
            var dClock = Stopwatch.StartNew();
            SvdLlm.Compression.Delta.DeltaReport deltaReport;
            using (ftStats)
                deltaReport = SvdLlm.Compression.Delta.DeltaCheckpoint.Write(model, model + "-ft", options, dOut, line => Console.WriteLine(line), statistics: ftStats);
            double dSeconds = dClock.Elapsed.TotalSeconds;
            Directory.Delete(dOut, recursive: true);
            Console.WriteLine(new JsonObject
            {
                ["calibration_seconds"] = dCalibration,
                ["compression_seconds"] = dSeconds,
                ["achieved_cr"] = deltaReport.AchievedRatio,
                ["peak_rss_bytes"] = PeakRss(),
            }.ToJsonString());
            return 0;
        }
        using var m = ModelLoader.Load(model);
        double calibration = 0;
        if (!method.Contains('+') && CompressionMethod.Get(method).IsQuantization)
        {
            // rtn/gptq at 4 bits, groups of 128 (the reference's LLaMA setting); GPTQ runs its own sequential calibration
            // on the same random windows, so its time includes the (distinct inputs + 1) forward passes per layer.
            var rng = new Random(3);
            var tokens = Enumerable.Range(0, samples * seqLen).Select(_ => rng.Next(Vocab)).ToArray();
            string qOut = Path.Combine(work, $"out-{Environment.ProcessId}");
            var qClock = Stopwatch.StartNew();
            var quantizer = MethodRecipe.Parse(method, QuantizerParameters(method)).CreateQuantizer()!;
            var qReport = SvdLlm.Compression.Quantization.QuantizedCheckpoint.Write(m, quantizer,
                quantizer.NeedsHessian ? new CalibrationWindows(tokens, seqLen) : null, qOut, line => Console.WriteLine(line));
            double qSeconds = qClock.Elapsed.TotalSeconds;
            Directory.Delete(qOut, recursive: true);
            Console.WriteLine(new JsonObject
            {
                ["calibration_seconds"] = 0.0,
                ["compression_seconds"] = qSeconds,
                ["bits_per_weight"] = qReport["bits_per_weight"]!.DeepClone(),
                ["peak_rss_bytes"] = PeakRss(),
            }.ToJsonString());
            return 0;
        }
        var recipe = method.Contains('+') ? Composite(method) : MethodRecipe.Plain(method);
        // Reference numerics read Grams accumulated in float32: statistics of their own, from the same windows.
        if (recipe.ReferenceNumerics) stats = stats.Replace(".svdstats", "-f32.svdstats", StringComparison.Ordinal);
        if (!File.Exists(stats))
        {
            var rng = new Random(3);
            var windows = Enumerable.Range(0, samples * seqLen).Select(_ => rng.Next(Vocab)).ToArray();
            var sw = Stopwatch.StartNew();
            Calibrator.CollectToFile(m, windows, seqLen, stats, new Dictionary<string, string> { ["bench"] = "scale" }, progress: (l, n) => Console.WriteLine($"calibration layer {l}/{n}"),
                float32Gram: recipe.ReferenceNumerics);
            calibration = sw.Elapsed.TotalSeconds;
        }
        string outDir = Path.Combine(work, $"out-{Environment.ProcessId}");
        CalibrationWindows? recipeWindows = null;
        if (recipe.NeedsWindows)
        {
            var rng = new Random(3);
            recipeWindows = new CalibrationWindows(Enumerable.Range(0, samples * seqLen).Select(_ => rng.Next(Vocab)).ToArray(), seqLen);
        }
        var clock = Stopwatch.StartNew();
        using var source = CalibrationStatisticsFile.Open(stats);
        long? peakBeforeRecovery = null;
        bool exactLoss = a.Length > 8 && a[8] == "exact";
        if (exactLoss && (recipe.Quantization is not null || recipe.Recovery is not null || !recipe.TakesRatio || recipe.Method.Structured))
            throw new ArgumentException($"--exact-loss applies to plain SVD methods; {method} is not one");
        var report = exactLoss
            ? Compressor.CompressToDirectory(m, source, recipe.Method.Name, 0.2, outDir, Console.WriteLine, work, recipeWindows, recipe.Gfwsvd, recipe.Dobi,
                recipe.ReferenceNumerics, exactLossBudget: double.PositiveInfinity)
            : recipe.CompressToDirectory(m, source, recipeWindows, 0.2, outDir, line =>
        {
            // Recovery's own peak: the process peak so far is the SVD stage's; reset it (Linux clear_refs 5) when recovery starts.
            if (peakBeforeRecovery is null && line.Contains("LoRA recovery, stage U", StringComparison.Ordinal))
            {
                peakBeforeRecovery = PeakRss();
                File.WriteAllText("/proc/self/clear_refs", "5");
            }
            Console.WriteLine(line);
        }, work);
        double compression = clock.Elapsed.TotalSeconds;
        Directory.Delete(outDir, recursive: true);
        // What each factor pair loses against what its truncation says it loses (the numerics' share, docs/NUMERICS.md).
        foreach (var mr in report.Matrices)
            Console.WriteLine($"loss {mr.Name} rank {mr.Rank}: theoretical {mr.TheoreticalLoss:G10} measured {mr.MeasuredLoss:G10} "
                + $"(measured − theoretical {mr.MeasuredLoss - mr.TheoreticalLoss:E3}, relative {(mr.MeasuredLoss - mr.TheoreticalLoss) / mr.MeasuredLoss:E3})");
        Console.WriteLine(new JsonObject
        {
            ["calibration_seconds"] = calibration,
            ["compression_seconds"] = compression,
            ["stage_seconds"] = JsonSerializer.SerializeToNode(report.StageSeconds),
            ["achieved_linear_ratio"] = report.AchievedLinearRatio,
            ["bits_per_weight"] = report.BitsPerWeight,
            ["peak_rss_bytes"] = PeakRss(),
            ["peak_rss_bytes_before_recovery"] = peakBeforeRecovery,
        }.ToJsonString());
        return 0;
    }

    private static long PeakRss()
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                return long.Parse(line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1]) * 1024; // "VmHWM:\t%8lu kB": no space at 8 digits
        return -1;
    }

    /// <summary>A 7B-shaped checkpoint with <paramref name="layers"/> layers under <paramref name="work"/>, written once (temp dir + rename) and reused.</summary>
    private static string Checkpoint(string work, int layers, bool fineTuned = false)
    {
        string dir = Path.Combine(work, $"llama7b-shape-{layers}{(fineTuned ? "-ft" : "")}");
        if (Directory.Exists(dir)) return dir;
        long need = (long)layers * 2 * (4L * Hidden * Hidden + 3L * Hidden * Intermediate) + 2L * 2 * Vocab * Hidden;
        long free = new DriveInfo(Path.GetFullPath(work)).AvailableFreeSpace;
        if (need > free) throw new IOException($"a {layers}-layer 7B-shaped checkpoint needs {need / 1e9:F1} GB under {work}, {free / 1e9:F1} GB is free");
        string tmp = dir + ".partial";
        if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
        Directory.CreateDirectory(tmp);
        File.WriteAllText(Path.Combine(tmp, "config.json"), JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["architectures"] = new[] { "LlamaForCausalLM" }, ["model_type"] = "llama", ["hidden_size"] = Hidden, ["intermediate_size"] = Intermediate,
            ["num_hidden_layers"] = layers, ["num_attention_heads"] = Heads, ["num_key_value_heads"] = Heads, ["vocab_size"] = Vocab,
            ["max_position_embeddings"] = 4096, ["rms_norm_eps"] = 1e-5, ["rope_theta"] = 10000.0, ["tie_word_embeddings"] = false,
            ["hidden_act"] = "silu", ["torch_dtype"] = "bfloat16",
        }));
        var map = new JsonObject();
        int shards = layers + 1;
        WriterTensor T(string name, int seed, string shard, params int[] shape)
        {
            map[name] = shard;
            return WriterTensor.Lazy(name, SafeTensorsDType.BF16, shape.Select(x => (long)x).ToArray(), () => RandomWeight(shape, seed));
        }
        var sw = Stopwatch.StartNew();
        for (int l = 0; l < layers; l++)
        {
            string shard = $"model-{l + 1:D5}-of-{shards:D5}.safetensors", p = $"model.layers.{l}.";
            int s0 = 1000 * l + (fineTuned ? 500 : 0);
            SafeTensorsWriter.Write(Path.Combine(tmp, shard),
            [
                T(p + "input_layernorm.weight", 0, shard, Hidden), T(p + "self_attn.q_proj.weight", s0 + 1, shard, Hidden, Hidden),
                T(p + "self_attn.k_proj.weight", s0 + 2, shard, Hidden, Hidden), T(p + "self_attn.v_proj.weight", s0 + 3, shard, Hidden, Hidden),
                T(p + "self_attn.o_proj.weight", s0 + 4, shard, Hidden, Hidden), T(p + "post_attention_layernorm.weight", 0, shard, Hidden),
                T(p + "mlp.gate_proj.weight", s0 + 5, shard, Intermediate, Hidden), T(p + "mlp.up_proj.weight", s0 + 6, shard, Intermediate, Hidden),
                T(p + "mlp.down_proj.weight", s0 + 7, shard, Hidden, Intermediate),
            ]);
        }
        string last = $"model-{shards:D5}-of-{shards:D5}.safetensors";
        SafeTensorsWriter.Write(Path.Combine(tmp, last),
            [T("model.embed_tokens.weight", 7, last, Vocab, Hidden), T("model.norm.weight", 0, last, Hidden), T("lm_head.weight", 8, last, Vocab, Hidden)]);
        File.WriteAllText(Path.Combine(tmp, CheckpointReader.IndexFileName), new JsonObject { ["metadata"] = new JsonObject(), ["weight_map"] = map }.ToJsonString());
        Directory.Move(tmp, dir);
        Console.Error.WriteLine($"  wrote {dir} in {sw.Elapsed.TotalSeconds:F0} s");
        return dir;
    }

    /// <summary>
    /// W = G·diag(d), G uniform in [−1, 1], d_j ∝ (1 + π(j))^−½ over a random column permutation π: singular values decay
    /// like a trained model's, so the ranks the allocation picks matter. Norm weights are 1.
    /// </summary>
    private static ReadOnlyMemory<float> RandomWeight(int[] shape, int seed)
    {
        int n = shape.Aggregate(1, (x, y) => x * y);
        var data = new float[n];
        if (shape.Length == 1)
        {
            Array.Fill(data, 1f);
            return data;
        }
        var rng = new Random(seed);
        int cols = shape[1];
        var perm = Enumerable.Range(0, cols).OrderBy(_ => rng.Next()).ToArray();
        var d = new float[cols];
        for (int j = 0; j < cols; j++) d[j] = 0.034f * MathF.Pow(1 + perm[j], -0.5f) * MathF.Sqrt(cols) / 8f;
        for (int i = 0; i < shape[0]; i++)
            for (int j = 0; j < cols; j++) data[(long)i * cols + j] = (float)(rng.NextDouble() * 2 - 1) * d[j];
        return data;
    }

    /// <summary>
    /// The settings each quantizer is benchmarked at: rtn/gptq 4 bits with groups of 128 (the GPTQ reference's LLaMA
    /// setting); gptvq the paper's 2.125-bpv headline, 2-bit pairs with 2048 weights per codebook and its other defaults.
    /// </summary>
    /// <summary>
    /// "svdllm-v2+gptq": the SVD method at 20 %, then its factors quantized (4-bit, groups of 128) on the same windows;
    /// "svdllm+lora": the SVD method, then LoRA recovery for one epoch of the calibration windows in batches of 4.
    /// </summary>
    private static MethodRecipe Composite(string name)
    {
        var parts = name.Split('+');
        if (parts.Length != 2) throw new ArgumentException($"'{name}': expected METHOD+QUANTIZER, METHOD+lora or METHOD+reference");
        return parts[1] switch
        {
            "lora" => MethodRecipe.Parse(parts[0], new Dictionary<string, string> { ["recover"] = "lora", ["lora_epochs"] = "1", ["lora_batch"] = "4" }),
            // SVD-LLM as its public code computes it (float32 Grams, whitening, inverse and SVD), e.g. svdllm+reference.
            "reference" => MethodRecipe.Parse(parts[0], new Dictionary<string, string> { [MethodRecipe.NumericsParameter] = "reference" }),
            _ => MethodRecipe.Parse(parts[0], new Dictionary<string, string>(QuantizerParameters(parts[1])) { ["quantize"] = parts[1] }),
        };
    }

    private static Dictionary<string, string> QuantizerParameters(string method) => method == "gptvq"
        ? new() { ["bits"] = "2", ["vq_dim"] = "2" }
        : new() { ["bits"] = "4", ["group_size"] = "128" };
}
