using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using SvdLlm.Compression;
using SvdLlm.Compression.Calibration;
using SvdLlm.Compression.Quantization;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Data;
using SvdLlm.Numerics;

namespace SvdLlm.Cli.Commands;

/// <summary>
/// <c>svdllm calibrate</c> (collect or reuse the calibration statistics and print their cache key and path) and
/// <c>svdllm compress</c> (calibrate, compress with a method at a ratio, write a compressed HF directory).
/// </summary>
internal static class CompressCommand
{
    private sealed record CalibrationOptions(Option<string> Model, Option<string> TextFile, Option<int> Samples, Option<int> SeqLen, Option<int> Seed,
        Option<int?> Threads, Option<bool> Json);

    private static CalibrationOptions Common()
        => new(
            new Option<string>("--model") { Description = "Hugging Face model directory (with tokenizer.json)", Required = true },
            new Option<string>("--text-file") { Description = "calibration text (UTF-8); tokenized whole, BOS at the start only", Required = true },
            new Option<int>("--samples") { Description = "number of calibration windows", DefaultValueFactory = _ => 256 },
            new Option<int>("--seq-len") { Description = "tokens per window", DefaultValueFactory = _ => 2048 },
            new Option<int>("--seed") { Description = "seed of the window offsets", DefaultValueFactory = _ => 3 },
            new Option<int?>("--threads") { Description = "threads for BLAS and kernels (default: all cores)" },
            new Option<bool>("--json") { Description = "print one JSON object" });

    public static Command CreateCalibrate()
    {
        var o = Common();
        var fisher = new Option<bool>("--fisher") { Description = "also collect Fisher statistics (needed by fwsvd; LLaMA family only)" };
        var command = new Command("calibrate", "Collect (or find cached) calibration statistics; prints the cache key and path.")
        {
            o.Model, o.TextFile, o.Samples, o.SeqLen, o.Seed, o.Threads, o.Json, fisher,
        };
        command.SetAction(p => CliErrors.Run(() =>
        {
            SetThreads(p.GetValue(o.Threads));
            var request = new CalibrationRequest(p.GetValue(o.Model)!, p.GetValue(o.TextFile)!, p.GetValue(o.Samples), p.GetValue(o.SeqLen), p.GetValue(o.Seed), p.GetValue(fisher));
            using var model = ModelLoader.Load(request.ModelDirectory);
            var windows = Calibrator.SampleWindows(request);
            var (stats, key, path, hit) = CalibrationCache.GetOrCollect(model, windows, request, Log);
            using (stats)
            {
                if (p.GetValue(o.Json))
                    Console.WriteLine(new JsonObject { ["key"] = key, ["path"] = path, ["cached"] = hit, ["inputs"] = stats.InputKeys.Count, ["fisher"] = stats.FisherNames.Count }.ToJsonString());
                else
                    Console.WriteLine($"{(hit ? "cached" : "collected")}: {key}\n{path}");
            }
            return 0;
        }));
        return command;
    }

