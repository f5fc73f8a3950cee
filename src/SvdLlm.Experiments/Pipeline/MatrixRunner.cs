using System.Diagnostics;
using System.Globalization;
using System.Text;
using SvdLlm.Compression;
using SvdLlm.Compression.Calibration;
using SvdLlm.Evaluation.Tasks;
using SvdLlm.Experiments.Cache;
using SvdLlm.Experiments.Matrix;
using SvdLlm.Experiments.Store;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Data;
using SvdLlm.Models.Tokenizers;
using SvdLlm.Numerics;

namespace SvdLlm.Experiments.Pipeline;

/// <summary>How far to go: each stage also produces what it depends on (Evaluate compresses what it evaluates).</summary>
public enum PipelineStage { Calibrate = 1, Compress = 2, Evaluate = 3 }

public sealed class RunnerOptions
{
    public PipelineStage Stage { get; init; } = PipelineStage.Evaluate;
    public bool DryRun { get; init; }
    public Shard Shard { get; init; } = Shard.All;

    /// <summary>Run even when the preflight's memory or disk estimate exceeds what is available.</summary>
    public bool Force { get; init; }

    /// <summary>Overrides the matrix's run.threads.</summary>
    public int? Threads { get; init; }

    public IPipelineProgress Progress { get; init; } = SilentProgress.Instance;

    /// <summary>Where the run's plain-text log goes (default: a logs/ folder beside the database).</summary>
    public string? LogDirectory { get; init; }

    public CancellationToken Cancellation { get; init; }
    public ITaskEvaluator Evaluator { get; init; } = RegistryEvaluator.Instance;

    /// <summary>Called after each artifact is stored (kind, key); tests count computations and inject crashes here.</summary>
    public Action<string, string>? AfterArtifact { get; init; }

    /// <summary>Receives the dry-run listing and the closing summary (the CLI prints them to stdout).</summary>
    public Action<string> Output { get; init; } = _ => { };
}

/// <summary>What one run did: artifacts computed and seconds spent, by kind.</summary>
public sealed record RunSummary(long RunId, string Status, int Cells, IReadOnlyDictionary<string, int> Computed,
    IReadOnlyDictionary<string, double> Seconds, double WallSeconds, string? LogPath);

