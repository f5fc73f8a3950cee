using System.Text.Json;

namespace SvdLlm.Models.Tests.Tokenizers;

/// <summary>
/// Our ids against ids computed by independent implementations (fixtures/expected-ids.json, made by
/// fixtures/generate-expected-ids.mjs): Hugging Face's tokenizers.js (@huggingface/tokenizers 0.2.0)
/// for the Llama-3, Qwen3 and Mistral tokenizer.json files, and gpt-3-encoder's port of OpenAI's
/// encoder.py for GPT-2's encoder.json + vocab.bpe.
/// </summary>
public sealed class IndependentImplementationParityTests
{
    private static readonly Lazy<JsonDocument> Fixture = new(() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(TestTokenizers.FixturesDirectory, "expected-ids.json"))));

    public static TheoryData<string, int, string> Cases()
    {
        var data = new TheoryData<string, int, string>();
        foreach (JsonProperty vocabulary in Fixture.Value.RootElement.GetProperty("vocabularies").EnumerateObject())
        {
            int i = 0;
            foreach (JsonElement c in vocabulary.Value.GetProperty("cases").EnumerateArray())
            {
                string label = c.TryGetProperty("text", out JsonElement t) ? t.GetString()! : "(invalid UTF-16)";
                data.Add(vocabulary.Name, i++, label.Length > 40 ? label[..40] + "…" : label);
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Encode_matches_the_independent_implementation(string vocabulary, int index, string label)
    {
        _ = label;
        JsonElement c = Case(vocabulary, index);
        string text = Text(c);
        var tokenizer = TestTokenizers.ByName(vocabulary);

        Assert.Equal(Ids(c.GetProperty("ids")), tokenizer.Encode(text, addSpecialTokens: true));
        if (c.TryGetProperty("ids_without_special", out JsonElement plain))
            Assert.Equal(Ids(plain), tokenizer.Encode(text, addSpecialTokens: false));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Decode_matches_the_independent_implementation(string vocabulary, int index, string label)
    {
        _ = label;
        JsonElement c = Case(vocabulary, index);
        if (!c.TryGetProperty("decoded", out JsonElement decoded)) return; // lone-surrogate inputs: decoded text is U+FFFD, checked elsewhere
        JsonElement ids = c.TryGetProperty("ids_without_special", out JsonElement plain) ? plain : c.GetProperty("ids");
        Assert.Equal(decoded.GetString(), TestTokenizers.ByName(vocabulary).Decode(Ids(ids)));
    }

    private static JsonElement Case(string vocabulary, int index) =>
        Fixture.Value.RootElement.GetProperty("vocabularies").GetProperty(vocabulary).GetProperty("cases")[index];

    internal static string Text(JsonElement c) =>
        c.TryGetProperty("text", out JsonElement t)
            ? t.GetString()!
            : new string(c.GetProperty("utf16").EnumerateArray().Select(u => (char)u.GetInt32()).ToArray());

    private static int[] Ids(JsonElement array) => array.EnumerateArray().Select(x => x.GetInt32()).ToArray();
}
