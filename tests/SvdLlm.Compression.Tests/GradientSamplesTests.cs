using SvdLlm.Compression.Calibration;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Tests;
using SvdLlm.Models.Tests.Reference;
using SvdLlm.Models.Training;

namespace SvdLlm.Compression.Tests;

/// <summary>GFWSVD's gradient samples against central finite differences of the mini-batch's mean loss, on a tiny LLaMA.</summary>
public class GradientSamplesTests
{
    private const int SeqLen = 12, Windows = 6, Batch = 2;

    [Fact]
    public void EachSampleIsTheMiniBatchMeanGradientOfTheWindowLosses()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Llama3, seed: 4);
        using var model = ModelLoader.Load(ckpt.Directory);
        var windows = RandomWindows.Sample(model.VocabSize, Windows, SeqLen, 5);
        string[] names = ["model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj"];
        var samples = GradientSamples.Collect(model, windows, SeqLen, Batch, n => names.Contains(n));
        Assert.Equal(names.Order(), samples.Keys.Order());
        Assert.All(samples.Values, list => Assert.Equal(Windows / Batch, list.Count));

        // Independent: the training model's loss of each window in float64 accumulation, perturbed one weight at a time.
        using var train = new LlamaTrainingModel(((LlamaForCausalLM)model).Config);
        train.LoadFrom(model.Reader);
        double BatchLoss(int k)
        {
            double sum = 0;
            for (int s = k * Batch; s < (k + 1) * Batch; s++)
            {
                var w = windows.AsSpan(s * SeqLen, SeqLen);
                sum += train.Forward(w[..^1], w[1..], 1, SeqLen - 1);
            }
            return sum / Batch;
        }
        foreach (string name in names)
        {
            var weight = ParameterArena.View(train.Parameters.Data, train.Parameters[name + ".weight"]);
            for (int k = 0; k < Windows / Batch; k++)
            {
                var g = samples[name][k];
                // The three largest entries of this sample: finite differences resolve them well above float32's noise.
                foreach (int at in Enumerable.Range(0, (int)g.Length).OrderByDescending(i => Math.Abs(g.Span[i])).Take(3))
                {
                    float original = weight[at];
                    const float h = 2e-3f;
                    weight[at] = original + h;
                    double up = BatchLoss(k);
                    weight[at] = original - h;
                    double down = BatchLoss(k);
                    weight[at] = original;
                    double fd = (up - down) / (2 * h);
                    Assert.True(Math.Abs(fd - g.Span[at]) <= 0.02 * Math.Abs(g.Span[at]) + 1e-5, $"{name} sample {k} entry {at}: {g.Span[at]:G6} vs finite difference {fd:G6}");
                }
            }
        }
        // A batch that does not divide the windows is refused before any work.
        Assert.Throws<ArgumentException>(() => GradientSamples.Collect(model, windows, SeqLen, 4));
        foreach (var list in samples.Values) foreach (var g in list) g.Dispose();
    }
}
