using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.RegularExpressions;
using SvdLlm.Models.Data;
using SvdLlm.Numerics;

namespace SvdLlm.Evaluation.Tasks;

/// <summary>
/// The demo suite: evaluation sets built deterministically from the held-out TEST split of the three embedded corpora
/// (<see cref="Corpora.ReadSplit"/> / <see cref="Corpora.Documents"/>), so that the default model and its compressed
/// versions can be compared without external data.
/// </summary>
/// <remarks>
/// <para><b>Perplexity</b> (<c>demo_ppl_moby_dick</c>, <c>demo_ppl_sotu</c>, <c>demo_ppl_brown</c>): the test split's
/// text, written as <c>&lt;corpus&gt;.test.txt</c>, tokenized once with BOS, non-overlapping chunks of seq_len; only the
/// first <see cref="PplMaxTokens"/> tokens are scored (⌊PplMaxTokens / seq_len⌋ chunks: 32 chunks at seq_len 256) so
/// the whole suite stays cheap. The cap is part of the protocol name.</para>
/// <para><b>Multiple choice</b>, both in HellaSwag's JSONL format (<c>activity_label</c>, <c>ctx_a</c>, <c>ctx_b</c>,
/// <c>endings</c>, <c>label</c>) and scored by the same reader, preprocessing and scorer as <c>hellaswag</c>; the
/// activity label is the corpus ("Moby-Dick", "State of the Union", "Brown corpus"):
/// <list type="bullet">
/// <item><c>demo_next_sentence</c>, shaped like HellaSwag itself: <c>ctx_a</c> is a sentence, <c>ctx_b</c> the first
/// <see cref="NextSentenceLeadWords"/> words of the sentence that follows it in the same paragraph, and the endings are
/// the rest of that sentence and the rests (after their own first words) of three sentences of similar length (±25 %)
/// from other documents of the same corpus' test split.</item>
/// <item><c>demo_cloze</c>: a sentence cut before one of its lowercase words of four or more letters (never among its
/// first three words); the endings are that word, or one of three other such words drawn from the same corpus' test
/// split (so distractors follow the corpus' word frequencies), followed by the rest of the sentence.</item>
/// </list>
/// <see cref="ItemsPerCorpus"/> items per corpus (a corpus short of usable items gives what it has and the others make
/// up the difference), <see cref="ItemsPerTask"/> per task; chance is 25 %. Sentences are 25–90 characters (short, so
/// four choices × 510 items stay cheap), cut at ., ! or ? before a capital (common abbreviations excepted), start with
/// a capital, end with ., ! or ?, and hold no brackets (which HellaSwag's preprocessing would delete). Randomness is
/// SplitMix64 with fixed seeds, so the files are the same bytes on every machine for the same corpora.</para>
/// <para>The files are built on first use into <c>$SVDLLM_CACHE/demo/&lt;Version&gt;/</c> (a temporary directory
/// renamed into place when complete) with a <c>manifest.json</c> of their sha256 and the corpus source checksums.</para>
/// </remarks>
public static partial class DemoSuite
{
    /// <summary>Changes whenever the construction changes, so an old cache entry is never read as a new one.</summary>
    public const string Version = "v3";

    public const int ItemsPerCorpus = 170;

    /// <summary>Items of each demo multiple-choice task (three corpora × <see cref="ItemsPerCorpus"/>).</summary>
    public const int ItemsPerTask = 510;

    /// <summary>Cap on the tokens each demo perplexity set scores.</summary>
    public const int PplMaxTokens = 8192;

    public const int MinSentenceChars = 25;
    public const int MaxSentenceChars = 90;

    public const string NextSentence = "demo_next_sentence";
    public const string Cloze = "demo_cloze";

    /// <summary>Task name → corpus for the perplexity sets.</summary>
    public static IReadOnlyDictionary<string, string> PplTasks { get; } = new Dictionary<string, string>
    {
        ["demo_ppl_moby_dick"] = Corpora.MobyDick,
        ["demo_ppl_sotu"] = Corpora.StateOfTheUnion,
        ["demo_ppl_brown"] = Corpora.Brown,
    };

    public static IReadOnlyList<string> Tasks { get; } = [.. PplTasks.Keys, NextSentence, Cloze];

    private static readonly Dictionary<string, string> ActivityLabels = new()
    {
        [Corpora.MobyDick] = "Moby-Dick",
        [Corpora.StateOfTheUnion] = "State of the Union",
        [Corpora.Brown] = "Brown corpus",
    };

    /// <summary>The file a demo task reads inside a suite directory.</summary>
    public static string FileName(string task) =>
        PplTasks.TryGetValue(task, out string? corpus) ? corpus + ".test.txt"
        : task == NextSentence ? "next_sentence.jsonl"
        : task == Cloze ? "cloze.jsonl"
        : throw new ArgumentException($"'{task}' is not a demo task ({string.Join(", ", Tasks)})");

