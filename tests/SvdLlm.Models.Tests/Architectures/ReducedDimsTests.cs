using System.Text.Json.Nodes;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Checkpoints;
using SvdLlm.Models.Tests.Reference;
using SvdLlm.Models.Training;
using SvdLlm.Numerics;

namespace SvdLlm.Models.Tests.Architectures;

/// <summary>
/// Per-layer reduced widths (MoDeGPT's structurally pruned checkpoints): the pruned model must compute exactly what the
/// unpruned model computes with the dropped rows and columns set to zero. That equality is the independent check: the
/// zeroed model runs through the loader's ordinary uniform path, and the two agree only if the kept pairs turn with
/// their ORIGINAL frequencies, the softmax scale stays 1/√head_dim, every query head takes its key/value head's pairs and
/// value dimensions, and the MLP channels, o_proj and down_proj columns line up. Tolerance: the two do the same float32
/// sums minus exact zeros, in a different order (GEMMs over other inner dimensions), which moves the logits by a few
/// float32 ulps per operation (measured: ≤ 6e-7 of the largest logit after three layers); each slip in the list above
/// moves them by more than 1e-2 of it (measured 0.16 to 0.62, by spoiling the pruned checkpoint in each way below).
/// 1e-4 of the largest logit separates the two by orders of magnitude either side.
/// </summary>
public class ReducedDimsTests
{
    private const double Tolerance = 1e-4;
    private const int SeqLen = 12; // > Mistral's window of 5

    /// <summary>Three layers with different amounts: one prunes everything, one keeps every rotary pair (no rope_pairs tensor), one keeps every pair and value dimension but permuted.</summary>
    internal static (TinyConfig Config, LayerKeep[] Plan) Case(TinyArch arch)
    {
        var config = TinyConfig.Preset(arch) with { NumLayers = 3 };
        // (MLP channels, rotary pairs per key/value head or null = all in order, value dims per key/value head)
        (int, int?, int)[] amounts = arch switch
        {
            // head_dim 16 (8 pairs), intermediate 96
            TinyArch.Llama3 => [(40, 5, 12), (96, null, 7), (17, 8, 16)],
            // head_dim 8 (4 pairs), intermediate 64
            TinyArch.Qwen2 => [(26, 2, 6), (64, null, 3), (9, 4, 8)],
            TinyArch.Mistral => [(30, 3, 5), (64, null, 2), (11, 4, 8)],
            _ => throw new ArgumentOutOfRangeException(nameof(arch)),
        };
        return (config, ReducedDims.RandomPlan(config, seed: 41 + (int)arch, amounts));
    }

    private static (string Zeroed, string Reduced, TinyCheckpoint Full) Write(TempDirectory dir, TinyArch arch, int seed = 7)
    {
        var (config, plan) = Case(arch);
        var full = TinyCheckpoint.Create(dir.Sub("full"), config, seed);
        return (ReducedDims.WriteZeroed(full, plan, dir.Sub("zeroed")), ReducedDims.Reduced(full, plan).Write(dir.Sub("reduced")), full);
    }

    public static TheoryData<TinyArch> Archs => [TinyArch.Llama3, TinyArch.Qwen2, TinyArch.Mistral];