/// <summary>
/// Runs a matrix as a graph of content-addressed artifacts: model (trained on demand for <c>default</c>) →
/// calibration statistics per (model, calibration) → compressed model per cell → one evaluation per
/// (cell, task). Each artifact is written atomically (temporary name, then rename) or recorded in one
/// database transaction, and everything already present is skipped, so an interrupted run (exception,
/// kill -9, Ctrl-C) loses at most the artifact in flight and the rerun resumes.
/// </summary>
public static class MatrixRunner
{
    public static RunSummary Run(MatrixSpec matrix, string dbPath, RunnerOptions options)
    {
        int? threads = options.Threads ?? matrix.Run.Threads;
        if (threads is int t) NumericsRuntime.SetThreads(t);
        string cacheRoot = Path.GetFullPath(matrix.Run.CacheDirectory ?? AssetCache.Root);
        var keys = new ArtifactKeys(cacheRoot);
        var plan = MatrixPlan.Build(matrix, keys);
        var cells = plan.Cells.Where(c => options.Shard.Contains(c.Key)).ToList();

        using var store = options.DryRun ? ResultStore.OpenExistingOrEmpty(dbPath) : ResultStore.Open(dbPath);
        var work = new Work(plan, cells, store, options, keys);
        if (options.DryRun)
        {
            work.Snapshot();
            var planned = work.Plan();
            work.PrintDryRun(planned);
            if (work.Estimate(planned) is { } estimate) options.Output($"preflight: {estimate.Describe()}");
            return new RunSummary(0, "dry-run", cells.Count, new Dictionary<string, int>(), new Dictionary<string, double>(), 0, null);
        }

        string logDir = Path.GetFullPath(options.LogDirectory ?? Path.Combine(Path.GetDirectoryName(store.Path)!, "logs"));
        Directory.CreateDirectory(logDir);
        var (commit, dirty) = Provenance.Git(Path.GetDirectoryName(matrix.Path)!);
        string stage = options.Stage.ToString().ToLowerInvariant();
        // The run id is only known after the insert; the log's name uses a timestamp and the process id instead.
        string logPath = Path.Combine(logDir, $"{DateTime.UtcNow:yyyyMMdd-HHmmss}-{matrix.Name}-{stage}-shard{options.Shard.Index}of{options.Shard.Count}-{Environment.ProcessId}.log");
        // Planned, and checked against the machine, before the run is recorded: a job that cannot fit is refused with
        // nothing computed (the cache's leftovers of killed runs are swept first, as the plan reads the cache).
        work.SweepLeftovers();
        work.Snapshot();
        var jobs = work.Plan();
        work.CheckTaskFiles(jobs);
        if (work.Estimate(jobs) is { } needs)
            Preflight.Check(needs, Path.Combine(cacheRoot, "calibration"), Path.Combine(cacheRoot, "compressed"), Path.Combine(cacheRoot, "compressed"), options.Force, work.Log);
        MarkDeadRuns(store, line => options.Progress.Message(line));
        // Held until the run's row is ended: a process that dies without ending it (kill -9) frees it, which is how a
        // later run tells a dead run from a live one (pids are recycled; locks die with their process).
        using var alive = ArtifactLock.Acquire(logPath, options.Cancellation);
        long runId = store.BeginRun(new RunInfo(commit, dirty, Environment.MachineName, Provenance.Os, Provenance.DotNet, NumericsRuntime.Threads,
            NumericsRuntime.Describe(), Provenance.PackagesJson(), matrix.Path, matrix.Sha256, options.Shard.ToString(), stage, logPath));
        using var log = new StreamWriter(logPath, append: false, Encoding.UTF8) { AutoFlush = true };
        work.Attach(runId, log);
        var clock = Stopwatch.StartNew();
        string status = "finished";
        try
        {
            work.Log($"run {runId}: matrix {matrix.Path} (sha256 {matrix.Sha256[..12]}), stage {stage}, shard {options.Shard}, {cells.Count} of {plan.Cells.Count} cells, " +
                     $"git {commit[..Math.Min(12, commit.Length)]}{(dirty ? "+dirty" : "")}, {NumericsRuntime.Describe()}, cache {cacheRoot}");
            work.Execute(jobs);
            store.EndRun(runId, status);
        }
        catch (OperationCanceledException)
        {
            status = "interrupted";
            work.Log("interrupted between artifacts (every finished one is stored); rerun the same command to resume");
            store.EndRun(runId, status, "interrupted");
            throw;
        }
        catch (Exception e)
        {
            status = "failed";
            work.Log($"failed: {e.GetType().Name}: {e.Message}");
            store.EndRun(runId, status, $"{e.GetType().Name}: {e.Message}");
            throw;
        }
        finally
        {
            work.Log(work.SummaryLine(clock.Elapsed.TotalSeconds, status));
            alive.ReleaseAndRemove();
        }
        options.Output(work.SummaryLine(clock.Elapsed.TotalSeconds, status));
        return new RunSummary(runId, status, cells.Count, work.Computed, work.Seconds, clock.Elapsed.TotalSeconds, logPath);
    }

    /// <summary>
    /// Marks interrupted every run of this machine whose row says running but whose process is gone: nobody holds the
    /// lock beside its log file. Runs of other machines, and runs whose log directory is not here, are left alone.
    /// </summary>
    private static void MarkDeadRuns(ResultStore store, Action<string> log)
    {
        foreach (var (runId, logPath) in store.RunningRuns(Environment.MachineName))
        {
            if (logPath is null || !Directory.Exists(Path.GetDirectoryName(logPath))) continue;
            using var held = ArtifactLock.TryAcquire(logPath);
            if (held is null) continue;
            if (store.MarkInterrupted(runId, "the process ended without recording the end of the run (killed?)"))
                log($"run {runId} was killed while running (its row said running); marked interrupted");
            held.ReleaseAndRemove();
        }
    }

    /// <summary>The directory of a cell's compressed model in the cache.</summary>
    public static string CompressedDirectory(string cacheRoot, string cellKey) => Path.Combine(cacheRoot, "compressed", cellKey[..32]);

    private sealed class Work(MatrixPlan plan, List<CellPlan> cells, ResultStore store, RunnerOptions options, ArtifactKeys keys)
    {
        // The planner's view, read once by Snapshot, then kept current by this executor (and Refresh, under locks).
        private readonly PipelineState _state = new() { Evaluations = store.Evaluations(), Compressed = store.CompressedCells() };
        // Cells whose directory held a usable report when last read: a complete directory is never rewritten (it is
        // renamed into place whole, under a content key), so the planning checks read each report once.
        private readonly HashSet<string> _readable = [];
        private readonly Dictionary<string, string> _modelDirs = [];
        private long _runId;
        private StreamWriter? _log;

        public Dictionary<string, int> Computed { get; } = ArtifactKind.All.ToDictionary(k => k, _ => 0);
        public Dictionary<string, double> Seconds { get; } = ArtifactKind.All.ToDictionary(k => k, _ => 0.0);

        private IPipelineProgress Progress => options.Progress;

        public void Attach(long runId, StreamWriter log)
        {
            _runId = runId;
            _log = log;
        }

        public void Log(string message)
        {
            _log?.WriteLine($"{DateTime.UtcNow:yyyy-MM-ddTHH:mm:ss.fffZ} {message}");
            Progress.Message(message);
        }

