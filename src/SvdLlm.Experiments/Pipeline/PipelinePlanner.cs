using SvdLlm.Experiments.Matrix;

namespace SvdLlm.Experiments.Pipeline;

/// <summary>
/// What the planner knows of the world: the database and the cache as read once, before anything is done. The executor
/// keeps its own copy up to date as it works (and re-reads the database under each artifact's lock, since other
/// processes share both), and asks the same questions of it.
/// </summary>
public sealed class PipelineState
{
    /// <summary>Stored evaluations: (cell, task) → the task key they were computed under.</summary>
    public Dictionary<(string Cell, string Task), string> Evaluations { get; init; } = [];

    /// <summary>Cells whose compression is recorded in the database.</summary>
    public HashSet<string> Compressed { get; init; } = [];

    /// <summary>Cells whose compressed model is in the cache, complete and of this cell (recorded here, or its report says so).</summary>
    public HashSet<string> OnDisk { get; init; } = [];

    /// <summary>Calibration groups whose statistics are in the cache (with or without Fisher, whichever the group can use).</summary>
    public HashSet<string> StatisticsCached { get; init; } = [];

    /// <summary>Models whose directory is there (a path, or the default model once trained), by <see cref="ModelSpec.Source"/>.</summary>
    public HashSet<string> ModelsPresent { get; init; } = [];
}

/// <summary>
/// One cell's work: compress it, or adopt the cache's copy another run made (record it here), evaluate these tasks, then
/// drop the compressed model (keep_compressed: false).
/// </summary>
public sealed record CellJob(CellPlan Cell, bool Compress, bool Adopt, IReadOnlyList<EvaluationPlan> Evaluate, bool Drop);

/// <summary>A calibration group's work: collect its statistics (or none, when cached or not needed), then its cells.</summary>
public sealed record GroupJob(CalibrationPlan Group, bool Calibrate, IReadOnlyList<CellJob> Cells);

/// <summary>A model's work: train it if it is the default model or a fine-tuned one and missing, evaluate its original cell, then its groups.</summary>
/// <param name="Deltas">delta cells whose fine-tuned model this is (no calibration: the delta methods are data-free)</param>
public sealed record ModelJob(ModelSpec Model, bool Train, CellJob? Original, IReadOnlyList<GroupJob> Groups, IReadOnlyList<CellJob> Deltas)
{
    /// <summary>Every cell job of the model: the original, each group's, the deltas.</summary>
    public IEnumerable<CellJob> CellJobs => (Original is null ? [] : new[] { Original }).Concat(Groups.SelectMany(g => g.Cells)).Concat(Deltas);
}

/// <summary>Everything a run will do, in order, and how many artifacts that computes.</summary>
public sealed record PipelineJobs(IReadOnlyList<ModelJob> Models)
{
    public int Artifacts => Models.Sum(m => (m.Train ? 1 : 0) + (m.Original?.Evaluate.Count ?? 0)
        + m.Groups.Sum(g => (g.Calibrate ? 1 : 0) + g.Cells.Sum(c => (c.Compress ? 1 : 0) + c.Evaluate.Count))
        + m.Deltas.Sum(c => (c.Compress ? 1 : 0) + c.Evaluate.Count));
}

