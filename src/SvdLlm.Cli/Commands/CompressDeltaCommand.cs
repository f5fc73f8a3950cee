using System.CommandLine;
using System.Text.Json.Nodes;
using SvdLlm.Compression.Delta;
using SvdLlm.Numerics;

namespace SvdLlm.Cli.Commands;

/// <summary>
/// <c>svdllm compress-delta --base DIR --finetuned DIR --method impart|svd|dare --ratio CR --out DIR [--beta B]
/// [--exponent C] [--seed S] [--threads T] [--json]</c>: compresses the fine-tuning delta of every decoder linear
/// (<see cref="DeltaCheckpoint"/>) and writes a full checkpoint, base + compressed delta, with delta-report.json.
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
        var threads = new Option<int?>("--threads") { Description = "threads for BLAS/LAPACK (default: all cores)" };
        var json = new Option<bool>("--json") { Description = "print one JSON object (the delta report without the per-linear list)" };
        var command = new Command("compress-delta", "Compress the fine-tuning delta of a base/fine-tuned pair (ImPart, truncated SVD or DARE) into a full checkpoint.")
        {
            baseDir, fineTuned, method, ratio, output, beta, exponent, seed, threads, json,
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
            var d = new DeltaOptions(m, p.GetValue(ratio));
            var options = d with { Beta = p.GetValue(beta) ?? d.Beta, Exponent = p.GetValue(exponent) ?? d.Exponent, Seed = p.GetValue(seed) ?? 0 };
            options.Check();
            string b = p.GetValue(baseDir)!, f = p.GetValue(fineTuned)!;
            foreach (var (name, dir) in new[] { ("--base", b), ("--finetuned", f) })
                if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"{name} {dir}: no such model directory");
            var provenance = new JsonObject { ["threads"] = NumericsRuntime.Threads, ["numerics"] = NumericsRuntime.Describe() };
            var report = DeltaCheckpoint.Write(b, f, options, p.GetValue(output)!, msg => Console.Error.WriteLine($"compress-delta: {msg}"), provenance);
            string outDir = Path.GetFullPath(p.GetValue(output)!);
            if (p.GetValue(json))
            {
                var j = DeltaCheckpoint.ToJson(report, b, f, provenance);
                j.Remove("linears");
                j["model"] = outDir;
                Console.WriteLine(j.ToJsonString());
            }
            else
                Console.WriteLine($"compressed delta: {outDir} (CR {report.AchievedRatio:F2}, {report.StoredValues:N0} of {report.DenseValues:N0} delta values, {report.Seconds:F1} s)");
            return 0;
        }));
        return command;
    }
}
