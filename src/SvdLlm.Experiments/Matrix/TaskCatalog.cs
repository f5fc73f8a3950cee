using SvdLlm.Evaluation.Tasks;

namespace SvdLlm.Experiments.Matrix;

/// <summary>The task names a matrix may list, and which of them need a data path.</summary>
public static class TaskCatalog
{
    /// <summary>The demo suite: built from the embedded corpora, so it needs no data and runs anywhere.</summary>
    public static IReadOnlyList<string> DemoSuite { get; } = ["demo_ppl_moby_dick", "demo_ppl_sotu", "demo_ppl_brown", "demo_next_sentence", "demo_cloze"];

    public static IReadOnlyList<string> Names => TaskRegistry.Names.Concat(DemoSuite).Distinct().ToList();

    public static bool NeedsData(string task) => !DemoSuite.Contains(task);
}
