using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Spectre.Console;
using SvdLlm.Compression.Calibration;
using SvdLlm.Compression.Recovery;
using SvdLlm.Experiments;
using SvdLlm.Models.Training;
using SvdLlm.Numerics;

namespace SvdLlm.Cli.Commands;

/// <summary>
/// <c>svdllm train --config FILE (--out DIR | --cache) [--threads T] [--quiet] [--json]</c>: trains a
/// LLaMA-architecture model on the pinned corpora and writes a Hugging Face directory. With --cache the
/// directory is &lt;cache&gt;/models/&lt;name&gt;-&lt;key&gt;, the key hashing the config, the corpus checksums and
/// the trainer version, and an existing directory is reused instead of retrained.
/// <para>
/// <c>svdllm train --init DIR --text-file F --steps N --out DIR2 [--lr X] [--batch B] [--samples S] [--seq-len L]
/// [--seed S] [--weight-decay W]</c>: continues training every weight of a model on new text (<see cref="FineTuning"/>),
/// which makes the base/fine-tuned pairs delta compression needs; deterministic for a seed and thread count.
/// </para>
/// </summary>
internal static class TrainCommand
{
    public static Command Create()
    {
        var config = new Option<string?>("--config") { Description = "training config (YAML), for a model trained from scratch" };
        var init = new Option<string?>("--init") { Description = "continue training this model directory (fine-tuning; needs --text-file, --steps and --out)" };
        var textFile = new Option<string?>("--text-file") { Description = "with --init: the text to train on" };
        var steps = new Option<int?>("--steps") { Description = "with --init: optimizer steps" };
        var lr = new Option<double?>("--lr") { Description = $"with --init: peak learning rate (default {new FineTuneOptions().LearningRate:G3}; 5 % warm-up, cosine to zero)" };
        var batch = new Option<int?>("--batch") { Description = $"with --init: windows per step (default {new FineTuneOptions().BatchSize})" };
        var samples = new Option<int?>("--samples") { Description = "with --init: windows drawn from the text (default 512)" };
        var seqLen = new Option<int?>("--seq-len") { Description = "with --init: tokens per window (default 128)" };
        var seed = new Option<int?>("--seed") { Description = "with --init: seed of the windows and their order (default 0)" };
        var weightDecay = new Option<double?>("--weight-decay") { Description = "with --init: AdamW weight decay (default 0)" };
        var force = new Option<bool>("--force") { Description = "with --init: run even when the memory estimate exceeds what is available" };
        var output = new Option<string?>("--out") { Description = "output directory (must not exist)" };
        var cache = new Option<bool>("--cache") { Description = "write to (or reuse) the content-addressed model cache instead of --out" };
        var threads = new Option<int?>("--threads") { Description = "threads for BLAS and kernels (default: all cores); part of what makes a run reproducible" };
        var quiet = new Option<bool>("--quiet") { Description = "no progress bar; a log line per evaluation" };
        var json = new Option<bool>("--json") { Description = "print one JSON object (path and held-out perplexities) at the end" };
        var command = new Command("train", "Train a LLaMA-architecture model (tokenizer included) on the pinned public-domain corpora.")
        {
            config, output, cache, threads, quiet, json, init, textFile, steps, lr, batch, samples, seqLen, seed, weightDecay, force,
        };
        command.SetAction(parse => CliErrors.Run(() =>
        {
            string? initDir = parse.GetValue(init), configPath = parse.GetValue(config);
            if ((initDir is null) == (configPath is null)) throw new ArgumentException("give exactly one of --config FILE (train from scratch) and --init DIR (continue training a model)");
            if (initDir is null)
            {
                foreach (var (name, given) in new (string, bool)[] { ("--text-file", parse.GetValue(textFile) is not null), ("--steps", parse.GetValue(steps) is not null),
                    ("--lr", parse.GetValue(lr) is not null), ("--batch", parse.GetValue(batch) is not null), ("--samples", parse.GetValue(samples) is not null),
                    ("--seq-len", parse.GetValue(seqLen) is not null), ("--seed", parse.GetValue(seed) is not null),
                    ("--weight-decay", parse.GetValue(weightDecay) is not null), ("--force", parse.GetValue(force)) })
                    if (given) throw new ArgumentException($"{name} belongs to --init (continued training); a --config run takes its settings from the config file");
                return Run(configPath!, parse.GetValue(output), parse.GetValue(cache), parse.GetValue(threads), parse.GetValue(quiet), parse.GetValue(json));
            }
            if (parse.GetValue(cache)) throw new ArgumentException("--cache is for --config runs; --init writes to --out");
            var defaults = new FineTuneOptions();
            var options = new FineTuneOptions
            {
                Steps = parse.GetValue(steps) ?? throw new ArgumentException("--init needs --steps N"),
                LearningRate = parse.GetValue(lr) ?? defaults.LearningRate,
                BatchSize = parse.GetValue(batch) ?? defaults.BatchSize,
                WeightDecay = parse.GetValue(weightDecay) ?? defaults.WeightDecay,
                Seed = parse.GetValue(seed) ?? 0,
            };
            return RunFineTune(initDir, parse.GetValue(textFile) ?? throw new ArgumentException("--init needs --text-file F (the text to train on)"),
                parse.GetValue(output) ?? throw new ArgumentException("--init needs --out DIR"), options, parse.GetValue(samples) ?? 512, parse.GetValue(seqLen) ?? 128,
                parse.GetValue(threads), parse.GetValue(json), parse.GetValue(force));
        }));
        return command;
    }

