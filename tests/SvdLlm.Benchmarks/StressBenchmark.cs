using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Microsoft.Data.Sqlite;
using SvdLlm.Models.Training;

namespace SvdLlm.Benchmarks;

/// <summary>
/// A measured run, not a unit test: P real <c>svdllm run-matrix</c> processes start together on one fresh database and
/// cache, trial after trial, half of the trials with busy-loop threads loading every core, and half with
/// keep_compressed false (deletion racing with readers). A trial passes when every process exits 0, the database is
/// intact with one row per result, each artifact was computed by exactly one process, and nothing is left in the cache
/// that the runs should have removed. Prints per-condition figures and ends with "stress: N trials, F failed".
/// Usage: dotnet run --project tests/SvdLlm.Benchmarks -c Release -- --stress [--trials N] [--processes P]
/// </summary>
public static class StressBenchmark
{
    private sealed record Trial(bool Loaded, bool KeepCompressed, double Seconds, string? Failure);

    public static int Run(string[] args)
    {
        int trials = 100, processes = 2;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--stress": break;
                case "--trials": trials = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--processes": processes = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                default:
                    Console.Error.WriteLine($"unknown argument '{args[i]}' (known: --stress, --trials N, --processes P)");
                    return 2;
            }
        }
        if (trials < 1 || processes < 2) { Console.Error.WriteLine("--trials must be ≥ 1 and --processes ≥ 2"); return 2; }
        string root = Path.Combine(Path.GetTempPath(), $"svdllm-stress-{Environment.ProcessId}");
        try
        {
            var (matrixTemplate, _) = World(root);
            Console.WriteLine($"stress: {trials} trials × {processes} run-matrix processes on one database and cache; {Environment.ProcessorCount} cores; " +
                              "odd trials with a busy-loop thread per core, trials 2k and 2k+1 alternate keep_compressed");
            var results = new List<Trial>();
            for (int t = 0; t < trials; t++)
            {
                bool loaded = t % 2 == 1, keep = t / 2 % 2 == 0;
                string dir = Path.Combine(root, $"trial{t}");
                Directory.CreateDirectory(dir);
                string matrix = Path.Combine(dir, "m.yaml");
                File.WriteAllText(matrix, matrixTemplate.Replace("{cache}", Path.Combine(dir, "cache")).Replace("{keep}", keep ? "true" : "false"));
                var trial = RunTrial(matrix, Path.Combine(dir, "results.db"), Path.Combine(dir, "cache"), processes, loaded, keep);
                results.Add(trial);
                Console.WriteLine($"trial {t + 1,3}/{trials}: {(loaded ? "load   " : "no load")} keep_compressed {(keep ? "true " : "false")} " +
                                  $"{trial.Seconds,6:F1} s  {trial.Failure ?? "ok"}");
                if (trial.Failure is null) Directory.Delete(dir, recursive: true);
                else Console.WriteLine($"  kept for inspection: {dir}");
            }
            Console.WriteLine();
            foreach (var g in results.GroupBy(r => (r.Loaded, r.KeepCompressed)).OrderBy(g => g.Key.Loaded).ThenBy(g => g.Key.KeepCompressed))
                Console.WriteLine($"{(g.Key.Loaded ? "with load   " : "without load")} keep_compressed {(g.Key.KeepCompressed ? "true " : "false")}: " +
                                  $"{g.Count()} trials, {g.Count(r => r.Failure is not null)} failed, median {Median(g.Select(r => r.Seconds)):F1} s per trial");
            int failed = results.Count(r => r.Failure is not null);
            Console.WriteLine($"stress: {results.Count} trials, {failed} failed");
            return failed == 0 ? 0 : 1;
        }
        finally
        {
            if (Directory.Exists(root) && !Directory.EnumerateDirectories(root, "trial*").Any()) Directory.Delete(root, recursive: true);
        }
    }

    /// <summary>A tiny LLaMA with a byte-level BPE tokenizer, a text file, and the matrix (cache and keep_compressed left open).</summary>
    private static (string Matrix, string Model) World(string root)
    {
        Directory.CreateDirectory(root);
        var rng = new Random(5);
        string[] words = ["the", "whale", "ship", "sea", "captain", "and", "of", "a", "to", "in", "was", "upon"];
        string text = string.Join(" ", Enumerable.Range(0, 3000).Select(i => words[rng.Next(words.Length)] + (i % 11 == 10 ? "." : "")));
        string textFile = Path.Combine(root, "text.txt");
        File.WriteAllText(textFile, text);
        var bpe = ByteLevelBpeTrainer.Train([text], vocabSize: 300);
        string model = Path.Combine(root, "model");
        Program.WriteRandomLlama(model, new Program.Shape(Hidden: 64, Heads: 4, KvHeads: 2, Intermediate: 176, Layers: 2, Vocab: bpe.VocabSize), seed: 2);
        File.WriteAllText(Path.Combine(model, "tokenizer.json"), ByteLevelBpeTrainer.ToTokenizerJson(bpe));
        string matrix = $$$"""
            models: [{{{model}}}]
            calibration: {dataset: {{{textFile}}}, samples: 8, seq_len: 16, seed: 3}
            methods: [svd, svdllm]
            ratios: [0.3, 0.6]
            tasks: [{name: wikitext2, data: {{{textFile}}}, seq_len: 16}]
            run: {cache_dir: {cache}, threads: 1, keep_compressed: {keep}}
            """;
        return (matrix, model);
    }

    private static Trial RunTrial(string matrix, string db, string cache, int processes, bool loaded, bool keep)
    {
        using var stop = new CancellationTokenSource();
        var hogs = loaded
            ? Enumerable.Range(0, Environment.ProcessorCount).Select(_ => new Thread(() => { while (!stop.IsCancellationRequested) { } }) { IsBackground = true }).ToList()
            : [];
        hogs.ForEach(h => h.Start());
        var clock = Stopwatch.StartNew();
        try
        {
            var runs = Enumerable.Range(0, processes).Select(_ => Start(matrix, db)).ToList();
            var outputs = runs.Select(Finish).ToList();
            double seconds = clock.Elapsed.TotalSeconds;
            return new Trial(loaded, keep, seconds, Check(runs, outputs, db, cache, keep));
        }
        finally
        {
            stop.Cancel();
            hogs.ForEach(h => h.Join());
        }
    }

    private static string? Check(List<Process> runs, List<string> outputs, string db, string cache, bool keep)
    {
        for (int i = 0; i < runs.Count; i++)
            if (runs[i].ExitCode != 0) return $"process {i} exited {runs[i].ExitCode}: {Last(outputs[i])}";
        var totals = outputs.Select(Summary).ToList();
        if (totals.Any(t => t is null)) return "a process printed no summary line";
        var (cal, comp, eval) = (totals.Sum(t => t!.Value.Calibration), totals.Sum(t => t!.Value.Compressed), totals.Sum(t => t!.Value.Evaluation));
        if ((cal, comp, eval) != (1, 4, 5)) return $"artifacts computed {cal} calibration, {comp} compressed, {eval} evaluations (expected 1, 4, 5 across the processes)";
        using var c = new SqliteConnection($"Data Source={db};Mode=ReadOnly;Pooling=False");
        c.Open();
        string? Expect(string sql, object expected) =>
            Equals(Scalar(c, sql), expected) ? null : $"{sql} gave {Scalar(c, sql)}, expected {expected}";
        string? problem = Expect("PRAGMA integrity_check", "ok")
            ?? Expect("SELECT count(*) FROM cells", 5L)
            ?? Expect("SELECT count(*) FROM evaluations", 5L)
            ?? Expect("SELECT count(*) FROM metrics WHERE metric = 'ppl'", 5L)
            ?? Expect("SELECT count(*) FROM compression", 4L)
            ?? Expect($"SELECT count(*) FROM runs WHERE status = 'finished'", (long)runs.Count);
        if (problem is not null) return problem;
        string compressed = Path.Combine(cache, "compressed");
        var dirs = Directory.Exists(compressed) ? Directory.GetDirectories(compressed) : [];
        if (dirs.Any(d => d.EndsWith(".partial", StringComparison.Ordinal) || d.Contains(".deleting-", StringComparison.Ordinal)))
            return "left in the cache: " + string.Join(", ", dirs.Select(Path.GetFileName));
        if (dirs.Length != (keep ? 4 : 0)) return $"{dirs.Length} compressed models in the cache with keep_compressed {keep}";
        var temps = Directory.EnumerateFiles(cache, "*", SearchOption.AllDirectories).Where(f => Path.GetFileName(f).Contains(".tmp-", StringComparison.Ordinal)).ToList();
        return temps.Count > 0 ? "temporary files left: " + string.Join(", ", temps) : null;
    }

    private static Process Start(string matrix, string db)
    {
        string cli = Path.Combine(AppContext.BaseDirectory, "svdllm.dll");
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in new[] { cli, "run-matrix", "--matrix", matrix, "--db", db, "--quiet" }) info.ArgumentList.Add(a);
        return Process.Start(info) ?? throw new InvalidOperationException("could not start dotnet");
    }

    private static string Finish(Process p)
    {
        var output = p.StandardOutput.ReadToEndAsync();
        var error = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromSeconds(300)))
        {
            p.Kill(entireProcessTree: true);
            p.WaitForExit();
        }
        return output.Result + error.Result;
    }

    private static (int Calibration, int Compressed, int Evaluation)? Summary(string output)
    {
        var m = Regex.Match(output, @"calibration (\d+) \([^)]*\), compressed (\d+) \([^)]*\), evaluation (\d+)");
        return m.Success ? (int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture),
            int.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture)) : null;
    }

    private static string Last(string output) => output.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault() ?? "";

    private static object? Scalar(SqliteConnection c, string sql)
    {
        using var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        return cmd.ExecuteScalar();
    }

    private static double Median(IEnumerable<double> xs)
    {
        var s = xs.Order().ToArray();
        return s.Length == 0 ? 0 : s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }
}