    public static Command CreateCompress()
    {
        var o = Common();
        o.TextFile.Required = false; // round-to-nearest needs no data; checked per method below
        var method = new Option<string>("--method")
        {
            Description = "one of: " + string.Join(", ", CompressionMethod.All.Select(m => m.Name).Concat(QuantizedCheckpoint.Methods.Select(m => m.Name))),
            Required = true,
        };
        var ratio = new Option<double?>("--ratio") { Description = "SVD methods: fraction of the decoder linears' parameters to remove, in (0, 1)" };
        var bits = new Option<int?>("--bits") { Description = "rtn, gptq: bits per weight (2, 3, 4 or 8)" };
        var groupSize = new Option<int>("--group-size") { Description = "rtn, gptq: input columns per scale and zero (-1: one per row)", DefaultValueFactory = _ => -1 };
        var actOrder = new Option<bool>("--act-order") { Description = "gptq: quantize columns in order of decreasing H_jj (desc_act)" };
        var staticGroups = new Option<bool>("--static-groups") { Description = "gptq: fit group parameters up front on the original weights" };
        var sym = new Option<bool>("--sym") { Description = "rtn, gptq: symmetric grid (default asymmetric)" };
        var damp = new Option<double>("--damp") { Description = "gptq: damping relative to mean(diag H)", DefaultValueFactory = _ => 0.01 };
        var quantize = new Option<string?>("--quantize") { Description = "SVD methods: then quantize both factors with rtn or gptq (V on x, U on V'x, sequentially) to --bits" };
        var output = new Option<string>("--out") { Description = "output directory for the compressed model (must not exist)", Required = true };
        var force = new Option<bool>("--force") { Description = "run even when the preflight estimate exceeds the available memory or disk" };
        var workspace = new Option<string?>("--workspace") { Description = "directory for V2's scratch singular vectors between its two passes (default: the system temp directory)" };
        var command = new Command("compress", "Compress a model with an SVD method at a ratio, one decoder layer at a time; writes a sharded Hugging Face directory and compression-report.json.")
        {
            o.Model, method, ratio, o.TextFile, o.Samples, o.SeqLen, o.Seed, output, o.Threads, o.Json, force, workspace,
            bits, groupSize, actOrder, staticGroups, sym, damp, quantize,
        };
        command.SetAction(p => CliErrors.Run(() =>
        {
            SetThreads(p.GetValue(o.Threads));
            string methodName = p.GetValue(method)!;
            var quantizationOptions = new Option[] { bits, groupSize, actOrder, staticGroups, sym, damp };
            if (QuantizedCheckpoint.IsQuantization(methodName))
            {
                if (Given(p, ratio)) throw new ArgumentException($"--ratio does not apply to {methodName}; it quantizes every decoder linear to --bits");
                if (Given(p, quantize)) throw new ArgumentException($"--quantize follows an SVD method; {methodName} quantizes by itself");
                return Quantize(p.GetValue(o.Model)!, methodName, QuantizationOptions(methodName), p.GetValue(o.TextFile), p.GetValue(o.Samples), p.GetValue(o.SeqLen), p.GetValue(o.Seed),
                    p.GetValue(output)!, p.GetValue(o.Json), p.GetValue(force));
            }
            var m = CompressionMethod.Get(methodName);
            string? quantizer = p.GetValue(quantize);
            GptqOptions? factorOptions = null;
            if (quantizer is null)
            {
                foreach (var q in quantizationOptions)
                    if (Given(p, q)) throw new ArgumentException($"{q.Name} applies to rtn and gptq (or to an SVD method with --quantize), not to {methodName} alone");
            }
            else
            {
                if (!QuantizedCheckpoint.IsQuantization(quantizer)) throw new ArgumentException($"--quantize {quantizer}: expected one of {string.Join(", ", QuantizedCheckpoint.Methods.Select(q => q.Name))}");
                factorOptions = QuantizationOptions(quantizer);
            }

            GptqOptions QuantizationOptions(string q)
            {
                if (p.GetValue(bits) is not int b) throw new ArgumentException($"{q} needs --bits (2, 3, 4 or 8)");
                var options = new GptqOptions
                {
                    Bits = b, GroupSize = p.GetValue(groupSize), ActOrder = p.GetValue(actOrder), StaticGroups = p.GetValue(staticGroups),
                    Symmetric = p.GetValue(sym), PercentDamping = p.GetValue(damp),
                };
                if (q == "rtn" && (options.ActOrder || options.StaticGroups || Given(p, damp)))
                    throw new ArgumentException("--act-order, --static-groups and --damp are GPTQ's; rtn has no calibration data");
                QuantizedCheckpoint.Check(options);
                return options;
            }
            if (p.GetValue(ratio) is not double r) throw new ArgumentException($"{methodName} needs --ratio: the fraction of the decoder linears' parameters to remove, in (0, 1)");
            if (!(r > 0 && r < 1)) throw new ArgumentException($"--ratio {r} must be in (0, 1): the fraction of parameters removed");
            if (p.GetValue(o.TextFile) is null) throw new ArgumentException($"{methodName} needs --text-file (the calibration text)");
            string outDir = Path.GetFullPath(p.GetValue(output)!);
            if (Directory.Exists(outDir)) throw new IOException($"{outDir} already exists; refusing to overwrite");
            var request = new CalibrationRequest(p.GetValue(o.Model)!, p.GetValue(o.TextFile)!, p.GetValue(o.Samples), p.GetValue(o.SeqLen), p.GetValue(o.Seed), m.NeedsFisher);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            using var model = ModelLoader.Load(request.ModelDirectory);
            string? workspaceDir = p.GetValue(workspace);
            var fileHash = AssetCache.Sha256Once();
            bool cached = File.Exists(CalibrationCache.PathFor(CalibrationCache.Key(request, fileHash)));
            var estimate = Preflight.Estimate(model, m, r, request.Samples, request.SeqLen, cached);
            Preflight.Check(estimate, CalibrationCache.Directory, outDir, workspaceDir, p.GetValue(force), Log);
            var windows = Calibrator.SampleWindows(request);
            var (stats, key, _, hit) = CalibrationCache.GetOrCollect(model, windows, request, Log, force: p.GetValue(force), fileHash: fileHash);
            double calibrationSeconds = clock.Elapsed.TotalSeconds;
            // With --quantize the factors go to a scratch directory beside the output first (a dead run's is swept here).
            string parent = Path.GetDirectoryName(outDir)!;
            if (factorOptions is not null) Leftovers.Sweep(parent, Path.GetFileName(outDir) + ".svd");
            string svdDir = factorOptions is null ? outDir : Leftovers.TempPath(outDir + ".svd");
            CompressionReport report;
            using (stats)
            {
                report = Compressor.CompressToDirectory(model, stats, m.Name, r, svdDir, Log, workspaceDir, windows);
                report.StageSeconds["calibration"] = calibrationSeconds;
                report.Calibration["cache_hit"] = hit.ToString();
                report.Calibration["threads"] = NumericsRuntime.Threads.ToString();
                report.Calibration["numerics"] = NumericsRuntime.Describe();
                // Rewritten atomically with the calibration time and provenance, known only here.
                SvdLlm.Models.Training.AtomicFile.WriteAllText(Path.Combine(svdDir, "compression-report.json"),
                    CompressedCheckpoint.ReportJson(report).ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            }
            if (factorOptions is not null)
            {
                try
                {
                    using var lowRank = ModelLoader.Load(svdDir);
                    var quantReport = QuantizedCheckpoint.Write(lowRank, quantizer!, factorOptions, quantizer == "gptq" ? windows : null, outDir, Log);
                    quantReport["svd"] = CompressedCheckpoint.ReportJson(report);
                    SvdLlm.Models.Training.AtomicFile.WriteAllText(Path.Combine(outDir, "compression-report.json"), quantReport.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
                    report.Notes.Add($"factors quantized with {quantizer} to {factorOptions.Bits} bits: {quantReport["bits_per_weight"]} bits per dense weight");
                }
                finally
                {
                    Directory.Delete(svdDir, recursive: true);
                }
            }
            {
                if (p.GetValue(o.Json))
                {
                    Console.WriteLine(new JsonObject
                    {
                        ["out"] = outDir, ["method"] = m.Name, ["ratio"] = r, ["calibration_key"] = key,
                        ["achieved_linear_ratio"] = report.AchievedLinearRatio, ["achieved_model_ratio"] = report.AchievedModelRatio,
                        ["largest_svd"] = report.LargestSvdMatrix, ["largest_svd_seconds"] = report.LargestSvdSeconds,
                        ["stage_seconds"] = JsonSerializer.SerializeToNode(report.StageSeconds),
                    }.ToJsonString());
                }
                else
                {
                    Console.WriteLine($"compressed with {m.Name} at {r:P0}: removed {report.AchievedLinearRatio:P2} of the linear parameters ({report.AchievedModelRatio:P2} of the model) → {outDir}");
                }
            }
            return 0;
        }));
        return command;
    }

    private static int Quantize(string modelDir, string method, GptqOptions options, string? textFile, int samples, int seqLen, int seed, string output, bool json, bool force)
    {
        string outDir = Path.GetFullPath(output);
        if (Directory.Exists(outDir)) throw new IOException($"{outDir} already exists; refusing to overwrite");
        if (method == "gptq" && textFile is null) throw new ArgumentException("gptq needs --text-file (the calibration text)");
        using var model = ModelLoader.Load(modelDir);
        Preflight.Check(Preflight.EstimateQuantization(model, method, options.Bits, options.GroupSize, samples, seqLen), CalibrationCache.Directory, outDir, null, force, Log);
        CalibrationWindows? windows = null;
        if (method == "gptq")
        {
            windows = Calibrator.SampleWindows(new CalibrationRequest(modelDir, textFile!, samples, seqLen, seed, Fisher: false));
        }
        var report = QuantizedCheckpoint.Write(model, method, options, windows, outDir, Log);
        report["calibration_seed"] = windows is null ? null : seed;
        report["threads"] = NumericsRuntime.Threads;
        report["numerics"] = NumericsRuntime.Describe();
        SvdLlm.Models.Training.AtomicFile.WriteAllText(Path.Combine(outDir, "compression-report.json"), report.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        if (json)
            Console.WriteLine(new JsonObject
            {
                ["out"] = outDir, ["method"] = method, ["bits"] = options.Bits, ["bits_per_weight"] = report["bits_per_weight"]!.DeepClone(),
                ["linear_bytes_after"] = report["linear_bytes_after"]!.DeepClone(), ["stage_seconds"] = report["stage_seconds"]!.DeepClone(),
            }.ToJsonString());
        else
            Console.WriteLine($"quantized with {method} to {options.Bits} bits ({report["bits_per_weight"]} bits per weight with scales and zeros) → {outDir}");
        return 0;
    }

    /// <summary>Whether the user wrote the option (a default value is not "given").</summary>
    private static bool Given(ParseResult p, Option option) => p.GetResult(option) is { Implicit: false };

    private static void SetThreads(int? threads)
    {
        if (threads is not int t) return;
        if (t <= 0) throw new ArgumentException($"--threads must be positive, got {t}");
        NumericsRuntime.SetThreads(t);
    }

    private static void Log(string message) => Console.Error.WriteLine($"svdllm: {message}");
}