        /// <summary>
        /// Re-reads what other processes on the same database stored for this cell since this run planned its work, so that
        /// two unsharded runs do not both compress or evaluate what one of them has finished meanwhile.
        /// </summary>
        private void Refresh(CellPlan c)
        {
            foreach (var (task, key) in store.EvaluationsOf(c.Key)) _state.Evaluations[(c.Key, task)] = key;
            if (store.IsCompressed(c.Key)) _state.Compressed.Add(c.Key);
            if (!c.IsOriginal && ReadyOnDisk(c)) _state.OnDisk.Add(c.Key);
            else _state.OnDisk.Remove(c.Key);
        }

        private List<EvaluationPlan> Pending(CellPlan c) => PipelinePlanner.Pending(c, _state);

        private bool NeedsCompression(CellPlan c) => PipelinePlanner.NeedsCompression(c, options.Stage, _state);

        private bool NeedsEvaluation(CellPlan c) => PipelinePlanner.NeedsEvaluation(c, options.Stage, _state);

        private string CompressedDir(CellPlan c) => CompressedDirectory(keys.CacheRoot, c.Key);

        /// <summary>
        /// The compressed model is on disk (the directory appears only complete: written as DIR.partial, then
        /// renamed) and either recorded in this database or holding a readable report of this cell. No side effects:
        /// the planning decisions use it; only <see cref="Adopt"/>, under the cell's lock, records or deletes.
        /// </summary>
        private bool ReadyOnDisk(CellPlan c) =>
            Directory.Exists(CompressedDir(c)) && (_state.Compressed.Contains(c.Key) || _readable.Contains(c.Key) || (ReadReport(c, out _) is null && _readable.Add(c.Key)));

        /// <summary>The cell's report from its directory, or why it cannot be used (null when it can).</summary>
        private string? ReadReport(CellPlan c, out CompressionReport? report)
        {
            string dir = CompressedDir(c);
            report = null;
            try
            {
                report = CompressionReportReader.Read(dir);
                return report.Method != c.Method.Name || report.Ratio != c.Ratio ? $"{dir} holds {report.Method} at {report.Ratio}, not {c.Label}" : null;
            }
            catch (Exception e) when (e is InvalidDataException or IOException)
            {
                return e.Message;
            }
        }

        /// <summary>
        /// Under the cell's lock (shared or exclusive): is the compressed model on disk and recorded in this database?
        /// A directory another run made is adopted from its report; an unusable one is deleted, but only by the
        /// holder of the exclusive lock (a reader leaves it to the next compression).
        /// </summary>
        private bool Adopt(CellPlan c, bool exclusive)
        {
            string dir = CompressedDir(c);
            if (!Directory.Exists(dir)) return false;
            if (_state.Compressed.Contains(c.Key)) return true;
            if (ReadReport(c, out var report) is { } problem)
            {
                if (exclusive)
                {
                    Log($"discarding {dir}: {problem}");
                    Directory.Delete(dir, recursive: true);
                    _state.OnDisk.Remove(c.Key);
                }
                return false;
            }
            store.RecordCompression(c.Record, report!, _runId);
            _state.Compressed.Add(c.Key);
            _state.OnDisk.Add(c.Key);
            Log($"adopted the cached compressed model of {c.Label} ({dir})");
            return true;
        }

        /// <summary>Is the model directory present (null: not trained yet)?</summary>
        private string? ExistingModelDir(ModelSpec m)
        {
            if (m.IsFineTuned)
            {
                string ft = FineTunedDir(m);
                return File.Exists(Path.Combine(ft, "fine-tuning.json")) ? ft : null;
            }
            if (!m.IsDefault) return m.Source;
            string dir = ModelTraining.CachedDirectory(ModelTraining.DefaultConfig(), keys.CacheRoot);
            return ModelTraining.IsComplete(dir) ? dir : null;
        }

        private bool StatsCached(CalibrationPlan g, string? modelDir) =>
            modelDir is not null && (File.Exists(CalibrationCache.PathFor(keys.StatisticsKey(Request(g, modelDir)), StatsDirectory))
                                     || File.Exists(CalibrationCache.PathFor(keys.StatisticsKey(Request(g, modelDir) with { Fisher = true }), StatsDirectory)));

        private string StatsDirectory => Path.Combine(keys.CacheRoot, "calibration");

        private CalibrationRequest Request(CalibrationPlan g, string modelDir) =>
            new(modelDir, g.Calibration.IsDemo ? DemoCalibrationText.Ensure(keys.CacheRoot) : g.Calibration.Dataset, g.Calibration.Samples, g.Calibration.SeqLen, g.Calibration.Seed, g.Fisher, g.Float32Gram);

