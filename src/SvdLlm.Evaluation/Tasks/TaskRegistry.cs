using System.Diagnostics;
using SvdLlm.Evaluation.Perplexity;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Tokenizers;

namespace SvdLlm.Evaluation.Tasks;

/// <summary>What to evaluate: a task by name, its data (a local file in the task's release format; optional for
/// the demo tasks, which are built from the embedded corpora), and the protocol's knobs.</summary>
/// <param name="Task">a name from <see cref="TaskRegistry.Names"/></param>
/// <param name="DataPath">file in the task's original release format</param>
/// <param name="Limit">score only the first N items (multiple choice) or chunks (perplexity)</param>
/// <param name="SeqLen">perplexity chunk length (SVD-LLM uses 2048); for multiple choice, the most tokens one request
/// may put through the model (longer ones are left-truncated, as lm-eval's max_length)</param>
/// <param name="BatchSize">perplexity: chunks per forward pass; multiple choice: items whose choices share one forward pass</param>
public sealed record TaskRequest(string Task, string? DataPath = null, int? Limit = null, int SeqLen = 2048, int BatchSize = 1);

/// <summary>One number of a task result: <c>ppl</c>, <c>acc</c>, <c>acc_norm</c>, …, with its standard error where defined.</summary>
public sealed record TaskMetric(string Name, double Value, double? Stderr);

/// <summary>The result of one task on one model. <paramref name="N"/> counts items (multiple choice) or predicted tokens (perplexity).</summary>
public sealed record TaskResult(string Task, string Protocol, long N, IReadOnlyList<TaskMetric> Metrics, double Seconds)
{
    public double Get(string metric) => Metrics.FirstOrDefault(m => m.Name == metric)?.Value
        ?? throw new KeyNotFoundException($"task {Task} has no metric '{metric}' (has: {string.Join(", ", Metrics.Select(m => m.Name))})");

    /// <summary>Chance accuracy (mean over items of 1 / number of choices); null for perplexity tasks.</summary>
    public double? Chance { get; init; }
}

/// <summary>
/// Every evaluation task by name: the three perplexity datasets (and GPTQ's C4 variant), the seven zero-shot tasks
/// and the demo suite. The experiment pipeline and <c>svdllm eval</c> both go through <see cref="Run"/>.
/// </summary>
/// <remarks>
/// Perplexity (<c>ppl</c>, <c>nll</c> = mean NLL per predicted token; N = predicted tokens): the dataset's text is
/// tokenized once with the tokenizer's special tokens (BOS at the start) and scored by <see cref="PerplexityEvaluator"/>
/// (non-overlapping chunks of SeqLen, remainder dropped). <c>c4</c> is SVD-LLM's rule (first 2000 documents joined by
/// "\n\n"); <c>c4_gptq</c> is GPTQ's 256 random windows of SeqLen tokens (Python <c>random.seed(0)</c>), from the same
/// file. Multiple choice (<c>acc</c>, <c>acc_norm</c>, each with lm-eval's mean_stderr; N = items): see
/// <see cref="ZeroShotTasks"/> and <see cref="LoglikelihoodScorer"/>. Demo tasks: see <see cref="DemoSuite"/>.
/// </remarks>
public static class TaskRegistry
{
    public const string C4Gptq = "c4_gptq";

    public static IReadOnlyList<string> PerplexityTasks { get; } = Of(TaskKind.Perplexity);

    public static IReadOnlyList<string> MultipleChoiceTasks { get; } = Of(TaskKind.MultipleChoice);

    private static List<string> Of(TaskKind kind) => TaskDefinitions.All.Where(t => t.Kind == kind).Select(t => t.Name).ToList();

    /// <summary>The five demo tasks: three perplexity sets and two multiple-choice tasks.</summary>
    public static IReadOnlyList<string> DemoSuite { get; } = Tasks.DemoSuite.Tasks;

    public static IReadOnlyList<string> Names { get; } = [.. PerplexityTasks, .. MultipleChoiceTasks];

    public static bool IsPerplexity(string task) => PerplexityTasks.Contains(task);

    public static bool IsDemo(string task) => Tasks.DemoSuite.Tasks.Contains(task);

    /// <param name="progress">called with (done, total) in the task's own unit (chunks or items)</param>
    public static TaskResult Run(CausalLanguageModel model, HfTokenizer tokenizer, TaskRequest request, Action<int, int>? progress = null)
    {
        if (!Names.Contains(request.Task))
        {
            string? close = SvdLlm.Models.NameSuggestions.Closest(request.Task, Names);
            throw new ArgumentException($"unknown task '{request.Task}'" + (close is null ? "" : $"; did you mean '{close}'?") + $" Known tasks: {string.Join(", ", Names)}");
        }
        if (request.Limit is <= 0) throw new ArgumentException($"limit must be positive, got {request.Limit}");
        string path = request.DataPath ?? (IsDemo(request.Task)
            ? Tasks.DemoSuite.EnsureFile(request.Task)
            : throw new ArgumentException($"task '{request.Task}' needs a data path (--data): {DataHint(request.Task)}"));
        var clock = Stopwatch.StartNew();
        return IsPerplexity(request.Task)
            ? RunPerplexity(model, tokenizer, request, path, clock, progress)
            : RunMultipleChoice(model, tokenizer, request, path, clock, progress);
    }

