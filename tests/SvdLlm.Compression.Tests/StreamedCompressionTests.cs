using System.Text.Json.Nodes;
using SvdLlm.Compression;
using SvdLlm.Compression.Calibration;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Checkpoints;
using SvdLlm.Models.Tests;
using SvdLlm.Models.Tests.Reference;

namespace SvdLlm.Compression.Tests;

/// <summary>The layer-streamed path (sharded output, V2's workspace) against the in-memory path, and the preflight.</summary>
public class StreamedCompressionTests
{
    private const int SeqLen = 16, Samples = 12;

    private static int[] Windows(int vocab) => RandomWindows.Sample(vocab, Samples, SeqLen, 4);

    public static TheoryData<string> Methods => new(CompressionMethod.LowRank.Select(m => m.Name));

    [Theory, MemberData(nameof(Methods))]
    public void Streamed_output_equals_the_in_memory_compression(string method)
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Llama3, seed: 9);
        var windows = Windows(99);
        var m = CompressionMethod.Get(method);

        using var a = ModelLoader.Load(ckpt.Directory);
        using var stats = Calibrator.Collect(a, windows, SeqLen);
        if (m.NeedsFisher) FisherCollector.Collect(a, windows, SeqLen, stats);
        var inMemory = Compressor.Compress(a, stats, method, 0.4, windows: new CalibrationWindows(windows, SeqLen));
        using var logitsA = a.Logits(windows[..SeqLen], 1, SeqLen);

        using var b = ModelLoader.Load(ckpt.Directory);
        string outDir = dir.Sub("out");
        Directory.Delete(outDir);
        string workspace = dir.Sub("ws");
        var streamed = Compressor.CompressToDirectory(b, stats, method, 0.4, outDir, workspaceDir: workspace, windows: new CalibrationWindows(windows, SeqLen));
        Assert.Empty(Directory.EnumerateFileSystemEntries(workspace));   // scratch removed
        Assert.False(Directory.Exists(outDir + ".partial"));

        Assert.Equal(inMemory.Matrices.Select(x => x.Rank), streamed.Matrices.Select(x => x.Rank));
        for (int i = 0; i < inMemory.Matrices.Count; i++)
            Assert.Equal(inMemory.Matrices[i].TheoreticalLoss, streamed.Matrices[i].TheoreticalLoss, 1e-12 * Math.Max(1, inMemory.Matrices[i].TheoreticalLoss));
        Assert.All(streamed.Matrices, x => Assert.False(string.IsNullOrEmpty(x.Route)));

        // One shard per decoder layer plus one, listed in the index; the reloaded model computes the same logits.
        var index = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, CheckpointReader.IndexFileName)))!;
        var shards = index["weight_map"]!.AsObject().Select(kv => (string)kv.Value!).Distinct().ToList();
        using var reloaded = ModelLoader.Load(outDir);
        Assert.Equal(reloaded.NumLayers + 1, shards.Count);
        Assert.All(shards, s => Assert.True(File.Exists(Path.Combine(outDir, s))));
        using var logitsB = reloaded.Logits(windows[..SeqLen], 1, SeqLen);
        for (int i = 0; i < logitsA.Length; i++) Assert.Equal(logitsA.Span[i], logitsB.Span[i], 1e-4f);
        var report = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "compression-report.json")))!;
        Assert.NotNull(report["stage_seconds"]!["write"]);
    }

    [Fact]
    public void Preflight_refuses_what_does_not_fit_unless_forced_and_names_the_shortfall()
    {
        using var dir = new TempDirectory();
        var huge = new ResourceEstimate(1L << 50, 1L << 40, 1L << 50, 0, 0);
        var lines = new List<string>();
        var e = Assert.Throws<InsufficientResourcesException>(() => Preflight.Check(huge, dir.Path, dir.Path, null, force: false, lines.Add));
        Assert.Contains("memory", e.Message);
        Assert.Contains("disk", e.Message);
        Assert.Contains("--force", e.Message);
        Preflight.Check(huge, dir.Path, dir.Path, null, force: true, lines.Add);
        Assert.Contains(lines, l => l.Contains("--force"));
        Preflight.Check(new ResourceEstimate(1, 1, 1, 1, 1), dir.Path, dir.Path, null, force: false, lines.Add);
    }

    [Fact]
    public void Preflight_estimate_scales_with_the_shapes_and_the_workspace_only_for_two_pass_v2()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Llama3, seed: 2);
        using var model = ModelLoader.Load(ckpt.Directory);
        var v2 = Preflight.Estimate(model, CompressionMethod.Get("svdllm-v2"), 0.2, 8, 64, statisticsCached: false);
        var svd = Preflight.Estimate(model, CompressionMethod.Get("svd"), 0.2, 8, 64, statisticsCached: true);
        Assert.True(v2.WorkspaceDiskBytes > 0);
        Assert.Equal(0, svd.WorkspaceDiskBytes);
        Assert.Equal(0, svd.StatisticsDiskBytes);
        Assert.Equal(0, svd.CalibrationMemoryBytes);
        // Statistics: the packed lower triangle of each distinct input's Gram plus Σ|x|, independent of the depth's order.
        long expected = model.Linears.GroupBy(l => l.InputKey).Sum(g => (long)g.First().InFeatures * (g.First().InFeatures + 1) / 2 * 8 + g.First().InFeatures * 8L);
        Assert.Equal(expected, v2.StatisticsDiskBytes);
        var longer = Preflight.Estimate(model, CompressionMethod.Get("svdllm-v2"), 0.2, 64, 64, statisticsCached: false);
        Assert.True(longer.CalibrationMemoryBytes > v2.CalibrationMemoryBytes);
    }
}