        /// <summary>Reads what the planner needs from the cache (the database part was read at construction).</summary>
        public void Snapshot()
        {
            foreach (var m in plan.Matrix.Models)
                if (ExistingModelDir(m) is not null) _state.ModelsPresent.Add(m.Source);
            foreach (var g in plan.Calibrations)
                if (StatsCached(g, ExistingModelDir(g.Model))) _state.StatisticsCached.Add(g.Key);
            foreach (var c in cells)
                if (!c.IsOriginal && ReadyOnDisk(c)) _state.OnDisk.Add(c.Key);
        }

        public PipelineJobs Plan() => PipelinePlanner.Plan(plan, cells, options.Stage, _state);

        /// <summary>
        /// Reads every multiple-choice data file a planned evaluation will score, so a malformed record is refused before
        /// hours of compression rather than found mid-run (perplexity text is read when evaluated: any text is valid).
        /// </summary>
        public void CheckTaskFiles(PipelineJobs jobs)
        {
            var tasks = jobs.Models.SelectMany(m => m.CellJobs)
                .SelectMany(j => j.Evaluate).Select(e => e.Task)
                .Where(t => t.Data is not null && TaskDefinitions.Find(t.Name)?.Kind == SvdLlm.Evaluation.Tasks.TaskKind.MultipleChoice)
                .DistinctBy(t => (t.Name, t.Data));
            foreach (var t in tasks) TaskRegistry.ReadItems(t.Name, t.Data!);
        }

        /// <summary>
        /// What the planned compressions need of the machine at most (<see cref="SvdLlm.Compression.Preflight"/>, from each
        /// model's shapes): the largest memory of one cell, the statistics of every group to collect, and the outputs of
        /// every cell kept (one at a time without keep_compressed). Null when nothing is compressed, or the only model
        /// is the default one this run trains (it is small).
        /// </summary>
        public ResourceEstimate? Estimate(PipelineJobs jobs)
        {
            ResourceEstimate? total = null;
            foreach (var m in jobs.Models)
            {
                var compress = m.Groups.SelectMany(g => g.Cells.Where(c => c.Compress).Select(c => (Group: g.Group, c.Cell))).ToList();
                if (compress.Count == 0 || ExistingModelDir(m.Model) is not { } dir) continue;
                using var model = ModelLoader.Load(dir);
                var each = compress.Select(x => (x.Group, E: SvdLlm.Compression.Preflight.Estimate(model, x.Cell.Method.Recipe, x.Cell.Ratio,
                    x.Group.Calibration.Samples, x.Group.Calibration.SeqLen, _state.StatisticsCached.Contains(x.Group.Key)))).ToList();
                long statistics = each.GroupBy(x => x.Group.Key).Sum(g => g.Max(x => x.E.StatisticsDiskBytes));
                long outputs = plan.Matrix.Run.KeepCompressed ? each.Sum(x => x.E.OutputDiskBytes) : each.Max(x => x.E.OutputDiskBytes);
                var e = new ResourceEstimate(each.Max(x => x.E.CalibrationMemoryBytes), each.Max(x => x.E.CompressionMemoryBytes), statistics,
                    each.Max(x => x.E.WorkspaceDiskBytes), outputs);
                total = total is null ? e : new ResourceEstimate(Math.Max(total.CalibrationMemoryBytes, e.CalibrationMemoryBytes),
                    Math.Max(total.CompressionMemoryBytes, e.CompressionMemoryBytes), total.StatisticsDiskBytes + e.StatisticsDiskBytes,
                    Math.Max(total.WorkspaceDiskBytes, e.WorkspaceDiskBytes), total.OutputDiskBytes + e.OutputDiskBytes);
            }
            return total;
        }

