using System.Text.Json;
using SvdLlm.Models.Tests;
using SvdLlm.Models.Tests.Reference;
using SvdLlm.Models.Training;

namespace SvdLlm.Cli.Tests;

/// <summary><c>svdllm compress --method rtn|gptq --bits …</c> end to end, and the options that do not belong together.</summary>
public class QuantizeCliTests
{
    private static (string Model, string Text) ModelWithTokenizer(TempDirectory dir)
    {
        string text = string.Join(' ', Enumerable.Range(0, 600).Select(i => "word" + (i * 7 % 29)));
        // LLaMA-3-like preset: hidden 64, kv 32, intermediate 96, all multiples of 32 as the GPTQ layout needs.
        string model = TinyModelWithTokenizer.Create(dir.Sub("model"), text, TinyArch.Llama3);
        string textFile = dir.File("calib.txt");
        File.WriteAllText(textFile, text);
        return (model, textFile);
    }

    [Fact]
    public void Gptq_and_rtn_write_directories_that_ppl_and_inspect_load()
    {
        using var dir = new TempDirectory();
        var (model, text) = ModelWithTokenizer(dir);
        foreach (var (method, extra) in new[] { ("gptq", new[] { "--text-file", text, "--samples", "4", "--seq-len", "16", "--act-order" }), ("rtn", Array.Empty<string>()) })
        {
            string outDir = Path.Combine(dir.Path, method);
            var r = CliRunner.Run(["compress", "--model", model, "--method", method, "--bits", "4", "--group-size", "32", "--out", outDir, "--json", .. extra]);
            Assert.True(r.Exit == 0, r.Err);
            using var doc = JsonDocument.Parse(r.Out.Trim());
            double bpw = doc.RootElement.GetProperty("bits_per_weight").GetDouble();
            Assert.InRange(bpw, 4.0, 5.5);   // 4 bits plus float16 scales, packed zeros and g_idx per group of 32
            var ppl = CliRunner.Run("ppl", "--model", outDir, "--text-file", text, "--seq-len", "16", "--json");
            Assert.True(ppl.Exit == 0, ppl.Err);
            using var pplDoc = JsonDocument.Parse(ppl.Out.Trim());
            Assert.True(double.IsFinite(pplDoc.RootElement.GetProperty("ppl").GetDouble()));
            var inspect = CliRunner.Run("inspect", "--model", outDir, "--json");
            Assert.True(inspect.Exit == 0, inspect.Err);
            using var inspectDoc = JsonDocument.Parse(inspect.Out.Trim());
            Assert.Equal(bpw, inspectDoc.RootElement.GetProperty("bits_per_weight").GetDouble(), 3);
            Assert.Equal(doc.RootElement.GetProperty("linear_bytes_after").GetInt64(), inspectDoc.RootElement.GetProperty("linear_weight_bytes").GetInt64());
            Assert.Equal(14, inspectDoc.RootElement.GetProperty("linears_quantized").GetInt32());
            var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "compression-report.json"))).RootElement;
            Assert.Equal(method, report.GetProperty("method").GetString());
            Assert.Equal(7 * 2, report.GetProperty("quantization").GetProperty("matrices").GetArrayLength());
        }
    }

    /// <summary>GPTVQ through the command: its own options, a VQ-layout directory that ppl and inspect load, bits per weight as counted.</summary>
    [Fact]
    public void Gptvq_writes_a_vq_directory_that_ppl_and_inspect_load()
    {
        using var dir = new TempDirectory();
        var (model, text) = ModelWithTokenizer(dir);
        string outDir = Path.Combine(dir.Path, "gptvq");
        var r = CliRunner.Run(["compress", "--model", model, "--method", "gptvq", "--bits", "2", "--vq-dim", "2", "--columns-per-group", "32", "--group-size", "512",
            "--kmeans-iters", "5", "--text-file", text, "--samples", "4", "--seq-len", "16", "--out", outDir, "--json"]);
        Assert.True(r.Exit == 0, r.Err);
        using var doc = JsonDocument.Parse(r.Out.Trim());
        Assert.Equal("GPTVQ 2-bit D2 g512 c32 5 iters", doc.RootElement.GetProperty("label").GetString());
        // 2 index bits, 16 int8 centroids × 2 per 512 weights (0.5 bit), a float32 scale per codebook, the grid tensor.
        double bpw = doc.RootElement.GetProperty("bits_per_weight").GetDouble();
        Assert.InRange(bpw, 2.5, 2.7);
        var inspect = CliRunner.Run("inspect", "--model", outDir, "--json");
        Assert.True(inspect.Exit == 0, inspect.Err);
        using var inspectDoc = JsonDocument.Parse(inspect.Out.Trim());
        Assert.Equal(bpw, inspectDoc.RootElement.GetProperty("bits_per_weight").GetDouble(), 3);
        var ppl = CliRunner.Run("ppl", "--model", outDir, "--text-file", text, "--seq-len", "16", "--json");
        Assert.True(ppl.Exit == 0, ppl.Err);
        // GPTQ's options are not GPTVQ's, and bits × D must fit a byte.
        Assert.Contains("--act-order", CliRunner.Run(["compress", "--model", model, "--method", "gptvq", "--bits", "2", "--act-order", "--text-file", text, "--out", outDir + "2"]).Err);
        Assert.Contains("b·D must be ≤ 8", CliRunner.Run(["compress", "--model", model, "--method", "gptvq", "--bits", "3", "--vq-dim", "4", "--text-file", text, "--out", outDir + "2"]).Err);
        Assert.False(Directory.Exists(outDir + "2"));
    }

    [Fact]
    public void An_svd_method_with_quantize_writes_quantized_factors_and_no_scratch()
    {
        using var dir = new TempDirectory();
        var (model, text) = ModelWithTokenizer(dir);
        string svd = Path.Combine(dir.Path, "svd"), both = Path.Combine(dir.Path, "svd-gptq");
        string[] calib = ["--text-file", text, "--samples", "4", "--seq-len", "16"];
        Assert.Equal(0, CliRunner.Run(["compress", "--model", model, "--method", "svdllm", "--ratio", "0.4", "--out", svd, .. calib]).Exit);
        var r = CliRunner.Run(["compress", "--model", model, "--method", "svdllm", "--ratio", "0.4", "--quantize", "gptq", "--bits", "4", "--group-size", "32", "--out", both, .. calib]);
        Assert.True(r.Exit == 0, r.Err);
        Assert.Equal("model,svd,svd-gptq", string.Join(",", Directory.GetDirectories(dir.Path).Select(Path.GetFileName).Order()));
        long Bytes(string d)
        {
            var i = CliRunner.Run("inspect", "--model", d, "--json");
            Assert.True(i.Exit == 0, i.Err);
            return JsonDocument.Parse(i.Out.Trim()).RootElement.GetProperty("linear_weight_bytes").GetInt64();
        }
        // 4-bit codes with group-32 float16 scales instead of float32 factors (padded to ranks of 32): well under a third.
        Assert.True(Bytes(both) * 3 < Bytes(svd), $"{Bytes(both)} vs {Bytes(svd)}");
        var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(both, "compression-report.json"))).RootElement;
        // The SVD report (ranks and losses of 14 linears), with the quantization of their factors inside it.
        Assert.Equal("svdllm", report.GetProperty("method").GetString());
        Assert.Equal(2 * 7, report.GetProperty("matrices").GetArrayLength());
        Assert.Equal(2 * 7 * 2, report.GetProperty("quantization").GetProperty("matrices").GetArrayLength());   // U and V of 7 linears in 2 layers
        Assert.Equal(Bytes(both), report.GetProperty("linear_bytes_after").GetInt64());
        var ppl = CliRunner.Run("ppl", "--model", both, "--text-file", text, "--seq-len", "16", "--json");
        Assert.True(ppl.Exit == 0, ppl.Err);
    }

    [Fact]
    public void Options_of_the_other_kind_of_method_are_refused_with_one_line()
    {
        using var dir = new TempDirectory();
        var (model, text) = ModelWithTokenizer(dir);
        string outDir = Path.Combine(dir.Path, "out");
        void Refused(string mention, params string[] args)
        {
            var r = CliRunner.Run(["compress", "--model", model, "--out", outDir, .. args]);
            Assert.True(r.Exit == 1, $"exit {r.Exit}: {r.Err}");
            var last = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries)[^1];
            Assert.StartsWith("error: ", last);
            Assert.Contains(mention, last, StringComparison.Ordinal);
            Assert.False(Directory.Exists(outDir));
        }
        Refused("--bits", "--method", "gptq", "--text-file", text);
        Refused("--ratio", "--method", "rtn", "--bits", "4", "--ratio", "0.2");
        Refused("--bits", "--method", "svdllm", "--ratio", "0.2", "--text-file", text, "--bits", "4");
        Refused("--text-file", "--method", "gptq", "--bits", "4");
        Refused("--ratio", "--method", "svdllm", "--text-file", text);
        Refused("2, 3, 4 or 8", "--method", "rtn", "--bits", "5");
        Refused("--quantize", "--method", "gptq", "--bits", "4", "--quantize", "rtn", "--text-file", text);
        // 40000-token windows need ≈ 51 GB of attention scratch: refused by the preflight before anything is read or written.
        Refused("of memory", "--method", "gptq", "--bits", "4", "--text-file", text, "--samples", "2", "--seq-len", "40000");
        Refused("rtn or gptq", "--method", "svdllm", "--ratio", "0.2", "--text-file", text, "--quantize", "awq", "--bits", "4");
    }
}
