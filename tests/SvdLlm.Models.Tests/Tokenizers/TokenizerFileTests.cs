using System.Text.Json.Nodes;
using SvdLlm.Models.Tokenizers;

namespace SvdLlm.Models.Tests.Tokenizers;

/// <summary>Loading: file layouts, formats, configuration files and the errors for what we do not support.</summary>
public sealed class TokenizerFileTests
{
    /// <summary>A tiny BPE tokenizer.json: vocabulary a, b, c, ab, abc, &lt;s&gt;, &lt;/s&gt;; merges (a b), (ab c).</summary>
    private static JsonObject TinyTokenizer(bool pairMerges = false) => new()
    {
        ["version"] = "1.0",
        ["added_tokens"] = new JsonArray(
            AddedTokenJson(5, "<s>"),
            AddedTokenJson(6, "</s>")),
        ["normalizer"] = null,
        ["pre_tokenizer"] = null,
        ["post_processor"] = new JsonObject
        {
            ["type"] = "TemplateProcessing",
            ["single"] = new JsonArray(
                new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = "<s>", ["type_id"] = 0 } },
                new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } },
                new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = "</s>", ["type_id"] = 0 } }),
            ["special_tokens"] = new JsonObject
            {
                ["<s>"] = new JsonObject { ["id"] = "<s>", ["ids"] = new JsonArray(5), ["tokens"] = new JsonArray("<s>") },
                ["</s>"] = new JsonObject { ["id"] = "</s>", ["ids"] = new JsonArray(6), ["tokens"] = new JsonArray("</s>") },
            },
        },
        ["decoder"] = new JsonObject { ["type"] = "Fuse" },
        ["model"] = new JsonObject
        {
            ["type"] = "BPE",
            ["vocab"] = new JsonObject { ["a"] = 0, ["b"] = 1, ["c"] = 2, ["ab"] = 3, ["abc"] = 4, ["<s>"] = 5, ["</s>"] = 6 },
            ["merges"] = pairMerges
                ? new JsonArray(new JsonArray("a", "b"), new JsonArray("ab", "c"))
                : new JsonArray("a b", "ab c"),
        },
    };

    private static JsonObject AddedTokenJson(int id, string content) => new()
    {
        ["id"] = id, ["content"] = content, ["single_word"] = false, ["lstrip"] = false,
        ["rstrip"] = false, ["normalized"] = false, ["special"] = true,
    };

    private static string Write(TempDirectory dir, JsonNode json, string name = "tokenizer.json")
    {
        string path = dir.File(name);
        File.WriteAllText(path, json.ToJsonString());
        return path;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Merges_as_strings_or_pairs_load_the_same(bool pairMerges)
    {
        using var dir = new TempDirectory();
        Write(dir, TinyTokenizer(pairMerges));
        HfTokenizer t = HfTokenizer.Load(dir.Path); // a directory holding tokenizer.json
        Assert.Equal([5, 4, 3, 6], t.Encode("abcab"));
        Assert.Equal([4, 3], t.Encode("abcab", addSpecialTokens: false));
        Assert.Equal([5, 0, 6, 2, 6], t.Encode("a</s>c"));
        Assert.Equal("abcab", t.Decode([5, 4, 3, 6], skipSpecialTokens: true));
        Assert.Equal(5, t.BosTokenId); // no config files: taken from the template
        Assert.Equal(6, t.EosTokenId);
        Assert.Equal(7, t.VocabSize);
    }

    [Theory]
    [InlineData(true, new[] { 0, 7, 1 })]
    [InlineData(false, new[] { 3 })]
    public void Normalized_added_tokens_match_the_normalized_text(bool normalized, int[] expected)
    {
        // An added token with normalized: true is matched, in its normalized spelling, on the
        // normalized text (HF's split_normalized_trie): "e" + U+0301 + "x" under NFC is "éx", so it is
        // found in "aéxb". With normalized: false it is only matched on the raw text, which holds
        // "éx" precomposed: no match; 'é' and 'x' are not in the vocabulary and there is no unk, so
        // they are dropped before merging (as HF does) and "a", "b" merge into "ab".
        using var dir = new TempDirectory();
        JsonObject json = TinyTokenizer();
        json["normalizer"] = new JsonObject { ["type"] = "NFC" };
        json["post_processor"] = null;
        JsonObject token = AddedTokenJson(7, "e\u0301x");
        token["special"] = false;
        token["normalized"] = normalized;
        json["added_tokens"]!.AsArray().Add(token);
        HfTokenizer t = HfTokenizer.Load(Write(dir, json));
        Assert.Equal(expected, t.Encode("a\u00e9xb"));
    }

    [Fact]
    public void Config_files_name_bos_and_eos_and_disagreements_are_reported()
    {
        using var dir = new TempDirectory();
        JsonObject json = TinyTokenizer();
        json["post_processor"] = null;
        Write(dir, json);
        Write(dir, new JsonObject { ["add_bos_token"] = true, ["bos_token"] = "<s>", ["eos_token"] = new JsonObject { ["content"] = "<s>" } }, "tokenizer_config.json");
        Write(dir, new JsonObject { ["eos_token"] = "</s>" }, "special_tokens_map.json");
        HfTokenizer t = HfTokenizer.Load(dir.File("tokenizer.json"));
        Assert.Equal(5, t.BosTokenId);
        Assert.Equal(6, t.EosTokenId); // special_tokens_map.json wins, as in transformers
        Assert.Equal([4], t.Encode("abc")); // the (absent) post-processor decides: no BOS
        Assert.Contains(t.LoadWarnings, w => w.Contains("add_bos_token=true", StringComparison.Ordinal));
    }

    [Fact]
    public void Gpt2_vocab_json_and_merges_txt_load_like_encoder_json_and_vocab_bpe()
    {
        using var dir = new TempDirectory();
        File.Copy(TestTokenizers.Gpt2Encoder, dir.File("vocab.json"));
        File.Copy(TestTokenizers.Gpt2Merges, dir.File("merges.txt"));
        HfTokenizer t = HfTokenizer.Load(dir.Path);
        foreach (string s in new[] { "hello world", " Leading spaces  and\ttabs\n", "<|endoftext|>x", "日本語 😀 1234" })
            Assert.Equal(TestTokenizers.Gpt2.Encode(s), t.Encode(s));
    }

    /// <summary>
    /// Newer LLaMA/Mistral tokenizer.json files (transformers' legacy=false) use a Metaspace
    /// pre-tokenizer with prepend_scheme "first" instead of the Prepend/Replace normalizers. On plain
    /// text both give the same ids; they differ (as in HF) on leading spaces, where Metaspace does not
    /// add a "▁" in front of one, and after an added token, where "first" does not prepend "▁".
    /// </summary>
    [Fact]
    public void Metaspace_first_pipeline_on_the_Mistral_vocabulary()
    {
        using var dir = new TempDirectory();
        var json = JsonNode.Parse(File.ReadAllText(TestTokenizers.MistralJson))!.AsObject();
        json["normalizer"] = null;
        json["pre_tokenizer"] = new JsonObject { ["type"] = "Metaspace", ["replacement"] = "▁", ["prepend_scheme"] = "first", ["split"] = false };
        json["decoder"] = new JsonObject
        {
            ["type"] = "Sequence",
            ["decoders"] = new JsonArray(
                new JsonObject { ["type"] = "Metaspace", ["replacement"] = "▁", ["prepend_scheme"] = "first", ["split"] = false },
                new JsonObject { ["type"] = "ByteFallback" },
                new JsonObject { ["type"] = "Fuse" }),
        };
        Write(dir, json);
        HfTokenizer modern = HfTokenizer.Load(dir.Path);
        HfTokenizer legacy = TestTokenizers.Mistral;
        foreach (string s in new[] { "Hello world", "tabs\tand\nnewlines", "日本語 😀 𓀀" })
        {
            Assert.Equal(legacy.Encode(s), modern.Encode(s));
            Assert.Equal(s, modern.Decode(modern.Encode(s, addSpecialTokens: false)));
        }
        // Text that starts with a space already starts with "▁" after replacement: no second "▁" is
        // prepended, unlike the Prepend normalizer.
        Assert.Equal(legacy.Encode(" two leading"), modern.Encode("  two leading"));
        int[] afterSpecial = modern.Encode("a</s>b", addSpecialTokens: false);
        Assert.Equal([legacy.TokenToId("▁a")!.Value, 2, legacy.TokenToId("b")!.Value], afterSpecial);
        Assert.Equal([legacy.TokenToId("▁a")!.Value, 2, legacy.TokenToId("▁b")!.Value], legacy.Encode("a</s>b", addSpecialTokens: false));
    }

    [Theory]
    [InlineData("model.type", "WordPiece")]
    [InlineData("model.type", "Unigram")]
    [InlineData("model.type", "WordLevel")]
    [InlineData("normalizer.type", "BertNormalizer")]
    [InlineData("normalizer.type", "NFKC")]
    [InlineData("pre_tokenizer.pretokenizers[1].type", "Whitespace")]
    [InlineData("decoder.type", "WordPiece")]
    [InlineData("post_processor.type", "SomethingElse")]
    public void Unsupported_component_types_are_rejected_naming_type_file_and_field(string field, string type)
    {
        using var dir = new TempDirectory();
        JsonObject json = TinyTokenizer();
        switch (field)
        {
            case "model.type": json["model"]!["type"] = type; break;
            case "normalizer.type": json["normalizer"] = new JsonObject { ["type"] = type }; break;
            case "decoder.type": json["decoder"] = new JsonObject { ["type"] = type }; break;
            case "post_processor.type": json["post_processor"] = new JsonObject { ["type"] = type }; break;
            default:
                json["pre_tokenizer"] = new JsonObject
                {
                    ["type"] = "Sequence",
                    ["pretokenizers"] = new JsonArray(new JsonObject { ["type"] = "Digits", ["individual_digits"] = true }, new JsonObject { ["type"] = type }),
                };
                break;
        }
        string path = Write(dir, json);
        var e = Assert.Throws<TokenizerFormatException>(() => HfTokenizer.Load(path));
        Assert.Equal(path, e.FilePath);
        Assert.Equal(field, e.Field);
        Assert.Contains(path, e.Message, StringComparison.Ordinal);
        Assert.Contains($"'{type}'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Malformed_files_are_rejected_with_file_and_field()
    {
        using var dir = new TempDirectory();

        JsonObject badMerge = TinyTokenizer();
        badMerge["model"]!["merges"] = new JsonArray("a b c");
        var e = Assert.Throws<TokenizerFormatException>(() => HfTokenizer.Load(Write(dir, badMerge)));
        Assert.Equal("model.merges[0]", e.Field);

        JsonObject unknownToken = TinyTokenizer();
        unknownToken["model"]!["merges"] = new JsonArray("a z");
        e = Assert.Throws<TokenizerFormatException>(() => HfTokenizer.Load(Write(dir, unknownToken)));
        Assert.Contains("'z' is not in the vocabulary", e.Message, StringComparison.Ordinal);

        JsonObject badRegex = TinyTokenizer();
        badRegex["pre_tokenizer"] = new JsonObject
        {
            ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = @"\p{NoSuchProperty}+" }, ["behavior"] = "Isolated", ["invert"] = false,
        };
        e = Assert.Throws<TokenizerFormatException>(() => HfTokenizer.Load(Write(dir, badRegex)));
        Assert.Equal("pre_tokenizer.pattern.Regex", e.Field);

        JsonObject badBehavior = TinyTokenizer();
        badBehavior["pre_tokenizer"] = new JsonObject
        {
            ["type"] = "Split", ["pattern"] = new JsonObject { ["String"] = " " }, ["behavior"] = "Sideways", ["invert"] = false,
        };
        e = Assert.Throws<TokenizerFormatException>(() => HfTokenizer.Load(Write(dir, badBehavior)));
        Assert.Equal("pre_tokenizer.behavior", e.Field);

        File.WriteAllText(dir.File("tokenizer.json"), "{ not json");
        e = Assert.Throws<TokenizerFormatException>(() => HfTokenizer.Load(dir.File("tokenizer.json")));
        Assert.Contains("not valid JSON", e.Message, StringComparison.Ordinal);

        string empty = dir.Sub("empty");
        e = Assert.Throws<TokenizerFormatException>(() => HfTokenizer.Load(empty));
        Assert.Contains("tokenizer.json", e.Message, StringComparison.Ordinal);
        Assert.Throws<TokenizerFormatException>(() => HfTokenizer.Load(dir.File("missing")));
    }

    [Fact]
    public void Split_pre_tokenizer_with_possessive_regex_runs()
    {
        // The cl100k/o200k-style patterns written with possessive quantifiers compile and split.
        using var dir = new TempDirectory();
        JsonObject json = TinyTokenizer();
        json["pre_tokenizer"] = new JsonObject
        {
            ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = @"[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s+" },
            ["behavior"] = "Isolated", ["invert"] = false,
        };
        HfTokenizer t = HfTokenizer.Load(Write(dir, json));
        // "ab-c" splits into "ab" and "-c"; '-' is not in the vocabulary (and there is no unk): dropped, as HF does.
        Assert.Equal([3, 2], t.Encode("ab-c", addSpecialTokens: false));
        JsonObject unsplit = TinyTokenizer();
        Assert.Equal([4], HfTokenizer.Load(Write(dir, unsplit)).Encode("ab-c", addSpecialTokens: false));
    }
}