/// <summary>
/// Decides, with no side effects, what a run has to do: a pure function of the matrix, the run's cells, its stage and
/// a <see cref="PipelineState"/>. The dry run prints its answer; <see cref="MatrixRunner"/> executes it (adopting and
/// deleting happen there only, under locks).
/// </summary>
public static class PipelinePlanner
{
    public static PipelineJobs Plan(MatrixPlan plan, IReadOnlyList<CellPlan> cells, PipelineStage stage, PipelineState state)
    {
        bool keep = plan.Matrix.Run.KeepCompressed;
        var models = new List<ModelJob>();
        foreach (var model in plan.Matrix.Models)
        {
            var mine = cells.Where(c => c.Model == model).ToList();
            var original = mine.FirstOrDefault(c => c.IsOriginal && NeedsEvaluation(c, stage, state)) is { } o
                ? new CellJob(o, false, false, Pending(o, state), false) : null;
            var groups = new List<GroupJob>();
            foreach (var g in plan.Calibrations.Where(g => g.Model == model))
            {
                var cellJobs = new List<CellJob>();
                if (stage >= PipelineStage.Compress)
                    foreach (var c in mine.Where(c => !c.IsOriginal && !c.IsDelta && c.CalibrationKey == g.Key))
                        if (CellJobOf(c, stage, state, keep) is { } job) cellJobs.Add(job);
                bool calibrate = !state.StatisticsCached.Contains(g.Key) && NeedsCalibration(g, cells, stage, state);
                if (calibrate || cellJobs.Count > 0) groups.Add(new GroupJob(g, calibrate, cellJobs));
            }
            var deltas = new List<CellJob>();
            if (stage >= PipelineStage.Compress)
                foreach (var c in mine.Where(c => c.IsDelta))
                    if (CellJobOf(c, stage, state, keep) is { } job) deltas.Add(job);
            bool work = original is not null || groups.Count > 0 || deltas.Count > 0;
            bool train = (model.IsDefault || model.IsFineTuned) && !state.ModelsPresent.Contains(model.Source) && work;
            if (work) models.Add(new ModelJob(model, train, original, groups, deltas));
        }
        return new PipelineJobs(models);
    }

    /// <summary>A compressed (or delta) cell's work at this stage, or null when there is none.</summary>
    private static CellJob? CellJobOf(CellPlan c, PipelineStage stage, PipelineState state, bool keep)
    {
        bool compress = NeedsCompression(c, stage, state);
        bool adopt = state.OnDisk.Contains(c.Key) && !state.Compressed.Contains(c.Key);
        var evaluate = stage >= PipelineStage.Evaluate ? Pending(c, state) : [];
        // Without keep_compressed, a model goes once every evaluation of its cell is stored (this run's or
        // earlier ones); a compress-only stage keeps the models its evaluations will need.
        bool drop = !keep && (stage >= PipelineStage.Evaluate || Pending(c, state).Count == 0)
                    && (compress || adopt || evaluate.Count > 0 || state.OnDisk.Contains(c.Key));
        return compress || adopt || evaluate.Count > 0 || drop ? new CellJob(c, compress, adopt, evaluate, drop) : null;
    }

    /// <summary>The cell's evaluations not stored under their current task key.</summary>
    public static List<EvaluationPlan> Pending(CellPlan c, PipelineState s) =>
        c.Evaluations.Where(e => !s.Evaluations.TryGetValue((c.Key, e.Task.Name), out string? k) || k != e.TaskKey).ToList();

    /// <summary>A compressed cell needs its model built when the stage goes that far, the cache lacks it, and something still needs it.</summary>
    public static bool NeedsCompression(CellPlan c, PipelineStage stage, PipelineState s) =>
        !c.IsOriginal && stage >= PipelineStage.Compress && !s.OnDisk.Contains(c.Key) && (!s.Compressed.Contains(c.Key) || Pending(c, s).Count > 0);

    public static bool NeedsEvaluation(CellPlan c, PipelineStage stage, PipelineState s) => stage >= PipelineStage.Evaluate && Pending(c, s).Count > 0;

    /// <summary>Statistics are needed by a stage-calibrate run while any of the group's cells is unfinished, otherwise by a cell to compress.</summary>
    public static bool NeedsCalibration(CalibrationPlan g, IReadOnlyList<CellPlan> cells, PipelineStage stage, PipelineState s)
    {
        // Quantizers run on the calibration windows, not on the statistics.
        var of = cells.Where(c => c.CalibrationKey == g.Key && c.Model == g.Model && !c.IsOriginal && c.Method.Recipe.NeedsStatistics);
        return stage == PipelineStage.Calibrate
            ? of.Any(c => Pending(c, s).Count > 0 || !s.Compressed.Contains(c.Key))
            : of.Any(c => NeedsCompression(c, stage, s));
    }
}
