using System.Text.Json;
using SvdLlm.Models.Tests;
using SvdLlm.Models.Tests.Reference;

namespace SvdLlm.Cli.Tests;

/// <summary><c>svdllm compress --recover lora</c> (with <c>--recover-text</c>) and <c>--method dobi-svd</c> end to end, and their misuses.</summary>
public class GradientMethodsCliTests
{
    private static (string Model, string Text) ModelWithTokenizer(TempDirectory dir)
    {
        string text = string.Join(' ', Enumerable.Range(0, 600).Select(i => "word" + (i * 7 % 29)));
        string model = TinyModelWithTokenizer.Create(dir.Sub("model"), text, TinyArch.Llama3);
        string textFile = dir.File("calib.txt");
        File.WriteAllText(textFile, text);
        return (model, textFile);
    }

    [Fact]
    public void Recovery_on_another_text_and_dobi_svd_write_directories_that_ppl_loads()
    {
        using var dir = new TempDirectory();
        var (model, text) = ModelWithTokenizer(dir);
        string other = dir.File("other.txt");
        File.WriteAllText(other, string.Join(' ', Enumerable.Range(0, 600).Select(i => "word" + (i * 11 % 29))));
        string lora = Path.Combine(dir.Path, "lora");
        var r = CliRunner.Run(["compress", "--model", model, "--method", "svdllm", "--ratio", "0.5", "--text-file", text, "--samples", "4", "--seq-len", "16",
            "--recover", "lora", "--lora-epochs", "1", "--lora-batch", "2", "--recover-text", other, "--out", lora, "--json"]);
        Assert.True(r.Exit == 0, r.Err);
        var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(lora, "compression-report.json"))).RootElement;
        Assert.StartsWith("other.txt (sha256 ", report.GetProperty("recovery").GetProperty("text").GetString());
        Assert.Equal(2, report.GetProperty("training_curves").GetProperty("lora_u").GetArrayLength());
        Assert.Equal("SVD-LLM + LoRA 1 ep b2", report.GetProperty("label").GetString());

        string dobi = Path.Combine(dir.Path, "dobi");
        r = CliRunner.Run(["compress", "--model", model, "--method", "dobi-svd", "--ratio", "0.5", "--text-file", text, "--samples", "4", "--seq-len", "16",
            "--epochs", "1", "--batch", "2", "--out", dobi, "--json"]);
        Assert.True(r.Exit == 0, r.Err);
        using var doc = JsonDocument.Parse(r.Out.Trim());
        Assert.True(doc.RootElement.GetProperty("achieved_linear_ratio").GetDouble() >= 0.5);
        foreach (string d in new[] { lora, dobi })
        {
            var ppl = CliRunner.Run("ppl", "--model", d, "--text-file", text, "--seq-len", "16", "--json");
            Assert.True(ppl.Exit == 0, ppl.Err);
            Assert.True(double.IsFinite(JsonDocument.Parse(ppl.Out.Trim()).RootElement.GetProperty("ppl").GetDouble()));
        }
    }

    [Fact]
    public void Misused_recovery_and_dobi_options_are_refused_with_the_option_named()
    {
        using var dir = new TempDirectory();
        var (model, text) = ModelWithTokenizer(dir);
        var cases = new (string[] Args, string Message)[]
        {
            (["--method", "svdllm", "--ratio", "0.5", "--recover-text", text], "--recover-text applies to recovery"),
            (["--method", "svdllm", "--ratio", "0.5", "--lora-rank", "4"], "--lora-rank applies to recovery: give --recover lora"),
            (["--method", "svdllm", "--ratio", "0.5", "--recover", "qlora"], "'qlora' is not a recovery"),
            (["--method", "svdllm", "--ratio", "0.5", "--epochs", "2"], "--epochs: unknown parameter of svdllm"),
            (["--method", "dobi-svd", "--ratio", "0.5", "--epochs", "0"], "--epochs 0 must be at least 1"),
        };
        foreach (var (args, message) in cases)
        {
            string outDir = Path.Combine(dir.Path, "out");
            var r = CliRunner.Run(["compress", "--model", model, "--text-file", text, "--samples", "4", "--seq-len", "16", "--out", outDir, .. args]);
            Assert.True(r.Exit != 0, string.Join(' ', args));
            Assert.Contains(message, r.Err);
            Assert.False(Directory.Exists(outDir));
        }
    }
}
