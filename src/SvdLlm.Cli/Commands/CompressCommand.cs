using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using SvdLlm.Compression;
using SvdLlm.Compression.Calibration;
using SvdLlm.Compression.Quantization;
using SvdLlm.Experiments.Cache;
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
            new Option<string>("--text-file") { Description = "calibration text (UTF-8; or demo, demo:<corpus> for the embedded corpora's training splits); tokenized whole, BOS at the start only", Required = true },
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
            var request = new CalibrationRequest(p.GetValue(o.Model)!, DemoCalibrationText.Resolve(p.GetValue(o.TextFile)!, AssetCache.Root), p.GetValue(o.Samples), p.GetValue(o.SeqLen), p.GetValue(o.Seed), p.GetValue(fisher));
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
            Description = "one of: " + string.Join(", ", CompressionMethod.All.Select(m => m.Name)),
            Required = true,
        };
        var ratio = new Option<double?>("--ratio") { Description = "SVD methods: fraction of the decoder linears' parameters to remove, in (0, 1)" };
        var bits = new Option<int?>("--bits") { Description = "rtn, gptq: bits per weight (2, 3, 4 or 8); gptvq: index bits per weight (bits · vq-dim ≤ 8)" };
        var groupSize = new Option<int>("--group-size") { Description = "rtn, gptq: input columns per scale and zero (-1: one per row); gptvq: weights per codebook (default: the paper's for bits and D)", DefaultValueFactory = _ => -1 };
        var actOrder = new Option<bool>("--act-order") { Description = "gptq: quantize columns in order of decreasing H_jj (desc_act)" };
        var staticGroups = new Option<bool>("--static-groups") { Description = "gptq: fit group parameters up front on the original weights" };
        var sym = new Option<bool>("--sym") { Description = "rtn, gptq: symmetric grid (default asymmetric)" };
        var damp = new Option<double>("--damp") { Description = "gptq, gptvq: damping relative to mean(diag H)", DefaultValueFactory = _ => 0.01 };
        var vqDim = new Option<int>("--vq-dim") { Description = "gptvq: vector dimension D (1, 2 or 4; K = 2^(bits·D) centroids per codebook)", DefaultValueFactory = _ => 2 };
        var columnsPerGroup = new Option<int>("--columns-per-group") { Description = "gptvq: input columns per codebook", DefaultValueFactory = _ => 256 };
        var codebookBits = new Option<int>("--codebook-bits") { Description = "gptvq: bits per codebook entry (8: int8 with a scale per codebook; 0: float)", DefaultValueFactory = _ => 8 };
        var kmeansIters = new Option<int>("--kmeans-iters") { Description = "gptvq: weighted k-means iterations per codebook", DefaultValueFactory = _ => 100 };
        var noMStep = new Option<bool>("--no-m-step") { Description = "gptvq: skip the least-squares codebook update after the pass" };
        var vqWeighting = new Option<string>("--vq-weighting") { Description = "gptvq: reference (the paper's code) or obs (1/U_jj² for fit and lookup)", DefaultValueFactory = _ => "reference" };
        var gradientSamples = new Option<int>("--gradient-samples") { Description = "gfwsvd: K gradient samples per linear, each the mean over windows/K calibration windows", DefaultValueFactory = _ => Compressor.GradientSamplesPerLinear };
        var powerIterations = new Option<int>("--power-iterations") { Description = "gfwsvd: cap of the power iteration for the Kronecker factors", DefaultValueFactory = _ => 50 };
        var quantize = new Option<string?>("--quantize") { Description = "SVD methods: then quantize both factors with rtn or gptq (V on x, U on V'x, sequentially) to --bits" };
        var recover = new Option<string?>("--recover") { Description = "SVD methods: then recover with lora (SVD-LLM's sequential LoRA: every W_u, merged, then every W_v) on the calibration text or --recover-text" };
        var loraRank = new Option<int>("--lora-rank") { Description = "recovery: LoRA rank", DefaultValueFactory = _ => 8 };
        var loraAlpha = new Option<double>("--lora-alpha") { Description = "recovery: LoRA α (the update is scaled by α / rank)", DefaultValueFactory = _ => 16 };
        var loraLr = new Option<double>("--lora-lr") { Description = "recovery: AdamW learning rate (4 % warm-up, cosine to 0)", DefaultValueFactory = _ => 3e-4 };
        var loraEpochs = new Option<int>("--lora-epochs") { Description = "recovery: epochs over the recovery windows, per stage", DefaultValueFactory = _ => 3 };
        var loraBatch = new Option<int>("--lora-batch") { Description = "recovery: windows per step", DefaultValueFactory = _ => 8 };
        var recoverText = new Option<string?>("--recover-text") { Description = "recovery: train on this text (UTF-8; sampled like --text-file with --samples, --seq-len, --seed) instead of the calibration text" };
        var dobiEpochs = new Option<int>("--epochs") { Description = "dobi-svd: epochs of γ training over the calibration windows", DefaultValueFactory = _ => 5 };
        var dobiBatch = new Option<int>("--batch") { Description = "dobi-svd: windows per γ step", DefaultValueFactory = _ => 8 };
        var dobiLambda = new Option<double>("--lambda") { Description = "dobi-svd: weight of |ratio(γ) − target| in the loss", DefaultValueFactory = _ => 200 };
        var dobiBeta = new Option<double>("--beta") { Description = "dobi-svd: sharpness β of the mask ½tanh(β(γ − i)) + ½", DefaultValueFactory = _ => 10 };
        var dobiLr = new Option<double?>("--lr") { Description = "dobi-svd: Adam's rate on γ (default 5·L/2048 for windows of L + 1 tokens)" };
        var dobiRemap = new Option<bool>("--remap") { Description = "dobi-svd: store the factors remapped to 8-bit codes (Dobi's remapping), spending the plain factors' bytes on larger ranks" };
        var numerics = new Option<string?>("--numerics") { Description = "svdllm, svdllm-v2-alloc: float64 (default) or reference (SVD-LLM's public code: Grams accumulated in float32, float32 whitening, inverse and SVD)" };
        var output = new Option<string>("--out") { Description = "output directory for the compressed model (must not exist)", Required = true };
        var force = new Option<bool>("--force") { Description = "run even when the preflight estimate exceeds the available memory or disk" };
        var workspace = new Option<string?>("--workspace") { Description = "directory for V2's scratch singular vectors between its two passes (default: the system temp directory)" };
        var command = new Command("compress", "Compress a model with an SVD method at a ratio, or quantize it (rtn, gptq, gptvq), one decoder layer at a time; writes a sharded Hugging Face directory and compression-report.json.")
        {
            o.Model, method, ratio, o.TextFile, o.Samples, o.SeqLen, o.Seed, output, o.Threads, o.Json, force, workspace,
            bits, groupSize, actOrder, staticGroups, sym, damp, quantize, vqDim, columnsPerGroup, codebookBits, kmeansIters, noMStep, vqWeighting,
            gradientSamples, powerIterations, recover, loraRank, loraAlpha, loraLr, loraEpochs, loraBatch, recoverText,
            dobiEpochs, dobiBatch, dobiLambda, dobiBeta, dobiLr, dobiRemap, numerics,
        };
        command.SetAction(p => CliErrors.Run(() =>
        {
            SetThreads(p.GetValue(o.Threads));
            string methodName = p.GetValue(method)!;
            // The options become the method's parameters, read by the same code as a matrix's params: (name, value if given).
            var given = new (string Name, Option Option, Func<string> Value)[]
            {
                ("quantize", quantize, () => p.GetValue(quantize)!), ("bits", bits, () => Invariant(p.GetValue(bits))),
                ("group_size", groupSize, () => Invariant(p.GetValue(groupSize))), ("act_order", actOrder, () => "true"),
                ("static_groups", staticGroups, () => "true"), ("sym", sym, () => "true"), ("damp", damp, () => Invariant(p.GetValue(damp))),
                ("vq_dim", vqDim, () => Invariant(p.GetValue(vqDim))), ("columns_per_group", columnsPerGroup, () => Invariant(p.GetValue(columnsPerGroup))),
                ("codebook_bits", codebookBits, () => Invariant(p.GetValue(codebookBits))), ("kmeans_iters", kmeansIters, () => Invariant(p.GetValue(kmeansIters))),
                ("m_step", noMStep, () => "false"), ("weighting", vqWeighting, () => p.GetValue(vqWeighting)!),
                ("gradient_samples", gradientSamples, () => Invariant(p.GetValue(gradientSamples))),
                ("power_iterations", powerIterations, () => Invariant(p.GetValue(powerIterations))),
                ("recover", recover, () => p.GetValue(recover)!), ("lora_rank", loraRank, () => Invariant(p.GetValue(loraRank))),
                ("lora_alpha", loraAlpha, () => Invariant(p.GetValue(loraAlpha))), ("lora_lr", loraLr, () => Invariant(p.GetValue(loraLr))),
                ("lora_epochs", loraEpochs, () => Invariant(p.GetValue(loraEpochs))), ("lora_batch", loraBatch, () => Invariant(p.GetValue(loraBatch))),
                ("epochs", dobiEpochs, () => Invariant(p.GetValue(dobiEpochs))), ("batch", dobiBatch, () => Invariant(p.GetValue(dobiBatch))),
                ("lambda", dobiLambda, () => Invariant(p.GetValue(dobiLambda))), ("beta", dobiBeta, () => Invariant(p.GetValue(dobiBeta))),
                ("lr", dobiLr, () => Invariant(p.GetValue(dobiLr)!.Value)), ("remap", dobiRemap, () => "true"),
                ("numerics", numerics, () => p.GetValue(numerics)!),
            };
            var parameters = new SortedDictionary<string, string>(StringComparer.Ordinal);
            foreach (var (name, option, value) in given)
                if (Given(p, option) && (option is not Option<bool> flag || p.GetValue(flag))) parameters[name] = value();
            var optionOf = given.ToDictionary(g => g.Name, g => g.Option.Name);
            var recipe = MethodRecipe.Parse(methodName, parameters, name => optionOf.GetValueOrDefault(name, "--" + name.Replace('_', '-')));
            var m = recipe.Method;
            double r = 0;
            if (recipe.TakesRatio)
            {
                if (p.GetValue(ratio) is not double given1) throw new ArgumentException($"{methodName} needs --ratio: the fraction of the decoder linears' parameters to remove, in (0, 1)");
                if (!(given1 > 0 && given1 < 1)) throw new ArgumentException($"--ratio {given1} must be in (0, 1): the fraction of parameters removed");
                r = given1;
            }
            else if (Given(p, ratio)) throw new ArgumentException($"--ratio does not apply to {methodName}; it quantizes every decoder linear to --bits");
            if ((recipe.NeedsStatistics || recipe.NeedsWindows) && p.GetValue(o.TextFile) is null) throw new ArgumentException($"{methodName} needs --text-file (the calibration text)");
            string outDir = Path.GetFullPath(p.GetValue(output)!);
            if (Directory.Exists(outDir)) throw new IOException($"{outDir} already exists; refusing to overwrite");
            string modelDir = p.GetValue(o.Model)!;
            var request = new CalibrationRequest(modelDir, p.GetValue(o.TextFile) is { } tf ? DemoCalibrationText.Resolve(tf, AssetCache.Root) : "", p.GetValue(o.Samples), p.GetValue(o.SeqLen), p.GetValue(o.Seed), m.NeedsFisher, recipe.ReferenceNumerics);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            using var model = ModelLoader.Load(modelDir);
            string? workspaceDir = p.GetValue(workspace);
            var fileHash = AssetCache.Sha256Once();
            bool cached = recipe.NeedsStatistics && File.Exists(CalibrationCache.PathFor(CalibrationCache.Key(request, fileHash)));
            Preflight.Check(Preflight.Estimate(model, recipe, r, request.Samples, request.SeqLen, cached), CalibrationCache.Directory, outDir, workspaceDir, p.GetValue(force), Log);
            var windows = recipe.NeedsStatistics || recipe.NeedsWindows ? Calibrator.SampleWindows(request) : null;
            RecoveryText? recoveryText = null;
            if (p.GetValue(recoverText) is string rtGiven)
            {
                string rt = DemoCalibrationText.Resolve(rtGiven, AssetCache.Root);
                if (recipe.Recovery is null) throw new ArgumentException("--recover-text applies to recovery: give --recover lora as well, or drop it");
                if (!File.Exists(rt)) throw new FileNotFoundException($"--recover-text: {Path.GetFullPath(rt)} does not exist");
                recoveryText = new RecoveryText(Calibrator.SampleWindows(request with { TextFile = rt }), $"{Path.GetFileName(rt)} (sha256 {fileHash(Path.GetFullPath(rt))})");
            }
            CalibrationStatisticsFile? stats = null;
            string? key = null;
            bool hit = false;
            if (recipe.NeedsStatistics) (stats, key, _, hit) = CalibrationCache.GetOrCollect(model, windows!, request, Log, force: p.GetValue(force), fileHash: fileHash);
            double calibrationSeconds = clock.Elapsed.TotalSeconds;
            CompressionReport report;
            using (stats)
            {
                report = recipe.CompressToDirectory(model, stats, windows, r, outDir, Log, workspaceDir, rep =>
                {
                    if (recipe.NeedsStatistics)
                    {
                        rep.StageSeconds["calibration"] = calibrationSeconds;
                        rep.Calibration["cache_hit"] = hit.ToString();
                    }
                    if (windows is not null) rep.Calibration["seed"] = request.Seed.ToString(System.Globalization.CultureInfo.InvariantCulture);
                    rep.Calibration["threads"] = NumericsRuntime.Threads.ToString(System.Globalization.CultureInfo.InvariantCulture);
                    rep.Calibration["numerics"] = NumericsRuntime.Describe();
                }, recoveryText);
            }
            if (p.GetValue(o.Json))
            {
                Console.WriteLine(new JsonObject
                {
                    ["out"] = outDir, ["method"] = m.Name, ["label"] = recipe.Label, ["ratio"] = r, ["calibration_key"] = key,
                    ["achieved_linear_ratio"] = report.AchievedLinearRatio, ["achieved_model_ratio"] = report.AchievedModelRatio,
                    ["linear_bytes_before"] = report.LinearBytesBefore, ["linear_bytes_after"] = report.LinearBytesAfter,
                    ["bits_per_weight"] = report.BitsPerWeight is double bpw ? Math.Round(bpw, 4) : null,
                    ["largest_svd"] = report.LargestSvdMatrix, ["largest_svd_seconds"] = report.LargestSvdSeconds,
                    ["stage_seconds"] = JsonSerializer.SerializeToNode(report.StageSeconds),
                }.ToJsonString());
            }
            else
            {
                string bytes = report.LinearBytesAfter is long after ? $"; linear weights {report.LinearBytesBefore / 1e6:F2} → {after / 1e6:F2} MB ({report.BitsPerWeight:F3} bits per weight)" : "";
                Console.WriteLine(recipe.TakesRatio
                    ? $"compressed with {recipe.Label} at {r:P0}: removed {report.AchievedLinearRatio:P2} of the linear parameters ({report.AchievedModelRatio:P2} of the model){bytes} → {outDir}"
                    : $"quantized with {recipe.Label}{bytes} → {outDir}");
            }
            return 0;
        }));
        return command;
    }

    private static string Invariant<T>(T value) where T : IFormattable => value.ToString(null, System.Globalization.CultureInfo.InvariantCulture);

    private static string Invariant(int? value) => value is int v ? Invariant(v) : "";

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
