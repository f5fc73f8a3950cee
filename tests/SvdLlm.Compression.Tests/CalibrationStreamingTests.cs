using SvdLlm.Compression.Calibration;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Tests;
using SvdLlm.Models.Tests.Reference;
using SvdLlm.Models.Training;

namespace SvdLlm.Compression.Tests;

/// <summary>Layer-streamed calibration into the statistics file, spilled hidden states, Fisher row sums and the Fisher memory check.</summary>
public class CalibrationStreamingTests
{
    private const int SeqLen = 16, Samples = 12;

    private static int[] Windows(int vocab, int seed = 1) => RandomWindows.Sample(vocab, Samples, SeqLen, seed);

    private static void AssertBitIdentical(CalibrationStatistics expected, IStatisticsSource actual)
    {
        Assert.Equal(expected.Inputs.Keys.OrderBy(k => k, StringComparer.Ordinal), actual.InputKeys.OrderBy(k => k, StringComparer.Ordinal));
        foreach (var (key, e) in expected.Inputs)
        {
            var a = actual.Input(key);
            Assert.Equal(e.Tokens, a.Tokens);
            Assert.True(e.Gram.Span.SequenceEqual(a.Gram.Span), $"{key}: Gram differs");
            Assert.True(e.AbsSum.AsSpan().SequenceEqual(a.AbsSum), $"{key}: Σ|x| differs");
            actual.Release(key);
        }
    }

