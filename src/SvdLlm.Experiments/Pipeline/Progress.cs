using SvdLlm.Evaluation.Tasks;
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
    public void Message(string line) { }
}

/// <summary>Runs one evaluation task; the default goes through <see cref="TaskRegistry.Run"/>.</summary>
public interface ITaskEvaluator
{
    TaskResult Evaluate(CausalLanguageModel model, HfTokenizer tokenizer, TaskRequest request, Action<int, int>? progress);
}

/// <summary>
/// The tasks of <see cref="TaskRegistry"/>. Hook for the efficiency measurement: once EfficiencyBenchmark is
/// in (branch effic), an <c>efficiency</c> task evaluates here as <c>EfficiencyBenchmark.Measure(model,
/// options).ToMetrics()</c> and is stored like any other task's metrics.
/// </summary>
public sealed class RegistryEvaluator : ITaskEvaluator
{
    public static RegistryEvaluator Instance { get; } = new();

    public TaskResult Evaluate(CausalLanguageModel model, HfTokenizer tokenizer, TaskRequest request, Action<int, int>? progress) =>
        TaskRegistry.Run(model, tokenizer, request, progress);
}