    [Theory, MemberData(nameof(Archs))]
    public void The_pruned_checkpoint_computes_what_the_full_model_with_the_dropped_rows_zeroed_computes(TinyArch arch)
    {
        using var dir = new TempDirectory();
        var (zeroedDir, reducedDir, _) = Write(dir, arch);
        using var zeroed = ModelLoader.Load(zeroedDir);
        using var reduced = ModelLoader.Load(reducedDir);

        // The pruned model really is smaller, per layer as the plan says.
        var (config, plan) = Case(arch);
        for (int l = 0; l < config.NumLayers; l++)
        {
            int qk = 2 * (plan[l].Pairs?[0].Length ?? config.EffectiveHeadDim / 2), v = plan[l].ValueDims[0].Length;
            Assert.Equal(plan[l].Channels.Length, reduced.GetLinear($"model.layers.{l}.mlp.gate_proj").OutFeatures);
            Assert.Equal(plan[l].Channels.Length, reduced.GetLinear($"model.layers.{l}.mlp.down_proj").InFeatures);
            Assert.Equal(config.NumHeads * qk, reduced.GetLinear($"model.layers.{l}.self_attn.q_proj").OutFeatures);
            Assert.Equal(config.NumKvHeads * qk, reduced.GetLinear($"model.layers.{l}.self_attn.k_proj").OutFeatures);
            Assert.Equal(config.NumKvHeads * v, reduced.GetLinear($"model.layers.{l}.self_attn.v_proj").OutFeatures);
            Assert.Equal(config.NumHeads * v, reduced.GetLinear($"model.layers.{l}.self_attn.o_proj").InFeatures);
        }
        Assert.True(reduced.ParameterCount < zeroed.ParameterCount);

        const int batch = 2;
        var tokens = ForwardParityTests.RandomTokens(9, batch * SeqLen, reduced.VocabSize);
        double diff = RelativeDiff(zeroed, reduced, tokens, batch);
        Assert.True(diff < Tolerance, $"{arch}: max |Δlogit| / max |logit| = {diff:E3}");

        // The blocked NLL path.
        var nllZeroed = zeroed.TokenNll(tokens, batch, SeqLen);
        var nllReduced = reduced.TokenNll(tokens, batch, SeqLen);
        Assert.Equal(nllZeroed.Length, nllReduced.Length);
        for (int i = 0; i < nllZeroed.Length; i++) Assert.True(Math.Abs(nllZeroed[i] - nllReduced[i]) < 1e-4, $"{arch}: NLL {i}: {nllZeroed[i]} vs {nllReduced[i]}");
    }

    /// <summary>
    /// Each way of getting the pruned model wrong moves the logits far outside the tolerance above, so the equality test
    /// would catch it: renumbered pairs (the kept pairs turned by the first frequencies instead of their own), the scale
    /// 1/√d_qk (emulated by scaling the pruned q by √(D/d_qk)), and the pairs of the wrong key/value head.
    /// </summary>
    [Theory]
    [InlineData("renumbered-pairs")]
    [InlineData("scale-by-kept-dims")]
    [InlineData("pairs-of-the-other-kv-head")]
    public void Each_slip_the_equality_test_guards_against_moves_the_logits_by_more_than_1e_2(string slip)
    {
        using var dir = new TempDirectory();
        var (config, plan) = Case(TinyArch.Llama3);
        var full = TinyCheckpoint.Create(dir.Sub("full"), config, seed: 7);
        string zeroedDir = ReducedDims.WriteZeroed(full, plan, dir.Sub("zeroed"));
        var parts = ReducedDims.Reduced(full, plan);
        int d = config.EffectiveHeadDim;
        switch (slip)
        {
            case "renumbered-pairs":
                for (int i = 0; i < parts.Ints.Count; i++)
                {
                    var (name, shape, data) = parts.Ints[i];
                    int m = (int)shape[1];
                    parts.Ints[i] = (name, shape, Enumerable.Range(0, data.Length).Select(x => x % m).ToArray());
                }
                Assert.NotEqual([0, 1, 2, 3, 4], plan[0].Pairs![0]); // the spoiled layer really changes
                break;
            case "scale-by-kept-dims":
                // (1/√d_qk)·q·k = (1/√D)·(√(D/d_qk)·q)·k: what a loader scaling by the kept width would compute.
                int qk = 2 * plan[0].Pairs![0].Length;
                int at = parts.Floats.FindIndex(t => t.Name == "model.layers.0.self_attn.q_proj.weight");
                var q = parts.Floats[at];
                parts.Floats[at] = (q.Name, q.Shape, q.Data.Select(x => x * MathF.Sqrt((float)d / qk)).ToArray());
                break;
            case "pairs-of-the-other-kv-head":
                for (int i = 0; i < parts.Ints.Count; i++)
                {
                    var (name, shape, data) = parts.Ints[i];
                    int m = (int)shape[1];
                    parts.Ints[i] = (name, shape, [.. data[m..], .. data[..m]]);
                }
                break;
        }
        using var zeroed = ModelLoader.Load(zeroedDir);
        using var spoiled = ModelLoader.Load(parts.Write(dir.Sub("spoiled")));
        var tokens = ForwardParityTests.RandomTokens(9, 2 * SeqLen, zeroed.VocabSize);
        double diff = RelativeDiff(zeroed, spoiled, tokens, 2);
        Assert.True(diff > 1e-2, $"{slip}: max |Δlogit| / max |logit| = {diff:E3}");
    }

