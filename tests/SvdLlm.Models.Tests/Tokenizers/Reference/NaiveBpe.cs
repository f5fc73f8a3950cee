using System.Globalization;
using System.Text;
using System.Text.Json;

namespace SvdLlm.Models.Tests.Tokenizers.Reference;

/// <summary>
/// A deliberately naive reference tokenizer, written without looking at (or calling) the production
/// code: its own JSON reading, its own special-token scan, its own pre-tokenizers
/// (<see cref="NaivePreTokenizers"/>), its own byte alphabet, and the textbook BPE loop —
/// "find the adjacent pair with the lowest merge rank, merge all its occurrences left to right,
/// repeat" — on lists of strings. Slow on purpose; only for short test strings.
/// </summary>
internal sealed class NaiveBpe
{
    private readonly Dictionary<string, int> _vocab = new(StringComparer.Ordinal);
    private readonly Dictionary<(string, string), int> _ranks = new();
    private readonly List<(string Content, int Id)> _specials = new();
    private readonly NaiveStyle _style;
    private readonly bool _ignoreMerges;
    private readonly int[] _bosPrefix;

    public enum NaiveStyle
    {
        /// <summary>GPT-2 regex, byte-level (GPT-2's vocab.json + merges.txt).</summary>
        Gpt2,
        /// <summary>Llama-3 regex (digits in groups of up to 3), byte-level, ignore_merges.</summary>
        Llama3,
        /// <summary>Qwen2/3 regex (single digits), byte-level. (NFC is the identity on the strings we feed it.)</summary>
        Qwen,
        /// <summary>SentencePiece-style: "▁" prepended, spaces as "▁", whole stretch is one word, byte fallback.</summary>
        SentencePiece,
    }

    private NaiveBpe(NaiveStyle style, bool ignoreMerges, int[] bosPrefix)
    {
        _style = style;
        _ignoreMerges = ignoreMerges;
        _bosPrefix = bosPrefix;
    }

