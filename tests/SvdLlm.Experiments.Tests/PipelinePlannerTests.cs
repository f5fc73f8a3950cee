using SvdLlm.Experiments.Cache;
using SvdLlm.Experiments.Matrix;
using SvdLlm.Experiments.Pipeline;

namespace SvdLlm.Experiments.Tests;

/// <summary>The planner is a pure function of (matrix, cells, stage, state): each case states a world and the work it implies.</summary>
public sealed class PipelinePlannerTests
{
    private const string Matrix = """
        name: plan
        models: [{name: tiny, path: {model}}]
        calibration: {dataset: {text}, samples: 8, seq_len: 32, seed: 3}
        methods: [svd, svdllm]
        ratios: [0.3, 0.6]
        tasks:
          - {name: wikitext2, data: {text}, limit: 4, seq_len: 32}
          - {name: efficiency, seq_len: 16}
        run: {keep_compressed: KEEP, cache_dir: {cache}}
        """;

    private static MatrixPlan Load(MicroWorld w, bool keep) =>
        MatrixPlan.Build(MatrixLoader.Load(w.Matrix(Matrix.Replace("KEEP", keep ? "true" : "false"))), new ArtifactKeys(w.CacheDir));

    /// <summary>Everything of every cell stored, compressed models recorded, nothing in the cache.</summary>
    private static PipelineState AllDone(MatrixPlan plan) => new()
    {
        Evaluations = plan.Cells.SelectMany(c => c.Evaluations.Select(e => (c.Key, e.Task.Name, e.TaskKey))).ToDictionary(x => (x.Key, x.Name), x => x.TaskKey),
        Compressed = plan.Cells.Where(c => !c.IsOriginal).Select(c => c.Key).ToHashSet(),
    };

    private static List<CellJob> CellJobs(PipelineJobs jobs) => jobs.Models.SelectMany(m => m.Groups.SelectMany(g => g.Cells)).ToList();

    [Fact]
    public void AnEmptyWorldPlansEverythingOnceInDependencyOrder()
    {
        using var w = new MicroWorld();
        var plan = Load(w, keep: false);
        var jobs = PipelinePlanner.Plan(plan, plan.Cells, PipelineStage.Evaluate, new PipelineState());
        var model = Assert.Single(jobs.Models);
        Assert.False(model.Train); // a path, not the default model
        Assert.Equal(2, model.Original!.Evaluate.Count);
        var group = Assert.Single(model.Groups);
        Assert.True(group.Calibrate);
        Assert.Equal(4, group.Cells.Count);
        Assert.All(group.Cells, c => Assert.True(c.Compress && !c.Adopt && c.Evaluate.Count == 2 && c.Drop));
        Assert.Equal(1 + 4 + 5 * 2, jobs.Artifacts);
    }

    [Fact]
    public void AFinishedWorldPlansNothingAndAStaleTaskKeyOnlyItsEvaluationAndWhatItNeeds()
    {
        using var w = new MicroWorld();
        var plan = Load(w, keep: false);
        var done = AllDone(plan);
        Assert.Empty(PipelinePlanner.Plan(plan, plan.Cells, PipelineStage.Evaluate, done).Models);

        // One compressed cell's wikitext2 was computed under an older task key; its model was dropped, the statistics are cached.
        var cell = plan.Cells.First(c => !c.IsOriginal);
        var stale = AllDone(plan);
        stale.Evaluations[(cell.Key, "wikitext2")] = "old";
        stale.StatisticsCached.Add(plan.Calibrations[0].Key);
        var before = (stale.Evaluations.Count, stale.Compressed.Count, stale.OnDisk.Count);
        var jobs = PipelinePlanner.Plan(plan, plan.Cells, PipelineStage.Evaluate, stale);
        Assert.Equal(before, (stale.Evaluations.Count, stale.Compressed.Count, stale.OnDisk.Count)); // planning changes nothing
        var job = Assert.Single(CellJobs(jobs));
        Assert.Equal(cell.Key, job.Cell.Key);
        Assert.True(job.Compress);
        Assert.Equal("wikitext2", Assert.Single(job.Evaluate).Task.Name);
        Assert.False(Assert.Single(Assert.Single(jobs.Models).Groups).Calibrate);
        Assert.Equal(2, jobs.Artifacts);

        // Without the cached statistics, the compression needs them collected first.
        stale.StatisticsCached.Clear();
        Assert.True(Assert.Single(Assert.Single(PipelinePlanner.Plan(plan, plan.Cells, PipelineStage.Evaluate, stale).Models).Groups).Calibrate);
    }

    [Fact]
    public void ACompressedModelAnotherRunMadeIsAdoptedNotRecomputed()
    {
        using var w = new MicroWorld();
        var plan = Load(w, keep: true);
        var state = AllDone(plan);
        var cell = plan.Cells.First(c => !c.IsOriginal);
        state.Compressed.Remove(cell.Key);
        state.OnDisk.Add(cell.Key);
        var job = Assert.Single(CellJobs(PipelinePlanner.Plan(plan, plan.Cells, PipelineStage.Compress, state)));
        Assert.True(job.Adopt);
        Assert.False(job.Compress);
        Assert.False(job.Drop); // keep_compressed: true
    }

    [Fact]
    public void StagesStopWhereTheySayAndACompressOnlyStageKeepsModelsItsEvaluationsNeed()
    {
        using var w = new MicroWorld();
        var plan = Load(w, keep: false);
        var calibrate = PipelinePlanner.Plan(plan, plan.Cells, PipelineStage.Calibrate, new PipelineState());
        var group = Assert.Single(Assert.Single(calibrate.Models).Groups);
        Assert.True(group.Calibrate);
        Assert.Empty(group.Cells);
        Assert.Null(calibrate.Models[0].Original);
        Assert.Equal(1, calibrate.Artifacts);

        var compress = PipelinePlanner.Plan(plan, plan.Cells, PipelineStage.Compress, new PipelineState());
        Assert.All(CellJobs(compress), c => Assert.True(c.Compress && c.Evaluate.Count == 0 && !c.Drop));
        Assert.Equal(1 + 4, compress.Artifacts);

        // Only one shard's cells: the other cells are not planned.
        var some = plan.Cells.Where(c => !c.IsOriginal).Take(1).ToList();
        Assert.Single(CellJobs(PipelinePlanner.Plan(plan, some, PipelineStage.Evaluate, new PipelineState())));
    }
}