    [Theory]
    [InlineData(TinyArch.Llama3)]
    [InlineData(TinyArch.Qwen2)]
    public void Lists_of_the_uniform_widths_and_every_pair_in_order_give_the_unpruned_logits_bit_for_bit(TinyArch arch)
    {
        using var dir = new TempDirectory();
        var config = TinyConfig.Preset(arch) with { NumLayers = 3 };
        var full = TinyCheckpoint.Create(dir.Sub("full"), config, seed: 12);
        var parts = ReducedDims.Reduced(full, ReducedDims.IdentityPlan(config));
        Assert.Equal(3, parts.Ints.Count); // rope_pairs = 0 … D/2 − 1 written for every layer: the kept-pairs kernel runs
        string identity = parts.Write(dir.Sub("identity"));
        string listsOnly = (parts with { Ints = [] }).Write(dir.Sub("lists-only"));

        using var original = ModelLoader.Load(full.Directory);
        var tokens = ForwardParityTests.RandomTokens(5, 2 * SeqLen, original.VocabSize);
        using var expected = original.Logits(tokens, 2, SeqLen);
        var expectedNll = original.TokenNll(tokens, 2, SeqLen);
        foreach (string path in new[] { identity, listsOnly })
        {
            using var model = ModelLoader.Load(path);
            Assert.True(((LlamaForCausalLM)model).Config.HasPerLayerDims);
            using var logits = model.Logits(tokens, 2, SeqLen);
            Assert.Equal(expected.Span.ToArray(), logits.Span.ToArray());
            Assert.Equal(expectedNll, model.TokenNll(tokens, 2, SeqLen));
        }
    }

    [Theory]
    [InlineData(TinyArch.Llama3, 1)]
    [InlineData(TinyArch.Llama3, 5)]
    [InlineData(TinyArch.Mistral, 3)] // the window of 5 truncates the later decode steps' keys
    [InlineData(TinyArch.Qwen2, 4)]
    public void Prefill_then_decode_steps_of_the_pruned_model_reproduce_its_full_forward(TinyArch arch, int promptLen)
    {
        using var dir = new TempDirectory();
        var (_, reducedDir, _) = Write(dir, arch);
        using var model = ModelLoader.Load(reducedDir);
        const int batch = 2;
        var tokens = ForwardParityTests.RandomTokens(promptLen, batch * SeqLen, model.VocabSize);
        using var full = model.Logits(tokens, batch, SeqLen);

        using var cache = model.CreateKvCache(batch, SeqLen);
        var (config, plan) = Case(arch);
        long floats = 0;
        for (int l = 0; l < config.NumLayers; l++)
        {
            int qk = 2 * (plan[l].Pairs?[0].Length ?? config.EffectiveHeadDim / 2), v = plan[l].ValueDims[0].Length;
            Assert.Equal(config.NumKvHeads * qk, cache.KeyWidth(l));
            Assert.Equal(config.NumKvHeads * v, cache.ValueWidth(l));
            floats += config.NumKvHeads * (qk + v);
        }
        Assert.Equal(floats * batch * SeqLen * sizeof(float), cache.Bytes);

        var prompt = new int[batch * promptLen];
        for (int b = 0; b < batch; b++) Array.Copy(tokens, b * SeqLen, prompt, b * promptLen, promptLen);
        double maxDiff = 0, scale = 1;
        for (int i = 0; i < full.Length; i++) scale = Math.Max(scale, Math.Abs(full.Span[i]));
        using (var prefill = model.Prefill(prompt, batch, promptLen, cache, allPositions: true))
        {
            for (int b = 0; b < batch; b++)
                for (int t = 0; t < promptLen; t++)
                    maxDiff = Math.Max(maxDiff, MaxAbsDiff(prefill.Row(b * promptLen + t), full.Row(b * SeqLen + t)));
        }
        var step = new int[batch];
        using var logits = Tensor<float>.Uninitialized(batch, model.VocabSize);
        for (int t = promptLen; t < SeqLen; t++)
        {
            for (int b = 0; b < batch; b++) step[b] = tokens[b * SeqLen + t];
            model.DecodeStep(step, cache, logits);
            for (int b = 0; b < batch; b++) maxDiff = Math.Max(maxDiff, MaxAbsDiff(logits.Row(b), full.Row(b * SeqLen + t)));
        }
        Assert.True(maxDiff / scale < Tolerance, $"{arch}, prompt {promptLen}: max |Δlogit| / max |logit| = {maxDiff / scale:E3}");
    }