    /// <summary><c>$SVDLLM_CACHE/demo/&lt;Version&gt;</c>.</summary>
    public static string CacheDirectory => Path.Combine(AssetCache.Root, "demo", Version);

    private static readonly Lock BuildLock = new();

    /// <summary>The path of the task's file in the cached suite, building the suite first if it is not there.</summary>
    /// <param name="cacheRoot">the cache root (default <see cref="AssetCache.Root"/>); the suite lives in <c>demo/&lt;Version&gt;</c> below it</param>
    /// <summary>Removes the half-built suites of killed processes (<c>.VERSION.tmp-PID-…</c>); returns their paths.</summary>
    public static List<string> SweepLeftovers(string? cacheRoot = null) =>
        SvdLlm.Models.Data.Leftovers.Sweep(Path.Combine(cacheRoot ?? AssetCache.Root, "demo"), ".");

    public static string EnsureFile(string task, string? cacheRoot = null)
    {
        string name = FileName(task);
        string dir = cacheRoot is null ? CacheDirectory : Path.Combine(cacheRoot, "demo", Version);
        lock (BuildLock)
        {
            if (!File.Exists(Path.Combine(dir, "manifest.json")))
            {
                string parent = Path.GetDirectoryName(dir)!;
                Directory.CreateDirectory(parent);
                SweepLeftovers(cacheRoot);
                string temp = SvdLlm.Models.Data.Leftovers.TempPath(Path.Combine(parent, "." + Version));
                try
                {
                    Build(temp);
                    try
                    {
                        Directory.Move(temp, dir);
                    }
                    catch (IOException) when (File.Exists(Path.Combine(dir, "manifest.json")))
                    {
                        // Another process finished first; its files are the same bytes.
                    }
                }
                finally
                {
                    if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
                }
            }
        }
        return Path.Combine(dir, name);
    }

