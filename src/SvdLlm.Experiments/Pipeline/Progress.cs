using SvdLlm.Evaluation.Efficiency;
using SvdLlm.Evaluation.Tasks;
using SvdLlm.Experiments.Matrix;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Tokenizers;

namespace SvdLlm.Experiments.Pipeline;

/// <summary>The kinds of artifact in the graph, in dependency order.</summary>
public static class ArtifactKind
{
    public const string Model = "model";
    public const string Calibration = "calibration";
    public const string Compressed = "compressed";
    public const string Evaluation = "evaluation";

    public static IReadOnlyList<string> All { get; } = [Model, Calibration, Compressed, Evaluation];
}

/// <summary>What the pipeline reports while it works; the CLI draws it (Spectre.Console or plain lines).</summary>
public interface IPipelineProgress
{
    /// <summary>The number of artifacts this run will compute (known after planning).</summary>
    void Planned(int artifacts);

    /// <summary>An artifact starts.</summary>
    void Begin(string kind, string label);

    /// <summary>Progress inside the artifact in flight, in [0, 1], with a detail such as "layer 3/4" or "412 tok/s".</summary>
    void Advance(double fraction, string? detail);

    /// <summary>The artifact in flight is stored.</summary>
    void End(string kind, string label, double seconds);

    /// <summary>Cells of this run with every evaluation stored, of all the run's cells.</summary>
    void Cells(int complete, int total);

    /// <summary>A log line.</summary>
    void Message(string line);
}

/// <summary>Reports nothing.</summary>
public sealed class SilentProgress : IPipelineProgress
{
    public static SilentProgress Instance { get; } = new();

    public void Planned(int artifacts) { }
    public void Begin(string kind, string label) { }
    public void Advance(double fraction, string? detail) { }
    public void End(string kind, string label, double seconds) { }
    public void Cells(int complete, int total) { }
    public void Message(string line) { }
}

/// <summary>Runs one evaluation task; the default goes through <see cref="TaskRegistry.Run"/>.</summary>
public interface ITaskEvaluator
{
    /// <param name="task">the matrix's task (what it set itself, before defaults)</param>
    /// <param name="request">the request built from it</param>
    /// <param name="originalDirectory">for a compressed cell, the directory of the model it was compressed from
    /// (efficiency is measured as a pair against it); null for the original model's cell</param>
    TaskResult Evaluate(CausalLanguageModel model, HfTokenizer tokenizer, TaskSpec task, TaskRequest request, Action<int, int>? progress,
        string? originalDirectory);
}

/// <summary>
/// The tasks of <see cref="TaskRegistry"/>, and <c>efficiency</c>: <see cref="EfficiencyBenchmark.Measure"/> at
/// its default settings (batch 1, prompt 128, 32 generated tokens) unless the task sets seq_len: then the prompt
/// is seq_len tokens and a quarter of that is generated (so prompt + generation fits a small model). A compressed
/// cell is measured with <see cref="EfficiencyBenchmark.MeasurePair"/> against its original model, timed runs
/// alternating, and also stores the <c>…_ratio</c> metrics (compressed ÷ original): cells measured one after
/// the other in one process differ by JIT warm-up and machine load far more than by compression (seen here: the
/// first cell of a run measured at under half the speed of later ones). Speeds are measured once per cell and
/// kept, like every result.
/// </summary>
public sealed class RegistryEvaluator : ITaskEvaluator
{
    public static RegistryEvaluator Instance { get; } = new();

    public TaskResult Evaluate(CausalLanguageModel model, HfTokenizer tokenizer, TaskSpec task, TaskRequest request, Action<int, int>? progress,
        string? originalDirectory)
    {
        if (request.Task != EfficiencyResult.TaskName) return TaskRegistry.Run(model, tokenizer, request, progress);
        var options = task.SeqLen is int s ? new EfficiencyOptions(Batch: 1, PromptLen: s, GenLen: Math.Max(1, s / 4)) : new EfficiencyOptions();
        if (originalDirectory is null) return EfficiencyBenchmark.Measure(model, options).ToTaskResult();
        var (compressed, _, ratios) = EfficiencyBenchmark.MeasurePair(model.Directory, originalDirectory, options);
        var result = compressed.ToTaskResult();
        return result with { Metrics = [.. result.Metrics, .. ratios.ToMetrics()], Protocol = result.Protocol + "; paired with the original model" };
    }
}
