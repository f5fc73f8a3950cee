using System.CommandLine;
using Spectre.Console;
using SvdLlm.Experiments.Matrix;
using SvdLlm.Experiments.Pipeline;
using SvdLlm.Experiments.Store;

namespace SvdLlm.Cli.Commands;

/// <summary>
/// <c>svdllm run-matrix --matrix FILE --db PATH [--stage calibrate|compress|evaluate|all] [--dry-run] [--shard I/N] [--threads T] [--quiet] [--force]</c>
/// and <c>svdllm merge-results --into DB --from A.db,B.db</c>.
/// </summary>
internal static class RunMatrixCommand
{
    public static Command Create()
    {
        var matrix = new Option<string>("--matrix") { Description = "matrix file (YAML)", Required = true };
        var db = new Option<string>("--db") { Description = "results database (SQLite; created when missing)", DefaultValueFactory = _ => Path.Combine("results", "results.db") };
        var stage = new Option<string>("--stage") { Description = "how far to go: calibrate, compress, evaluate or all (= evaluate); each stage also builds what it needs", DefaultValueFactory = _ => "all" };
        stage.AcceptOnlyFromAmong("calibrate", "compress", "evaluate", "all");
        var dryRun = new Option<bool>("--dry-run") { Description = "print the cells and what is cached; compute nothing" };
        var shard = new Option<string>("--shard") { Description = "I/N: run only shard I of N (cells partitioned by their key hash)", DefaultValueFactory = _ => "1/1" };
        var threads = new Option<int?>("--threads") { Description = "threads for BLAS and kernels (overrides run.threads)" };
        var quiet = new Option<bool>("--quiet") { Description = "no progress bar; plain log lines" };
        var force = new Option<bool>("--force") { Description = "run even when the preflight estimate of memory or disk exceeds what is available" };
        var command = new Command("run-matrix", "Run an experiment matrix: train/calibrate/compress/evaluate what is not cached yet, recording results in SQLite.")
        {
            matrix, db, stage, dryRun, shard, threads, quiet, force,
        };
        command.SetAction(p => CliErrors.Run(() => Run(p.GetValue(matrix)!, p.GetValue(db)!, p.GetValue(stage)!, p.GetValue(dryRun), p.GetValue(shard)!,
            p.GetValue(threads), p.GetValue(quiet), p.GetValue(force))));
        return command;
    }

    public static Command CreateMerge()
    {
        var into = new Option<string>("--into") { Description = "target database (created when missing)", Required = true };
        var from = new Option<string>("--from") { Description = "comma-separated source databases (e.g. shard1.db,shard2.db)", Required = true };
        var command = new Command("merge-results", "Merge shard result databases into one (idempotent).") { into, from };
        command.SetAction(p => CliErrors.Run(() =>
        {
            var sources = p.GetValue(from)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            if (sources.Length == 0) throw new ArgumentException("--from lists no databases");
            var s = MergeResults.Merge(p.GetValue(into)!, sources);
            Console.WriteLine($"merged {sources.Length} database(s) into {Path.GetFullPath(p.GetValue(into)!)}: {s.Runs} runs, {s.Cells} cells, {s.Metrics} metrics added");
            return 0;
        }));
        return command;
    }

