using System.CommandLine;
using System.Text.Json.Nodes;
using SvdLlm.Compression.Calibration;
using SvdLlm.Compression.Delta;
using SvdLlm.Experiments.Cache;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Data;
using SvdLlm.Numerics;

namespace SvdLlm.Cli.Commands;

/// <summary>
/// <c>svdllm compress-delta --base DIR --finetuned DIR --method impart|svd|dare --ratio CR --out DIR [--beta B]
/// [--exponent C] [--seed S] [--quantize gptq --bits 8x2,3x32,2 --text-file F ...] [--threads T] [--json]</c>: compresses the
/// fine-tuning delta of every decoder linear (<see cref="DeltaCheckpoint"/>) and writes a full checkpoint, base +
/// compressed delta, with delta-report.json. With --quantize, ImPart's factors are quantized by GPTQ (ImPart-Qt) against
/// the fine-tuned model's calibration statistics (collected or reused from the cache, like <c>svdllm calibrate</c>).
/// </summary>
internal static class CompressDeltaCommand
{
    public static Command Create()
    {
        var baseDir = new Option<string>("--base") { Description = "the base model directory", Required = true };
        var fineTuned = new Option<string>("--finetuned") { Description = "the fine-tuned model directory (same architecture and shapes)", Required = true };
        var method = new Option<string>("--method") { Description = "impart, svd (truncation at the equal-budget rank) or dare (random drop and rescale)", Required = true };
        var ratio = new Option<double>("--ratio") { Description = "CR: dense values of the deltas over the values stored (ImPart's definition; 32 keeps 1/32)", Required = true };
        var output = new Option<string>("--out") { Description = "output directory (must not exist)", Required = true };
        var beta = new Option<double?>("--beta") { Description = "impart: pre-prune fraction β of the singular triplets (default 0.8)" };
        var exponent = new Option<double?>("--exponent") { Description = "impart: exponent C on the singular values (default 0.5; 0 is plain truncation)" };
        var seed = new Option<ulong?>("--seed") { Description = "impart, dare: seed of the random masks (default 0); each matrix draws its own stream" };
        var quantize = new Option<string?>("--quantize") { Description = "impart: quantize the sparse singular vectors with gptq (ImPart-Qt); --ratio is then CR_qt, bits relative to float16" };
        var bits = new Option<string?>("--bits") { Description = "with --quantize: width per singular vector, BITSxCOUNT,…,BITS (default 8x2,3x32,2: ImPart's 8 bits for 2 vectors, 3 for 32, 2 for the rest) or one width" };
        var groupSize = new Option<int?>("--group-size") { Description = "with --quantize: GPTQ's columns per group (default 128; -1: one per row)" };
        var textFile = new Option<string?>("--text-file") { Description = "with --quantize: calibration text for the fine-tuned model's input Grams (UTF-8; or demo, demo:<corpus>)" };
        var samples = new Option<int>("--samples") { Description = "with --quantize: calibration windows", DefaultValueFactory = _ => 128 };
        var seqLen = new Option<int>("--seq-len") { Description = "with --quantize: tokens per calibration window", DefaultValueFactory = _ => 2048 };
        var calibrationSeed = new Option<int>("--calibration-seed") { Description = "with --quantize: seed of the calibration window offsets", DefaultValueFactory = _ => 3 };
        var threads = new Option<int?>("--threads") { Description = "threads for BLAS/LAPACK (default: all cores)" };
        var json = new Option<bool>("--json") { Description = "print one JSON object (the delta report without the per-linear list)" };
        var command = new Command("compress-delta", "Compress the fine-tuning delta of a base/fine-tuned pair (ImPart, truncated SVD or DARE) into a full checkpoint.")
        {
            baseDir, fineTuned, method, ratio, output, beta, exponent, seed, quantize, bits, groupSize, textFile, samples, seqLen, calibrationSeed, threads, json,
        };
        command.SetAction(p => CliErrors.Run(() =>
        {
            if (p.GetValue(threads) is int t)
            {
                if (t <= 0) throw new ArgumentException($"--threads must be positive, got {t}");
                NumericsRuntime.SetThreads(t);
            }
            var m = DeltaOptions.ParseMethod(p.GetValue(method)!);
            if (m != DeltaMethod.Impart)
            {
                if (p.GetValue(beta) is not null) throw new ArgumentException($"--beta is ImPart's pre-prune fraction; {DeltaOptions.Name(m)} has none");
                if (p.GetValue(exponent) is not null) throw new ArgumentException($"--exponent is ImPart's; {DeltaOptions.Name(m)} has none");
            }
            if (m == DeltaMethod.Svd && p.GetValue(seed) is not null) throw new ArgumentException("--seed: svd draws nothing at random");
            DeltaQuantization? quantization = null;
            if (p.GetValue(quantize) is string qm)
            {
                if (qm != "gptq") throw new ArgumentException($"--quantize {qm}: expected gptq (ImPart-Qt's masked mixed-precision GPTQ)");
                if (p.GetValue(textFile) is null) throw new ArgumentException("--quantize gptq needs --text-file: the calibration text for the fine-tuned model's input Grams");
                var dq = new DeltaQuantization(p.GetValue(bits) is string spec ? DeltaBitPlan.Parse(spec) : DeltaBitPlan.Impart);
                quantization = dq with { GroupSize = p.GetValue(groupSize) ?? dq.GroupSize };
            }
            else
                foreach (var (option, given) in new (string, bool)[] { ("--bits", p.GetValue(bits) is not null), ("--group-size", p.GetValue(groupSize) is not null), ("--text-file", p.GetValue(textFile) is not null) })
                    if (given) throw new ArgumentException($"{option} applies to --quantize gptq (ImPart-Qt); give --quantize gptq or drop it");
            var d = new DeltaOptions(m, p.GetValue(ratio));
            var options = d with { Beta = p.GetValue(beta) ?? d.Beta, Exponent = p.GetValue(exponent) ?? d.Exponent, Seed = p.GetValue(seed) ?? 0, Quantization = quantization };
            options.Check();
            string b = p.GetValue(baseDir)!, f = p.GetValue(fineTuned)!;
            foreach (var (name, dir) in new[] { ("--base", b), ("--finetuned", f) })
                if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"{name} {dir}: no such model directory");
            var provenance = new JsonObject { ["threads"] = NumericsRuntime.Threads, ["numerics"] = NumericsRuntime.Describe() };
            CalibrationStatisticsFile? stats = null;
            if (quantization is not null)
            {
                var request = new CalibrationRequest(f, DemoCalibrationText.Resolve(p.GetValue(textFile)!, AssetCache.Root), p.GetValue(samples), p.GetValue(seqLen), p.GetValue(calibrationSeed), false);
                using var model = ModelLoader.Load(f);
                (stats, string key, _, _) = CalibrationCache.GetOrCollect(model, Calibrator.SampleWindows(request), request, msg => Console.Error.WriteLine($"compress-delta: {msg}"));
                provenance["calibration_key"] = key;
                provenance["calibration_seed"] = request.Seed;
            }
            DeltaReport report;
            using (stats)
                report = DeltaCheckpoint.Write(b, f, options, p.GetValue(output)!, msg => Console.Error.WriteLine($"compress-delta: {msg}"), provenance, statistics: stats);
            string outDir = Path.GetFullPath(p.GetValue(output)!);
            if (p.GetValue(json))
            {
                var j = DeltaCheckpoint.ToJson(report, b, f, provenance);
                j.Remove("linears");
                j["model"] = outDir;
                Console.WriteLine(j.ToJsonString());
            }
            else
                Console.WriteLine($"compressed delta: {outDir} (CR {report.AchievedRatio:F2}, {report.StoredValues:N0} of {report.DenseValues:N0} delta values"
                    + (options.Quantization is null ? "" : $" in {report.StoredBytes:N0} bytes of codes") + $", {report.Seconds:F1} s)");
            return 0;
        }));
        return command;
    }
}
