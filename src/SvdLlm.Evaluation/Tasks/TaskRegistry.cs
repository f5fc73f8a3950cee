using System.Diagnostics;
using SvdLlm.Evaluation.Perplexity;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Tokenizers;

namespace SvdLlm.Evaluation.Tasks;

/// <summary>What to evaluate: a task by name, its data (a local file in the task's release format; optional for
/// the demo tasks, which are built from the embedded corpora), and the protocol's knobs.</summary>
/// <param name="Task">a name from <see cref="TaskRegistry.Names"/></param>
/// <param name="DataPath">file or directory in the task's original release format</param>
/// <param name="Limit">score only the first N items (multiple choice) or chunks (perplexity)</param>
/// <param name="SeqLen">perplexity chunk length (SVD-LLM uses 2048)</param>
/// <param name="BatchSize">sequences per forward pass</param>
public sealed record TaskRequest(string Task, string? DataPath = null, int? Limit = null, int SeqLen = 2048, int BatchSize = 1);

/// <summary>One number of a task result: <c>ppl</c>, <c>acc</c>, <c>acc_norm</c>, …, with its standard error where defined.</summary>
public sealed record TaskMetric(string Name, double Value, double? Stderr);

/// <summary>The result of one task on one model. <paramref name="N"/> counts items (multiple choice) or predicted tokens (perplexity).</summary>
public sealed record TaskResult(string Task, string Protocol, long N, IReadOnlyList<TaskMetric> Metrics, double Seconds)
{
    public double Get(string metric) => Metrics.FirstOrDefault(m => m.Name == metric)?.Value
        ?? throw new KeyNotFoundException($"task {Task} has no metric '{metric}' (has: {string.Join(", ", Metrics.Select(m => m.Name))})");
}

/// <summary>
/// Every evaluation task by name: the three perplexity datasets, the seven zero-shot tasks and the demo suite.
/// The experiment pipeline and <c>svdllm eval</c> both go through <see cref="Run"/>.
/// </summary>
public static class TaskRegistry
{
    public static IReadOnlyList<string> PerplexityTasks { get; } = ["wikitext2", "ptb", "c4"];

    public static IReadOnlyList<string> Names => PerplexityTasks;

    public static bool IsPerplexity(string task) => PerplexityTasks.Contains(task);

    /// <param name="progress">called with (done, total) in the task's own unit (chunks or items)</param>
    public static TaskResult Run(CausalLanguageModel model, HfTokenizer tokenizer, TaskRequest request, Action<int, int>? progress = null)
    {
        if (!Names.Contains(request.Task))
        {
            string? close = SvdLlm.Models.NameSuggestions.Closest(request.Task, Names);
            throw new ArgumentException($"unknown task '{request.Task}'" + (close is null ? "" : $"; did you mean '{close}'?") + $" Known tasks: {string.Join(", ", Names)}");
        }
        if (request.DataPath is null) throw new ArgumentException($"task '{request.Task}' needs a data path");
        var clock = Stopwatch.StartNew();
        // Placeholder until the dataset readers land: the file is taken as plain text.
        var ids = tokenizer.Encode(File.ReadAllText(request.DataPath), addSpecialTokens: true);
        var r = PerplexityEvaluator.Evaluate(model, ids, request.SeqLen, request.Limit, request.BatchSize, progress);
        return new TaskResult(request.Task, r.Protocol, r.Tokens, [new TaskMetric("ppl", r.Ppl, null), new TaskMetric("nll", r.MeanNll, null)], clock.Elapsed.TotalSeconds);
    }
}
