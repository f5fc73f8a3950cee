using System.Text.Json;
using System.Text.RegularExpressions;

namespace SvdLlm.Evaluation.Tasks;

/// <summary>
/// The seven zero-shot tasks read from their original release files (and the flat Hugging Face exports), with the
/// prompts of lm-evaluation-harness (EleutherAI/lm-evaluation-harness, <c>lm_eval/tasks/…</c>, task version 1.0):
/// the template of each is quoted beside its builder. Every request is then (context, " " + choice): lm-eval's
/// default target delimiter.
/// </summary>
public static partial class ZeroShotTasks
{
    /// <summary>
    /// ARC-Easy / ARC-Challenge. <c>arc/arc_easy.yaml</c> (arc_challenge includes it):
    /// <c>doc_to_text: "Question: {{question}}\nAnswer:"</c>, <c>doc_to_choice: "{{choices.text}}"</c>,
    /// <c>doc_to_target: "{{choices.label.index(answerKey)}}"</c>. Reads AI2's JSONL (<c>question.stem</c>,
    /// <c>question.choices[{text,label}]</c>, <c>answerKey</c>) or the flat export (<c>question</c>,
    /// <c>choices{text[],label[]}</c>, <c>answerKey</c>).
    /// </summary>
    public static List<MultipleChoiceItem> Arc(string path) => TaskFiles.ReadRecords(path).Select(r =>
    {
        var (question, texts, labels) = QuestionAndChoices(r, flatQuestionField: "question");
        string key = r.String("answerKey");
        return MultipleChoiceItem.SharedContext(r.Where, ArcPrompt(question), texts, LabelIndex(r, labels, key));
    }).ToList();

    public static string ArcPrompt(string question) => "Question: " + question + "\nAnswer:";

    /// <summary>
    /// OpenBookQA. <c>openbookqa/openbookqa.yaml</c>: <c>doc_to_text: question_stem</c> (the bare stem, no "Question:"),
    /// <c>doc_to_choice: "{{choices.text}}"</c>, <c>doc_to_target: "{{choices.label.index(answerKey.lstrip())}}"</c>.
    /// Reads AI2's JSONL (<c>question.stem</c>, <c>question.choices</c>) or the flat export (<c>question_stem</c>, <c>choices</c>).
    /// </summary>
    public static List<MultipleChoiceItem> OpenBookQa(string path) => TaskFiles.ReadRecords(path).Select(r =>
    {
        var (question, texts, labels) = QuestionAndChoices(r, flatQuestionField: "question_stem");
        string key = r.String("answerKey").TrimStart();
        return MultipleChoiceItem.SharedContext(r.Where, question, texts, LabelIndex(r, labels, key));
    }).ToList();

    /// <summary>
    /// PIQA. <c>piqa/piqa.yaml</c>: <c>doc_to_text: "Question: {{goal}}\nAnswer:"</c>, <c>doc_to_choice: "{{[sol1, sol2]}}"</c>,
    /// <c>doc_to_target: label</c>. The release keeps labels apart: <c>valid.jsonl</c> beside <c>valid-labels.lst</c>
    /// (one 0 or 1 per line); a record's own <c>label</c> field (the Hugging Face export) is used when present.
    /// </summary>
    public static List<MultipleChoiceItem> Piqa(string path)
    {
        var records = TaskFiles.ReadRecords(path);
        IReadOnlyList<(int Label, int Line)>? labels = null;
        string labelsPath = PiqaLabelsPath(path);
        if (!records.All(r => r.Has("label")))
        {
            if (!File.Exists(labelsPath))
                throw new TaskDataException($"{records.First(r => !r.Has("label")).Where}: record has no 'label' and the labels file {labelsPath} does not exist (PIQA keeps labels in <split>-labels.lst)");
            labels = ReadPiqaLabels(labelsPath);
            if (labels.Count != records.Count)
                throw new TaskDataException($"{labelsPath}: {labels.Count} labels for the {records.Count} records of {path}; expected one label per record");
        }
        return records.Select((r, i) =>
        {
            int gold = r.Has("label") ? r.Label("label") : labels![i].Label;
            if (gold is not (0 or 1))
                throw r.Has("label") ? r.Error($"field 'label' is {gold}, expected 0 or 1") : new TaskDataException($"{labelsPath}:{labels![i].Line}: label {gold}, expected 0 or 1");
            return MultipleChoiceItem.SharedContext(r.Where, PiqaPrompt(r.String("goal")), [r.String("sol1"), r.String("sol2")], gold);
        }).ToList();
    }