        public void PrintDryRun(PipelineJobs jobs)
        {
            var o = options.Output;
            var byCell = jobs.Models.SelectMany(m => m.CellJobs).ToDictionary(j => j.Cell.Key);
            var calibrating = jobs.Models.SelectMany(m => m.Groups).Where(g => g.Calibrate).Select(g => g.Group.Key).ToHashSet();
            o($"matrix {plan.Matrix.Name} ({plan.Matrix.Path}): {plan.Cells.Count} cells, shard {options.Shard}: {cells.Count}; stage {options.Stage.ToString().ToLowerInvariant()}");
            foreach (var m in plan.Matrix.Models)
            {
                string? dir = ExistingModelDir(m);
                o($"model {m.Name}: {(dir is not null ? "ready " + dir : m.FineTune is { } f ? $"not fine-tuned yet (will be fine-tuned from {f.From.Name} on {f.Text}, {f.Steps} steps, and cached)" : "not trained yet (will be trained and cached)")}");
                foreach (var g in plan.Calibrations.Where(g => g.Model == m))
                    o($"  calibration {g.Calibration.Dataset} {g.Calibration.Samples}×{g.Calibration.SeqLen} seed {g.Calibration.Seed}{(g.Fisher ? " +fisher" : "")}{(g.Float32Gram ? " (float32 Grams)" : "")}: " +
                      (_state.StatisticsCached.Contains(g.Key) ? "cached" : calibrating.Contains(g.Key) ? "to compute" : "not needed"));
            }
            o($"{"cell",-34} {"key",-12}  {"compressed",-18} evaluations");
            foreach (var c in cells)
            {
                string comp = c.IsOriginal ? "-" : _state.OnDisk.Contains(c.Key) ? "cached" : _state.Compressed.Contains(c.Key) ? "stored (dir gone)" : "missing";
                byCell.TryGetValue(c.Key, out var job);
                if (job is { Compress: true }) comp += " → compute";
                var pending = Pending(c);
                int done = c.Evaluations.Count - pending.Count;
                o($"{c.Label,-34} {c.Key[..12]}  {comp,-18} {done}/{c.Evaluations.Count} done" + (pending.Count > 0 ? $"; to run: {string.Join(", ", pending.Select(p => p.Task.Name))}" : ""));
            }
            o($"would compute: {byCell.Values.Count(j => j.Compress)} compressed models, {byCell.Values.Sum(j => j.Evaluate.Count)} evaluations");
        }

        /// <summary>Does what the planner decided, in its order; each artifact is re-checked under its lock, since other processes share the cache.</summary>
        public void Execute(PipelineJobs jobs)
        {
            Progress.Planned(jobs.Artifacts);
            Progress.Cells(cells.Count(x => Pending(x).Count == 0), cells.Count);
            Log($"{jobs.Artifacts} artifacts to compute");
            foreach (var model in jobs.Models)
            {
                string modelDir = EnsureModel(model.Model);
                if (model.Original is { } original) Evaluate(original.Cell, modelDir);
                foreach (var group in model.Groups)
                {
                    var g = group.Group;
                    CalibrationStatisticsFile? stats = null;
                    CalibrationWindows? windows = null;
                    try
                    {
                        if (options.Stage == PipelineStage.Calibrate)
                        {
                            if (group.Calibrate) stats = Statistics(g, modelDir);
                            continue;
                        }
                        // Statistics (and windows) are loaded only when a cell of the group is compressed.
                        foreach (var job in group.Cells)
                        {
                            var c = job.Cell;
                            if (job.Compress || job.Adopt || job.Evaluate.Count > 0)
                                RunCell(c, modelDir, () =>
                                {
                                    var recipe = c.Method.Recipe;
                                    if (recipe.NeedsStatistics) stats ??= Statistics(g, modelDir);
                                    if (recipe.NeedsWindows) windows ??= Calibrator.SampleWindows(Request(g, modelDir));
                                    return (recipe.NeedsStatistics ? stats : null, windows);
                                });
                            if (job.Drop) DropIfDone(c);
                        }
                    }
                    finally
                    {
                        stats?.Dispose();
                    }
                }
                foreach (var job in model.Deltas)
                {
                    if (job.Compress || job.Adopt || job.Evaluate.Count > 0) RunCell(job.Cell, modelDir, () => (null, null));
                    if (job.Drop) DropIfDone(job.Cell);
                }
            }
        }

        /// <summary>
        /// Builds (or adopts) a compressed cell's model and evaluates it. The evaluations hold the cell's shared lock
        /// from the check that the model is there to their end, and deleting needs the exclusive one, so another
        /// process with keep_compressed: false cannot delete the directory under them; if it went before the shared
        /// lock was taken, it is built again (or nothing is left to do).
        /// </summary>
        private void RunCell(CellPlan c, string modelDir, Func<(IStatisticsSource? Stats, CalibrationWindows? Windows)> inputs)
        {
            string dir = CompressedDir(c);
            while (true)
            {
                options.Cancellation.ThrowIfCancellationRequested();
                Refresh(c);
                if (NeedsCompression(c))
                {
                    var (stats, windows) = inputs();
                    Compress(c, modelDir, stats, windows);
                }
                if (_state.Compressed.Contains(c.Key) && !NeedsEvaluation(c)) return;
                using var reading = ArtifactLock.AcquireShared(dir, options.Cancellation, () => Log($"waiting for another process writing {c.Label}"));
                Refresh(c);
                if (!Adopt(c, exclusive: false))
                {
                    if (_state.Compressed.Contains(c.Key) && Pending(c).Count == 0) return;
                    continue;
                }
                if (NeedsEvaluation(c)) Evaluate(c, dir);
                return;
            }
        }

