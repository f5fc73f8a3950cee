using System.Text.RegularExpressions;
using SvdLlm.Models.Tokenizers;

namespace SvdLlm.Models.Tests.Tokenizers;

/// <summary>
/// The pipeline components on their own, with expectations taken from HF <c>tokenizers</c>' own
/// documentation and unit tests (cited per test), or worked out by hand from its source.
/// </summary>
public sealed class TokenizerComponentTests
{
    private static string[] Run(PreTokenizer step, params Piece[] input)
    {
        var output = new List<Piece>();
        var scratch = new List<PatternSpan>();
        foreach (Piece p in input) step.Split(p, output, scratch);
        return output.Select(p => p.Span.ToString()).ToArray();
    }

    private static Piece P(string s, bool atStart = true) => Piece.Of(s, atStart);

    [Theory]
    // HF docs, tokenizers.pre_tokenizers.Split / SplitDelimiterBehavior, example "the-final--countdown" split on "-".
    [InlineData("Removed", "the|final|countdown")]
    [InlineData("Isolated", "the|-|final|-|-|countdown")]
    [InlineData("MergedWithPrevious", "the-|final-|-|countdown")]
    [InlineData("MergedWithNext", "the|-final|-|-countdown")]
    [InlineData("Contiguous", "the|-|final|--|countdown")]
    public void Split_behaviors_follow_the_HF_documentation(string behavior, string expected)
    {
        var split = new SplitPreTokenizer(new LiteralSplitPattern("-"), Enum.Parse<SplitBehavior>(behavior), invert: false);
        Assert.Equal(expected.Split('|'), Run(split, P("the-final--countdown")));
    }

    [Fact]
    public void Split_invert_keeps_what_the_pattern_matches()
    {
        // invert: the regex matches the words; Removed then drops the gaps between them.
        var split = new SplitPreTokenizer(new RegexSplitPattern(new Regex(@"\w+")), SplitBehavior.Removed, invert: true);
        Assert.Equal(["Hey", "friend"], Run(split, P("Hey, friend!")));
    }

    [Fact]
    public void Regex_split_treats_supplementary_characters_as_one_code_point()
    {
        // U+1D400..U+1D402 are letters (Lu) outside the BMP; U+1D7CF is a digit (Nd). Oniguruma sees
        // code points; .NET alone would see surrogates and split differently.
        var letters = new SplitPreTokenizer(new RegexSplitPattern(new Regex(@"\p{L}+|\p{N}{1,3}|.")), SplitBehavior.Isolated, invert: false);
        Assert.Equal(["𝐀𝐁c", "𝟏𝟐𝟑", "𝟒", "😀"], Run(letters, P("𝐀𝐁c𝟏𝟐𝟑𝟒😀")));
    }

    [Fact]
    public void Metaspace_prepend_schemes_follow_HF_unit_tests()
    {
        // tokenizers/src/pre_tokenizers/metaspace.rs, test non_legacy_meta_space: the text
        // "Hey my friend <s>how▁are you" is first cut around "<s>"; `first` prepends only on the
        // piece at the start of the text, and with split=false nothing is cut.
        Piece[] pieces = [P("Hey my friend ", true), P("<s>", false), P("how▁are you", false)];
        Assert.Equal(["▁Hey▁my▁friend▁", "<s>", "how▁are▁you"], Run(new MetaspacePreTokenizer("▁", PrependScheme.First, split: false), pieces));
        // Then `always` with split on the result.
        Piece[] again = [P("▁Hey▁my▁friend▁", true), P("<s>", false), P("how▁are▁you", false)];
        Assert.Equal(["▁Hey", "▁my", "▁friend", "▁", "▁<s>", "▁how", "▁are", "▁you"],
            Run(new MetaspacePreTokenizer("▁", PrependScheme.Always, split: true), again));
        // metaspace.rs test multiple_spaces: "Hey   friend!" → ▁Hey, ▁, ▁, ▁friend!
        Assert.Equal(["▁Hey", "▁", "▁", "▁friend!"], Run(new MetaspacePreTokenizer("▁", PrependScheme.Always, split: true), P("Hey   friend!")));
        Assert.Equal(["Hey", "▁friend"], Run(new MetaspacePreTokenizer("▁", PrependScheme.Never, split: true), P("Hey friend")));
    }

    [Fact]
    public void Metaspace_decoder_drops_the_first_tokens_replacements_only()
    {
        // metaspace.rs test decode: ["▁Hey", "▁friend!"] → ["Hey", " friend!"], and with `never` → [" Hey", " friend!"].
        Assert.Equal(["Hey", " friend!"], new MetaspaceDecoder("▁", PrependScheme.Always).DecodeChain(["▁Hey", "▁friend!"]));
        Assert.Equal([" Hey", " friend!"], new MetaspaceDecoder("▁", PrependScheme.Never).DecodeChain(["▁Hey", "▁friend!"]));
    }

    [Fact]
    public void ByteLevel_pre_tokenizer_prefixes_a_space_unless_one_is_there()
    {
        var step = new ByteLevelPreTokenizer(addPrefixSpace: true, useRegex: true,
            new RegexSplitPattern(new Regex(ByteLevelPreTokenizer.Gpt2Pattern)));
        // GPT-2 alphabet: ' ' → 'Ġ', '\t' → 'ĉ'. A tab is not a space: the prefix is still added.
        Assert.Equal(["ĠHello", "Ġworld"], Run(step, P("Hello world")));
        Assert.Equal(["ĠHello"], Run(step, P(" Hello")));
        Assert.Equal(["Ġ", "ĉ", "a"], Run(step, P("\ta")));
    }

