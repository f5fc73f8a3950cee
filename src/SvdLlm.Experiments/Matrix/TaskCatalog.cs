using SvdLlm.Evaluation.Tasks;

namespace SvdLlm.Experiments.Matrix;

/// <summary>The task names a matrix may list, and which of them need a data path (from <see cref="TaskDefinitions"/>).</summary>
public static class TaskCatalog
{
    /// <summary>The demo suite: built from the embedded corpora, so it needs no data and runs anywhere.</summary>
    public static IReadOnlyList<string> DemoSuite => TaskRegistry.DemoSuite;

    /// <summary>The efficiency measurement (sizes, prefill/decode throughput, peak memory), stored per cell like a task.</summary>
    public const string Efficiency = SvdLlm.Evaluation.Efficiency.EfficiencyResult.TaskName;

    public static IReadOnlyList<string> Names { get; } = TaskDefinitions.All.Select(t => t.Name).ToList();

    public static bool NeedsData(string task) => TaskDefinitions.Find(task)?.NeedsData ?? true;

    /// <summary>The file a task reads: its data path, or for a demo task the file the suite writes from the corpora.</summary>
    public static string? DataFile(TaskSpec task) => task.Data ?? (TaskRegistry.IsDemo(task.Name) ? SvdLlm.Evaluation.Tasks.DemoSuite.EnsureFile(task.Name) : null);
}
