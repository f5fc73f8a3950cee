using SvdLlm.Models.Tests.Reference;
using Microsoft.Data.Sqlite;
using SvdLlm.Experiments.Matrix;
using SvdLlm.Experiments.Pipeline;
using SvdLlm.Experiments.Store;

namespace SvdLlm.Experiments.Tests;

public sealed class PipelineTests
{
    private const string Micro = """
        name: micro
        models: [{name: tiny, path: {model}}]
        calibration: {dataset: {text}, samples: 8, seq_len: 32, seed: 3}
        methods: [svd, svdllm]
        ratios: [0.5]
        tasks:
          - {name: wikitext2, data: {text}, limit: 4, seq_len: 32}
        run: {threads: 1, batch_size: 2, keep_compressed: KEEP, cache_dir: {cache}}
        """;

    private sealed class Counter
    {
        public List<(string Kind, string Key)> Seen { get; } = [];
        public int? FailAfter { get; init; }

        public void After(string kind, string key)
        {
            Seen.Add((kind, key));
            if (Seen.Count == FailAfter) throw new SimulatedCrash();
        }

        public int Count(string kind) => Seen.Count(s => s.Kind == kind);
    }

    private sealed class SimulatedCrash : Exception;

    private static RunSummary Run(string matrix, string db, Counter counter, PipelineStage stage = PipelineStage.Evaluate, bool dryRun = false, List<string>? output = null) =>
        MatrixRunner.Run(MatrixLoader.Load(matrix), db, new RunnerOptions
        {
            Stage = stage, DryRun = dryRun, AfterArtifact = counter.After, Output = line => output?.Add(line),
        });

    private static long Scalar(string db, string sql)
    {
        using var s = ResultStore.Open(db);
        using var cmd = s.Connection.CreateCommand();
        cmd.CommandText = sql;
        return Convert.ToInt64(cmd.ExecuteScalar());
    }

    [Fact]
    public void MicroMatrixRunsEndToEndAndASecondRunRecomputesNothing()
    {
        using var w = new MicroWorld();
        string matrix = w.Matrix(Micro.Replace("KEEP", "false"));
        string db = w.Temp.File("results.db");
        var first = new Counter();
        var summary = Run(matrix, db, first);
        Assert.Equal("finished", summary.Status);
        Assert.Equal((0, 1, 2, 3), (first.Count("model"), first.Count("calibration"), first.Count("compressed"), first.Count("evaluation")));
        Assert.Equal(3, Scalar(db, "SELECT count(*) FROM cells"));
        Assert.Equal(3, Scalar(db, "SELECT count(*) FROM metrics WHERE task = 'wikitext2' AND metric = 'ppl' AND value > 1"));
        Assert.Equal(2, Scalar(db, "SELECT count(*) FROM compression WHERE achieved_linear_ratio > 0.4"));
        Assert.Equal(2 * 2 * 7, Scalar(db, "SELECT count(*) FROM matrix_stats"));
        Assert.Equal(1, Scalar(db, "SELECT count(*) FROM runs WHERE status = 'finished' AND blas LIKE 'threads=1%' AND packages_json LIKE '%YamlDotNet%'"));
        Assert.True(File.Exists(summary.LogPath));
        Assert.Contains("wikitext2: ppl", File.ReadAllText(summary.LogPath!), StringComparison.Ordinal);
        // keep_compressed: false deleted each compressed model once its evaluation was stored.
        Assert.Empty(Directory.GetDirectories(Path.Combine(w.CacheDir, "compressed")));

        var second = new Counter();
        Assert.Equal("finished", Run(matrix, db, second).Status);
        Assert.Empty(second.Seen);
        Assert.Equal(3, Scalar(db, "SELECT count(*) FROM metrics WHERE metric = 'ppl'"));
        Assert.Equal(2, Scalar(db, "SELECT count(*) FROM runs WHERE status = 'finished'"));

        // A changed task parameter re-evaluates every cell on that task, and only that: the compressed models
        // were deleted, so they are rebuilt from the cached statistics (no calibration).
        File.WriteAllText(matrix, File.ReadAllText(matrix).Replace("limit: 4", "limit: 3"));
        var third = new Counter();
        Run(matrix, db, third);
        Assert.Equal((0, 0, 2, 3), (third.Count("model"), third.Count("calibration"), third.Count("compressed"), third.Count("evaluation")));
        Assert.Equal(3, Scalar(db, "SELECT count(*) FROM metrics WHERE metric = 'ppl'"));
        Assert.Equal(3 * 32 - 3, Scalar(db, "SELECT max(n) FROM metrics WHERE metric = 'ppl'"));
    }

