using System.Text.Json.Nodes;
using SvdLlm.Compression.Calibration;
using SvdLlm.Compression.Quantization;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Tests;
using SvdLlm.Models.Tests.Reference;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Tests;

/// <summary>
/// A quantized checkpoint written in the GPTQ layout and loaded back: every linear dequantizes to exactly the weights the
/// quantizer produced (float16 scales times small integers are exact in float32), config.json carries
/// quantization_config, and the report's bytes are the tensors' sizes on disk.
/// </summary>
public class QuantizedCheckpointTests
{
    private const int SeqLen = 16, Samples = 6;

    private static CalibrationWindows Windows() => new(RandomWindows.Sample(99, Samples, SeqLen, 4), SeqLen);

    [Theory]
    [InlineData("gptq", 4, 32, true)]
    [InlineData("gptq", 3, -1, false)]
    [InlineData("rtn", 8, 32, false)]
    [InlineData("rtn", 2, -1, false)]
    public void TheWrittenDirectoryLoadsAsTheWeightsTheQuantizerMade(string method, int bits, int groupSize, bool actOrder)
    {
        using var dir = new TempDirectory();
        var config = TinyConfig.Preset(TinyArch.Llama3) with { AttentionBias = true };
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), config, seed: 9);
        var options = new GptqOptions { Bits = bits, GroupSize = groupSize, ActOrder = actOrder };
        var windows = Windows();

        // What the quantizer makes, run here directly.
        var expected = new Dictionary<string, Tensor<float>>();
        using (var model = ModelLoader.Load(ckpt.Directory))
        {
            if (method == "gptq")
                SequentialGptq.Run(model, windows, MatrixQuantizer.Gptq(options), (_, done) => { foreach (var q in done) expected[q.Linear.Name] = q.Linear.Weight.Clone(); });
            else
                foreach (var l in model.Linears)
                {
                    using var w = Compressor.Weight(model, l);
                    using var q = Gptq.RoundToNearest(w, bits, groupSize, symmetric: false).Dequantize();
                    expected[l.Name] = DenseMath.ToFloat(q);
                }
        }

        string outDir = Path.Combine(dir.Path, "out");
        JsonObject report;
        using (var model = ModelLoader.Load(ckpt.Directory))
            report = QuantizedCheckpoint.Write(model, method == "gptq" ? MatrixQuantizer.Gptq(options) : MatrixQuantizer.Rtn(options), method == "gptq" ? windows : null, outDir);
        Assert.False(Directory.Exists(outDir + ".partial"));

        using var reloaded = ModelLoader.Load(outDir);
        foreach (var l in reloaded.Linears)
        {
            Assert.Equal(bits, l.QuantizedBits);
            Assert.Null(l.Rank);
            reloaded.Load(l);
            Assert.Equal(expected[l.Name].Span.ToArray(), l.Weight.Span.ToArray());
            Assert.Equal(l.Name.Contains("self_attn"), l.Bias is not null);
        }
        var qc = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "config.json")))!["quantization_config"]!;
        Assert.Equal("gptq", (string)qc["quant_method"]!);
        Assert.Equal(bits, (int)qc["bits"]!);
        Assert.Equal(groupSize, (int)qc["group_size"]!);
        Assert.Equal(actOrder, (bool)qc["desc_act"]!);

        // Bytes in the report = the layout tensors' sizes in the shards.
        long onDisk = reloaded.Linears.Sum(l => new[] { "qweight", "qzeros", "scales", "g_idx" }.Sum(s => reloaded.Reader.GetInfo($"{l.Name}.{s}").ByteLength));
        Assert.Equal(onDisk, (long)report["linear_bytes_after"]!);
        double expectedBits = 8.0 * onDisk / reloaded.Linears.Sum(l => (long)l.InFeatures * l.OutFeatures);
        Assert.Equal(expectedBits, (double)report["bits_per_weight"]!, 3);
        foreach (var t in expected.Values) t.Dispose();
    }

    /// <summary>
    /// GPTVQ written in the VQ layout loads back as exactly the weights the quantizer made (int8 codes times a float32
    /// scale, formed in float64 by both), with its packed indices at b·D bits each and the bytes the report counts.
    /// </summary>
    [Theory]
    [InlineData(2, 2, 8)]
    [InlineData(3, 1, 0)]
    public void GptvqWrittenInTheVqLayoutLoadsAsTheWeightsTheQuantizerMade(int bits, int vqDim, int codebookBits)
    {
        using var dir = new TempDirectory();
        var config = TinyConfig.Preset(TinyArch.Llama3) with { AttentionBias = true };
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), config, seed: 9);
        // Codebooks over 32 columns × 8 rows: several per matrix, partial ones at the ends of the 96-wide linears.
        var options = new GptvqOptions { Bits = bits, VqDim = vqDim, ColumnsPerGroup = 32, GroupSize = 256, KMeansIterations = 8, CodebookBits = codebookBits };
        var windows = Windows();
        var expected = new Dictionary<string, Tensor<float>>();
        using (var model = ModelLoader.Load(ckpt.Directory))
            SequentialGptq.Run(model, windows, new GptvqQuantizer(options), (_, done) => { foreach (var q in done) expected[q.Linear.Name] = q.Linear.Weight.Clone(); });

        string outDir = Path.Combine(dir.Path, "out");
        JsonObject report;
        using (var model = ModelLoader.Load(ckpt.Directory))
            report = QuantizedCheckpoint.Write(model, new GptvqQuantizer(options), windows, outDir);
        using var reloaded = ModelLoader.Load(outDir);
        long onDisk = 0;
        foreach (var l in reloaded.Linears)
        {
            Assert.True(l.VectorQuantized);
            Assert.Equal(bits, l.QuantizedBits);
            reloaded.Load(l);
            Assert.Equal(expected[l.Name].Span.ToArray(), l.Weight.Span.ToArray());
            Assert.Equal(l.Name.Contains("self_attn"), l.Bias is not null);
            // Packed indices: ⌈(in / D) · b·D / 8⌉ bytes per row.
            Assert.Equal(l.OutFeatures * (((long)l.InFeatures * bits + 7) / 8), reloaded.Reader.GetInfo(l.Name + ".vq_indices").ByteLength);
            onDisk += l.StoredWeightBytes(reloaded.Reader);
        }
        Assert.Equal(onDisk, (long)report["linear_bytes_after"]!);
        Assert.Equal(onDisk, reloaded.Linears.Sum(l => new GptvqQuantizer(options).StoredBytes(l.OutFeatures, l.InFeatures)));
        var qc = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "config.json")))!["quantization_config"]!;
        Assert.Equal("svdllm_vq", (string)qc["quant_method"]!);
        Assert.Equal(vqDim, (int)qc["vq_dim"]!);
        foreach (var t in expected.Values) t.Dispose();
    }

    [Fact]
    public void LowRankFactorsAreQuantizedVThenUOnVsQuantizedOutput()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyConfig.Preset(TinyArch.Llama3) with { AttentionBias = true }, seed: 9);
        var windows = Windows();
        string lowRank = Path.Combine(dir.Path, "svd");
        using (var model = ModelLoader.Load(ckpt.Directory))
        using (var stats = Calibrator.Collect(model, windows.Tokens, SeqLen))
            Compressor.CompressToDirectory(model, stats, "svdllm", 0.4, lowRank);

        var options = new GptqOptions { Bits = 4, GroupSize = 32 };
        string outDir = Path.Combine(dir.Path, "q");
        JsonObject report;
        using (var model = ModelLoader.Load(lowRank))
            report = QuantizedCheckpoint.Write(model, MatrixQuantizer.Gptq(options), windows, outDir);

        using var svd = ModelLoader.Load(lowRank);
        using var quantized = ModelLoader.Load(outDir);
        // The H of each V is the Gram of its input in the finished model (as for whole matrices); U's is V' C V'ᵀ.
        using var c = Calibrator.Collect(quantized, windows.Tokens, SeqLen);
        var byName = ((JsonArray)report["matrices"]!).ToDictionary(m => (string)m!["name"]!, m => m!);
        foreach (var l in quantized.Linears)
        {
            var s = svd.GetLinear(l.Name);
            Assert.Equal(4, l.QuantizedBits);
            Assert.Equal(0, l.Rank!.Value % 32);
            Assert.True(l.Rank >= s.Rank);
            quantized.Load(l);
            svd.Load(s);
            int k = s.Rank!.Value, kp = l.Rank.Value, n = l.InFeatures, m = l.OutFeatures;
            // The padding is zero and stays zero.
            for (int i = k; i < kp; i++) Assert.All(l.V.Row(i).ToArray(), x => Assert.Equal(0f, x));
            for (int i = 0; i < m; i++) Assert.All(l.U.Row(i)[k..].ToArray(), x => Assert.Equal(0f, x));
            var cx = c.Input(l.InputKey).Gram;
            // U's loss as reported equals ½ tr(E (V' C V'ᵀ + λI) Eᵀ), E = U − U', computed here.
            var hu = new double[kp, kp];
            for (int a = 0; a < kp; a++)
                for (int b = 0; b < kp; b++)
                {
                    double sum = 0;
                    for (int i = 0; i < n; i++)
                    {
                        double va = l.V[a, i];
                        if (va == 0) continue;
                        for (int j = 0; j < n; j++) sum += va * cx[i, j] * l.V[b, j];
                    }
                    hu[a, b] = sum;
                }
            var uReport = byName[Linear.UName(l.Name)];
            double lambda = (double)uReport["damping"]!, loss = 0;
            for (int r = 0; r < m; r++)
            {
                var e = new double[kp];
                for (int j = 0; j < kp; j++) e[j] = (j < k ? s.U[r, j] : 0) - l.U[r, j];
                for (int a = 0; a < kp; a++)
                    for (int b = 0; b < kp; b++) loss += e[a] * (hu[a, b] + (a == b ? lambda : 0)) * e[b];
            }
            loss /= 2;
            double reported = (double)uReport["loss"]!;
            Assert.True(Math.Abs(loss - reported) <= 1e-6 * Math.Max(reported, 1e-12), $"{l.Name}: U loss {reported} vs {loss} recomputed");
        }
    }

    [Fact]
    public void AShapeTheLayoutCannotPackIsRefusedBeforeAnythingIsWritten()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Llama2, seed: 9);   // intermediate 80: not a multiple of 32
        using var model = ModelLoader.Load(ckpt.Directory);
        string outDir = Path.Combine(dir.Path, "out");
        var e = Assert.Throws<ArgumentException>(() => QuantizedCheckpoint.Write(model, MatrixQuantizer.Rtn(new GptqOptions { Bits = 4 }), null, outDir));
        Assert.Contains("multiple of 32", e.Message);
        Assert.False(Directory.Exists(outDir));
        Assert.False(Directory.Exists(outDir + ".partial"));
    }
}