    /// <summary>Writes every demo file and manifest.json into <paramref name="directory"/> (created; must not hold other files).</summary>
    public static void Build(string directory)
    {
        Directory.CreateDirectory(directory);
        var files = new SortedDictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (var (task, corpus) in PplTasks)
            files[FileName(task)] = Encoding.UTF8.GetBytes(Corpora.ReadSplit(corpus, CorpusSplit.Test));

        var nextByCorpus = new List<List<HellaSwagRecord>>();
        var clozeByCorpus = new List<List<HellaSwagRecord>>();
        for (int c = 0; c < Corpora.Names.Count; c++)
        {
            string corpus = Corpora.Names[c];
            var sentences = TestSentences(corpus);
            nextByCorpus.Add(NextSentenceItems(corpus, sentences, new SplitMix64(0x6e657874_00000000UL + (ulong)c), ItemsPerTask));
            clozeByCorpus.Add(ClozeItems(corpus, sentences, new SplitMix64(0x636c6f7a_00000000UL + (ulong)c), ItemsPerTask));
        }
        var next = Allocate(NextSentence, nextByCorpus);
        var cloze = Allocate(Cloze, clozeByCorpus);
        files[FileName(NextSentence)] = ToJsonLines(next);
        files[FileName(Cloze)] = ToJsonLines(cloze);

        foreach (var (name, bytes) in files) File.WriteAllBytes(Path.Combine(directory, name), bytes);

        var manifest = new SortedDictionary<string, object>(StringComparer.Ordinal)
        {
            ["version"] = Version,
            ["items"] = new SortedDictionary<string, int> { [NextSentence] = next.Count, [Cloze] = cloze.Count },
            ["files_sha256"] = files.ToDictionary(kv => kv.Key, kv => Convert.ToHexStringLower(SHA256.HashData(kv.Value))),
            // One digest per corpus over its "asset-id sha256" lines (sorted), instead of hundreds of file entries.
            ["corpus_sources_sha256"] = Corpora.Names.ToDictionary(n => n, n => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(
                string.Concat(Corpora.SourceChecksums(n).Select(kv => kv.Key + " " + kv.Value + "\n")))))),
        };
        File.WriteAllText(Path.Combine(directory, "manifest.json"),
            JsonSerializer.Serialize(manifest, new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    /// <summary>One sentence of a test-split document: its text, document, paragraph and position in the paragraph.</summary>
    public sealed record Sentence(string Text, int Document, int Paragraph, int Index);

    /// <summary>Every sentence of the corpus' test documents, in order (all lengths; callers filter).</summary>
    public static List<Sentence> TestSentences(string corpus)
    {
        var result = new List<Sentence>();
        foreach (var doc in Corpora.Documents(corpus).Where(d => d.Split == CorpusSplit.Test))
        {
            var paragraphs = doc.Text.Split("\n\n");
            for (int p = 0; p < paragraphs.Length; p++)
            {
                var split = SplitSentences(paragraphs[p]);
                for (int i = 0; i < split.Count; i++) result.Add(new Sentence(split[i], doc.Index, p, i));
            }
        }
        return result;
    }

    /// <summary>Sentences of one paragraph: line breaks become spaces; a cut follows ., ! or ? (and closing quotes) before a capital.</summary>
    public static List<string> SplitSentences(string paragraph)
    {
        string text = WhitespaceRegex().Replace(paragraph, " ").Trim();
        var pieces = SentenceBoundaryRegex().Split(text);
        var sentences = new List<string>();
        var pending = new StringBuilder();
        foreach (string piece in pieces)
        {
            if (pending.Length > 0) pending.Append(' ');
            pending.Append(piece);
            if (AbbreviationRegex().IsMatch(piece)) continue;
            sentences.Add(pending.ToString());
            pending.Clear();
        }
        if (pending.Length > 0) sentences.Add(pending.ToString());
        return sentences;
    }

    public static bool Usable(string s) =>
        s.Length is >= MinSentenceChars and <= MaxSentenceChars && s.IndexOfAny(['[', ']']) < 0 && char.IsUpper(s[0]) && s[^1] is '.' or '!' or '?';

    /// <summary>Words of the next sentence given away in ctx_b, as HellaSwag's ctx_b starts the sentence to complete.</summary>
    public const int NextSentenceLeadWords = 3;

    private static List<HellaSwagRecord> NextSentenceItems(string corpus, List<Sentence> sentences, SplitMix64 rng, int max)
    {
        // (sentence, its first words, the rest) for every usable sentence that has a rest after the lead words.
        static (string Lead, string Remainder)? Cut(string text)
        {
            var words = text.Split(' ');
            if (words.Length < NextSentenceLeadWords + 2) return null;
            string lead = string.Join(' ', words.Take(NextSentenceLeadWords));
            // HellaSwag's query capitalizes ctx_b the Python way (rest lower-cased): only leads it leaves unchanged.
            if (ZeroShotTasks.PythonCapitalize(lead) != lead) return null;
            return (lead, string.Join(' ', words.Skip(NextSentenceLeadWords)));
        }
        var pairs = new List<(Sentence A, Sentence B, string Lead, string Remainder)>();
        for (int i = 0; i + 1 < sentences.Count; i++)
        {
            var (a, b) = (sentences[i], sentences[i + 1]);
            if (a.Document != b.Document || a.Paragraph != b.Paragraph || !Usable(a.Text) || !Usable(b.Text)) continue;
            if (Cut(b.Text) is (string lead, string rest)) pairs.Add((a, b, lead, rest));
        }
        var pool = sentences.Where(x => Usable(x.Text)).Select(x => (x.Document, Cut: Cut(x.Text))).Where(x => x.Cut is not null)
            .Select(x => (x.Document, Remainder: x.Cut!.Value.Remainder)).ToList();
        rng.Shuffle(pairs);
        var items = new List<HellaSwagRecord>();
        foreach (var (a, b, lead, rest) in pairs)
        {
            if (items.Count == max) break;
            var candidates = pool.Where(x => x.Document != a.Document && x.Remainder.Length >= rest.Length * 0.75 && x.Remainder.Length <= rest.Length * 1.25 && x.Remainder != rest)
                .Select(x => x.Remainder).Distinct(StringComparer.Ordinal).ToList();
            var distractors = Draw(candidates, 3, rng);
            if (distractors is null) continue;
            items.Add(Record(corpus, $"{corpus}:doc{a.Document}:p{a.Paragraph}:s{a.Index}", a.Text, lead, rest, distractors, rng));
        }
        return items;
    }

    private static List<HellaSwagRecord> ClozeItems(string corpus, List<Sentence> sentences, SplitMix64 rng, int max)
    {
        var usable = sentences.Where(s => Usable(s.Text)).ToList();
        var wordPool = new List<string>();
        var eligible = new List<(Sentence S, List<Match> Words)>();
        foreach (var s in usable)
        {
            var words = WordRegex().Matches(s.Text).ToList();
            var candidates = words.Skip(3).Where(m => ClozeWordRegex().IsMatch(m.Value)).ToList();
            wordPool.AddRange(candidates.Select(m => m.Value));
            if (candidates.Count > 0) eligible.Add((s, candidates));
        }
        rng.Shuffle(eligible);
        var items = new List<HellaSwagRecord>();
        foreach (var (s, words) in eligible)
        {
            if (items.Count == max) break;
            var word = words[rng.NextInt(words.Count)];
            var distractors = new List<string>();
            for (int tries = 0; distractors.Count < 3 && tries < 1000; tries++)
            {
                string w = wordPool[rng.NextInt(wordPool.Count)];
                if (w != word.Value && !distractors.Contains(w)) distractors.Add(w);
            }
            if (distractors.Count < 3) continue;
            string context = s.Text[..word.Index].TrimEnd();
            string rest = s.Text[(word.Index + word.Length)..];
            items.Add(Record(corpus, $"{corpus}:doc{s.Document}:p{s.Paragraph}:s{s.Index}:w{word.Index}",
                context, "", word.Value + rest, distractors.Select(d => d + rest).ToList(), rng));
        }
        return items;
    }

    /// <summary>
    /// <see cref="ItemsPerCorpus"/> items from each corpus; a corpus with fewer usable items gives all it has and the
    /// others, in corpus order, make up the difference. Items are generated in a fixed order, so taking a prefix of each
    /// corpus' list is deterministic.
    /// </summary>
    private static List<HellaSwagRecord> Allocate(string task, List<List<HellaSwagRecord>> byCorpus)
    {
        var take = byCorpus.Select(l => Math.Min(l.Count, ItemsPerCorpus)).ToArray();
        int deficit = ItemsPerTask - take.Sum();
        for (int c = 0; c < take.Length && deficit > 0; c++)
        {
            int extra = Math.Min(deficit, byCorpus[c].Count - take[c]);
            take[c] += extra;
            deficit -= extra;
        }
        if (deficit > 0) throw new InvalidOperationException($"{task}: the corpora give only {ItemsPerTask - deficit} items, fewer than {ItemsPerTask}");
        return byCorpus.SelectMany((l, c) => l.Take(take[c])).ToList();
    }

    private static List<string>? Draw(List<string> candidates, int k, SplitMix64 rng)
    {
        if (candidates.Count < k) return null;
        var chosen = new List<string>();
        var used = new HashSet<int>();
        while (chosen.Count < k)
        {
            int i = rng.NextInt(candidates.Count);
            if (used.Add(i)) chosen.Add(candidates[i]);
        }
        return chosen;
    }

    private sealed record HellaSwagRecord(string ActivityLabel, string CtxA, string CtxB, IReadOnlyList<string> Endings, string SourceId, int Label);

    private static HellaSwagRecord Record(string corpus, string sourceId, string ctxA, string ctxB, string truth, List<string> distractors, SplitMix64 rng)
    {
        int gold = rng.NextInt(4);
        var endings = new List<string>(distractors);
        endings.Insert(gold, truth);
        return new HellaSwagRecord(ActivityLabels[corpus], ctxA, ctxB, endings, sourceId, gold);
    }

    private static byte[] ToJsonLines(List<HellaSwagRecord> records)
    {
        using var ms = new MemoryStream();
        var options = new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, Indented = false };
        int ind = 0;
        foreach (var r in records)
        {
            using (var w = new Utf8JsonWriter(ms, options))
            {
                // HellaSwag's field set and order (hellaswag_val.jsonl); ctx is ctx_a + " " + ctx_b as in the release.
                w.WriteStartObject();
                w.WriteNumber("ind", ind++);
                w.WriteString("activity_label", r.ActivityLabel);
                w.WriteString("ctx_a", r.CtxA);
                w.WriteString("ctx_b", r.CtxB);
                w.WriteString("ctx", r.CtxB.Length == 0 ? r.CtxA : r.CtxA + " " + r.CtxB);
                w.WriteString("split", "test");
                w.WriteString("split_type", "indomain");
                w.WriteNumber("label", r.Label);
                w.WriteStartArray("endings");
                foreach (string e in r.Endings) w.WriteStringValue(e);
                w.WriteEndArray();
                w.WriteString("source_id", r.SourceId);
                w.WriteEndObject();
            }
            ms.WriteByte((byte)'\n');
        }
        return ms.ToArray();
    }

    [GeneratedRegex(@"\s+")]
    private static partial Regex WhitespaceRegex();

    [GeneratedRegex(@"(?<=[.!?][""'”’)]*)\s+(?=[""“‘']?[A-Z])")]
    private static partial Regex SentenceBoundaryRegex();

    // A piece ending in a title or an initial ("Mr.", "H.M.S.", "J.") does not end a sentence.
    [GeneratedRegex(@"(?:^|[\s.])(?:Mr|Mrs|Ms|Dr|St|Mt|Jr|Sr|Messrs|Gen|Col|Capt|Gov|Hon|Rev|Prof|Lt|Sen|Rep|No|vs|[A-Z])\.$")]
    private static partial Regex AbbreviationRegex();

    [GeneratedRegex(@"[\p{L}'’-]+")]
    private static partial Regex WordRegex();

    [GeneratedRegex(@"^[a-z]{4,}$")]
    private static partial Regex ClozeWordRegex();
}