    [Fact]
    public void ACrashLosesOnlyTheArtifactInFlightAndTheRerunResumes()
    {
        using var w = new MicroWorld();
        string matrix = w.Matrix(Micro.Replace("KEEP", "true"));
        string db = w.Temp.File("results.db");
        var reference = new Counter();
        string refDb = w.Temp.File("reference.db");
        Run(matrix, refDb, reference);
        Assert.Equal(6, reference.Seen.Count);
        // A clean slate for the crashing runs: another cache directory.
        string cache2 = w.Temp.Sub("cache2");
        File.WriteAllText(matrix, File.ReadAllText(matrix).Replace(w.CacheDir, cache2));

        var seenAcrossRuns = new List<(string, string)>();
        for (int failAfter = 2; ; failAfter += 2)
        {
            var c = new Counter { FailAfter = failAfter - seenAcrossRuns.Count };
            try
            {
                Run(matrix, db, c);
                seenAcrossRuns.AddRange(c.Seen);
                break;
            }
            catch (SimulatedCrash)
            {
                seenAcrossRuns.AddRange(c.Seen);
            }
            Assert.True(failAfter < 20, "the resumed runs never finished");
        }
        // Every artifact was computed exactly once over all the interrupted runs, and the results equal the uninterrupted run's.
        Assert.Equal(reference.Seen.Select(s => s.Key).Order(), seenAcrossRuns.Select(s => s.Item2).Order());
        Assert.Equal(seenAcrossRuns.Count, seenAcrossRuns.Distinct().Count());
        Assert.Equal(Values(refDb), Values(db));
        Assert.True(Scalar(db, "SELECT count(*) FROM runs WHERE status = 'failed'") >= 2);
        Assert.DoesNotContain(Directory.GetDirectories(Path.Combine(cache2, "compressed")), d => d.EndsWith(".partial", StringComparison.Ordinal));
    }

