using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Spectre.Console;
using SvdLlm.Evaluation.Perplexity;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Data;
using SvdLlm.Models.Tokenizers;
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

    /// <summary>The directory the model of <paramref name="config"/> is cached in (whether or not it exists yet).</summary>
    internal static string CachedModelDirectory(TrainConfig config)
    {
        var checksums = config.Corpora.SelectMany(c => Corpora.SourceChecksums(c)).ToDictionary(kv => kv.Key, kv => kv.Value);
        return Path.Combine(AssetCache.Root, "models", $"{config.Name}-{config.CacheKey(checksums)[..16]}");
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
        string outDir = Path.GetFullPath(output ?? CachedModelDirectory(config));
        if (cache && File.Exists(Path.Combine(outDir, "training.json")))
        {
            Report(outDir, json, cached: true);
            return 0;
        }

        var corpora = config.Corpora.Select(name => new TrainingCorpus(name,
            Corpora.ReadSplit(name, CorpusSplit.Train), Corpora.ReadSplit(name, CorpusSplit.Validation), Corpora.ReadSplit(name, CorpusSplit.Test))).ToList();
        var provenance = new JsonObject
        {
            ["corpus_checksums"] = ToJson(config.Corpora.SelectMany(c => Corpora.SourceChecksums(c))),
            ["cache_key"] = config.CacheKey(config.Corpora.SelectMany(c => Corpora.SourceChecksums(c)).ToDictionary(kv => kv.Key, kv => kv.Value)),
            ["machine"] = Environment.MachineName,
            ["os"] = System.Runtime.InteropServices.RuntimeInformation.OSDescription,
            ["dotnet"] = Environment.Version.ToString(),
        };

        using var cts = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true; // finish the step, checkpoint, then stop
            cts.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        try
        {
            var options = new Trainer.Options
            {
                Cancellation = cts.Token,
                Provenance = provenance,
                Log = m => Console.Error.WriteLine($"train: {m}"),
                Finalize = (staging, _, training) => training["held_out"] = HeldOut(staging, corpora, config.Training.SeqLen),
            };
            bool interactive = !quiet && !Console.IsErrorRedirected && AnsiConsole.Profile.Capabilities.Interactive;
            if (interactive)
            {
                AnsiConsole.Progress()
                    .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                    .Start(ctx =>
                    {
                        var task = ctx.AddTask("training", maxValue: config.Training.Steps);
                        var withBar = new Trainer.Options
                        {
                            Cancellation = options.Cancellation, Provenance = options.Provenance, Log = options.Log, Finalize = options.Finalize,
                            Progress = p =>
                            {
                                task.Value = p.Step;
                                task.Description = $"step {p.Step}/{p.Steps} loss {p.Loss:F3} {p.TokensPerSecond:F0} tok/s";
                            },
                        };
                        Trainer.Run(config, corpora, outDir, withBar);
                    });
            }
            else
            {
                int every = Math.Max(1, config.Training.Steps / 20);
                var plain = new Trainer.Options
                {
                    Cancellation = options.Cancellation, Provenance = options.Provenance, Log = options.Log, Finalize = options.Finalize,
                    Progress = p =>
                    {
                        if (p.Step % every == 0 || p.Step == p.Steps)
                            Console.Error.WriteLine($"train: step {p.Step}/{p.Steps} loss {p.Loss:F4} lr {p.LearningRate:E2} {p.TokensPerSecond:F0} tok/s eta {p.Eta:hh\\:mm\\:ss}");
                    },
                };
                Trainer.Run(config, corpora, outDir, plain);
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
        Report(outDir, json, cached: false);
        return 0;
    }

    /// <summary>Model and unigram perplexity on each corpus's test split, same tokens and chunks for both.</summary>
    private static JsonObject HeldOut(string modelDir, IReadOnlyList<TrainingCorpus> corpora, int seqLen)
    {
        var tokenizer = HfTokenizer.Load(modelDir);
        using var model = ModelLoader.Load(modelDir);
        model.LoadAll();
        var trainIds = corpora.SelectMany(c => tokenizer.Encode(c.Train, addSpecialTokens: true)).ToArray();
        var unigram = new UnigramBaseline(trainIds, tokenizer.VocabSize);
        var result = new JsonObject();
        foreach (var c in corpora)
        {
            var ids = tokenizer.Encode(c.Test, addSpecialTokens: true);
            var ppl = PerplexityEvaluator.Evaluate(model, ids, seqLen, batchSize: 8);
            result[c.Name] = new JsonObject
            {
                ["model_ppl"] = Math.Round(ppl.Ppl, 4),
                ["unigram_ppl"] = Math.Round(unigram.Perplexity(ids, seqLen), 4),
                ["predicted_tokens"] = ppl.Tokens,
                ["chunks"] = ppl.Chunks,
                ["seq_len"] = seqLen,
                ["protocol"] = ppl.Protocol,
            };
            Console.Error.WriteLine($"train: held-out {c.Name}: model ppl {ppl.Ppl:F2}, unigram ppl {unigram.Perplexity(ids, seqLen):F2} ({ppl.Tokens:N0} tokens)");
        }
        return result;
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

    private static JsonObject ToJson(IEnumerable<KeyValuePair<string, string>> pairs)
    {
        var o = new JsonObject();
        foreach (var (k, v) in pairs.OrderBy(kv => kv.Key, StringComparer.Ordinal)) o[k] = v;
        return o;
    }
}