    /// <summary>A spoiled pruned Llama3 checkpoint: the exception type and the words its message must contain (the field or tensor).</summary>
    public static TheoryData<string> Refusals =>
    [
        "intermediate-size-vs-tensor", "qk-dim-vs-tensor", "v-dim-vs-tensor", "odd-qk-dim", "qk-dim-above-head-dim", "zero-v-dim",
        "v-dim-above-head-dim", "list-too-short", "list-element-not-integer", "list-not-a-list", "pair-out-of-range", "negative-pair",
        "duplicate-pair", "pairs-wrong-shape", "pairs-as-floats", "pairs-missing",
    ];

    [Theory, MemberData(nameof(Refusals))]
    public void A_pruned_checkpoint_that_does_not_fit_its_config_is_refused_naming_the_field_or_tensor(string spoil)
    {
        using var dir = new TempDirectory();
        var (config, plan) = Case(TinyArch.Llama3);
        var full = TinyCheckpoint.Create(dir.Sub("full"), config, seed: 7);
        var parts = ReducedDims.Reduced(full, plan);
        // The plan: qk_head_dims [10, 16, 16], v_head_dims [12, 7, 16], intermediate_sizes [40, 96, 17]; rope_pairs in layers 0 and 2.
        void Set(string field, params JsonNode?[] values) => parts.Config[field] = new JsonArray(values);
        void Pairs(int layer, Func<int[], int[]> edit, long[]? shape = null)
        {
            int i = parts.Ints.FindIndex(t => t.Name == $"model.layers.{layer}.self_attn.rope_pairs");
            var t = parts.Ints[i];
            parts.Ints[i] = (t.Name, shape ?? t.Shape, edit(t.Data));
        }
        const string pairs0 = "model.layers.0.self_attn.rope_pairs";
        (Type Type, string[] Words) expected;
        switch (spoil)
        {
            case "intermediate-size-vs-tensor":
                Set("intermediate_sizes", 40, 50, 17);
                expected = (typeof(CheckpointFormatException), ["model.layers.1.mlp.gate_proj.weight", "[96, 64]", "intermediate_sizes[1] = 50"]);
                break;
            case "qk-dim-vs-tensor":
                Set("qk_head_dims", 12, 16, 16);
                expected = (typeof(CheckpointFormatException), ["model.layers.0.self_attn.q_proj.weight", "[40, 64]", "qk_head_dims[0]"]);
                break;
            case "v-dim-vs-tensor":
                Set("v_head_dims", 12, 7, 14);
                expected = (typeof(CheckpointFormatException), ["model.layers.2.self_attn.v_proj.weight", "[32, 64]", "v_head_dims[2]"]);
                break;
            case "odd-qk-dim":
                Set("qk_head_dims", 9, 16, 16);
                expected = (typeof(ModelConfigException), ["'qk_head_dims'[0] = 9", "even", "config.json"]);
                break;
            case "qk-dim-above-head-dim":
                Set("qk_head_dims", 10, 18, 16);
                expected = (typeof(ModelConfigException), ["'qk_head_dims'[1] = 18", "head_dim = 16"]);
                break;
            case "zero-v-dim":
                Set("v_head_dims", 12, 0, 16);
                expected = (typeof(ModelConfigException), ["'v_head_dims'[1] = 0", "positive"]);
                break;
            case "v-dim-above-head-dim":
                Set("v_head_dims", 12, 7, 17);
                expected = (typeof(ModelConfigException), ["'v_head_dims'[2] = 17", "head_dim = 16"]);
                break;
            case "list-too-short":
                Set("intermediate_sizes", 40, 96);
                expected = (typeof(ModelConfigException), ["'intermediate_sizes' has 2 entries", "'num_hidden_layers' = 3"]);
                break;
            case "list-element-not-integer":
                Set("v_head_dims", 12, "7", 16);
                expected = (typeof(ModelConfigException), ["'v_head_dims'[1] must be an integer"]);
                break;
            case "list-not-a-list":
                parts.Config["qk_head_dims"] = 10;
                expected = (typeof(ModelConfigException), ["'qk_head_dims' must be a list of integers"]);
                break;
            case "pair-out-of-range":
                Pairs(0, p => [.. p[..^1], 8]);
                expected = (typeof(CheckpointFormatException), [pairs0, "8", "outside [0, 8)"]);
                break;
            case "negative-pair":
                Pairs(0, p => [-1, .. p[1..]]);
                expected = (typeof(CheckpointFormatException), [pairs0, "-1", "outside [0, 8)"]);
                break;
            case "duplicate-pair":
                Pairs(0, p => [p[0], p[0], .. p[2..]]);
                expected = (typeof(CheckpointFormatException), [pairs0, "twice"]);
                break;
            case "pairs-wrong-shape":
                Pairs(0, p => p, [5, 2]);
                expected = (typeof(CheckpointFormatException), [pairs0, "[5, 2]", "[2, 5]", "qk_head_dims[0]"]);
                break;
            case "pairs-as-floats":
            {
                int i = parts.Ints.FindIndex(t => t.Name == pairs0);
                var t = parts.Ints[i];
                parts.Ints.RemoveAt(i);
                parts.Floats.Add((t.Name, t.Shape, t.Data.Select(x => (float)x).ToArray()));
                expected = (typeof(CheckpointFormatException), [pairs0, "expected I32"]);
                break;
            }
            case "pairs-missing":
                parts.Ints.RemoveAll(t => t.Name == pairs0);
                expected = (typeof(CheckpointFormatException), [pairs0, "missing", "qk_head_dims[0] = 10", "head_dim = 16"]);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(spoil));
        }
        string path = parts.Write(dir.Sub("spoiled"));
        var e = Assert.Throws(expected.Type, () => ModelLoader.Load(path).Dispose());
        foreach (string word in expected.Words) Assert.Contains(word, e.Message);
        Assert.Contains(path, e.Message); // the file or directory
    }

    [Fact]
    public void The_training_model_refuses_a_pruned_model_by_its_config_and_by_its_kept_pairs()
    {
        using var dir = new TempDirectory();
        var (config, plan) = Case(TinyArch.Llama3);
        var full = TinyCheckpoint.Create(dir.Sub("full"), config, seed: 7);
        string reducedDir = ReducedDims.Reduced(full, plan).Write(dir.Sub("reduced"));
        using (var model = (LlamaForCausalLM)ModelLoader.Load(reducedDir))
        {
            var e = Assert.Throws<ModelConfigException>(() => new LlamaTrainingModel(model.Config));
            Assert.Contains("per-layer reduced dimensions (MoDeGPT", e.Message);
            Assert.Contains("training supports uniform LLaMA shapes", e.Message);
            Assert.Contains(Path.Combine(reducedDir, "config.json"), e.Message);
            Assert.Contains("'intermediate_sizes'", e.Message);
        }

        // Full widths with every pair kept but permuted and no lists: the config alone looks uniform, the tensor says otherwise.
        var permuted = ReducedDims.RandomPlan(config, seed: 3, (96, 8, 16), (96, null, 16), (96, null, 16));
        var parts = ReducedDims.Reduced(full, permuted);
        foreach (string field in new[] { "intermediate_sizes", "qk_head_dims", "v_head_dims" }) parts.Config.Remove(field);
        string permutedDir = parts.Write(dir.Sub("permuted"));
        using var loaded = (LlamaForCausalLM)ModelLoader.Load(permutedDir);
        using var train = new LlamaTrainingModel(loaded.Config);
        using var reader = CheckpointReader.Open(permutedDir);
        var refused = Assert.Throws<ModelConfigException>(() => train.LoadFrom(reader));
        Assert.Contains("model.layers.0.self_attn.rope_pairs", refused.Message);
        Assert.Contains("training supports uniform LLaMA shapes", refused.Message);

        // And that permuted model is the original one (the pairs and their rows moved together).
        using var original = ModelLoader.Load(full.Directory);
        var tokens = ForwardParityTests.RandomTokens(2, SeqLen, original.VocabSize);
        Assert.True(RelativeDiff(original, loaded, tokens, 1) < Tolerance);
    }

    /// <summary>max |Δlogit| / max(1, max |logit|) of two models on the same batch.</summary>
    private static double RelativeDiff(CausalLanguageModel a, CausalLanguageModel b, int[] tokens, int batch)
    {
        using var la = a.Logits(tokens, batch, tokens.Length / batch);
        using var lb = b.Logits(tokens, batch, tokens.Length / batch);
        double scale = 1;
        for (int i = 0; i < la.Length; i++) scale = Math.Max(scale, Math.Abs(la.Span[i]));
        return MaxAbsDiff(la.Span, lb.Span) / scale;
    }

    private static double MaxAbsDiff(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        Assert.Equal(a.Length, b.Length);
        double max = 0;
        for (int i = 0; i < a.Length; i++) max = Math.Max(max, Math.Abs(a[i] - b[i]));
        return max;
    }
}
