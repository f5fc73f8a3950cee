using SvdLlm.Models.Architectures;
using SvdLlm.Models.Checkpoints;
using SvdLlm.Models.Tests.Reference;
using SvdLlm.Models.Training;

namespace SvdLlm.Models.Tests.Training;

/// <summary>
/// The training model with low-rank linears (U·V) and LoRA adapters on their factors, checked by the chain rule against
/// the dense model, whose backward the finite-difference tests validate: W = U V gives dL/dU = G Vᵀ and dL/dV = Uᵀ G
/// with G = dL/dW; an adapter on U is U_eff = U + s·B A, so dL/dB = s·G_U Aᵀ and dL/dA = s·Bᵀ G_U with G_U the merged
/// factor's gradient (the same on V).
/// </summary>
public class LowRankTrainingTests
{
    private const int Rank = 3;
    private static readonly string[] Linears = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"];

    private static LlamaConfig Config(TinyCheckpoint ckpt)
    {
        var json = ConfigJson.Load(Path.Combine(ckpt.Directory, "config.json"));
        return LlamaConfig.Parse(json, ModelLoader.ResolveArchitecture(json));
    }

    private static Dictionary<string, int> Ranks(LlamaConfig c)
        => Enumerable.Range(0, c.NumHiddenLayers).SelectMany(l => Linears.Select(n => $"model.layers.{l}.{n}")).ToDictionary(n => n, _ => Rank);

    private static readonly int[] Inputs = [1, 5, 9, 13, 2, 3, 3, 8, 40, 41], Targets = [5, 9, 13, 2, 7, 3, 8, 40, 41, 42];

    private static double LossAndGradients(LlamaTrainingModel m)
    {
        m.ZeroGrad();
        double loss = m.Forward(Inputs, Targets, 2, 5);
        m.Backward();
        return loss;
    }