        /// <summary>
        /// Removes what killed runs left in the cache: DIR.deleting-PID and temporary files (NAME.tmp-PID-…: statistics,
        /// half-built demo suites, small files) whose process is gone, and a DIR.partial that nobody is writing (its
        /// cell's exclusive lock is free; a live writer holds it).
        /// </summary>
        public void SweepLeftovers()
        {
            string root = Path.Combine(keys.CacheRoot, "compressed");
            var removed = Leftovers.Sweep(root, "", ".deleting-");
            removed.AddRange(Leftovers.Sweep(root, ""));
            removed.AddRange(Leftovers.Sweep(StatsDirectory, ""));
            removed.AddRange(Leftovers.Sweep(Path.Combine(keys.CacheRoot, "calibration-text"), ""));
            removed.AddRange(Leftovers.Sweep(Path.Combine(keys.CacheRoot, "hashes"), ""));
            removed.AddRange(DemoSuite.SweepLeftovers(keys.CacheRoot));
            foreach (string path in removed) Log($"removed {path}, left by a run that was killed");
            if (!Directory.Exists(root)) return;
            foreach (string path in Directory.EnumerateDirectories(root, "*.partial"))
            {
                using var held = ArtifactLock.TryAcquire(path[..^".partial".Length]);
                if (held is null) continue;
                Directory.Delete(path, recursive: true);
                Log($"removed {path}, left by a run that stopped while writing it");
            }
        }

        private string EnsureModel(ModelSpec m)
        {
            if (_modelDirs.TryGetValue(m.Source, out string? known)) return known;
            string dir = ExistingModelDir(m) ?? Train(m);
            _modelDirs[m.Source] = dir;
            return dir;
        }

        /// <summary>A fine-tuned model's cache directory: &lt;cache&gt;/models/&lt;name&gt;-&lt;key&gt;, the key hashing its source model's key, the text and every setting.</summary>
        private string FineTunedDir(ModelSpec m) => Path.Combine(keys.CacheRoot, "models", $"{m.Name}-{keys.ModelKey(m)[..16]}");

        /// <summary>
        /// Fine-tunes <paramref name="m"/> from its source model (made first if it is missing) into the cache, under the
        /// directory's lock; FineTuning stages and renames, so a killed run leaves nothing that looks finished.
        /// </summary>
        private string FineTune(ModelSpec m)
        {
            var f = m.FineTune!;
            string fromDir = EnsureModel(f.From);
            string dir = FineTunedDir(m);
            using var held = ArtifactLock.Acquire(dir, options.Cancellation, () => Log($"waiting for another process fine-tuning {m.Name}"));
            options.Cancellation.ThrowIfCancellationRequested();
            if (ExistingModelDir(m) is { } done)
            {
                Log($"{dir} was fine-tuned by another process meanwhile");
                return done;
            }
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); // incomplete: no fine-tuning.json
            string label = $"fine-tune {m.Name} from {f.From.Name} on {f.Text} ({f.Steps} steps) → {dir}";
            var clock = Begin(ArtifactKind.Model, label);
            string text = DemoCalibrationText.Resolve(f.Text, keys.CacheRoot);
            var windows = Calibrator.SampleWindows(new CalibrationRequest(fromDir, text, f.Samples, f.SeqLen, f.Seed, Fisher: false));
            Directory.CreateDirectory(Path.GetDirectoryName(dir)!);
            var provenance = new System.Text.Json.Nodes.JsonObject
            {
                ["matrix"] = plan.Matrix.Name, ["model"] = m.Name, ["from"] = f.From.Name, ["text"] = f.Text, ["text_sha256"] = keys.FileHash(text),
                ["samples"] = f.Samples, ["key"] = keys.ModelKey(m),
            };
            var result = SvdLlm.Compression.Recovery.FineTuning.Run(fromDir, windows, f.Options, dir, line => Log("fine-tune: " + line), provenance,
                cancellation: options.Cancellation);
            Log($"fine-tuned {m.Name}: loss {result.Loss[0]:F4} → {result.Loss[^1]:F4} in {result.Seconds:F1} s");
            End(ArtifactKind.Model, label, keys.ModelKey(m), clock, dir);
            return dir;
        }

        private string Train(ModelSpec m)
        {
            if (m.IsFineTuned) return FineTune(m);
            options.Cancellation.ThrowIfCancellationRequested();
            var config = ModelTraining.DefaultConfig();
            string dir = ModelTraining.CachedDirectory(config, keys.CacheRoot);
            string label = $"train {m.Name} ({config.Training.Steps} steps) → {dir}";
            var clock = Begin(ArtifactKind.Model, label);
            var trained = ModelTraining.Train(config, dir, p => Progress.Advance((double)p.Step / p.Steps, $"step {p.Step}/{p.Steps} loss {p.Loss:F3} {p.TokensPerSecond:F0} tok/s"),
                line => Log("train: " + line), options.Cancellation);
            if (trained is null)
            {
                Log($"{dir} was trained by another process meanwhile");
                Progress.End(ArtifactKind.Model, label, clock.Elapsed.TotalSeconds);
                return dir;
            }
            End(ArtifactKind.Model, label, ModelTraining.CacheKey(config), clock, dir);
            return dir;
        }

