using System.Text.Json;
using SvdLlm.Models.Tests;
using SvdLlm.Models.Tests.Reference;
using SvdLlm.Models.Tokenizers;
using SvdLlm.Models.Training;

namespace SvdLlm.Cli.Tests;

/// <summary><c>svdllm eval</c> end to end on a tiny checkpoint with its own tokenizer, in-process through Program.Main.</summary>
public class EvalCommandTests
{
    private const string Text = "Question: Which gas do plants absorb from the air?\nAnswer: carbon dioxide. The whale swam toward the ship. " +
                                "Call me Ishmael. Some years ago, never mind how long precisely, I thought I would sail about a little.";

    private static (int Exit, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    private static (TinyCheckpoint Ckpt, HfTokenizer Tok) Model(TempDirectory dir)
    {
        var trained = ByteLevelBpeTrainer.Train([Text, Text], vocabSize: 300);
        var config = TinyConfig.Preset(TinyArch.Llama2) with { VocabSize = trained.VocabSize, MaxPositionEmbeddings = 128, BosTokenId = trained.BosId, EosTokenId = trained.EosId };
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), config, seed: 4);
        File.WriteAllText(Path.Combine(ckpt.Directory, "tokenizer.json"), ByteLevelBpeTrainer.ToTokenizerJson(trained));
        return (ckpt, HfTokenizer.Load(ckpt.Directory));
    }

    private static double ReferenceLogLikelihood(TinyCheckpoint ckpt, HfTokenizer tok, string context, string continuation)
    {
        int[] ctx = tok.Encode(context, addSpecialTokens: false);
        int[] all = tok.Encode(context + continuation, addSpecialTokens: false);
        double[] nll = NaiveTransformer.TokenNll(ckpt, all);
        double sum = 0;
        for (int p = ctx.Length; p < all.Length; p++) sum -= nll[p - 1];
        return sum;
    }

    [Fact]
    public void Eval_json_reports_acc_acc_norm_and_stderr_matching_the_reference_model()
    {
        using var dir = new TempDirectory();
        var (ckpt, tok) = Model(dir);
        string data = dir.File("ARC-Challenge-Test.jsonl");
        string[][] choices = [["oxygen", "carbon dioxide", "the ship"], ["Ishmael.", "soap", "sail"], ["toward the ship.", "a little.", "air"]];
        string[] stems = ["Which gas do plants absorb from the air?", "Call me", "The whale swam"];
        string[] keys = ["B", "A", "C"];
        File.WriteAllLines(data, stems.Select((s, i) => JsonSerializer.Serialize(new
        {
            id = $"q{i}",
            question = new { stem = s, choices = choices[i].Select((t, c) => new { text = t, label = ((char)('A' + c)).ToString() }).ToArray() },
            answerKey = keys[i],
        })));
        var (exit, output, err) = Run("eval", "--model", ckpt.Directory, "--task", "arc_challenge", "--data", data, "--limit", "3", "--threads", "1", "--json");
        Assert.True(exit == 0, err);
        using var doc = JsonDocument.Parse(output);
        var root = doc.RootElement;
        Assert.Equal("arc_challenge", root.GetProperty("task").GetString());
        Assert.Equal(3, root.GetProperty("n").GetInt64());

        // Independent: template "Question: {stem}\nAnswer:" + " choice", summed reference log-likelihoods, argmax.
        var acc = new double[3];
        var accNorm = new double[3];
        for (int i = 0; i < 3; i++)
        {
            var ll = choices[i].Select(c => ReferenceLogLikelihood(ckpt, tok, $"Question: {stems[i]}\nAnswer:", " " + c)).ToArray();
            int gold = keys[i][0] - 'A';
            acc[i] = Array.IndexOf(ll, ll.Max()) == gold ? 1 : 0;
            var norm = ll.Select((v, c) => v / choices[i][c].Length).ToArray();
            accNorm[i] = Array.IndexOf(norm, norm.Max()) == gold ? 1 : 0;
        }
        Assert.Equal(acc.Average(), root.GetProperty("acc").GetDouble(), 12);
        Assert.Equal(accNorm.Average(), root.GetProperty("acc_norm").GetDouble(), 12);
        double mu = acc.Average();
        double stderr = Math.Sqrt(acc.Sum(x => (x - mu) * (x - mu)) / 2) / Math.Sqrt(3);
        Assert.Equal(stderr, root.GetProperty("acc_stderr").GetDouble(), 12);
        Assert.True(root.TryGetProperty("acc_norm_stderr", out _));
        Assert.Equal(1.0 / 3, root.GetProperty("chance").GetDouble(), 12);
    }

    [Fact]
    public void Eval_json_reports_ppl_for_a_perplexity_task()
    {
        using var dir = new TempDirectory();
        var (ckpt, tok) = Model(dir);
        string data = dir.File("ptb.test.txt");
        File.WriteAllText(data, " the whale swam toward the ship \n call me ishmael \n");
        int seqLen = 8;
        var (exit, output, err) = Run("eval", "--model", ckpt.Directory, "--task", "ptb", "--data", data, "--seq-len", seqLen.ToString(), "--json");
        Assert.True(exit == 0, err);
        using var doc = JsonDocument.Parse(output);
        var root = doc.RootElement;
        var ids = tok.Encode("the whale swam toward the ship\n\ncall me ishmael", addSpecialTokens: true);
        int chunks = ids.Length / seqLen;
        double sum = 0;
        for (int c = 0; c < chunks; c++) sum += NaiveTransformer.TokenNll(ckpt, ids[(c * seqLen)..((c + 1) * seqLen)]).Sum();
        double nll = sum / (chunks * (seqLen - 1));
        Assert.Equal("ptb", root.GetProperty("task").GetString());
        Assert.Equal(chunks * (seqLen - 1), root.GetProperty("n").GetInt64());
        Assert.True(Math.Abs(root.GetProperty("ppl").GetDouble() / Math.Exp(nll) - 1) < 1e-4, $"{root.GetProperty("ppl").GetDouble()} vs {Math.Exp(nll)}");
    }

    [Fact]
    public void Eval_errors_name_the_file_and_line_or_suggest_the_task()
    {
        using var dir = new TempDirectory();
        var (ckpt, _) = Model(dir);
        string data = dir.File("dev.jsonl");
        File.WriteAllText(data, "{\"sentence\": \"a _ b\", \"option1\": \"x\", \"option2\": \"y\", \"answer\": \"1\"}\n{\"sentence\": \"no blank\", \"option1\": \"x\", \"option2\": \"y\", \"answer\": \"2\"}\n");
        var (exit, output, err) = Run("eval", "--model", ckpt.Directory, "--task", "winogrande", "--data", data, "--json");
        Assert.Equal(1, exit);
        Assert.Equal("", output);
        Assert.StartsWith("error:", err);
        Assert.Contains("dev.jsonl:2", err);

        (exit, _, err) = Run("eval", "--model", ckpt.Directory, "--task", "hellaswg", "--data", data);
        Assert.Equal(1, exit);
        Assert.Contains("did you mean 'hellaswag'", err);

        (exit, _, err) = Run("eval", "--model", ckpt.Directory, "--task", "piqa");
        Assert.Equal(1, exit);
        Assert.Contains("--data", err);
    }
}