    /// <summary>C [m, n] = A [m, k] · B [k, n] in float64 (ta/tb: use the transpose of a row-major operand).</summary>
    private static double[] MatMul(ReadOnlySpan<float> a, bool ta, ReadOnlySpan<float> b, bool tb, int m, int k, int n)
    {
        var c = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int p = 0; p < k; p++) s += (double)(ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]);
                c[i * n + j] = s;
            }
        return c;
    }

    private static void AssertClose(ReadOnlySpan<float> actual, double[] expected, double scale, string what)
    {
        // float32 backward through two layers of a tiny model: relative rounding ~1e-5 of the largest entry.
        double tol = 1e-4 * expected.Max(Math.Abs) + 1e-7;
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(actual[i] - scale * expected[i]) <= tol, $"{what}[{i}]: {actual[i]:E4} vs {scale * expected[i]:E4}");
    }

    private static LlamaTrainingModel LowRankModel(LlamaConfig config)
    {
        var m = new LlamaTrainingModel(config, ranks: Ranks(config));
        m.InitializeRandom(7, std: 0.3f); // large enough that the low-rank paths carry signal
        return m;
    }

    [Fact]
    public void Factor_gradients_are_the_dense_gradient_through_the_chain_rule()
    {
        using var dir = new TempDirectory();
        var config = Config(TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Llama2, seed: 3));
        using var low = LowRankModel(config);
        using var dense = new LlamaTrainingModel(config);
        foreach (var e in dense.Parameters.Entries)
        {
            string module = e.Name[..^".weight".Length];
            if (low.Parameters.Contains(e.Name)) { low.Parameters.View(e.Name).CopyTo(dense.Parameters.View(e)); continue; }
            var u = low.Parameters[Linear.UName(module) + ".weight"];
            var v = low.Parameters[Linear.VName(module) + ".weight"];
            var w = MatMul(low.Parameters.View(u), false, low.Parameters.View(v), false, u.Shape[0], Rank, v.Shape[1]);
            var view = dense.Parameters.View(e);
            for (int i = 0; i < w.Length; i++) view[i] = (float)w[i];
        }
        Assert.Equal(LossAndGradients(dense), LossAndGradients(low), 1e-5);
        foreach (var e in dense.Parameters.Entries.Where(e => !low.Parameters.Contains(e.Name)))
        {
            string module = e.Name[..^".weight".Length];
            var u = low.Parameters[Linear.UName(module) + ".weight"];
            var v = low.Parameters[Linear.VName(module) + ".weight"];
            var g = ParameterArena.View(dense.Gradients, e);
            int outF = u.Shape[0], inF = v.Shape[1];
            AssertClose(ParameterArena.View(low.Gradients, u), MatMul(g, false, low.Parameters.View(v), true, outF, inF, Rank), 1, module + " dU");
            AssertClose(ParameterArena.View(low.Gradients, v), MatMul(low.Parameters.View(u), true, g, false, Rank, outF, inF), 1, module + " dV");
        }
    }

    [Theory]
    [InlineData(LoraTarget.U)]
    [InlineData(LoraTarget.V)]
    public void Adapter_gradients_follow_the_chain_rule_through_the_merged_factor_and_merging_keeps_the_loss(LoraTarget target)
    {
        using var dir = new TempDirectory();
        var config = Config(TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Llama3, seed: 5));
        using var adapted = LowRankModel(config);
        using var merged = LowRankModel(config);
        double plain = LossAndGradients(adapted);
        var adapters = adapted.AttachLora(target, rank: 2, alpha: 3, seed: 11);
        // A fresh adapter (B = 0) leaves the model's function exactly as it was.
        Assert.Equal(plain, LossAndGradients(adapted));
        var rng = new Random(2);
        foreach (var e in adapters.Entries.Where(e => e.Name.EndsWith(".lora_B")))
        {
            var b = adapters.View(e);
            for (int i = 0; i < b.Length; i++) b[i] = (float)(rng.NextDouble() - 0.5);
        }
        adapted.FreezeWeights = true;
        double loss = LossAndGradients(adapted);
        Assert.NotEqual(plain, loss, 1e-6);
        // Frozen: the backward leaves the model's gradient block (filled by the unfrozen pass above, then zeroed) untouched.
        Assert.All(adapted.Gradients.Span.ToArray(), x => Assert.Equal(0f, x));

        // The merged model: the same factors plus s·B A, then its own factor gradients.
        var adapterValues = adapters.Entries.ToDictionary(e => e.Name, e => adapters.View(e).ToArray());
        var adapterGrads = adapters.Entries.ToDictionary(e => e.Name, e => ParameterArena.View(adapted.AdapterGradients!, e).ToArray());
        adapted.MergeLora();
        Assert.Null(adapted.Adapters);
        adapted.Parameters.Data.Span.CopyTo(merged.Parameters.Data.Span);
        double mergedLoss = LossAndGradients(merged);
        Assert.Equal(loss, mergedLoss, 1e-5);

        int checkedFactors = 0;
        foreach (string name in adapterValues.Keys.Where(n => n.EndsWith(".lora_A")))
        {
            string factor = name[..^".lora_A".Length];
            var f = merged.Parameters[factor + ".weight"];
            int outF = f.Shape[0], inF = f.Shape[1];
            var a = adapterValues[name];
            var b = adapterValues[factor + ".lora_B"];
            int r = a.Length / inF;
            float s = 3f / r;
            var g = ParameterArena.View(merged.Gradients, f);
            AssertClose(adapterGrads[factor + ".lora_B"], MatMul(g, false, a, true, outF, inF, r), s, factor + " dB");
            AssertClose(adapterGrads[name], MatMul(b, true, g, false, r, outF, inF), s, factor + " dA");
            Assert.EndsWith(target == LoraTarget.U ? "_u_proj" : "_v_proj", factor);
            checkedFactors++;
        }
        Assert.Equal(config.NumHiddenLayers * Linears.Length, checkedFactors);
    }
}