    /// <summary>The file a task expects, for messages.</summary>
    public static string DataHint(string task) => TaskDefinitions.Find(task)?.DataHint ?? "a file in the task's release format";

    /// <summary>The multiple-choice items of a task file, without scoring them.</summary>
    public static List<MultipleChoiceItem> ReadItems(string task, string path) => task switch
    {
        "arc_easy" or "arc_challenge" => ZeroShotTasks.Arc(path),
        "openbookqa" => ZeroShotTasks.OpenBookQa(path),
        "piqa" => ZeroShotTasks.Piqa(path),
        "hellaswag" or Tasks.DemoSuite.NextSentence or Tasks.DemoSuite.Cloze => ZeroShotTasks.HellaSwag(path),
        "winogrande" => ZeroShotTasks.WinoGrande(path),
        "mathqa" => ZeroShotTasks.MathQa(path),
        _ => throw new ArgumentException($"'{task}' is not a multiple-choice task"),
    };

    /// <summary>The token stream a perplexity task scores and its protocol name.</summary>
    public static (int[] Ids, string Protocol, int? MaxChunks) PerplexityStream(HfTokenizer tokenizer, TaskRequest request, string path)
    {
        string p = PerplexityEvaluator.ProtocolName;
        switch (request.Task)
        {
            case "wikitext2":
                return (tokenizer.Encode(PerplexityDatasets.WikiText2(path), addSpecialTokens: true), p, request.Limit);
            case "ptb":
                return (tokenizer.Encode(PerplexityDatasets.Ptb(path), addSpecialTokens: true), p, request.Limit);
            case "c4":
                return (tokenizer.Encode(PerplexityDatasets.C4SvdLlm(PerplexityDatasets.C4(path)), addSpecialTokens: true),
                    $"svdllm-c4-first-{PerplexityDatasets.C4Documents}-docs;{p}", request.Limit);
            case C4Gptq:
                return (PerplexityDatasets.C4GptqWindows(PerplexityDatasets.C4(path), tokenizer, request.SeqLen),
                    $"gptq-c4-{PerplexityDatasets.GptqWindows}-random-windows-seed0;{p}", request.Limit);
            case var demo when Tasks.DemoSuite.PplTasks.ContainsKey(demo):
                // Demo sets: the test split's text as written, capped at DemoSuite.PplMaxTokens scored tokens.
                int cap = Math.Max(1, Tasks.DemoSuite.PplMaxTokens / request.SeqLen);
                int chunks = request.Limit is int l ? Math.Min(l, cap) : cap;
                return (tokenizer.Encode(TaskFiles.ReadText(path), addSpecialTokens: true), $"{p};max-tokens-{Tasks.DemoSuite.PplMaxTokens}", chunks);
            default:
                throw new InvalidOperationException($"perplexity task '{request.Task}' is defined but has no reader here");
        }
    }

    private static TaskResult RunPerplexity(CausalLanguageModel model, HfTokenizer tokenizer, TaskRequest request, string path, Stopwatch clock, Action<int, int>? progress)
    {
        var (ids, protocol, maxChunks) = PerplexityStream(tokenizer, request, path);
        var r = PerplexityEvaluator.Evaluate(model, ids, request.SeqLen, maxChunks, request.BatchSize, progress);
        return new TaskResult(request.Task, $"{protocol};seq_len-{request.SeqLen}", r.Tokens,
            [new TaskMetric("ppl", r.Ppl, null), new TaskMetric("nll", r.MeanNll, null)], clock.Elapsed.TotalSeconds);
    }

    private static TaskResult RunMultipleChoice(CausalLanguageModel model, HfTokenizer tokenizer, TaskRequest request, string path, Stopwatch clock, Action<int, int>? progress)
    {
        var items = ReadItems(request.Task, path);
        if (request.Limit is int limit && limit < items.Count) items = items.Take(limit).ToList();
        var scores = LoglikelihoodScorer.Score(model, tokenizer, items, request.SeqLen, request.BatchSize, progress);
        var acc = scores.Correct();
        var accNorm = scores.CorrectNorm();
        return new TaskResult(request.Task, $"lm-eval-0shot;max-length-{request.SeqLen}", items.Count,
            [new TaskMetric("acc", Aggregation.Mean(acc), Aggregation.MeanStderr(acc)),
             new TaskMetric("acc_norm", Aggregation.Mean(accNorm), Aggregation.MeanStderr(accNorm))],
            clock.Elapsed.TotalSeconds)
        {
            Chance = items.Average(i => 1.0 / i.Requests.Count),
        };
    }
}