    /// <summary>Reads vocab, merges and added tokens from a tokenizer.json. The caller says which pipeline the file describes.</summary>
    public static NaiveBpe FromTokenizerJson(string path, NaiveStyle style, int[] bosPrefix)
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(path));
        JsonElement model = doc.RootElement.GetProperty("model");
        bool ignoreMerges = model.TryGetProperty("ignore_merges", out JsonElement im) && im.ValueKind == JsonValueKind.True;
        var bpe = new NaiveBpe(style, ignoreMerges, bosPrefix);
        foreach (JsonProperty p in model.GetProperty("vocab").EnumerateObject()) bpe._vocab[p.Name] = p.Value.GetInt32();
        int rank = 0;
        foreach (JsonElement m in model.GetProperty("merges").EnumerateArray())
        {
            (string, string) pair = m.ValueKind == JsonValueKind.String
                ? (m.GetString()!.Split(' ')[0], m.GetString()!.Split(' ')[1])
                : (m[0].GetString()!, m[1].GetString()!);
            bpe._ranks[pair] = rank++;
        }
        foreach (JsonElement t in doc.RootElement.GetProperty("added_tokens").EnumerateArray())
            bpe._specials.Add((t.GetProperty("content").GetString()!, t.GetProperty("id").GetInt32()));
        return bpe;
    }

    /// <summary>Reads GPT-2's encoder.json and vocab.bpe; &lt;|endoftext|&gt; is the one special token.</summary>
    public static NaiveBpe FromGpt2Files(string encoderJson, string vocabBpe)
    {
        var bpe = new NaiveBpe(NaiveStyle.Gpt2, ignoreMerges: false, bosPrefix: []);
        using (JsonDocument doc = JsonDocument.Parse(File.ReadAllText(encoderJson)))
        {
            foreach (JsonProperty p in doc.RootElement.EnumerateObject()) bpe._vocab[p.Name] = p.Value.GetInt32();
        }
        int rank = 0;
        foreach (string line in File.ReadAllLines(vocabBpe).Skip(1))
        {
            if (line.Length == 0) continue;
            string[] parts = line.Split(' ');
            bpe._ranks[(parts[0], parts[1])] = rank++;
        }
        bpe._specials.Add(("<|endoftext|>", bpe._vocab["<|endoftext|>"]));
        return bpe;
    }

    public int[] Encode(string text, bool addSpecialTokens)
    {
        var ids = new List<int>();
        if (addSpecialTokens) ids.AddRange(_bosPrefix);
        foreach (var (segment, specialId) in SplitOnSpecials(text))
        {
            if (specialId is { } id) ids.Add(id);
            else EncodeOrdinary(segment, ids);
        }
        return ids.ToArray();
    }

    /// <summary>At each position, the longest special token starting there; otherwise one character of ordinary text.</summary>
    private IEnumerable<(string Text, int? Id)> SplitOnSpecials(string text)
    {
        var ordinary = new StringBuilder();
        int i = 0;
        while (i < text.Length)
        {
            (string Content, int Id)? best = null;
            foreach (var s in _specials)
            {
                if (string.CompareOrdinal(text, i, s.Content, 0, s.Content.Length) == 0 && i + s.Content.Length <= text.Length
                    && (best is null || s.Content.Length > best.Value.Content.Length))
                {
                    best = s;
                }
            }
            if (best is { } b)
            {
                if (ordinary.Length > 0) { yield return (ordinary.ToString(), null); ordinary.Clear(); }
                yield return (b.Content, b.Id);
                i += b.Content.Length;
            }
            else
            {
                ordinary.Append(text[i]);
                i++;
            }
        }
        if (ordinary.Length > 0) yield return (ordinary.ToString(), null);
    }

    private void EncodeOrdinary(string text, List<int> ids)
    {
        if (_style == NaiveStyle.SentencePiece)
        {
            string word = "\u2581" + text.Replace(" ", "\u2581");
            var symbols = new List<string>();
            foreach (Rune r in word.EnumerateRunes())
            {
                string s = r.ToString();
                if (_vocab.ContainsKey(s)) symbols.Add(s);
                else foreach (byte b in Encoding.UTF8.GetBytes(s)) symbols.Add($"<0x{b:X2}>");
            }
            foreach (string s in MergeTextbook(symbols)) ids.Add(_vocab[s]);
            return;
        }
        List<string> words = _style switch
        {
            NaiveStyle.Gpt2 => NaivePreTokenizers.Gpt2(text),
            NaiveStyle.Llama3 => NaivePreTokenizers.Llama3(text, maxDigits: 3),
            _ => NaivePreTokenizers.Llama3(text, maxDigits: 1),
        };
        foreach (string w in words)
        {
            string mapped = NaiveByteAlphabet.Spell(w);
            if (_ignoreMerges && _vocab.TryGetValue(mapped, out int whole))
            {
                ids.Add(whole);
                continue;
            }
            var symbols = mapped.Select(c => c.ToString()).ToList();
            foreach (string s in MergeTextbook(symbols)) ids.Add(_vocab[s]);
        }
    }

    /// <summary>The textbook loop (as in openai/gpt-2 encoder.py's <c>bpe</c>).</summary>
    private List<string> MergeTextbook(List<string> symbols)
    {
        while (symbols.Count > 1)
        {
            (string, string)? best = null;
            int bestRank = int.MaxValue;
            for (int i = 0; i + 1 < symbols.Count; i++)
            {
                if (_ranks.TryGetValue((symbols[i], symbols[i + 1]), out int r) && r < bestRank)
                {
                    bestRank = r;
                    best = (symbols[i], symbols[i + 1]);
                }
            }
            if (best is not { } pair) break;
            var merged = new List<string>(symbols.Count);
            for (int i = 0; i < symbols.Count; i++)
            {
                if (i + 1 < symbols.Count && symbols[i] == pair.Item1 && symbols[i + 1] == pair.Item2)
                {
                    merged.Add(pair.Item1 + pair.Item2);
                    i++;
                }
                else
                {
                    merged.Add(symbols[i]);
                }
            }
            symbols = merged;
        }
        return symbols;
    }
}

/// <summary>GPT-2's <c>bytes_to_unicode</c>, written out again for the reference.</summary>
internal static class NaiveByteAlphabet
{
    private static readonly Dictionary<byte, char> Map = Build();

    public static string Spell(string text) => new(Encoding.UTF8.GetBytes(text).Select(b => Map[b]).ToArray());

    private static Dictionary<byte, char> Build()
    {
        var printable = Enumerable.Range('!', '~' - '!' + 1)
            .Concat(Enumerable.Range(0xA1, 0xAC - 0xA1 + 1))
            .Concat(Enumerable.Range(0xAE, 0xFF - 0xAE + 1)).ToHashSet();
        var map = new Dictionary<byte, char>();
        int extra = 0;
        for (int b = 0; b < 256; b++) map[(byte)b] = printable.Contains(b) ? (char)b : (char)(256 + extra++);
        return map;
    }
}

/// <summary>
/// Hand-written scanners equivalent to the pre-tokenization regexes of GPT-2 and Llama-3/Qwen,
/// working on code points (as Oniguruma does). At each position the first alternative that matches
/// wins, with the backtracking the regex would do spelled out.
/// </summary>
internal static class NaivePreTokenizers
{
    private static bool IsLetter(int cp) => Rune.GetUnicodeCategory(new Rune(cp)) is UnicodeCategory.UppercaseLetter
        or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter;

    private static bool IsNumber(int cp) => Rune.GetUnicodeCategory(new Rune(cp)) is UnicodeCategory.DecimalDigitNumber
        or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber;

    private static bool IsSpace(int cp) => Rune.IsWhiteSpace(new Rune(cp));