    [Fact]
    public void LeftoversOfAKilledRunAreNeverMistakenForFinishedArtifacts()
    {
        using var w = new MicroWorld();
        string matrix = w.Matrix(Micro.Replace("KEEP", "true"));
        var spec = MatrixLoader.Load(matrix);
        var cell = SvdLlm.Experiments.Pipeline.MatrixPlan.Build(spec, new SvdLlm.Experiments.Cache.ArtifactKeys(w.CacheDir)).Cells.First(c => !c.IsOriginal);
        // kill -9 during a write leaves DIR.partial; between the rename and the database commit, a complete-looking
        // directory without its row; during a delete, DIR.deleting-PID.
        string dir = MatrixRunner.CompressedDirectory(w.CacheDir, cell.Key);
        Directory.CreateDirectory(dir + ".partial");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "config.json"), "{ not a model");
        File.WriteAllText(Path.Combine(dir, "compression-report.json"), "{}");
        var c = new Counter();
        MatrixRunner.Run(spec, w.Temp.File("r.db"), new RunnerOptions { AfterArtifact = c.After });
        Assert.Equal(2, c.Count("compressed"));
        Assert.Equal(3, c.Count("evaluation"));
        Assert.Contains("\"svd_compression\"", File.ReadAllText(Path.Combine(dir, "config.json")), StringComparison.Ordinal);

        // A complete cached directory that another database's run made is adopted (its report recorded), not recomputed.
        var again = new Counter();
        string db2 = w.Temp.File("other.db");
        MatrixRunner.Run(spec, db2, new RunnerOptions { AfterArtifact = again.After });
        Assert.Equal((0, 0, 3), (again.Count("calibration"), again.Count("compressed"), again.Count("evaluation")));
        Assert.Equal(Scalar(w.Temp.File("r.db"), "SELECT count(*) FROM matrix_stats"), Scalar(db2, "SELECT count(*) FROM matrix_stats"));
        Assert.Equal(Scalar(w.Temp.File("r.db"), "SELECT sum(rank) FROM matrix_stats"), Scalar(db2, "SELECT sum(rank) FROM matrix_stats"));
    }

    [Fact]
    public void ACompressedModelIsNotDeletedWhileAnotherProcessReadsIt()
    {
        using var w = new MicroWorld();
        string matrix = w.Matrix(Micro.Replace("KEEP", "false"));
        string db = w.Temp.File("results.db");
        Run(matrix, db, new Counter(), PipelineStage.Compress);
        var spec = MatrixLoader.Load(matrix);
        var dirs = MatrixPlan.Build(spec, new SvdLlm.Experiments.Cache.ArtifactKeys(w.CacheDir)).Cells
            .Where(c => !c.IsOriginal).Select(c => MatrixRunner.CompressedDirectory(w.CacheDir, c.Key)).ToList();
        Assert.All(dirs, d => Assert.True(Directory.Exists(d)));

        // Another process reading the models (its shared lock, as its evaluations hold it): this run evaluates
        // beside it, but leaves the directories that keep_compressed: false would otherwise delete.
        var readers = dirs.Select(d => SvdLlm.Experiments.Cache.ArtifactLock.AcquireShared(d, CancellationToken.None)).ToList();
        var evaluated = new Counter();
        Run(matrix, db, evaluated);
        Assert.Equal(3, evaluated.Count("evaluation"));
        Assert.All(dirs, d => Assert.True(Directory.Exists(d)));

        // Once the reader is gone, the next run drops them and computes nothing.
        readers.ForEach(r => r.Dispose());
        var after = new Counter();
        Run(matrix, db, after);
        Assert.Empty(after.Seen);
        Assert.All(dirs, d => Assert.False(Directory.Exists(d)));
    }

    [Fact]
    public void LeftoversOfDeadRunsAreSwept()
    {
        using var w = new MicroWorld();
        string matrix = w.Matrix(Micro.Replace("KEEP", "false"));
        var spec = MatrixLoader.Load(matrix);
        var cell = MatrixPlan.Build(spec, new SvdLlm.Experiments.Cache.ArtifactKeys(w.CacheDir)).Cells.First(c => !c.IsOriginal);
        string dir = MatrixRunner.CompressedDirectory(w.CacheDir, cell.Key);
        using var gone = System.Diagnostics.Process.Start("true")!;
        gone.WaitForExit();
        string deleting = dir + ".deleting-" + gone.Id, partial = dir + "0.partial";
        Directory.CreateDirectory(deleting);
        File.WriteAllText(Path.Combine(deleting, "model.safetensors"), "half deleted");
        Directory.CreateDirectory(partial);
        // A live process's deletion is its own business.
        string live = dir + "1.deleting-" + Environment.ProcessId;
        Directory.CreateDirectory(live);
        // Temporaries of killed writers: statistics as large as the statistics, a half-built demo suite, a small file.
        string stats = Path.Combine(w.CacheDir, "calibration", $"{new string('a', 64)}.svdstats.tmp-{gone.Id}-0badf00d");
        string demo = Path.Combine(w.CacheDir, "demo", $".{SvdLlm.Evaluation.Tasks.DemoSuite.Version}.tmp-{gone.Id}-0badf00d");
        string hash = Path.Combine(w.CacheDir, "hashes", $"{new string('b', 64)}.sha256.tmp-{gone.Id}-0badf00d");
        string liveStats = Path.Combine(w.CacheDir, "calibration", $"{new string('c', 64)}.svdstats.tmp-{Environment.ProcessId}-0badf00d");
        foreach (string f in new[] { stats, hash, liveStats })
        {
            Directory.CreateDirectory(Path.GetDirectoryName(f)!);
            File.WriteAllText(f, "partial");
        }
        Directory.CreateDirectory(demo);
        File.WriteAllText(Path.Combine(demo, "demo_cloze.jsonl"), "{");
        Run(matrix, w.Temp.File("r.db"), new Counter(), PipelineStage.Calibrate);
        Assert.False(Directory.Exists(deleting));
        Assert.False(Directory.Exists(partial));
        Assert.True(Directory.Exists(live));
        Assert.False(File.Exists(stats));
        Assert.False(Directory.Exists(demo));
        Assert.False(File.Exists(hash));
        Assert.True(File.Exists(liveStats));
    }

    /// <summary>A run killed with -9 leaves its row saying running; the next run on the machine marks it interrupted, unless it still runs.</summary>
    [Fact]
    public void ARunWhoseProcessIsGoneIsMarkedInterruptedAndALiveOneIsNot()
    {
        using var w = new MicroWorld();
        string matrix = w.Matrix(Micro.Replace("KEEP", "false"));
        string db = w.Temp.File("r.db");
        string logs = w.Temp.Sub("logs");
        long dead, alive;
        string aliveLog = Path.Combine(logs, "alive.log");
        using (var s = ResultStore.Open(db))
        {
            RunInfo Info(string log) => new("abc", false, Environment.MachineName, "os", "dotnet", 1, "blas", "{}", matrix, "sha", "1/1", "evaluate", log);
            dead = s.BeginRun(Info(Path.Combine(logs, "dead.log")));
            alive = s.BeginRun(Info(aliveLog));
        }
        using (SvdLlm.Experiments.Cache.ArtifactLock.Acquire(aliveLog, CancellationToken.None))
            Run(matrix, db, new Counter(), PipelineStage.Calibrate);
        Assert.Equal(1, Scalar(db, $"SELECT count(*) FROM runs WHERE run_id = {dead} AND status = 'interrupted' AND error LIKE '%killed%'"));
        Assert.Equal(1, Scalar(db, $"SELECT count(*) FROM runs WHERE run_id = {alive} AND status = 'running'"));
        Assert.Equal(1, Scalar(db, "SELECT count(*) FROM runs WHERE status = 'finished'"));
        // The finished run and the sweep removed their lock files; only the live run's is left.
        Assert.Equal([aliveLog + ".lock"], Directory.GetFiles(logs, "*.lock"));
    }

    [Fact]
    public void AStagePartialRunThenTheRestComputesEachArtifactOnce()
    {
        using var w = new MicroWorld();
        string matrix = w.Matrix(Micro.Replace("KEEP", "false"));
        string db = w.Temp.File("results.db");
        var dry = new List<string>();
        var none = new Counter();
        Run(matrix, db, none, dryRun: true, output: dry);
        Assert.Empty(none.Seen);
        Assert.False(File.Exists(db), "a dry run created the database");
        Assert.Contains(dry, l => l.StartsWith("would compute: 2 compressed models, 3 evaluations", StringComparison.Ordinal));

        var cal = new Counter();
        Run(matrix, db, cal, PipelineStage.Calibrate);
        Assert.Equal(["calibration"], cal.Seen.Select(s => s.Kind));
        var comp = new Counter();
        Run(matrix, db, comp, PipelineStage.Compress);
        Assert.Equal(["compressed", "compressed"], comp.Seen.Select(s => s.Kind));
        Assert.Equal(2, Directory.GetDirectories(Path.Combine(w.CacheDir, "compressed")).Length);
        var eval = new Counter();
        Run(matrix, db, eval, PipelineStage.Evaluate);
        Assert.Equal(["evaluation", "evaluation", "evaluation"], eval.Seen.Select(s => s.Kind));

        dry.Clear();
        Run(matrix, db, none, dryRun: true, output: dry);
        Assert.Contains(dry, l => l.StartsWith("would compute: 0 compressed models, 0 evaluations", StringComparison.Ordinal));
    }

    [Fact]
    public void ShardsSplitTheCellsAndTheirMergeEqualsTheWholeRun()
    {
        using var w = new MicroWorld();
        string matrix = w.Matrix(Micro.Replace("KEEP", "true"));
        var spec = MatrixLoader.Load(matrix);
        var counters = new List<Counter>();
        for (int i = 1; i <= 2; i++)
        {
            var c = new Counter();
            MatrixRunner.Run(spec, w.Temp.File($"shard{i}.db"), new RunnerOptions { Shard = new Shard(i, 2), AfterArtifact = c.After });
            counters.Add(c);
        }
        // Each cell's evaluation ran in exactly one shard.
        Assert.Equal(3, counters.Sum(c => c.Count("evaluation")));
        string merged = w.Temp.File("merged.db");
        MergeResults.Merge(merged, [w.Temp.File("shard1.db"), w.Temp.File("shard2.db")]);
        var whole = w.Temp.File("whole.db");
        MatrixRunner.Run(spec, whole, new RunnerOptions());
        Assert.Equal(Values(whole), Values(merged));
    }

    [Fact]
    public void TwoRunnersOnOneDatabaseAndCacheComputeEachSharedArtifactOnce()
    {
        using var w = new MicroWorld();
        string matrix = w.Matrix(Micro.Replace("KEEP", "true"));
        string db = w.Temp.File("results.db");
        var counters = new[] { new Counter(), new Counter() };
        var errors = new List<Exception>();
        var threads = counters.Select(c => new Thread(() =>
        {
            try
            {
                MatrixRunner.Run(MatrixLoader.Load(matrix), db, new RunnerOptions { AfterArtifact = (k, key) => { lock (counters) c.After(k, key); } });
            }
            catch (Exception e)
            {
                lock (errors) errors.Add(e);
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        Assert.Empty(errors);
        // Statistics and compressed models are locked per artifact: one runner computes, the other waits and reuses.
        Assert.Equal(1, counters.Sum(c => c.Count("calibration")));
        Assert.Equal(2, counters.Sum(c => c.Count("compressed")));
        Assert.Equal(3, Scalar(db, "SELECT count(*) FROM cells"));
        Assert.Equal(3, Scalar(db, "SELECT count(*) FROM evaluations"));
        Assert.Equal(6, Scalar(db, "SELECT count(*) FROM metrics"));
        Assert.Equal(2, Scalar(db, "SELECT count(*) FROM compression"));
        Assert.Equal(2, Scalar(db, "SELECT count(*) FROM runs WHERE status = 'finished'"));
    }

    [Fact]
    public void DryRunOfTheDefaultMatrixOnAnEmptyCacheSaysWhatItWouldTrainAndComputeWithoutDoingIt()
    {
        using var w = new MicroWorld();
        string matrix = w.Matrix($"extends: {Path.Combine(MatrixLoaderTests.Repository(), "experiments", "default.yaml")}\nrun: {{cache_dir: {{cache}}}}\n");
        var output = new List<string>();
        var c = new Counter();
        Run(matrix, w.Temp.File("r.db"), c, dryRun: true, output: output);
        Assert.Empty(c.Seen);
        Assert.Contains(output, l => l.StartsWith("model default: not trained yet", StringComparison.Ordinal));
        Assert.Contains(output, l => l.Contains("calibration demo 128×128 seed 3 +fisher: to compute", StringComparison.Ordinal));
        // 7 SVD recipes × 4 ratios + 8 quantizers = 36 compressed models; (36 + the original) × 6 tasks.
        Assert.Contains("would compute: 36 compressed models, 222 evaluations", output);
        Assert.False(Directory.Exists(Path.Combine(w.CacheDir, "models")));
    }

    /// <summary>
    /// Every method this build offers, in one matrix, through every kind of task (perplexity, multiple choice, efficiency):
    /// the list comes from <see cref="SvdLlm.Compression.CompressionMethod.All"/>, so a method added without the inputs
    /// the runner must give it (Fisher statistics, calibration windows) fails here the day it lands. Quantizers run
    /// 4-bit with groups of 32, one SVD method also with its factors quantized by GPTQ, one with LoRA recovery, and
    /// Dobi-SVD also with its 8-bit remapped storage.
    /// </summary>
    [Fact]
    public void EveryMethodRunsInAMatrixThroughEveryTaskKind()
    {
        using var w = new MicroWorld(arch: TinyArch.Llama3);
        var all = SvdLlm.Compression.CompressionMethod.All;
        var methods = all.Select(m => m.Name).ToList();
        // GPTVQ's group_size is weights per codebook: 2-bit pairs, codebooks of 32 columns × 16 rows on the micro model.
        var entries = all.Select(m => m.Name switch
            {
                "gptvq" => "{name: gptvq, params: {bits: 2, vq_dim: 2, columns_per_group: 32, group_size: 512, kmeans_iters: 10}}",
                _ when m.IsQuantization => $"{{name: {m.Name}, params: {{bits: 4, group_size: 32}}}}",
                _ => m.Name,
            })
            .Append("{name: svdllm-v2, params: {quantize: gptq, bits: 4, group_size: 32}}")
            .Append("{name: svdllm, params: {recover: lora, lora_epochs: 1, lora_batch: 4}}")
            .Append("{name: dobi-svd, params: {remap: true, epochs: 1}}")
            .Append("{name: svdllm, params: {numerics: reference}}");
        string matrix = w.Matrix($$$"""
            models: [{model}]
            calibration: {dataset: {text}, samples: 8, seq_len: 32, seed: 3}
            methods: [{{{string.Join(", ", entries)}}}]
            ratios: [0.5]
            baseline: false
            tasks:
              - {name: wikitext2, data: {text}, limit: 2, seq_len: 32}
              - {name: demo_cloze, limit: 3}
              - {name: efficiency, seq_len: 16}
            run: {threads: 1, batch_size: 2, keep_compressed: false, cache_dir: {cache}}
            """);
        string db = w.Temp.File("r.db");
        var summary = MatrixRunner.Run(MatrixLoader.Load(matrix), db, new RunnerOptions());
        Assert.Equal("finished", summary.Status);
        using var s = ResultStore.Open(db);
        foreach (string method in methods)
        {
            long Count(string sql)
            {
                using var cmd = s.Connection.CreateCommand();
                cmd.CommandText = sql;
                cmd.Parameters.AddWithValue("$m", method);
                return Convert.ToInt64(cmd.ExecuteScalar());
            }
            // An SVD cell removes half the parameters; a 4-bit cell keeps them all in well under half the bytes (float32 model).
            // Dobi-SVD's remapped cell spends the same bytes on more parameters (8-bit codes), so only its bytes are bounded.
            int cellsOfMethod = method switch { "svdllm" => 3, "svdllm-v2" or "dobi-svd" => 2, _ => 1 };
            Assert.True(Count("SELECT count(*) FROM compression c JOIN cells USING (cell_key) WHERE cells.method = $m AND (c.achieved_linear_ratio > 0.4 OR (cells.ratio = 0 AND c.achieved_linear_ratio = 0) OR cells.config_json LIKE '%remap%') " +
                "AND c.linear_bytes_after > 0 AND c.linear_bytes_after < 0.6 * c.linear_bytes_before") == cellsOfMethod, $"{method}: no compression record with bytes");
            foreach (var (task, metric) in new[] { ("wikitext2", "ppl"), ("demo_cloze", "acc"), ("efficiency", "decode_tokens_per_s") })
                Assert.True(Count($"SELECT count(*) FROM metrics m JOIN cells USING (cell_key) WHERE cells.method = $m AND m.task = '{task}' AND m.metric = '{metric}' AND m.value >= 0") == cellsOfMethod,
                    $"{method}: no {task} {metric}");
        }
        // SVD-LLM with the reference's numerics read its own, float32-accumulated statistics, and its factors lose what its
        // truncation says to float32 rounding.
        Assert.Equal(1, Scalar(db, "SELECT count(*) FROM cells WHERE method = 'svdllm' AND config_json LIKE '%\"numerics\":\"reference\"%'"));
        Assert.Equal(2, Scalar(db, "SELECT count(DISTINCT calibration_key) FROM cells WHERE method = 'svdllm'"));
        // LoRA recovery's curves: 8 windows in batches of 4 for one epoch, 2 steps per stage, stored and plotted.
        Assert.Equal(2, Scalar(db, "SELECT count(*) FROM training_curves WHERE stage = 'lora_u'"));
        Assert.Equal(2, Scalar(db, "SELECT count(*) FROM training_curves WHERE stage = 'lora_v'"));
        string reportDir = w.Temp.File("report");
        SvdLlm.Experiments.Reports.ReportGenerator.Generate(db, reportDir);
        var curves = Directory.GetFiles(Path.Combine(reportDir, "plots"), "*_training.svg");
        Assert.Single(curves);
        Assert.Contains("SVD-LLM + LoRA 1 ep b4 at 50", File.ReadAllText(curves[0]));
        // The raw per-step values beside the plot; Dobi-SVD's γ training is 5 epochs of one batch of 8 windows, plus 1 for the remapped cell.
        var csv = File.ReadAllLines(Path.Combine(reportDir, "tables", "training_curves.csv"));
        Assert.Equal(2, csv.Count(l => l.Contains(",lora_v,", StringComparison.Ordinal)));
        Assert.Equal(5 + 1, csv.Count(l => l.Contains(",dobi_gamma,", StringComparison.Ordinal)));
    }

    /// <summary>The whole plan is checked against the machine before the run is recorded; a refused run computes and records nothing.</summary>
    [Fact]
    public void APlanThatCannotFitIsRefusedBeforeAnythingIsComputedOrRecorded()
    {
        using var w = new MicroWorld();
        // 40000-token windows: the attention scratch of one calibration batch alone is 4 · 40000² · 4 B · 2 ≈ 51 GB.
        string matrix = w.Matrix(Micro.Replace("KEEP", "false").Replace("samples: 8, seq_len: 32", "samples: 1, seq_len: 40000"));
        string db = w.Temp.File("r.db");
        var counter = new Counter();
        var e = Assert.Throws<SvdLlm.Compression.InsufficientResourcesException>(() => Run(matrix, db, counter));
        Assert.Contains("of memory", e.Message, StringComparison.Ordinal);
        Assert.Empty(counter.Seen);
        Assert.Equal(0, Scalar(db, "SELECT count(*) FROM runs"));
        var dry = new List<string>();
        Run(matrix, db, new Counter(), dryRun: true, output: dry);
        Assert.Contains(dry, l => l.StartsWith("preflight: memory: calibration ", StringComparison.Ordinal));
    }

    [Fact]
    public void EfficiencyIsStoredPerCellLikeATask()
    {
        using var w = new MicroWorld();
        string matrix = w.Matrix("""
            models: [{model}]
            calibration: {dataset: {text}, samples: 8, seq_len: 32}
            methods: [svd]
            ratios: [0.5]
            tasks: [{name: efficiency, seq_len: 16}]
            run: {threads: 1, cache_dir: {cache}}
            """);
        string db = w.Temp.File("r.db");
        MatrixRunner.Run(MatrixLoader.Load(matrix), db, new RunnerOptions());
        // Parameter counts against the checkpoint's own tensors and the compression record.
        long stored = TinyParameters(w.ModelDir);
        Assert.Equal(stored, Scalar(db, "SELECT CAST(m.value AS INTEGER) FROM metrics m JOIN cells c USING (cell_key) WHERE c.method = 'original' AND m.task = 'efficiency' AND m.metric = 'params'"));
        Assert.Equal(Scalar(db, "SELECT model_params_after FROM compression"),
            Scalar(db, "SELECT CAST(m.value AS INTEGER) FROM metrics m JOIN cells c USING (cell_key) WHERE c.method = 'svd' AND m.task = 'efficiency' AND m.metric = 'params'"));
        Assert.Equal(2, Scalar(db, "SELECT count(*) FROM metrics WHERE task = 'efficiency' AND metric = 'decode_tokens_per_s' AND value > 0"));
    }

    private static long TinyParameters(string modelDir)
    {
        using var f = SvdLlm.Models.Checkpoints.CheckpointReader.Open(modelDir);
        return f.TensorNames.Sum(n => f.GetInfo(n).Shape.Aggregate(1L, (a, d) => a * d));
    }

    /// <summary>Every stored metric as (cell, task, metric, value), sorted.</summary>
    private static List<string> Values(string db)
    {
        using var s = ResultStore.Open(db);
        using var cmd = s.Connection.CreateCommand();
        cmd.CommandText = "SELECT cell_key, task, metric, value, n FROM metrics ORDER BY cell_key, task, metric";
        using var r = cmd.ExecuteReader();
        var rows = new List<string>();
        while (r.Read()) rows.Add($"{r.GetString(0)} {r.GetString(1)} {r.GetString(2)} {r.GetDouble(3):R} {r.GetInt64(4)}");
        return rows;
    }
}
