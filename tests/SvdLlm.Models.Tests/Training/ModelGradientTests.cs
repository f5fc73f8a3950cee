using SvdLlm.Models.Architectures;
using SvdLlm.Models.Checkpoints;
using SvdLlm.Models.Tests.Reference;
using SvdLlm.Models.Training;

namespace SvdLlm.Models.Tests.Training;

/// <summary>
/// The whole-model backward pass (float32) against central finite differences of the loss computed
/// by the independent float64 reference (Reference/NaiveTransformer). In float64 with h = 1e-4 the
/// finite difference is accurate to ~1e-8 (truncation h²·f‴), so the comparison measures our
/// float32 gradient, whose accumulated rounding is ~1e-5 relative: tolerance 2e-3·|g| + 2e-5.
/// </summary>
public class ModelGradientTests
{
    private static LlamaConfig Config(TinyCheckpoint ckpt)
    {
        var json = ConfigJson.Load(Path.Combine(ckpt.Directory, "config.json"));
        return LlamaConfig.Parse(json, ModelLoader.ResolveArchitecture(json));
    }

    private static double ReferenceLoss(TinyCheckpoint ckpt, int[][] windows)
    {
        double sum = 0;
        int count = 0;
        foreach (var w in windows)
            foreach (double v in NaiveTransformer.TokenNll(ckpt.Config, ckpt.Weights, w)) { sum += v; count++; }
        return sum / count;
    }

    [Theory]
    [InlineData(TinyArch.Llama3)] // GQA, llama3 rope scaling, tied embeddings
    [InlineData(TinyArch.Llama2)] // MHA, untied lm_head
    [InlineData(TinyArch.Qwen2)]  // q/k/v biases
    public void Every_parameter_gradient_matches_finite_differences_of_the_reference(TinyArch arch)
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), arch, seed: 31);
        var config = Config(ckpt);
        using var model = new LlamaTrainingModel(config);
        using (var reader = CheckpointReader.Open(ckpt.Directory)) model.LoadFrom(reader);

        int batch = 2, seqLen = 6;
        var rng = new Random(5);
        var windows = Enumerable.Range(0, batch).Select(_ => Enumerable.Range(0, seqLen + 1).Select(_ => rng.Next(config.VocabSize)).ToArray()).ToArray();
        var inputs = windows.SelectMany(w => w[..seqLen]).ToArray();
        var targets = windows.SelectMany(w => w[1..]).ToArray();

        double loss = model.Forward(inputs, targets, batch, seqLen);
        Assert.Equal(ReferenceLoss(ckpt, windows), loss, 1e-5);
        model.ZeroGrad();
        model.Forward(inputs, targets, batch, seqLen);
        model.Backward();

        const double h = 1e-4;
        int checkedCount = 0;
        foreach (var entry in model.Parameters.Entries)
        {
            var weights = ckpt.Weights[entry.Name];
            var grad = ParameterArena.View(model.Gradients, entry);
            // A few random coordinates per tensor, plus the largest-gradient one (the most informative).
            var indices = Enumerable.Range(0, 3).Select(_ => rng.Next(entry.Length)).Append(IndexOfMaxAbs(grad)).Distinct();
            foreach (int i in indices)
            {
                double original = weights[i];
                weights[i] = original + h;
                double plus = ReferenceLoss(ckpt, windows);
                weights[i] = original - h;
                double minus = ReferenceLoss(ckpt, windows);
                weights[i] = original;
                double fd = (plus - minus) / (2 * h);
                double g = grad[i];
                Assert.True(Math.Abs(g - fd) <= 2e-3 * Math.Abs(fd) + 2e-5, $"{arch} {entry.Name}[{i}]: backward {g:E4}, finite difference {fd:E4}");
                checkedCount++;
            }
        }
        Assert.True(checkedCount >= 4 * config.NumHiddenLayers * 7);
    }

    [Fact]
    public void Gradients_accumulate_across_micro_batches()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Llama3, seed: 2);
        using var model = new LlamaTrainingModel(Config(ckpt));
        using (var reader = CheckpointReader.Open(ckpt.Directory)) model.LoadFrom(reader);
        int[] a = [1, 5, 9, 13, 2], ta = [5, 9, 13, 2, 7];
        int[] b = [3, 3, 8, 40, 41], tb = [3, 8, 40, 41, 42];

        model.ZeroGrad();
        model.Forward(a, ta, 1, 5);
        model.Backward();
        var ga = model.Gradients.Span.ToArray();
        model.ZeroGrad();
        model.Forward(b, tb, 1, 5);
        model.Backward();
        var gb = model.Gradients.Span.ToArray();

        // Two half-scaled micro-batches accumulated = the gradient of the mean over both.
        model.ZeroGrad();
        model.Forward(a, ta, 1, 5, gradScale: 0.5f);
        model.Backward();
        model.Forward(b, tb, 1, 5, gradScale: 0.5f);
        model.Backward();
        var acc = model.Gradients.Span;
        for (int i = 0; i < acc.Length; i++)
            Assert.True(Math.Abs(acc[i] - 0.5 * (ga[i] + gb[i])) <= 1e-6 + 1e-4 * Math.Abs(acc[i]), $"index {i}");
    }

    [Fact]
    public void Training_forward_equals_the_inference_forward()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Llama3, seed: 4);
        using var train = new LlamaTrainingModel(Config(ckpt));
        using (var reader = CheckpointReader.Open(ckpt.Directory)) train.LoadFrom(reader);
        using var infer = ModelLoader.Load(ckpt.Directory);
        int[] tokens = [4, 8, 15, 16, 23, 42, 7];
        double loss = train.Forward(tokens[..6], tokens[1..], 1, 6);
        double expected = infer.TokenNll(tokens, 1, 7).Average();
        Assert.Equal(expected, loss, 1e-6);
    }

    [Fact]
    public void Backward_without_forward_is_an_error()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Llama2, seed: 4);
        using var model = new LlamaTrainingModel(Config(ckpt));
        Assert.Throws<InvalidOperationException>(() => model.Backward());
    }

    private static int IndexOfMaxAbs(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (Math.Abs(x[i]) > Math.Abs(x[best])) best = i;
        return best;
    }
}