        private CalibrationStatisticsFile Statistics(CalibrationPlan g, string modelDir)
        {
            var request = Request(g, modelDir);
            string path = CalibrationCache.PathFor(keys.StatisticsKey(request), StatsDirectory);
            if (File.Exists(path)) return CalibrationStatisticsFile.Open(path);
            // Statistics with Fisher hold everything those without do (the same Gram sums from the same windows).
            string withFisher = CalibrationCache.PathFor(keys.StatisticsKey(request with { Fisher = true }), StatsDirectory);
            if (!request.Fisher && File.Exists(withFisher)) return CalibrationStatisticsFile.Open(withFisher);
            using var held = ArtifactLock.Acquire(path, options.Cancellation, () => Log($"waiting for another process collecting {path}"));
            options.Cancellation.ThrowIfCancellationRequested();
            if (File.Exists(path)) return CalibrationStatisticsFile.Open(path);
            string label = $"calibrate {g.Model.Name} on {(g.Calibration.IsDemo ? "demo" : Path.GetFileName(g.Calibration.Dataset))} {g.Calibration.Samples}×{g.Calibration.SeqLen}{(g.Fisher ? " +fisher" : "")}{(g.Float32Gram ? " (float32 Grams)" : "")}";
            var clock = Begin(ArtifactKind.Calibration, label);
            using var model = ModelLoader.Load(modelDir);
            var windows = Calibrator.SampleWindows(request);
            var (stats, key, statsPath, _) = CalibrationCache.GetOrCollect(model, windows, request, Log, StatsDirectory, fileHash: keys.FileHash,
                layerDone: (l, n) => Progress.Advance((double)l / n, $"layer {l}/{n}"));
            End(ArtifactKind.Calibration, label, key, clock, statsPath);
            return stats;
        }

        private void Compress(CellPlan c, string modelDir, IStatisticsSource? stats, CalibrationWindows? windows)
        {
            options.Cancellation.ThrowIfCancellationRequested();
            string dir = CompressedDir(c);
            using var held = ArtifactLock.Acquire(dir, options.Cancellation, () => Log($"waiting for another process compressing {c.Label}"));
            options.Cancellation.ThrowIfCancellationRequested();
            Refresh(c);
            if (Adopt(c, exclusive: true)) return;
            if (_state.Compressed.Contains(c.Key) && Pending(c).Count == 0)
            {
                Log($"{c.Label} was finished by another process meanwhile");
                return;
            }
            string label = $"compress {c.Label}";
            // A delta cell needs its base model too (made first if it is a trained or fine-tuned one, outside the clock).
            string? baseDir = c.IsDelta ? EnsureModel(c.DeltaBase!) : null;
            // ImPart-Qt's Grams: the fine-tuned model's statistics for the cell's calibration, collected once (outside the
            // clock) and cached like any group's; the planner's groups hold the SVD cells only.
            using var deltaStats = c.IsDelta && c.Calibration is { } spec
                ? Statistics(new CalibrationPlan(keys.CalibrationGroupKey(c.Model, spec), c.Model, spec, Fisher: false), modelDir) : null;
            var clock = Begin(ArtifactKind.Compressed, label);
            Directory.CreateDirectory(Path.GetDirectoryName(dir)!);
            string outcome;
            if (baseDir is not null)
            {
                var delta = SvdLlm.Compression.Delta.DeltaCheckpoint.Write(baseDir, modelDir, DeltaSpec.Options(c.Method, c.Ratio), dir,
                    line => Log("compress-delta: " + line), cancellation: options.Cancellation, statistics: deltaStats);
                outcome = $"CR {delta.AchievedRatio:F2} ({delta.StoredValues:N0} of {delta.DenseValues:N0} delta values)";
            }
            else
            {
                using var model = ModelLoader.Load(modelDir);
                var report = c.Method.Recipe.CompressToDirectory(model, stats, windows, c.Ratio, dir, line => Log("compress: " + line), Path.GetDirectoryName(dir));
                outcome = $"removed {report.AchievedLinearRatio:P2} of the linear parameters" + (report.BitsPerWeight is double bpw ? $", {bpw:F3} bits per dense linear weight" : "");
            }
            // Recorded from the file, as an adopted directory would be, so both paths store the same numbers.
            store.RecordCompression(c.Record, CompressionReportReader.Read(dir), _runId);
            _state.Compressed.Add(c.Key);
            _state.OnDisk.Add(c.Key);
            Log($"compressed {c.Label}: {outcome} → {dir}");
            End(ArtifactKind.Compressed, label, c.Key, clock, dir);
        }

