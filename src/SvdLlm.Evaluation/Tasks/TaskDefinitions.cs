namespace SvdLlm.Evaluation.Tasks;

/// <summary>What a task measures, and so how it is run, validated and tabulated.</summary>
public enum TaskKind { Perplexity, MultipleChoice, Efficiency }

/// <summary>
/// One evaluation task: its name in matrices, on the command line and in results; how tables show it and in which
/// column (the papers' order); its kind; whether it needs a data file and which one.
/// </summary>
public sealed record TaskDefinition(string Name, string Display, TaskKind Kind, int Order, bool NeedsData, string DataHint)
{
    /// <summary>The metric tables show for the task (the rest, acc_norm and nll, stay in the long CSV).</summary>
    public string HeadlineMetric => Kind switch
    {
        TaskKind.Perplexity => "ppl",
        TaskKind.MultipleChoice => "acc",
        _ => "decode_tokens_per_s",
    };
}

/// <summary>
/// Every task this build knows, defined once: matrix validation, <c>svdllm eval</c>'s help, the runner, the task key
/// and the reports all read this list. A new task is one entry here plus its reader in <see cref="TaskRegistry"/>.
/// </summary>
public static class TaskDefinitions
{
    public static IReadOnlyList<TaskDefinition> All { get; } =
    [
        new("wikitext2", "WikiText-2", TaskKind.Perplexity, 0, true, "wiki.test.raw (WikiText-2 raw), or a JSONL/JSON export with a 'text' field"),
        new("ptb", "PTB", TaskKind.Perplexity, 1, true, "ptb.test.txt, or a JSONL export with a 'sentence' field"),
        new("c4", "C4", TaskKind.Perplexity, 2, true, "c4-validation.00000-of-00008.json[.gz] (JSON lines with 'text')"),
        new(TaskRegistry.C4Gptq, "C4 (GPTQ windows)", TaskKind.Perplexity, 3, true, "c4-validation.00000-of-00008.json[.gz] (JSON lines with 'text')"),
        new("demo_ppl_moby_dick", "Moby-Dick", TaskKind.Perplexity, 10, false, "none: built from the embedded corpora"),
        new("demo_ppl_sotu", "SOTU", TaskKind.Perplexity, 11, false, "none: built from the embedded corpora"),
        new("demo_ppl_brown", "Brown", TaskKind.Perplexity, 12, false, "none: built from the embedded corpora"),
        new("openbookqa", "OpenbookQA", TaskKind.MultipleChoice, 20, true, "test.jsonl of OpenBookQA Main (AI2) or a flat JSONL export"),
        new("arc_easy", "ARC-e", TaskKind.MultipleChoice, 21, true, "ARC-*-Test.jsonl (AI2) or a flat JSONL export"),
        new("arc_challenge", "ARC-c", TaskKind.MultipleChoice, 22, true, "ARC-*-Test.jsonl (AI2) or a flat JSONL export"),
        new("winogrande", "WinoGrande", TaskKind.MultipleChoice, 23, true, "dev.jsonl (WinoGrande 1.1)"),
        new("hellaswag", "HellaSwag", TaskKind.MultipleChoice, 24, true, "hellaswag_val.jsonl"),
        new("piqa", "PIQA", TaskKind.MultipleChoice, 25, true, "valid.jsonl with valid-labels.lst beside it"),
        new("mathqa", "MathQA", TaskKind.MultipleChoice, 26, true, "test.json (MathQA, a JSON array)"),
        new(DemoSuite.NextSentence, "Next sentence", TaskKind.MultipleChoice, 30, false, "none: built from the embedded corpora"),
        new(DemoSuite.Cloze, "Cloze", TaskKind.MultipleChoice, 31, false, "none: built from the embedded corpora"),
        new(Efficiency.EfficiencyResult.TaskName, "Efficiency", TaskKind.Efficiency, 40, false, "none: a synthetic prompt"),
    ];

    /// <summary>The task named <paramref name="name"/>, or null.</summary>
    public static TaskDefinition? Find(string name) => All.FirstOrDefault(t => t.Name == name);

    /// <summary>The task named <paramref name="name"/>; an unknown name is an error with the closest known one.</summary>
    public static TaskDefinition Get(string name) => Find(name) ?? throw new ArgumentException(
        $"unknown task '{name}'" + (SvdLlm.Models.NameSuggestions.Closest(name, All.Select(t => t.Name)) is { } close ? $"; did you mean '{close}'?" : "") +
        $" Known tasks: {string.Join(", ", All.Select(t => t.Name))}");
}
