using System.Text.Json;
using SvdLlm.Models.Tests;
using SvdLlm.Models.Tests.Reference;

namespace SvdLlm.Cli.Tests;

/// <summary><c>svdllm compress-delta</c> on a pair made by <c>train --init</c>: each method writes a model ppl loads, and misuses are refused.</summary>
public class CompressDeltaCliTests
{
    private static (string Base, string FineTuned, string Domain) Pair(TempDirectory dir)
    {
        string baseText = string.Join(' ', Enumerable.Range(0, 600).Select(i => "word" + (i * 7 % 29)));
        string model = TinyModelWithTokenizer.Create(dir.Sub("model"), baseText, TinyArch.Llama3);
        string domain = dir.File("domain.txt");
        File.WriteAllText(domain, string.Join(' ', Enumerable.Range(0, 800).Select(i => "word" + (i * 3 % 11))));
        string tuned = Path.Combine(dir.Path, "tuned");
        var r = CliRunner.Run("train", "--init", model, "--text-file", domain, "--steps", "10", "--lr", "3e-3", "--batch", "4", "--samples", "16",
            "--seq-len", "16", "--out", tuned);
        Assert.True(r.Exit == 0, r.Err);
        return (model, tuned, domain);
    }

    [Fact]
    public void Every_delta_method_writes_a_model_that_ppl_loads_with_the_budget_in_its_report()
    {
        using var dir = new TempDirectory();
        var (b, ft, domain) = Pair(dir);
        foreach (string method in new[] { "impart", "svd", "dare" })
        {
            string outDir = Path.Combine(dir.Path, method);
            var r = CliRunner.Run("compress-delta", "--base", b, "--finetuned", ft, "--method", method, "--ratio", "4", "--out", outDir, "--json");
            Assert.True(r.Exit == 0, r.Err);
            using var doc = JsonDocument.Parse(r.Out.Trim());
            Assert.Equal(method, doc.RootElement.GetProperty("method").GetString());
            Assert.InRange(doc.RootElement.GetProperty("achieved_ratio").GetDouble(), 3.5, 4.5);
            var ppl = CliRunner.Run("ppl", "--model", outDir, "--text-file", domain, "--seq-len", "16", "--json");
            Assert.True(ppl.Exit == 0, ppl.Err);
            Assert.True(double.IsFinite(JsonDocument.Parse(ppl.Out.Trim()).RootElement.GetProperty("ppl").GetDouble()));
        }
    }

    [Fact]
    public void Impart_qt_quantizes_the_sparse_factors_to_the_bit_budget_and_writes_a_model_that_ppl_loads()
    {
        using var dir = new TempDirectory();
        var (b, ft, domain) = Pair(dir);
        string outDir = Path.Combine(dir.Path, "qt");
        var r = CliRunner.Run("compress-delta", "--base", b, "--finetuned", ft, "--method", "impart", "--ratio", "8", "--quantize", "gptq", "--bits", "8x1,3",
            "--group-size", "16", "--text-file", domain, "--samples", "8", "--seq-len", "16", "--out", outDir, "--json");
        Assert.True(r.Exit == 0, r.Err);
        var root = JsonDocument.Parse(r.Out.Trim()).RootElement;
        Assert.Equal("impart-qt", root.GetProperty("method").GetString());
        // CR_qt counts bits against 16 per dense value, and the search never goes over the budget.
        long dense = root.GetProperty("dense_values").GetInt64(), bits = root.GetProperty("stored_bits").GetInt64();
        Assert.Equal(16.0 * dense / bits, root.GetProperty("achieved_ratio").GetDouble(), 1e-5);
        Assert.InRange(root.GetProperty("achieved_ratio").GetDouble(), 8, 9);
        // Between 3 and 8 bits per stored value: more values are kept than plain ImPart's dense/8.
        long values = root.GetProperty("stored_values").GetInt64();
        Assert.InRange((double)bits / values, 3, 8);
        Assert.True(values > dense / 8);
        Assert.Equal("8x1,3", root.GetProperty("quantization").GetProperty("bits").GetString());
        Assert.False(string.IsNullOrEmpty(root.GetProperty("provenance").GetProperty("calibration_key").GetString()));
        var ppl = CliRunner.Run("ppl", "--model", outDir, "--text-file", domain, "--seq-len", "16", "--json");
        Assert.True(ppl.Exit == 0, ppl.Err);
        Assert.True(double.IsFinite(JsonDocument.Parse(ppl.Out.Trim()).RootElement.GetProperty("ppl").GetDouble()));
    }

    [Fact]
    public void Misused_compress_delta_options_are_refused_with_the_option_named_and_nothing_written()
    {
        using var dir = new TempDirectory();
        var (b, ft, _) = Pair(dir);
        string outDir = Path.Combine(dir.Path, "out");
        var cases = new (string[] Args, string Message)[]
        {
            (["--method", "lowrank", "--ratio", "4"], "--method lowrank: not a delta method; expected impart, svd or dare"),
            (["--method", "svd", "--ratio", "4", "--beta", "0.5"], "--beta is ImPart's"),
            (["--method", "dare", "--ratio", "4", "--exponent", "1"], "--exponent is ImPart's"),
            (["--method", "svd", "--ratio", "4", "--seed", "2"], "--seed: svd draws nothing at random"),
            (["--method", "dare", "--ratio", "0.5"], "--ratio 0.5"),
            (["--method", "impart", "--ratio", "4", "--beta", "1.5"], "--beta 1.5"),
            (["--method", "svd", "--ratio", "0.1"], "needs more than full-rank storage"),
            (["--method", "svd", "--ratio", "4", "--quantize", "gptq", "--text-file", "x"], "quantizes ImPart's sparse singular vectors"),
            (["--method", "impart", "--ratio", "4", "--quantize", "gptq"], "--quantize gptq needs --text-file"),
            (["--method", "impart", "--ratio", "4", "--quantize", "rtn", "--text-file", "x"], "--quantize rtn: expected gptq"),
            (["--method", "impart", "--ratio", "4", "--bits", "4"], "--bits applies to --quantize gptq"),
            (["--method", "impart", "--ratio", "4", "--quantize", "gptq", "--bits", "8x2", "--text-file", "x"], "--bits '8x2'"),
        };
        foreach (var (args, message) in cases)
        {
            var r = CliRunner.Run(["compress-delta", "--base", b, "--finetuned", ft, "--out", outDir, .. args]);
            Assert.True(r.Exit != 0, string.Join(' ', args));
            Assert.Contains(message, r.Err);
            Assert.False(Directory.Exists(outDir));
        }
        var missing = CliRunner.Run("compress-delta", "--base", dir.File("none"), "--finetuned", ft, "--method", "svd", "--ratio", "4", "--out", outDir);
        Assert.Contains("--base", missing.Err);
        Assert.Contains("no such model directory", missing.Err);
    }
}