    public static string PiqaPrompt(string goal) => "Question: " + goal + "\nAnswer:";

    /// <summary>valid.jsonl → valid-labels.lst (the PIQA release's naming).</summary>
    public static string PiqaLabelsPath(string path)
    {
        string dir = Path.GetDirectoryName(Path.GetFullPath(path)) ?? ".";
        string name = Path.GetFileName(path);
        foreach (string ext in new[] { ".gz", ".jsonl", ".json" })
            if (name.EndsWith(ext, StringComparison.OrdinalIgnoreCase)) name = name[..^ext.Length];
        return Path.Combine(dir, name + "-labels.lst");
    }

    private static List<(int, int)> ReadPiqaLabels(string path)
    {
        var list = new List<(int, int)>();
        int lineNo = 0;
        foreach (string raw in TaskFiles.ReadText(path).Split('\n'))
        {
            lineNo++;
            string s = raw.Trim();
            if (s.Length == 0) continue;
            if (!int.TryParse(s, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int v))
                throw new TaskDataException($"{path}:{lineNo}: '{s}' is not a label (expected 0 or 1)");
            list.Add((v, lineNo));
        }
        return list;
    }

    /// <summary>
    /// HellaSwag. <c>hellaswag/hellaswag.yaml</c> with <c>hellaswag/utils.py</c>: query =
    /// <c>preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize())</c>, choices =
    /// <c>[preprocess(e) for e in endings]</c>, gold = <c>int(label)</c>, where <c>preprocess</c> strips, replaces
    /// " [title]" by ". ", deletes every "[…]" (non-greedy) and then replaces double spaces by single ones.
    /// Reads <c>hellaswag_{train,val}.jsonl</c> (the test split has no labels).
    /// </summary>
    public static List<MultipleChoiceItem> HellaSwag(string path) => TaskFiles.ReadRecords(path).Select(r =>
    {
        if (!r.Has("label")) throw r.Error("missing field 'label' (HellaSwag's test split is unlabeled; use hellaswag_val.jsonl)");
        var endings = r.Strings(r.Root, "endings", "endings", min: 2);
        string query = HellaSwagQuery(r.String("activity_label"), r.String("ctx_a"), r.String("ctx_b"));
        int gold = r.Label("label");
        return MultipleChoiceItem.SharedContext(r.Where, query, endings.Select(HellaSwagPreprocess).ToArray(), gold);
    }).ToList();

    public static string HellaSwagQuery(string activityLabel, string ctxA, string ctxB) =>
        HellaSwagPreprocess(activityLabel + ": " + ctxA + " " + PythonCapitalize(ctxB));

    public static string HellaSwagPreprocess(string text)
    {
        text = text.Trim();
        text = text.Replace(" [title]", ". ");
        text = BracketRegex().Replace(text, "");
        text = text.Replace("  ", " ");
        return text;
    }

    /// <summary>Python's <c>str.capitalize</c>: the first character upper-cased, every other one lower-cased.</summary>
    public static string PythonCapitalize(string s)
    {
        if (s.Length == 0) return s;
        int first = char.IsSurrogatePair(s, 0) ? 2 : 1;
        return s[..first].ToUpperInvariant() + s[first..].ToLowerInvariant();
    }

    [GeneratedRegex(@"\[.*?\]")]
    private static partial Regex BracketRegex();

    /// <summary>
    /// WinoGrande with partial scoring. <c>winogrande/default.yaml</c> with <c>winogrande/preprocess_winogrande.py</c>:
    /// for each option the context is <c>sentence[:idx] + option</c> (idx = the first "_"), and the shared continuation is
    /// <c>sentence[idx+1:].strip()</c> after the target delimiter; gold = <c>{"1": 0, "2": 1}[answer]</c>. lm-eval reports
    /// only <c>acc</c> here; our <c>acc_norm</c> divides by the shared continuation's length, so it equals <c>acc</c>.
    /// </summary>
    public static List<MultipleChoiceItem> WinoGrande(string path) => TaskFiles.ReadRecords(path).Select(r =>
    {
        string sentence = r.String("sentence");
        int idx = sentence.IndexOf('_');
        if (idx < 0) throw r.Error("field 'sentence' has no '_' blank");
        string[] options = [r.String("option1"), r.String("option2")];
        var answer = r.Field("answer");
        string a = answer.ValueKind == JsonValueKind.Number ? answer.GetRawText() : answer.ValueKind == JsonValueKind.String ? answer.GetString()! : "";
        int gold = a switch
        {
            "1" => 0,
            "2" => 1,
            _ => throw r.Error($"field 'answer' is {JsonRecord.Describe(answer)}, expected \"1\" or \"2\" (WinoGrande's test split is unlabeled)"),
        };
        string target = sentence[(idx + 1)..].Trim();
        var requests = options.Select(o => new ChoiceRequest(sentence[..idx] + o, LoglikelihoodScorer.TargetDelimiter + target)).ToArray();
        int length = Math.Max(1, LoglikelihoodScorer.CodePoints(target));
        return new MultipleChoiceItem(r.Where, requests, [length, length], gold);
    }).ToList();

