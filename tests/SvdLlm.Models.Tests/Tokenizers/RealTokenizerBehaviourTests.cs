using SvdLlm.Models.Tokenizers;

namespace SvdLlm.Models.Tests.Tokenizers;

/// <summary>Properties of the real tokenizers that hold for every input, and the documented edge-case rules.</summary>
public sealed class RealTokenizerBehaviourTests
{
    public static TheoryData<string> Vocabularies() => ["llama3", "qwen3", "mistral", "gpt2"];

    [Theory]
    [MemberData(nameof(Vocabularies))]
    public void Empty_string_gives_only_the_post_processor_tokens(string vocabulary)
    {
        HfTokenizer t = TestTokenizers.ByName(vocabulary);
        Assert.Empty(t.Encode("", addSpecialTokens: false));
        Assert.Equal(t.SpecialPrefix.Concat(t.SpecialSuffix), t.Encode(""));
        Assert.Equal("", t.Decode([]));
    }

    [Theory]
    [MemberData(nameof(Vocabularies))]
    public void Lone_surrogates_encode_as_U_FFFD(string vocabulary)
    {
        // Our documented rule: each unpaired surrogate is replaced by U+FFFD before tokenizing.
        HfTokenizer t = TestTokenizers.ByName(vocabulary);
        foreach (string s in new[] { "a\ud800b", "\udc00", "x\ud83d", "\ude00\ud83d", "ok \ud83d\ude00 \ud800\ud800" })
        {
            string repaired = s.Replace("\ud83d\ude00", "\u0001").Replace('\ud800', '\ufffd').Replace('\udc00', '\ufffd')
                .Replace('\ud83d', '\ufffd').Replace('\ude00', '\ufffd').Replace("\u0001", "\ud83d\ude00");
            Assert.Equal(t.Encode(repaired), t.Encode(s));
        }
        Assert.Equal("a\ufffdb", t.Decode(t.Encode("a\ud800b", addSpecialTokens: false)));
    }

    /// <summary>
    /// Byte-level BPE (Llama-3, Qwen, GPT-2) is lossless: decode(encode(x)) == x for every valid
    /// string, special tokens included (their text decodes to itself).
    /// </summary>
    [Theory]
    [InlineData("llama3", 11)]
    [InlineData("qwen3", 12)]
    [InlineData("gpt2", 13)]
    public void Byte_level_round_trip_is_exact(string vocabulary, int seed)
    {
        HfTokenizer t = TestTokenizers.ByName(vocabulary);
        var strings = new EdgeCaseStrings(seed, ["<|endoftext|>", "<|begin_of_text|>", "<|im_start|>"]);
        for (int i = 0; i < 300; i++)
        {
            string s = strings.Next();
            Assert.Equal(s, t.Decode(t.Encode(s, addSpecialTokens: false)));
            Assert.Equal(s, t.Decode(t.Encode(s, addSpecialTokens: true), skipSpecialTokens: false));
        }
    }

    /// <summary>
    /// SentencePiece-style (Mistral): encoding prepends "▁" to every stretch between added tokens
    /// and the decoder removes only the first leading space of the whole text. So decode(encode(x))
    /// == x for text without added tokens (leading spaces included); with an added token inside, the
    /// stretch after it gains one leading space ("a&lt;/s&gt;b" decodes to "a&lt;/s&gt; b"), as in HF.
    /// </summary>
    [Fact]
    public void SentencePiece_round_trip_is_exact_without_added_tokens()
    {
        HfTokenizer t = TestTokenizers.Mistral;
        var strings = new EdgeCaseStrings(14, ["plain"]);
        for (int i = 0; i < 300; i++)
        {
            string s = strings.Next();
            Assert.Equal(s, t.Decode(t.Encode(s, addSpecialTokens: false)));
            Assert.Equal(s, t.Decode(t.Encode(s), skipSpecialTokens: true));
        }
        Assert.Equal("a</s> b", t.Decode(t.Encode("a</s>b", addSpecialTokens: false)));
    }

    [Fact]
    public void Special_tokens_inside_text_are_single_tokens()
    {
        Assert.Equal([128000, 9906, 128001], TestTokenizers.Llama3.Encode("<|begin_of_text|>Hello<|end_of_text|>"));
        Assert.Equal(151644, TestTokenizers.Qwen.Encode("<|im_start|>user")[0]);
        int[] mistral = TestTokenizers.Mistral.Encode("hello</s>");
        Assert.Equal(1, mistral[0]);
        Assert.Equal(2, mistral[^1]);
        // Skipped on decode when asked.
        Assert.Equal("Hello", TestTokenizers.Llama3.Decode([128000, 9906, 128001], skipSpecialTokens: true));
        Assert.Equal("<|begin_of_text|>Hello", TestTokenizers.Llama3.Decode([128000, 9906]));
    }