    private static int RunFineTune(string initDir, string textFile, string output, FineTuneOptions options, int samples, int seqLen, int? threads, bool json, bool force)
    {
        if (threads is int t)
        {
            if (t <= 0) throw new ArgumentException($"--threads must be positive, got {t}");
            NumericsRuntime.SetThreads(t);
        }
        if (samples < 1) throw new ArgumentException($"--samples {samples} must be at least 1");
        if (seqLen < 2) throw new ArgumentException($"--seq-len {seqLen} must be at least 2 (a window needs a next token)");
        options.Check();
        if (!Directory.Exists(initDir)) throw new DirectoryNotFoundException($"--init {initDir}: no such model directory");
        textFile = SvdLlm.Experiments.Cache.DemoCalibrationText.Resolve(textFile, SvdLlm.Models.Data.AssetCache.Root);
        if (!File.Exists(textFile)) throw new FileNotFoundException($"--text-file {textFile}: no such file", textFile);
        if (Directory.Exists(output)) throw new IOException($"--out {Path.GetFullPath(output)} already exists; refusing to overwrite (delete it or choose another --out)");
        var windows = Calibrator.SampleWindows(new CalibrationRequest(initDir, textFile, samples, seqLen, options.Seed, Fisher: false));
        using var cts = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true; // stop after the current step; nothing is written
            cts.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        var provenance = new JsonObject
        {
            ["text_file"] = Path.GetFullPath(textFile),
            ["text_sha256"] = SvdLlm.Models.Data.AssetCache.Sha256Once()(Path.GetFullPath(textFile)),
            ["samples"] = samples,
            ["threads"] = NumericsRuntime.Threads,
            ["numerics"] = NumericsRuntime.Describe(),
        };
        FineTuneResult result;
        try
        {
            result = FineTuning.Run(initDir, windows, options, output, m => Console.Error.WriteLine($"train: {m}"), provenance, force, cts.Token);
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("train: interrupted; nothing was written");
            return 130;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
        string outDir = Path.GetFullPath(output);
        if (json)
            Console.WriteLine(new JsonObject
            {
                ["model"] = outDir,
                ["init"] = Path.GetFullPath(initDir),
                ["steps"] = options.Steps,
                ["first_loss"] = result.Loss[0],
                ["final_loss"] = result.Loss[^1],
                ["seconds"] = Math.Round(result.Seconds, 3),
            }.ToJsonString());
        else
            Console.WriteLine($"fine-tuned: {outDir} (loss {result.Loss[0]:F4} → {result.Loss[^1]:F4} in {result.Seconds:F1} s)");
        return 0;
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
