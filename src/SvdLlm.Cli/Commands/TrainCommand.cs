using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Spectre.Console;
using SvdLlm.Experiments;
using SvdLlm.Models.Training;
using SvdLlm.Numerics;

namespace SvdLlm.Cli.Commands;

/// <summary>
/// <c>svdllm train --config FILE (--out DIR | --cache) [--threads T] [--quiet] [--json]</c>: trains a
/// LLaMA-architecture model on the pinned corpora and writes a Hugging Face directory. With --cache the
/// directory is &lt;cache&gt;/models/&lt;name&gt;-&lt;key&gt;, the key hashing the config, the corpus checksums and
/// the trainer version, and an existing directory is reused instead of retrained.
/// </summary>
internal static class TrainCommand
{
    public static Command Create()
    {
        var config = new Option<string>("--config") { Description = "training config (YAML)", Required = true };
        var output = new Option<string?>("--out") { Description = "output directory (must not exist)" };
        var cache = new Option<bool>("--cache") { Description = "write to (or reuse) the content-addressed model cache instead of --out" };
        var threads = new Option<int?>("--threads") { Description = "threads for BLAS and kernels (default: all cores); part of what makes a run reproducible" };
        var quiet = new Option<bool>("--quiet") { Description = "no progress bar; a log line per evaluation" };
        var json = new Option<bool>("--json") { Description = "print one JSON object (path and held-out perplexities) at the end" };
        var command = new Command("train", "Train a LLaMA-architecture model (tokenizer included) on the pinned public-domain corpora.")
        {
            config, output, cache, threads, quiet, json,
        };
        command.SetAction(parse => CliErrors.Run(() => Run(parse.GetValue(config)!, parse.GetValue(output), parse.GetValue(cache),
            parse.GetValue(threads), parse.GetValue(quiet), parse.GetValue(json))));
        return command;
    }

    private static int Run(string configPath, string? output, bool cache, int? threads, bool quiet, bool json)
    {
        if (threads is int t)
        {
            if (t <= 0) throw new ArgumentException($"--threads must be positive, got {t}");
            NumericsRuntime.SetThreads(t);
        }
        var config = TrainConfig.Load(configPath);
        if (cache == (output is not null)) throw new ArgumentException("give exactly one of --out DIR and --cache");
        string outDir = Path.GetFullPath(output ?? ModelTraining.CachedDirectory(config));
        if (cache && ModelTraining.IsComplete(outDir))
        {
            Report(outDir, json, cached: true);
            return 0;
        }

        using var cts = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true; // finish the step, checkpoint, then stop
            cts.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        Action<string> log = m => Console.Error.WriteLine($"train: {m}");
        TrainSummary? summary = null; // null: another process finished the same model while this one waited
        try
        {
            bool interactive = !quiet && !Console.IsErrorRedirected && AnsiConsole.Profile.Capabilities.Interactive;
            if (interactive)
            {
                AnsiConsole.Progress()
                    .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                    .Start(ctx =>
                    {
                        var task = ctx.AddTask("training", maxValue: config.Training.Steps);
                        summary = ModelTraining.Train(config, outDir, p =>
                        {
                            task.Value = p.Step;
                            task.Description = $"step {p.Step}/{p.Steps} loss {p.Loss:F3} {p.TokensPerSecond:F0} tok/s";
                        }, log, cts.Token);
                    });
            }
            else
            {
                int every = Math.Max(1, config.Training.Steps / 20);
                summary = ModelTraining.Train(config, outDir, p =>
                {
                    if (p.Step % every == 0 || p.Step == p.Steps)
                        Console.Error.WriteLine($"train: step {p.Step}/{p.Steps} loss {p.Loss:F4} lr {p.LearningRate:E2} {p.TokensPerSecond:F0} tok/s eta {p.Eta:hh\\:mm\\:ss}");
                }, log, cts.Token);
            }
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine($"train: interrupted; the checkpoint in {outDir}.partial resumes with the same command");
            return 130;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
        Report(outDir, json, cached: summary is null);
        return 0;
    }

    private static void Report(string outDir, bool json, bool cached)
    {
        var training = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "training.json")))!;
        if (json)
        {
            var o = new JsonObject
            {
                ["model"] = outDir,
                ["cached"] = cached,
                ["final_loss"] = training["final_loss"]?.DeepClone(),
                ["tokens_per_second"] = training["tokens_per_second"]?.DeepClone(),
                ["held_out"] = training["held_out"]?.DeepClone(),
            };
            Console.WriteLine(o.ToJsonString());
        }
        else
        {
            Console.WriteLine((cached ? "cached: " : "trained: ") + outDir);
        }
    }
}