    [Theory]
    [InlineData(TinyArch.Llama3, 5)]
    [InlineData(TinyArch.Llama2, 4)]
    [InlineData(TinyArch.Opt, 12)]
    public void CollectToFile_writes_exactly_what_Collect_computes_and_spilling_the_hidden_states_changes_nothing(TinyArch arch, int batchSize)
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), arch, seed: 3);
        using var model = ModelLoader.Load(ckpt.Directory);
        var windows = Windows(model.VocabSize);
        using var inMemory = Calibrator.Collect(model, windows, SeqLen, batchSize);
        // Independent of the layer loop's bookkeeping: every linear's input key is there, 7 (or 6) linears per layer share 4 inputs.
        Assert.Equal(model.Linears.Select(l => l.InputKey).Distinct().Count(), inMemory.Inputs.Count);
        Assert.All(inMemory.Inputs.Values, s => Assert.Equal(Samples * SeqLen, s.Tokens));

        string path = dir.File("stats.svdstats");
        var layers = new List<int>();
        Calibrator.CollectToFile(model, windows, SeqLen, path, new Dictionary<string, string> { ["k"] = "v" }, batchSize, (l, n) => layers.Add(l));
        Assert.Equal(Enumerable.Range(1, model.NumLayers), layers);
        using (var file = CalibrationStatisticsFile.Open(path))
        {
            AssertBitIdentical(inMemory, file);
            Assert.Equal("v", file.Metadata["k"]);
            Assert.False(file.HasFisher);
        }

        // Hidden states forced to a temporary file (threshold 0): the same numbers, and the file is gone afterwards.
        using var spilled = Calibrator.Collect(model, windows, SeqLen, batchSize, null, hiddenInMemoryLimit: 0);
        AssertBitIdentical(inMemory, spilled);
        string spilledPath = dir.File("spilled.svdstats");
        Calibrator.CollectToFile(model, windows, SeqLen, spilledPath, new Dictionary<string, string> { ["k"] = "v" }, batchSize, null, fisher: null, hiddenInMemoryLimit: 0);
        Assert.Equal(File.ReadAllBytes(path), File.ReadAllBytes(spilledPath));
        using (var file = CalibrationStatisticsFile.Open(spilledPath)) AssertBitIdentical(inMemory, file);
        Assert.Equal(["spilled.svdstats", "stats.svdstats"], Directory.GetFiles(dir.Path).Select(Path.GetFileName).Order());
    }

    [Fact]
    public void A_failure_during_streamed_calibration_leaves_no_statistics_file_and_no_spill_file()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Llama2, seed: 1);
        using var model = ModelLoader.Load(ckpt.Directory);
        string path = dir.File("s.svdstats");
        Assert.Throws<OperationCanceledException>(() => Calibrator.CollectToFile(model, Windows(model.VocabSize), SeqLen, path, new Dictionary<string, string>(), 4,
            (l, _) => { if (l == 1) throw new OperationCanceledException("killed after layer 1"); }, null, hiddenInMemoryLimit: 0));
        Assert.Empty(Directory.GetFiles(dir.Path));
        Assert.Null(model.Observer);
    }

    [Fact]
    public void Fisher_row_sums_equal_the_row_sums_of_each_windows_squared_weight_gradient()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Llama3, seed: 2);
        using var model = ModelLoader.Load(ckpt.Directory);
        var windows = Windows(model.VocabSize);
        var rows = new Dictionary<string, double[]>();
        FisherCollector.Collect(model, windows, SeqLen, rows);

        // Independent: the training model's full gradient of each window, squared and summed over each row by hand.
        var llama = (LlamaForCausalLM)model;
        using var train = new LlamaTrainingModel(llama.Config);
        train.LoadFrom(model.Reader);
        var expected = model.Linears.ToDictionary(l => l.Name, l => new double[l.OutFeatures]);
        for (int s = 0; s < Samples; s++)
        {
            var w = windows.AsSpan(s * SeqLen, SeqLen);
            train.ZeroGrad();
            train.Forward(w[..^1], w[1..], 1, SeqLen - 1);
            train.Backward();
            foreach (var l in model.Linears)
            {
                var g = ParameterArena.View(train.Gradients, train.Parameters[l.Name + ".weight"]);
                for (int i = 0; i < l.OutFeatures; i++)
                    for (int j = 0; j < l.InFeatures; j++)
                        expected[l.Name][i] += (double)g[i * l.InFeatures + j] * g[i * l.InFeatures + j];
            }
        }
        Assert.Equal(expected.Keys.Order(), rows.Keys.Order());
        foreach (var (name, e) in expected)
            for (int i = 0; i < e.Length; i++)
                Assert.True(Math.Abs(rows[name][i] - e[i]) <= 1e-5 * e[i] + 1e-30, $"{name}[{i}]: {rows[name][i]} vs {e[i]}");

        // Through the cache: written into the file with the layer entries.
        string text = dir.File("calib.txt");
        File.WriteAllText(text, "text");
        var request = new CalibrationRequest(ckpt.Directory, text, Samples, SeqLen, 1, Fisher: true);
        var (file, _, path, hit) = CalibrationCache.GetOrCollect(model, new CalibrationWindows(windows, SeqLen), request, cacheDirectory: dir.Sub("cache"));
        using (file)
        {
            Assert.False(hit);
            Assert.True(file.HasFisher);
            foreach (var (name, r) in rows) Assert.Equal(r, file.FisherRowSums(name));
            Assert.Equal(0, file.LoadedCount);
            Assert.Equal("True", file.Metadata["fisher"]);
        }
        Assert.EndsWith(".svdstats", path);
    }

    [Fact]
    public void Fisher_memory_estimate_counts_parameters_gradients_and_activations_and_refuses_unless_forced()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Llama2, seed: 1);
        using var model = (LlamaForCausalLM)ModelLoader.Load(ckpt.Directory);
        using var train = new LlamaTrainingModel(model.Config);
        long estimate = FisherCollector.EstimateBytes(model.Config, SeqLen);
        Assert.True(estimate > 8 * train.ParameterCount, $"{estimate} ≤ 8·{train.ParameterCount}");
        Assert.True(FisherCollector.EstimateBytes(model.Config, 2 * SeqLen) > estimate);

        // LLaMA-2-7B: 6.74 B parameters → 53.9 GB for parameters and gradients alone; at 2048 tokens the activations add
        // 32 layers × (2047·(8·4096 + 3·11008) + 32·2047²) floats ≈ 34.4 GB, plus dlogits, backward temporaries (≈ 1 GB).
        var l7 = model.Config with
        {
            VocabSize = 32000, HiddenSize = 4096, IntermediateSize = 11008, NumHiddenLayers = 32, NumAttentionHeads = 32, NumKeyValueHeads = 32,
            HeadDim = 128, TieWordEmbeddings = false, QkvBias = false, OutputBias = false, MlpBias = false,
        };
        double gb = FisherCollector.EstimateBytes(l7, 2048) / 1e9;
        Assert.InRange(gb, 53.9 + 34.4, 53.9 + 34.4 + 2);
        var e = Assert.Throws<InsufficientResourcesException>(() => FisherCollector.CheckMemory(l7, 2048, force: false, available: 24L << 30));
        Assert.Contains($"{gb:F1} GB", e.Message);
        Assert.Contains("25.8 GB is available", e.Message);
        FisherCollector.CheckMemory(l7, 2048, force: true, available: 24L << 30);
        FisherCollector.CheckMemory(model.Config, SeqLen, force: false, available: estimate);
    }

    [Theory]
    [InlineData(67108865, 64)]        // wrapped to 64 tokens in int arithmetic
    [InlineData(1000000000, 512)]
    public void TooManyCalibrationTokensAreRefusedNotWrapped(int samples, int seqLen)
    {
        int[] stream = Enumerable.Range(0, 4096).ToArray();
        var e = Assert.Throws<ArgumentException>(() => Calibrator.SampleWindows(stream, samples, seqLen, 1));
        Assert.Contains($"= {(long)samples * seqLen} calibration tokens", e.Message, StringComparison.Ordinal);
    }
}