    [Fact]
    public void Digits_pre_tokenizer_isolates_numbers()
    {
        Assert.Equal(["a", "1", "2", "b", "٣"], Run(new DigitsPreTokenizer(individualDigits: true), P("a12b٣")));
        Assert.Equal(["a", "12", "b", "٣"], Run(new DigitsPreTokenizer(individualDigits: false), P("a12b٣")));
    }

    [Fact]
    public void Byte_fallback_decoder_reassembles_bytes_and_replaces_invalid_runs_per_byte()
    {
        // tokenizers/src/decoders/byte_fallback.rs tests: "<0xE5><0x8f><0xab>" → "叫"; an invalid run → one U+FFFD per byte.
        var d = new ByteFallbackDecoder();
        Assert.Equal(["叫"], d.DecodeChain(["<0xE5>", "<0x8f>", "<0xab>"]));
        Assert.Equal(["\ufffd", "\ufffd", "a"], d.DecodeChain(["<0xE5>", "<0x8f>", "a"]));
        Assert.Equal(["Hey", "friend!"], d.DecodeChain(["Hey", "friend!"]));
    }

    [Fact]
    public void Strip_and_fuse_decoders()
    {
        Assert.Equal(["Hey friend!"], new FuseDecoder().DecodeChain(["Hey", " friend!"]));
        // tokenizers/src/decoders/strip.rs test decode: Strip('H', 1, 0) and Strip('y', 0, 1), applied per token.
        Assert.Equal(["ey friend!", "Hey friend!"], new StripDecoder("H", 1, 0).DecodeChain(["Hey friend!", "HHey friend!"]));
        Assert.Equal(["Hey friend!", "Heyy"], new StripDecoder("y", 0, 1).DecodeChain(["Hey friend!", "Heyyy"]));
        Assert.Equal(["x"], new StripDecoder(" ", 2, 2).DecodeChain(["  x  "]));
    }

    [Theory]
    [InlineData(@"a?+b", @"(?>a?)b")]
    [InlineData(@"[^\r\n\p{L}\p{N}]?+\p{L}+", @"(?>[^\r\n\p{L}\p{N}]?)\p{L}+")]
    [InlineData(@" ?[^\s\p{L}\p{N}]++[\r\n]*", @" ?(?>[^\s\p{L}\p{N}]+)[\r\n]*")]
    [InlineData(@"(?i:'s|'t)|\p{N}{1,3}", @"(?i:'s|'t)|\p{N}{1,3}")]
    [InlineData(@"(ab)*+c", @"(?>(ab)*)c")]
    [InlineData(@"^a$", @"(?m:^)a(?m:$)")]
    [InlineData(@"a+?b", @"a+?b")]
    public void Oniguruma_patterns_are_translated_for_dotnet(string onig, string dotnet)
    {
        Assert.Equal(dotnet, OnigurumaSyntax.ToDotNet(onig));
        _ = new Regex(OnigurumaSyntax.ToDotNet(onig)); // compiles
    }

    [Fact]
    public void Template_post_processor_adds_only_when_asked()
    {
        var template = new TemplatePostProcessor([1], [2]);
        var ids = new List<int> { 5, 6 };
        template.Process(ids, addSpecialTokens: false);
        Assert.Equal([5, 6], ids);
        template.Process(ids, addSpecialTokens: true);
        Assert.Equal([1, 5, 6, 2], ids);
        var sequence = new SequencePostProcessor([new ByteLevelPostProcessor(), template]);
        Assert.Equal([1], sequence.SpecialTokens.Prefix);
        Assert.Equal([2], sequence.SpecialTokens.Suffix);
    }

    [Fact]
    public void Added_tokens_match_leftmost_longest_with_strip_and_single_word_rules()
    {
        var vocab = new AddedVocabulary(
        [
            new AddedToken(100, "<a>", Special: true),
            new AddedToken(101, "<a><b>", Special: true),
            new AddedToken(102, "[L]", Special: false, LStrip: true),
            new AddedToken(103, "[R]", Special: false, RStrip: true),
            new AddedToken(104, "cat", Special: false, SingleWord: true),
        ], normalizer: null);
        string Segments(string text)
        {
            var output = new List<AddedSegment>();
            vocab.SplitRaw(text, output);
            return string.Join("|", output.Select(s => s.TokenId >= 0 ? $"#{s.TokenId}:{text[s.Start..s.End]}" : text[s.Start..s.End]));
        }
        // Longest match at the leftmost position: "<a><b>" beats "<a>".
        Assert.Equal("x|#101:<a><b>|#100:<a>|y", Segments("x<a><b><a>y"));
        // lstrip takes the white space before, rstrip the white space after.
        Assert.Equal("x|#102:  [L]|y", Segments("x  [L]y"));
        Assert.Equal("x|#103:[R]  |y", Segments("x[R]  y"));
        // single_word: only when not inside a word.
        Assert.Equal("concatenate", Segments("concatenate"));
        Assert.Equal("a |#104:cat| b", Segments("a cat b"));
        Assert.Equal("", Segments(""));
    }
}
