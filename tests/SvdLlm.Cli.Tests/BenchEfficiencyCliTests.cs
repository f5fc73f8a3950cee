using System.Text.Json;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Checkpoints;
using SvdLlm.Models.Tests;
using SvdLlm.Models.Tests.Reference;

namespace SvdLlm.Cli.Tests;

/// <summary><c>svdllm bench-efficiency</c>: the JSON it prints, sizes checked against the checkpoints' shapes (no timings asserted).</summary>
public class BenchEfficiencyCliTests
{
    private static (int Exit, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    private static long Elements(int[] shape) => shape.Aggregate(1L, (p, d) => p * d);

    [Fact]
    public void Json_with_a_baseline_has_both_measurements_and_the_ratios()
    {
        using var dir = new TempDirectory();
        var dense = TinyCheckpoint.Create(dir.Sub("dense"), TinyArch.Qwen2, seed: 6);
        const int rank = 2;
        string lowRank = LowRankCopy.Write(dense, dir.Sub("low"), rank);
        var (exit, output, err) = Run("bench-efficiency", "--model", lowRank, "--baseline", dense.Directory,
            "--batch", "2", "--prompt-len", "5", "--gen-len", "3", "--repeats", "1", "--threads", "1", "--warmup-seconds", "0", "--json");
        Assert.True(exit == 0, err);
        using var doc = JsonDocument.Parse(output);
        var root = doc.RootElement;

        // Independently from the shapes: a decoder linear [m, n] becomes U [m, k] + V [k, n].
        static bool IsLinear(string name) => name.Contains(".layers.") && name.EndsWith("_proj.weight");
        long denseParams = dense.Shapes.Values.Sum(Elements);
        long lowParams = dense.Shapes.Sum(kv => IsLinear(kv.Key) ? rank * (long)(kv.Value[0] + kv.Value[1]) : Elements(kv.Value));
        Assert.Equal(lowParams, root.GetProperty("params").GetInt64());
        Assert.Equal(4 * lowParams, root.GetProperty("weight_bytes").GetInt64());
        Assert.Equal(denseParams, root.GetProperty("baseline").GetProperty("params").GetInt64());
        Assert.Equal((double)lowParams / denseParams, root.GetProperty("ratios").GetProperty("params").GetDouble(), 12);
        Assert.Equal(7 * dense.NumLayers, root.GetProperty("low_rank_linears").GetInt32());

        foreach (var m in new[] { root, root.GetProperty("baseline") })
        {
            Assert.Equal(2, m.GetProperty("batch").GetInt32());
            Assert.Equal(5, m.GetProperty("prompt_len").GetInt32());
            Assert.Equal(3, m.GetProperty("gen_len").GetInt32());
            Assert.Equal(1, m.GetProperty("repeats").GetInt32());
            Assert.Equal(1, m.GetProperty("threads").GetInt32());
            Assert.Equal("process", m.GetProperty("peak_rss_scope").GetString());
            foreach (string rate in new[] { "prefill_tokens_per_s", "decode_tokens_per_s" })
                Assert.True(m.GetProperty(rate).GetDouble() is > 0 and < double.PositiveInfinity, rate);
        }
        foreach (string ratio in new[] { "weight_bytes", "linear_params", "prefill_tokens_per_s", "decode_tokens_per_s" })
            Assert.True(root.GetProperty("ratios").GetProperty(ratio).GetDouble() > 0, ratio);
    }

    [Fact]
    public void Defaults_are_small_and_stated_in_the_output()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Llama3, seed: 2);
        var (exit, output, err) = Run("bench-efficiency", "--model", ckpt.Directory, "--repeats", "1", "--json");
        Assert.True(exit == 0, err);
        using var doc = JsonDocument.Parse(output);
        var root = doc.RootElement;
        Assert.Equal((1, 128, 32), (root.GetProperty("batch").GetInt32(), root.GetProperty("prompt_len").GetInt32(), root.GetProperty("gen_len").GetInt32()));
        Assert.False(root.TryGetProperty("ratios", out _));
        Assert.Contains("batch 1, prompt 128, gen 32", root.GetProperty("protocol").GetString());
    }

    [Fact]
    public void Bad_settings_and_missing_baseline_are_one_line_errors()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Opt, seed: 2);
        var (exit, _, err) = Run("bench-efficiency", "--model", ckpt.Directory, "--batch", "0", "--json");
        Assert.Equal(1, exit);
        Assert.StartsWith("error:", err);
        Assert.Contains("batch 0", err);
        (exit, _, err) = Run("bench-efficiency", "--model", ckpt.Directory, "--baseline", dir.File("nope"), "--json");
        Assert.Equal(1, exit);
        Assert.Contains("nope", err);
        // OPT's 64 learned positions cannot hold the default 128 + 32.
        (exit, _, err) = Run("bench-efficiency", "--model", ckpt.Directory, "--json");
        Assert.Equal(1, exit);
        Assert.Contains("160", err);
    }
}