    private static int Run(string matrixPath, string db, string stageName, bool dryRun, string shardText, int? threads, bool quiet, bool force)
    {
        if (threads is <= 0) throw new ArgumentException($"--threads must be positive, got {threads}");
        var shard = Shard.Parse(shardText);
        var stage = stageName switch
        {
            "calibrate" => PipelineStage.Calibrate,
            "compress" => PipelineStage.Compress,
            _ => PipelineStage.Evaluate,
        };
        MatrixSpec spec;
        try
        {
            spec = MatrixLoader.Load(matrixPath);
        }
        catch (MatrixValidationException e)
        {
            foreach (var error in e.Errors) Console.Error.WriteLine(error);
            Console.Error.WriteLine($"error: {e.Errors.Count} problem(s) in {matrixPath}; nothing was run");
            return 1;
        }

        using var cts = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            if (cts.IsCancellationRequested) return; // a second Ctrl-C kills at once; the artifact in flight is lost either way
            e.Cancel = true;
            cts.Cancel();
            Console.Error.WriteLine("run-matrix: stopping after the artifact in flight (Ctrl-C again to stop now)");
        };
        Console.CancelKeyPress += onCancel;
        try
        {
            bool interactive = !quiet && !dryRun && !Console.IsErrorRedirected && AnsiConsole.Profile.Capabilities.Interactive;
            RunnerOptions Options(IPipelineProgress progress) => new()
            {
                Stage = stage, DryRun = dryRun, Shard = shard, Threads = threads, Progress = progress, Cancellation = cts.Token, Force = force,
                Output = Console.WriteLine,
            };
            if (interactive)
            {
                AnsiConsole.Progress()
                    .AutoClear(false)
                    .HideCompleted(true)
                    .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
                    .Start(ctx => MatrixRunner.Run(spec, db, Options(new SpectreProgress(ctx))));
            }
            else
            {
                MatrixRunner.Run(spec, db, Options(new PlainProgress()));
            }
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("run-matrix: interrupted; rerun the same command to resume (finished artifacts are kept)");
            return 130;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
        return 0;
    }

    /// <summary>Plain lines on stderr (CI, redirected output, --quiet).</summary>
    private sealed class PlainProgress : IPipelineProgress
    {
        private int _planned, _done;

        public void Planned(int artifacts) => _planned = artifacts;
        public void Begin(string kind, string label) { }
        public void Advance(double fraction, string? detail) { }
        public void End(string kind, string label, double seconds) => _done++;
        public void Cells(int complete, int total) { }
        public void Message(string line) => Console.Error.WriteLine(_planned > 0 && line.StartsWith("done ", StringComparison.Ordinal)
            ? $"run-matrix: [{_done + 1}/{_planned}] {line}" : $"run-matrix: {line}");
    }

    /// <summary>An overall bar (artifacts done, ETA) and one bar for the artifact in flight.</summary>
    private sealed class SpectreProgress(ProgressContext ctx) : IPipelineProgress
    {
        private readonly ProgressTask _overall = ctx.AddTask("matrix", maxValue: 1);
        private ProgressTask? _current;
        private string _label = "";
        private string _cells = "";

        public void Planned(int artifacts)
        {
            _overall.MaxValue = Math.Max(1, artifacts);
            if (artifacts == 0) _overall.Value = 1;
            Describe();
        }

        public void Cells(int complete, int total)
        {
            _cells = $", {complete}/{total} cells complete";
            Describe();
        }

        private void Describe() => _overall.Description = $"matrix: {_overall.Value:0}/{_overall.MaxValue:0} artifacts{_cells}";

        public void Begin(string kind, string label)
        {
            _label = Markup.Escape(label);
            _current = ctx.AddTask(_label, maxValue: 1);
        }

        public void Advance(double fraction, string? detail)
        {
            if (_current is null) return;
            _current.Value = Math.Clamp(fraction, 0, 1);
            _current.Description = detail is null ? _label : $"{_label} [grey]{Markup.Escape(detail)}[/]";
        }

        public void End(string kind, string label, double seconds)
        {
            if (_current is not null)
            {
                _current.Value = _current.MaxValue;
                _current.StopTask();
            }
            _overall.Increment(1);
            Describe();
            AnsiConsole.MarkupLine($"[green]✓[/] {Markup.Escape(label)} [grey]{seconds:F1} s[/]");
        }

        public void Message(string line)
        {
            // Metrics and warnings are worth seeing above the bars; the full log is in results/logs/.
            if (line.Contains(" ppl ", StringComparison.Ordinal) || line.Contains(" acc ", StringComparison.Ordinal) || line.StartsWith("failed", StringComparison.Ordinal))
                AnsiConsole.MarkupLine($"[grey]{Markup.Escape(line)}[/]");
        }
    }
}
