using System.Text.Json;
using SvdLlm.Models.Tests;
using SvdLlm.Models.Tests.Reference;

// Console.Out is process-wide: the CLI tests must not run in parallel with each other.
[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace SvdLlm.Cli.Tests;

/// <summary>The exact command forms later issues and outside checks rely on, run in-process through Program.Main.</summary>
public class CliTests
{
    internal static (int Exit, string Out, string Err) Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var (oldOut, oldErr) = (Console.Out, Console.Error);
        Console.SetOut(stdout);
        Console.SetError(stderr);
        try
        {
            int exit = Program.Main(args);
            return (exit, stdout.ToString(), stderr.ToString());
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldErr);
        }
    }

    [Fact]
    public void Inspect_json_reports_architecture_dims_and_parameter_counts()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Llama3, seed: 1);
        var (exit, output, err) = Run("inspect", "--model", ckpt.Directory, "--json");
        Assert.True(exit == 0, err);
        using var doc = JsonDocument.Parse(output);
        var root = doc.RootElement;
        Assert.Equal("LlamaForCausalLM", root.GetProperty("architecture").GetString());
        Assert.Equal(ckpt.Weights.Values.Sum(w => (long)w.Length), root.GetProperty("parameters_total").GetInt64());
        Assert.Equal(ckpt.Weights.Where(kv => kv.Key.Contains("_proj.")).Sum(kv => (long)kv.Value.Length), root.GetProperty("parameters_linear").GetInt64());
        Assert.Equal(2, root.GetProperty("num_key_value_heads").GetInt32());
        Assert.Equal("llama3", root.GetProperty("rope_scaling").GetString());
    }

    [Fact]
    public void Ppl_json_matches_the_reference_perplexity()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Qwen2, seed: 2);
        var rng = new Random(3);
        int seqLen = 6;
        var ids = Enumerable.Range(0, 4 * seqLen + 2).Select(_ => rng.Next(99)).ToArray();
        string file = dir.File("ids.txt");
        File.WriteAllText(file, string.Join(" ", ids.Take(10)) + "\n" + string.Join(",", ids.Skip(10)));
        var (exit, output, err) = Run("ppl", "--model", ckpt.Directory, "--token-ids", file, "--seq-len", seqLen.ToString(), "--max-chunks", "3", "--threads", "1", "--json");
        Assert.True(exit == 0, err);
        using var doc = JsonDocument.Parse(output);
        var root = doc.RootElement;
        Assert.Equal(3, root.GetProperty("chunks").GetInt32());
        Assert.Equal(3 * (seqLen - 1), root.GetProperty("tokens").GetInt64());
        Assert.Equal(1, root.GetProperty("threads").GetInt32());

        double sum = 0;
        for (int c = 0; c < 3; c++) sum += NaiveTransformer.TokenNll(ckpt, ids[(c * seqLen)..((c + 1) * seqLen)]).Sum();
        double nll = sum / (3 * (seqLen - 1));
        Assert.True(Math.Abs(root.GetProperty("nll").GetDouble() - nll) < 1e-5, $"nll {root.GetProperty("nll").GetDouble()} vs {nll}");
        Assert.True(Math.Abs(root.GetProperty("ppl").GetDouble() / Math.Exp(nll) - 1) < 1e-4);
    }

    [Fact]
    public void User_errors_print_one_error_line_and_exit_nonzero()
    {
        using var dir = new TempDirectory();
        var (exit, _, err) = Run("inspect", "--model", dir.File("nope"));
        Assert.Equal(1, exit);
        Assert.StartsWith("error:", err);
        Assert.Contains("nope", err);

        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Opt, seed: 1);
        string file = dir.File("bad.txt");
        File.WriteAllText(file, "1 2\n3 oops\n");
        (exit, _, err) = Run("ppl", "--model", ckpt.Directory, "--token-ids", file, "--seq-len", "2", "--json");
        Assert.Equal(1, exit);
        Assert.Contains("bad.txt:2:3", err);

        string pickle = dir.Sub("pickle");
        File.Copy(Path.Combine(ckpt.Directory, "config.json"), Path.Combine(pickle, "config.json"));
        File.WriteAllBytes(Path.Combine(pickle, "pytorch_model.bin"), [0x80, 0x02]);
        (exit, _, err) = Run("inspect", "--model", pickle);
        Assert.Equal(1, exit);
        Assert.Contains("pickle", err);
    }

    [Fact]
    public void Missing_required_option_is_a_usage_error()
    {
        var (exit, _, err) = Run("ppl", "--model", "x", "--seq-len", "8");
        Assert.NotEqual(0, exit);
        Assert.Contains("--token-ids", err);
    }
}
