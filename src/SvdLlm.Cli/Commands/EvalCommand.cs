using System.CommandLine;
using System.Text.Json;
using SvdLlm.Evaluation.Tasks;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Tokenizers;
using SvdLlm.Numerics;

namespace SvdLlm.Cli.Commands;

/// <summary>
/// <c>svdllm eval --model DIR --task NAME [--data PATH] [--limit N] [--seq-len L] [--batch-size B] [--threads T] [--json]</c>:
/// one task of <see cref="TaskRegistry"/> on one model (perplexity, or zero-shot accuracy with lm-eval semantics).
/// </summary>
internal static class EvalCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Hugging Face model directory (config.json, safetensors, tokenizer.json)", Required = true };
        var task = new Option<string>("--task") { Description = "task name: " + string.Join(", ", TaskRegistry.Names), Required = true };
        var data = new Option<string?>("--data") { Description = "the task's data file in its release format (optional for demo_* tasks, which are built from the embedded corpora)" };
        var limit = new Option<int?>("--limit") { Description = "score only the first N items (multiple choice) or chunks (perplexity)" };
        var seqLen = new Option<int>("--seq-len") { Description = "perplexity chunk length; for multiple choice the longest window a request may use", DefaultValueFactory = _ => 2048 };
        var batchSize = new Option<int>("--batch-size") { Description = "chunks (perplexity) or items (multiple choice) per forward pass", DefaultValueFactory = _ => 1 };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "tokenizer.json, tokenizer.model or directory (default: the model directory)" };
        var threads = new Option<int?>("--threads") { Description = "threads for BLAS and kernels (default: all cores)" };
        var json = new Option<bool>("--json") { Description = "print one JSON object" };
        var command = new Command("eval", "Evaluate a model on one task: wikitext2/ptb/c4 perplexity, the lm-eval zero-shot tasks, or the demo suite.")
        {
            model, task, data, limit, seqLen, batchSize, tokenizer, threads, json,
        };
        command.SetAction(parse => CliErrors.Run(() =>
            Run(parse.GetValue(model)!, parse.GetValue(task)!, parse.GetValue(data), parse.GetValue(limit), parse.GetValue(seqLen),
                parse.GetValue(batchSize), parse.GetValue(tokenizer), parse.GetValue(threads), parse.GetValue(json))));
        return command;
    }

    private static int Run(string directory, string task, string? data, int? limit, int seqLen, int batchSize, string? tokenizerPath, int? threads, bool json)
    {
        if (threads is int t)
        {
            if (t <= 0) throw new ArgumentException($"--threads must be positive, got {t}");
            NumericsRuntime.SetThreads(t);
        }
        if (seqLen < 2) throw new ArgumentException($"--seq-len must be at least 2, got {seqLen}");
        if (batchSize < 1) throw new ArgumentException($"--batch-size must be positive, got {batchSize}");
        if (!TaskRegistry.Names.Contains(task))
        {
            // Before loading anything, so that a typo fails fast.
            string? close = SvdLlm.Models.NameSuggestions.Closest(task, TaskRegistry.Names);
            throw new ArgumentException($"unknown task '{task}'" + (close is null ? "" : $"; did you mean '{close}'?") + $" Known tasks: {string.Join(", ", TaskRegistry.Names)}");
        }
        using var m = ModelLoader.Load(directory);
        var tok = HfTokenizer.Load(tokenizerPath ?? directory);
        m.LoadAll();
        var request = new TaskRequest(task, data, limit, seqLen, batchSize);
        string unit = TaskRegistry.IsPerplexity(task) ? "chunk" : "item";
        // A progress line only on a terminal: redirected, one line per item would flood the log.
        bool interactive = !Console.IsErrorRedirected;
        var result = TaskRegistry.Run(m, tok, request, interactive ? (done, total) => Console.Error.Write($"\r{task}: {unit} {done}/{total}") : null);
        if (interactive) Console.Error.WriteLine();

        if (json)
        {
            var o = new Dictionary<string, object?>
            {
                ["task"] = result.Task,
                ["protocol"] = result.Protocol,
                ["n"] = result.N,
            };
            foreach (var metric in result.Metrics)
            {
                o[metric.Name] = metric.Value;
                if (metric.Stderr is double s) o[metric.Name + "_stderr"] = s;
            }
            if (result.Chance is double chance) o["chance"] = chance;
            o["model"] = Path.GetFullPath(directory);
            o["architecture"] = m.Architecture;
            o["data"] = data is null ? null : Path.GetFullPath(data);
            o["limit"] = limit;
            o["seq_len"] = seqLen;
            o["batch_size"] = batchSize;
            o["threads"] = NumericsRuntime.Threads;
            o["blas"] = NumericsRuntime.BlasConfig;
            o["seconds"] = result.Seconds;
            Console.WriteLine(JsonSerializer.Serialize(o, JsonOutput.Options));
        }
        else
        {
            string metrics = string.Join("  ", result.Metrics.Select(x => x.Stderr is double s ? $"{x.Name} {x.Value:F4} ± {s:F4}" : $"{x.Name} {x.Value:F4}"));
            string chance = result.Chance is double c ? $"  (chance {c:F4})" : "";
            Console.WriteLine($"{result.Task}: {metrics}{chance}  n={result.N}  [{result.Protocol}]  {result.Seconds:F1} s");
        }
        return 0;
    }
}
