using SvdLlm.Compression;
using SvdLlm.Compression.Dobi;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Tests;
using SvdLlm.Models.Tests.Reference;
using SvdLlm.Models.Training;

namespace SvdLlm.Compression.Tests;

/// <summary>
/// Dobi-SVD wired into the training model: the gate is the identity when γ keeps everything, dL/dγ through the whole
/// model's backward matches central differences of the model's loss, the ranks meet the uniform parameter budget, and
/// the method's parameters read like every recipe's.
/// </summary>
public class DobiSvdTests
{
    private const int Batch = 2, L = 8;

    private static (LlamaTrainingModel Train, int[] Inputs, int[] Targets, LlamaForCausalLM Model) Setup(TempDirectory dir)
    {
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Llama2, seed: 5);
        var model = (LlamaForCausalLM)ModelLoader.Load(ckpt.Directory);
        var train = new LlamaTrainingModel(model.Config);
        train.LoadFrom(model.Reader);
        train.FreezeWeights = true;
        var rng = new Random(3);
        var tokens = Enumerable.Range(0, Batch * (L + 1)).Select(_ => rng.Next(model.VocabSize)).ToArray();
        var inputs = Enumerable.Range(0, Batch).SelectMany(b => tokens.Skip(b * (L + 1)).Take(L)).ToArray();
        var targets = Enumerable.Range(0, Batch).SelectMany(b => tokens.Skip(b * (L + 1) + 1).Take(L)).ToArray();
        return (train, inputs, targets, model);
    }

    [Fact]
    public void A_gate_that_keeps_every_singular_value_leaves_the_loss_unchanged()
    {
        using var dir = new TempDirectory();
        var (train, inputs, targets, model) = Setup(dir);
        using var _ = train;
        using var __ = model;
        double plain = train.Forward(inputs, targets, Batch, L);
        // γ three past the last index: T_i ≥ ½ tanh(30) + ½, 1 to double precision, so Â = A up to the SVD's rounding.
        var gamma = model.Linears.ToDictionary(l => l.Name, l => Math.Min(L, l.OutFeatures) + 3.0);
        using var gate = new DobiGate(gamma, beta: 10, train: false);
        train.ActivationTransform = gate;
        Assert.Equal(plain, train.Forward(inputs, targets, Batch, L), 1e-5);
        // And a real truncation changes it: the gate is in the forward path.
        foreach (string k in gamma.Keys) gamma[k] = 2;
        Assert.True(Math.Abs(train.Forward(inputs, targets, Batch, L) - plain) > 1e-3);
    }

    /// <summary>
    /// At integer γ the mask's slope is β/2 at T_γ = ½, so the loss moves by O(σ·h) while the float32 forward's rounding
    /// is ~1e-6: h = 5e-3 keeps the central difference's truncation error h²·β³/6 ≈ 0.4 % of the slope's scale and its
    /// rounding error ~1e-4 absolute. Tolerance 3 % of |fd| + 3e-4.
    /// </summary>
    [Fact]
    public void Gamma_gradients_through_the_whole_model_match_central_differences()
    {
        using var dir = new TempDirectory();
        var (train, inputs, targets, model) = Setup(dir);
        using var _ = train;
        using var __ = model;
        var gamma = model.Linears.ToDictionary(l => l.Name, l => Math.Floor(Math.Min(L, l.OutFeatures) / 2.0));
        using var gate = new DobiGate(gamma, beta: 10, train: true);
        train.ActivationTransform = gate;
        gate.ZeroGrad();
        train.Forward(inputs, targets, Batch, L);
        train.Backward();
        var analytic = new Dictionary<string, double>(gate.Gradient);
        Assert.All(analytic.Values, g => Assert.True(double.IsFinite(g)));
        // The four largest (most informative), from different kinds of linear and layer.
        var names = analytic.OrderByDescending(kv => Math.Abs(kv.Value)).Take(4).Select(kv => kv.Key).ToList();
        const double h = 5e-3;
        foreach (string name in names)
        {
            double g0 = gamma[name];
            gamma[name] = g0 + h;
            double up = train.Forward(inputs, targets, Batch, L);
            gamma[name] = g0 - h;
            double down = train.Forward(inputs, targets, Batch, L);
            gamma[name] = g0;
            double fd = (up - down) / (2 * h);
            Assert.True(Math.Abs(fd) > 1e-3, $"{name}: slope {fd} too small to test");
            Assert.True(Math.Abs(analytic[name] - fd) <= 0.03 * Math.Abs(fd) + 3e-4, $"{name}: backward {analytic[name]:E4}, central difference {fd:E4}");
        }
    }

    [Fact]
    public void Ranks_follow_the_weight_ranks_and_fill_the_uniform_budget()
    {
        var targets = new List<MatrixTarget> { new("a", 64, 64, "q"), new("b", 64, 64, "q"), new("c", 176, 64, "gate"), new("d", 64, 176, "down") };
        var gamma = new Dictionary<string, double> { ["a"] = 10, ["b"] = 20, ["c"] = 15, ["d"] = 30 };
        var learned = new DobiGammas(gamma, 32, [], [], 0);
        foreach (double ratio in new[] { 0.2, 0.4, 0.6 })
        {
            var ranks = DobiSvd.Ranks(targets, learned, ratio).ToDictionary(r => r.Name, r => r.Rank);
            long budget = targets.Sum(t => (long)Ranks.ForRemovedRatio(t.M, t.N, ratio) * (t.M + t.N));
            long cost = targets.Sum(t => (long)ranks[t.Name] * (t.M + t.N));
            Assert.True(cost <= budget, $"{ratio}: {cost} > {budget}");
            // Within one more unit of the largest rank step (c grows until some matrix's floor would cross the budget).
            Assert.True(cost > budget - targets.Sum(t => (long)(t.M + t.N)), $"{ratio}: {cost} leaves too much of {budget}");
            Assert.True(ranks["b"] >= ranks["a"]); // same shape, twice the γ
            Assert.All(targets, t => Assert.InRange(ranks[t.Name], 1, t.M * t.N / (t.M + t.N)));
        }
    }

    [Fact]
    public void Dobi_parameters_have_one_spelling_and_clear_errors()
    {
        var r = MethodRecipe.Parse("dobi-svd", new Dictionary<string, string> { ["epochs"] = "2", ["lambda"] = "200", ["batch"] = "8" });
        Assert.Equal(new SortedDictionary<string, string> { ["epochs"] = "2" }, r.Canonical());
        Assert.Equal("Dobi-SVD 2 ep", r.Label);
        Assert.True(r.NeedsWindows);
        var e = Assert.Throws<ArgumentException>(() => MethodRecipe.Parse("dobi-svd", new Dictionary<string, string> { ["epochs"] = "0" }));
        Assert.Contains("params.epochs 0 must be at least 1", e.Message);
        Assert.Throws<ArgumentException>(() => MethodRecipe.Parse("svdllm", new Dictionary<string, string> { ["epochs"] = "2" }));
    }
}