    /// <summary>
    /// MathQA. <c>mathqa/mathqa.yaml</c> (version 1.0): <c>doc_to_text: "Question: {{Problem}}\nAnswer:"</c>,
    /// <c>doc_to_target: "{{['a', 'b', 'c', 'd', 'e'].index(correct)}}"</c>; <c>mathqa/utils.py</c> parses the options
    /// with <c>re.findall(r"[abcd] \) .*?, |e \) .*?$", options)</c>, each choice <c>c[4:].rstrip(" ,")</c>. Reads the
    /// release's JSON array (<c>Problem</c>, <c>options</c>, <c>correct</c>) or JSON lines.
    /// </summary>
    public static List<MultipleChoiceItem> MathQa(string path) => TaskFiles.ReadRecords(path).Select(r =>
    {
        var choices = MathQaChoices(r.String("options"));
        if (choices.Count < 2) throw r.Error($"field 'options' gives {choices.Count} choices, expected \"a ) … , b ) … , … e ) …\"");
        string correct = r.String("correct");
        int gold = correct.Length == 1 && correct[0] is >= 'a' and <= 'e' ? correct[0] - 'a' : throw r.Error($"field 'correct' is \"{correct}\", expected one of a, b, c, d, e");
        if (gold >= choices.Count) throw r.Error($"field 'correct' is \"{correct}\" but 'options' parses into only {choices.Count} choices");
        return MultipleChoiceItem.SharedContext(r.Where, MathQaPrompt(r.String("Problem")), choices, gold);
    }).ToList();

    public static string MathQaPrompt(string problem) => "Question: " + problem + "\nAnswer:";

    public static List<string> MathQaChoices(string options) =>
        MathQaOptionRegex().Matches(options).Select(m => m.Value[4..].TrimEnd(' ', ',')).ToList();

    [GeneratedRegex(@"[abcd] \) .*?, |e \) .*?$")]
    private static partial Regex MathQaOptionRegex();

    private static (string Question, IReadOnlyList<string> Texts, IReadOnlyList<string> Labels) QuestionAndChoices(JsonRecord r, string flatQuestionField)
    {
        if (r.Has("question") && r.Field("question").ValueKind == JsonValueKind.Object)
        {
            // AI2 release: question.stem and question.choices = [{text, label}, …].
            var q = r.Field("question");
            string stem = r.String(q, "stem", "question.stem");
            var choices = r.Field(q, "choices", "question.choices");
            if (choices.ValueKind != JsonValueKind.Array) throw r.Error($"field 'question.choices' is {JsonRecord.Kind(choices)}, expected an array of {{text, label}}");
            var texts = new List<string>();
            var labels = new List<string>();
            int i = 0;
            foreach (var c in choices.EnumerateArray())
            {
                texts.Add(r.String(c, "text", $"question.choices[{i}].text"));
                labels.Add(r.String(c, "label", $"question.choices[{i}].label"));
                i++;
            }
            if (texts.Count < 2) throw r.Error($"field 'question.choices' has {texts.Count} entries, expected at least 2");
            return (stem, texts, labels);
        }
        // Hugging Face export: a flat question string and choices = {text: [...], label: [...]}.
        string question = r.String(flatQuestionField);
        var ch = r.Field("choices");
        var t = r.Strings(ch, "text", "choices.text", min: 2);
        var l = r.Strings(ch, "label", "choices.label", min: 2);
        if (t.Count != l.Count) throw r.Error($"'choices.text' has {t.Count} entries but 'choices.label' has {l.Count}");
        return (question, t, l);
    }

    private static int LabelIndex(JsonRecord r, IReadOnlyList<string> labels, string key)
    {
        for (int i = 0; i < labels.Count; i++) if (labels[i] == key) return i;
        throw r.Error($"answerKey \"{key}\" is not among the choice labels [{string.Join(", ", labels)}]");
    }
}
