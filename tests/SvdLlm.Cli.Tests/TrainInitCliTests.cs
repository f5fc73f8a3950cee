using System.Text.Json;
using SvdLlm.Models.Tests;
using SvdLlm.Models.Tests.Reference;

namespace SvdLlm.Cli.Tests;

/// <summary><c>svdllm train --init</c>: a fine-tuned copy that ppl loads and that fits its text better, and the misuses refused.</summary>
public class TrainInitCliTests
{
    [Fact]
    public void Train_init_fine_tunes_a_model_on_new_text_and_ppl_sees_the_gain()
    {
        using var dir = new TempDirectory();
        string baseText = string.Join(' ', Enumerable.Range(0, 600).Select(i => "word" + (i * 7 % 29)));
        string model = TinyModelWithTokenizer.Create(dir.Sub("model"), baseText, TinyArch.Llama2);
        string domain = dir.File("domain.txt");
        File.WriteAllText(domain, string.Join(' ', Enumerable.Range(0, 800).Select(i => "word" + (i * 3 % 11))));
        string tuned = Path.Combine(dir.Path, "tuned");
        var r = CliRunner.Run("train", "--init", model, "--text-file", domain, "--steps", "20", "--lr", "3e-3", "--batch", "4", "--samples", "16",
            "--seq-len", "16", "--seed", "1", "--out", tuned, "--json");
        Assert.True(r.Exit == 0, r.Err);
        using var doc = JsonDocument.Parse(r.Out.Trim());
        Assert.Equal(20, doc.RootElement.GetProperty("steps").GetInt32());

        double Ppl(string m)
        {
            var p = CliRunner.Run("ppl", "--model", m, "--text-file", domain, "--seq-len", "16", "--json");
            Assert.True(p.Exit == 0, p.Err);
            return JsonDocument.Parse(p.Out.Trim()).RootElement.GetProperty("ppl").GetDouble();
        }
        double before = Ppl(model), after = Ppl(tuned);
        Assert.True(after < 0.9 * before, $"perplexity on the fine-tuning text {before:F2} → {after:F2}");
        Assert.True(File.Exists(Path.Combine(tuned, "fine-tuning.json")));
    }

    [Fact]
    public void Misused_train_init_options_are_refused_with_the_option_named_and_nothing_written()
    {
        using var dir = new TempDirectory();
        string text = string.Join(' ', Enumerable.Range(0, 600).Select(i => "word" + (i * 7 % 29)));
        string model = TinyModelWithTokenizer.Create(dir.Sub("model"), text, TinyArch.Llama2);
        string textFile = dir.File("t.txt");
        File.WriteAllText(textFile, text);
        string config = dir.File("c.yaml");
        File.WriteAllText(config, "name: x\n");
        string outDir = Path.Combine(dir.Path, "out");
        var cases = new (string[] Args, string Message)[]
        {
            (["--init", model, "--text-file", textFile, "--out", outDir], "--init needs --steps"),
            (["--init", model, "--steps", "2", "--out", outDir], "--init needs --text-file"),
            (["--init", model, "--text-file", textFile, "--steps", "2"], "--init needs --out"),
            (["--init", model, "--config", config, "--text-file", textFile, "--steps", "2", "--out", outDir], "exactly one of --config"),
            (["--config", config, "--steps", "2", "--out", outDir], "--steps belongs to --init"),
            (["--init", model, "--text-file", textFile, "--steps", "0", "--out", outDir], "--steps 0 must be at least 1"),
            (["--init", model, "--text-file", textFile, "--steps", "2", "--lr", "-1", "--out", outDir], "--lr -1 must be a positive number"),
            (["--init", model, "--text-file", dir.File("missing.txt"), "--steps", "2", "--out", outDir], "missing.txt: no such file"),
            (["--init", dir.File("nomodel"), "--text-file", textFile, "--steps", "2", "--out", outDir], "no such model directory"),
        };
        foreach (var (args, message) in cases)
        {
            var r = CliRunner.Run(["train", .. args]);
            Assert.True(r.Exit != 0, string.Join(' ', args));
            Assert.Contains(message, r.Err);
            Assert.False(Directory.Exists(outDir));
        }
    }
}
