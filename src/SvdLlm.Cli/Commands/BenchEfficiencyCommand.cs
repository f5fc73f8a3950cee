using System.CommandLine;
using System.Text.Json;
using SvdLlm.Evaluation.Efficiency;
using SvdLlm.Models.Architectures;

namespace SvdLlm.Cli.Commands;

/// <summary>
/// <c>svdllm bench-efficiency --model DIR [--batch B] [--prompt-len P] [--gen-len G] [--repeats R] [--threads T]
/// [--seed S] [--warmup-seconds W] [--baseline DIR] [--json]</c>: parameters, weight bytes, prefill and KV-cache decode throughput
/// and peak memory of a model; with a baseline (the original of a compressed model), the same for it,
/// measured in the same process with the timed runs alternating, and the model/baseline ratios.
/// </summary>
internal static class BenchEfficiencyCommand
{
    public static Command Create()
    {
        var defaults = new EfficiencyOptions();
        var model = new Option<string>("--model") { Description = "Hugging Face model directory", Required = true };
        var batch = new Option<int>("--batch") { Description = $"sequences per batch (default {defaults.Batch})", DefaultValueFactory = _ => defaults.Batch };
        var promptLen = new Option<int>("--prompt-len") { Description = $"prompt tokens per sequence (default {defaults.PromptLen})", DefaultValueFactory = _ => defaults.PromptLen };
        var genLen = new Option<int>("--gen-len") { Description = $"generated tokens per sequence (default {defaults.GenLen})", DefaultValueFactory = _ => defaults.GenLen };
        var repeats = new Option<int>("--repeats") { Description = $"timed runs; the median is reported (default {defaults.Repeats})", DefaultValueFactory = _ => defaults.Repeats };
        var threads = new Option<int?>("--threads") { Description = "threads for BLAS and kernels (default: all cores)" };
        var seed = new Option<int>("--seed") { Description = $"seed of the synthetic prompt (default {defaults.Seed})", DefaultValueFactory = _ => defaults.Seed };
        var warmup = new Option<double>("--warmup-seconds") { Description = $"untimed runs until this long has passed (default {defaults.WarmupSeconds})", DefaultValueFactory = _ => defaults.WarmupSeconds };
        var baseline = new Option<string?>("--baseline") { Description = "the original model to compare with (ratios = model / baseline)" };
        var json = new Option<bool>("--json") { Description = "print one JSON object" };
        var command = new Command("bench-efficiency", "Parameters, weight bytes, prefill/decode throughput (KV cache) and peak memory; ratios against a baseline.")
        {
            model, batch, promptLen, genLen, repeats, threads, seed, warmup, baseline, json,
        };
        command.SetAction(parse => CliErrors.Run(() => Run(parse.GetValue(model)!, parse.GetValue(baseline),
            new EfficiencyOptions(parse.GetValue(batch), parse.GetValue(promptLen), parse.GetValue(genLen), parse.GetValue(repeats), parse.GetValue(threads), parse.GetValue(seed), parse.GetValue(warmup)),
            parse.GetValue(json))));
        return command;
    }

    private static int Run(string directory, string? baselineDirectory, EfficiencyOptions options, bool json)
    {
        options.Validate();
        if (baselineDirectory is not null && !Directory.Exists(baselineDirectory))
            throw new DirectoryNotFoundException($"baseline model directory not found: {baselineDirectory}");
        EfficiencyResult result;
        EfficiencyResult? baseline = null;
        EfficiencyComparison? ratios = null;
        Console.Error.WriteLine($"bench-efficiency: batch {options.Batch}, prompt {options.PromptLen}, gen {options.GenLen}, {options.Repeats} repeats"
                                + (baselineDirectory is null ? "" : " (timed runs alternate with the baseline's)"));
        if (baselineDirectory is null)
        {
            using var model = ModelLoader.Load(directory);
            result = EfficiencyBenchmark.Measure(model, options);
        }
        else
        {
            (result, baseline, ratios) = EfficiencyBenchmark.MeasurePair(directory, baselineDirectory, options);
        }

        if (json)
        {
            var o = Describe(result);
            if (baseline is not null) o["baseline"] = Describe(baseline);
            if (ratios is not null) o["ratios"] = ratios.ToMetrics().ToDictionary(m => m.Name[..^"_ratio".Length], m => (object?)m.Value);
            Console.WriteLine(JsonSerializer.Serialize(o, JsonOutput.Options));
            return 0;
        }
        Print(result);
        if (baseline is not null && ratios is not null)
        {
            Console.WriteLine();
            Console.WriteLine("baseline:");
            Print(baseline);
            Console.WriteLine();
            Console.WriteLine("model / baseline:");
            foreach (var m in ratios.ToMetrics()) Console.WriteLine($"  {m.Name,-30} {m.Value:F4}");
        }
        return 0;
    }

    private static Dictionary<string, object?> Describe(EfficiencyResult r) => new()
    {
        ["model"] = r.Model,
        ["architecture"] = r.Architecture,
        ["params"] = r.Parameters,
        ["weight_bytes"] = r.WeightBytes,
        ["weight_bytes_f32"] = r.WeightBytesFloat32,
        ["linear_params"] = r.LinearParameters,
        ["linears"] = r.Linears,
        ["low_rank_linears"] = r.LowRankLinears,
        ["batch"] = r.Batch,
        ["prompt_len"] = r.PromptLen,
        ["gen_len"] = r.GenLen,
        ["repeats"] = r.Repeats,
        ["threads"] = r.Threads,
        ["seed"] = r.Seed,
        ["warmup_runs"] = r.WarmupRuns,
        ["blas"] = r.Blas,
        ["prefill_tokens_per_s"] = r.PrefillTokensPerSecond,
        ["decode_tokens_per_s"] = r.DecodeTokensPerSecond,
        ["prefill_seconds"] = r.PrefillSeconds,
        ["decode_seconds"] = r.DecodeSeconds,
        ["kv_cache_bytes"] = r.KvCacheBytes,
        ["peak_rss_bytes"] = r.PeakRssBytes,
        ["rss_before_bytes"] = r.RssBeforeBytes,
        ["peak_rss_increase_bytes"] = r.PeakRssIncreaseBytes,
        ["peak_rss_scope"] = "process",
        ["peak_rss_reset"] = r.PeakRssReset,
        ["protocol"] = r.Protocol,
        ["seconds"] = r.Seconds,
    };

    private static void Print(EfficiencyResult r)
    {
        Console.WriteLine($"model        {r.Model} ({r.Architecture}; {r.LowRankLinears}/{r.Linears} linears low-rank)");
        Console.WriteLine($"parameters   {r.Parameters:N0} (linear {r.LinearParameters:N0}); weights {r.WeightBytes:N0} bytes stored, {r.WeightBytesFloat32:N0} as float32");
        Console.WriteLine($"settings     batch {r.Batch}, prompt {r.PromptLen}, gen {r.GenLen}, repeats {r.Repeats} (median), threads {r.Threads}, seed {r.Seed}");
        Console.WriteLine($"prefill      {r.PrefillTokensPerSecond:F1} tokens/s");
        Console.WriteLine($"decode       {r.DecodeTokensPerSecond:F1} tokens/s (KV cache {r.KvCacheBytes:N0} bytes)");
        Console.WriteLine($"peak RSS     {(r.PeakRssBytes is long b ? $"{b:N0} bytes" : "n/a")} (whole process{(r.PeakRssReset ? $", reset before loading; +{r.PeakRssIncreaseBytes:N0} over the {r.RssBeforeBytes:N0} resident before" : "")})");
    }
}