    [Fact]
    public void Characters_missing_from_Mistral_vocabulary_fall_back_to_bytes()
    {
        // U+13000 EGYPTIAN HIEROGLYPH A001 is not a Mistral token: its UTF-8 bytes F0 93 80 80 are.
        HfTokenizer t = TestTokenizers.Mistral;
        Assert.Null(t.TokenToId("\U00013000"));
        int[] ids = t.Encode("\U00013000", addSpecialTokens: false);
        int[] bytes = new[] { "<0xF0>", "<0x93>", "<0x80>", "<0x80>" }.Select(b => t.TokenToId(b)!.Value).ToArray();
        Assert.Equal(bytes, ids[^4..]);
        Assert.Equal("▁", t.IdToToken(ids[0])); // the prepended "▁" stays its own token
        Assert.Equal("\U00013000", t.Decode(ids));
    }

    [Fact]
    public void Llama3_splits_digits_in_groups_of_three_and_Qwen_one_by_one()
    {
        HfTokenizer llama3 = TestTokenizers.Llama3, qwen = TestTokenizers.Qwen;
        Assert.Equal(["123", "456", "7"], llama3.Encode("1234567", addSpecialTokens: false).Select(llama3.IdToToken));
        Assert.Equal(["1", "2", "3", "4"], qwen.Encode("1234", addSpecialTokens: false).Select(qwen.IdToToken));
    }

    [Fact]
    public void Very_long_words_and_whitespace_runs_encode_and_decode()
    {
        string word = string.Concat(Enumerable.Repeat("pneumonoultramicroscopic", 2000));
        string spaces = new string(' ', 5000) + "x" + new string('\n', 3000) + new string('\t', 1000);
        foreach (string vocabulary in new[] { "llama3", "qwen3", "mistral", "gpt2" })
        {
            HfTokenizer t = TestTokenizers.ByName(vocabulary);
            Assert.Equal(word, t.Decode(t.Encode(word, addSpecialTokens: false)));
            Assert.Equal(spaces, t.Decode(t.Encode(spaces, addSpecialTokens: false)));
        }
    }

    [Fact]
    public void Nfc_is_applied_by_Qwen_only()
    {
        // Qwen's normalizer is NFC: "e" + U+0301 COMBINING ACUTE encodes as "é". Llama-3 has no normalizer.
        Assert.Equal(TestTokenizers.Qwen.Encode("caf\u00e9"), TestTokenizers.Qwen.Encode("cafe\u0301"));
        Assert.NotEqual(TestTokenizers.Llama3.Encode("caf\u00e9"), TestTokenizers.Llama3.Encode("cafe\u0301"));
    }

    [Fact]
    public void Decode_drops_ids_that_name_no_token()
    {
        // Qwen checkpoints have 151936 embedding rows for 151669 tokens; HF's decode drops the padding ids.
        Assert.Equal("hello", TestTokenizers.Qwen.Decode([14990, 151900]));
        Assert.Throws<ArgumentOutOfRangeException>(() => TestTokenizers.Qwen.IdToToken(151900));
    }

    [Fact]
    public void Token_lookup_covers_vocabulary_and_added_tokens()
    {
        HfTokenizer t = TestTokenizers.Llama3;
        Assert.Equal("hello", t.IdToToken(15339));
        Assert.Equal(15339, t.TokenToId("hello"));
        Assert.Equal("<|eot_id|>", t.IdToToken(128009));
        Assert.Null(t.TokenToId("no such token, surely"));
    }

    [Fact]
    public void Llama3_post_processor_is_followed_not_the_config()
    {
        // This Llama-3 tokenizer.json has a ByteLevel post-processor: no BOS is added, and
        // tokenizer_config.json declares no add_bos_token, so nothing to warn about.
        Assert.Empty(TestTokenizers.Llama3.SpecialPrefix);
        Assert.Equal([15339], TestTokenizers.Llama3.Encode("hello"));
        Assert.Empty(TestTokenizers.Llama3.LoadWarnings);
        Assert.Empty(TestTokenizers.Mistral.LoadWarnings);
        Assert.Empty(TestTokenizers.Qwen.LoadWarnings);
    }

    [Fact]
    public void Concurrent_encodes_give_the_same_ids()
    {
        HfTokenizer t = TestTokenizers.Qwen;
        var strings = new EdgeCaseStrings(77, ["<|im_end|>"]);
        string[] texts = Enumerable.Range(0, 200).Select(_ => strings.Next()).ToArray();
        int[][] sequential = texts.Select(s => t.Encode(s)).ToArray();
        int[][] parallel = new int[texts.Length][];
        Parallel.For(0, texts.Length, i => parallel[i] = t.Encode(texts[i]));
        for (int i = 0; i < texts.Length; i++) Assert.Equal(sequential[i], parallel[i]);
    }
}