        private void Evaluate(CellPlan c, string modelDir)
        {
            var pending = Pending(c);
            if (pending.Count == 0) return;
            using var model = ModelLoader.Load(modelDir);
            var tokenizer = HfTokenizer.Load(modelDir);
            foreach (var e in pending)
            {
                options.Cancellation.ThrowIfCancellationRequested();
                // One evaluation at a time across processes: the second waits, then finds the stored result.
                using var held = ArtifactLock.Acquire(Path.Combine(keys.CacheRoot, "locks", "evaluation-" + e.TaskKey[..32]), options.Cancellation,
                    () => Log($"waiting for another process evaluating {c.Label} on {e.Task.Name}"));
                Refresh(c);
                if (_state.Evaluations.TryGetValue((c.Key, e.Task.Name), out string? stored) && stored == e.TaskKey)
                {
                    Log($"{c.Label} {e.Task.Name}: evaluated by another process meanwhile");
                    continue;
                }
                string label = $"evaluate {c.Label} on {e.Task.Name}";
                var clock = Begin(ArtifactKind.Evaluation, label);
                var request = new TaskRequest(e.Task.Name, e.Task.Data, e.Task.Limit, BatchSize: plan.Matrix.Run.BatchSize);
                if (e.Task.SeqLen is int seqLen) request = request with { SeqLen = seqLen };
                var itemClock = Stopwatch.StartNew();
                bool perplexity = TaskRegistry.IsPerplexity(e.Task.Name);
                var result = options.Evaluator.Evaluate(model, tokenizer, e.Task, request, (done, total) =>
                {
                    double seconds = Math.Max(1e-9, itemClock.Elapsed.TotalSeconds);
                    Progress.Advance(total > 0 ? (double)done / total : 0, perplexity
                        ? $"{done}/{total} chunks, {done * (double)request.SeqLen / seconds:F0} tok/s"
                        : $"{done}/{total} items, {done / seconds:F1}/s");
                }, c.IsOriginal ? null : EnsureModel(c.Model));
                store.RecordEvaluation(c.Record, e.TaskKey, e.ParamsJson, result, _runId);
                _state.Evaluations[(c.Key, e.Task.Name)] = e.TaskKey;
                Log($"{c.Label} {e.Task.Name}: " + string.Join(", ", result.Metrics.Select(m => $"{m.Name} {m.Value.ToString("G6", CultureInfo.InvariantCulture)}")) + $" (n {result.N}, {result.Seconds:F1} s)");
                End(ArtifactKind.Evaluation, label, e.TaskKey, clock, e.Task.Name);
                Progress.Cells(cells.Count(x => Pending(x).Count == 0), cells.Count);
            }
        }

        /// <summary>
        /// Without keep_compressed, a compressed model goes once every evaluation of its cell is stored, by whoever
        /// gets the exclusive lock: while another process reads it (shared lock), it stays, and that reader drops it.
        /// </summary>
        private void DropIfDone(CellPlan c)
        {
            if (plan.Matrix.Run.KeepCompressed || c.IsOriginal || Pending(c).Count > 0 || !_state.Compressed.Contains(c.Key)) return;
            string dir = CompressedDir(c);
            if (!Directory.Exists(dir)) return;
            using var held = ArtifactLock.TryAcquire(dir);
            if (held is null) return;
            Refresh(c);
            if (Pending(c).Count > 0 || !Directory.Exists(dir)) return;
            // Renamed first, so a kill during the delete leaves a name that no lookup mistakes for a complete model.
            string doomed = dir + ".deleting-" + Environment.ProcessId;
            Directory.Move(dir, doomed);
            _state.OnDisk.Remove(c.Key);
            Directory.Delete(doomed, recursive: true);
            Log($"deleted the compressed model of {c.Label} (all evaluations stored; run.keep_compressed is false)");
        }

        private Stopwatch Begin(string kind, string label)
        {
            Log("begin " + label);
            Progress.Begin(kind, label);
            return Stopwatch.StartNew();
        }

        private void End(string kind, string label, string key, Stopwatch clock, string detail)
        {
            double s = clock.Elapsed.TotalSeconds;
            store.RecordArtifact(key, kind, s, detail, _runId);
            Computed[kind]++;
            Seconds[kind] += s;
            Log($"done {label} in {s:F1} s");
            Progress.End(kind, label, s);
            options.AfterArtifact?.Invoke(kind, key);
        }

        public string SummaryLine(double wall, string status) =>
            $"{status} in {wall:F1} s: " + string.Join(", ", ArtifactKind.All.Select(k => $"{k} {Computed[k]} ({Seconds[k]:F1} s)"));
    }
}