    private static bool IsOther(int cp) => !IsSpace(cp) && !IsLetter(cp) && !IsNumber(cp);

    private static readonly string[] Contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"];

    /// <summary><c>'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+</c></summary>
    public static List<string> Gpt2(string text)
    {
        int[] cp = text.EnumerateRunes().Select(r => r.Value).ToArray();
        var words = new List<string>();
        int i = 0;
        while (i < cp.Length)
        {
            int end = Contraction(cp, i, ignoreCase: false);
            if (end < 0) end = SpaceThenRun(cp, i, IsLetter);
            if (end < 0) end = SpaceThenRun(cp, i, IsNumber);
            if (end < 0) end = SpaceThenRun(cp, i, IsOther);
            if (end < 0) end = SpacesNotBeforeNonSpace(cp, i);
            if (end < 0) end = Run(cp, i, IsSpace);
            words.Add(Text(cp, i, end));
            i = end;
        }
        return words;
    }

    /// <summary>
    /// <c>(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+</c>
    /// (Llama-3; Qwen has <c>\p{N}</c> instead of <c>\p{N}{1,3}</c>: <paramref name="maxDigits"/> 1).
    /// </summary>
    public static List<string> Llama3(string text, int maxDigits)
    {
        int[] cp = text.EnumerateRunes().Select(r => r.Value).ToArray();
        var words = new List<string>();
        int i = 0;
        while (i < cp.Length)
        {
            int end = Contraction(cp, i, ignoreCase: true);
            if (end < 0)
            {
                // [^\r\n\p{L}\p{N}]?\p{L}+
                bool lead = cp[i] != '\r' && cp[i] != '\n' && !IsLetter(cp[i]) && !IsNumber(cp[i]);
                if (lead && i + 1 < cp.Length && IsLetter(cp[i + 1])) end = Run(cp, i + 1, IsLetter);
                else if (IsLetter(cp[i])) end = Run(cp, i, IsLetter);
            }
            if (end < 0 && IsNumber(cp[i]))
            {
                end = i;
                while (end < cp.Length && end - i < maxDigits && IsNumber(cp[end])) end++;
            }
            if (end < 0)
            {
                //  ?[^\s\p{L}\p{N}]+[\r\n]*
                int j = cp[i] == ' ' ? i + 1 : i;
                if (j < cp.Length && IsOther(cp[j]))
                {
                    end = Run(cp, j, IsOther);
                    while (end < cp.Length && (cp[end] == '\r' || cp[end] == '\n')) end++;
                }
            }
            if (end < 0 && IsSpace(cp[i]))
            {
                // \s*[\r\n]+ : the white-space run up to and including its last line break.
                int runEnd = Run(cp, i, IsSpace);
                for (int m = runEnd - 1; m >= i; m--)
                {
                    if (cp[m] == '\r' || cp[m] == '\n') { end = m + 1; break; }
                }
            }
            if (end < 0) end = SpacesNotBeforeNonSpace(cp, i);
            if (end < 0) end = Run(cp, i, IsSpace);
            if (end < 0) end = i + 1; // cannot happen: every character is a letter, number, space or other
            words.Add(Text(cp, i, end));
            i = end;
        }
        return words;
    }

    private static int Contraction(int[] cp, int i, bool ignoreCase)
    {
        foreach (string c in Contractions)
        {
            if (i + c.Length > cp.Length) continue;
            bool ok = true;
            for (int k = 0; k < c.Length && ok; k++)
            {
                int x = cp[i + k];
                ok = ignoreCase && x < 128 ? char.ToLowerInvariant((char)x) == c[k] : x == c[k];
            }
            if (ok) return i + c.Length;
        }
        return -1;
    }

    /// <summary><c> ?X+</c>: an optional space, then at least one X.</summary>
    private static int SpaceThenRun(int[] cp, int i, Func<int, bool> x)
    {
        int j = cp[i] == ' ' ? i + 1 : i;
        return j < cp.Length && x(cp[j]) ? Run(cp, j, x) : -1;
    }

    /// <summary><c>\s+(?!\S)</c>: a white-space run, minus its last character when a non-space follows.</summary>
    private static int SpacesNotBeforeNonSpace(int[] cp, int i)
    {
        if (!IsSpace(cp[i])) return -1;
        int end = Run(cp, i, IsSpace);
        if (end == cp.Length) return end;
        return end - 1 > i ? end - 1 : -1;
    }

    private static int Run(int[] cp, int i, Func<int, bool> x)
    {
        if (i >= cp.Length || !x(cp[i])) return -1;
        int end = i;
        while (end < cp.Length && x(cp[end])) end++;
        return end;
    }

    private static string Text(int[] cp, int start, int end)
    {
        var sb = new StringBuilder();
        for (int k = start; k < end; k++) sb.Append(char.ConvertFromUtf32(cp[k]));
        return sb.ToString();
    }
}
