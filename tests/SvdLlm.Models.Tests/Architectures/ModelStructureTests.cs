using System.Text.Json.Nodes;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Checkpoints;
using SvdLlm.Models.Tests.Reference;
using SvdLlm.Numerics;

namespace SvdLlm.Models.Tests.Architectures;

public class ModelStructureTests
{
    [Fact]
    public void Gqa_equals_multi_head_attention_with_repeated_kv_heads()
    {
        // A GQA model (4 heads, 2 kv heads) and the MHA model whose k/v projections repeat each kv head
        // for its group must give the same logits: that is what "query head h reads kv head h / groups" means.
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("gqa"), TinyArch.Llama3, seed: 21);
        var config = CheckpointVariants.Config(ckpt);
        int heads = (int)config["num_attention_heads"]!, kv = (int)config["num_key_value_heads"]!, hidden = (int)config["hidden_size"]!;
        int d = config["head_dim"] is JsonNode hd ? (int)hd : hidden / heads;
        Assert.True(kv < heads);
        var tensors = CheckpointVariants.Tensors(ckpt).Select(t =>
        {
            if (!t.Name.EndsWith("k_proj.weight") && !t.Name.EndsWith("v_proj.weight")) return t;
            var repeated = new float[heads * d * hidden];
            for (int h = 0; h < heads; h++)
                Array.Copy(t.Data, h / (heads / kv) * d * hidden, repeated, h * d * hidden, d * hidden);
            return (t.Name, new long[] { heads * d, hidden }, repeated);
        }).ToList();
        config["num_key_value_heads"] = heads;
        string mha = CheckpointVariants.Write(dir.Sub("mha"), config, tensors);

        var tokens = ForwardParityTests.RandomTokens(1, 11, 99);
        using var g = ModelLoader.Load(ckpt.Directory);
        using var m = ModelLoader.Load(mha);
        using var lg = g.Logits(tokens, 1, tokens.Length);
        using var lm = m.Logits(tokens, 1, tokens.Length);
        for (int i = 0; i < lg.Length; i++) Assert.Equal(lg.Span[i], lm.Span[i], 1e-5f);
    }

    [Fact]
    public void Low_rank_checkpoint_loads_under_u_and_v_names_and_matches_dense_product()
    {
        // Store q_proj of layer 0 and fc-style down_proj of layer 1 as exact factors U·V (rank = min(m, n) from an SVD):
        // the model must load them as low-rank linears and reproduce the dense logits.
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("dense"), TinyArch.Qwen2, seed: 4);
        var replaced = new[] { "model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj" };
        var tensors = new List<(string, long[], float[])>();
        foreach (var t in CheckpointVariants.Tensors(ckpt))
        {
            string? linear = replaced.FirstOrDefault(r => t.Name.StartsWith(r + "."));
            if (linear is null) { tensors.Add(t); continue; }
            string suffix = t.Name[(linear.Length + 1)..];
            if (suffix == "bias") { tensors.Add((Linear.UName(linear) + ".bias", t.Shape, t.Data)); continue; }
            int m = (int)t.Shape[0], n = (int)t.Shape[1];
            using var w = Tensor<double>.From(t.Data.Select(x => (double)x).ToArray(), m, n);
            using var svd = Lapack.Svd(w);
            int k = Math.Min(m, n);
            var u = new float[m * k];
            var v = new float[k * n];
            for (int i = 0; i < m; i++) for (int j = 0; j < k; j++) u[i * k + j] = (float)(svd.U[i, j] * svd.S[j]);
            for (int i = 0; i < k; i++) for (int j = 0; j < n; j++) v[i * n + j] = (float)svd.Vt[i, j];
            tensors.Add((Linear.UName(linear) + ".weight", [m, k], u));
            tensors.Add((Linear.VName(linear) + ".weight", [k, n], v));
        }
        string lowRank = CheckpointVariants.Write(dir.Sub("lowrank"), CheckpointVariants.Config(ckpt), tensors);

        using var dense = ModelLoader.Load(ckpt.Directory);
        using var compressed = ModelLoader.Load(lowRank);
        Assert.Equal("model.layers.0.self_attn.q_u_proj", Linear.UName("model.layers.0.self_attn.q_proj"));
        Assert.Equal("model.layers.1.mlp.down_v_proj", Linear.VName("model.layers.1.mlp.down_proj"));
        Assert.True(compressed.GetLinear(replaced[0]).IsLowRank);
        Assert.True(compressed.GetLinear(replaced[1]).IsLowRank);
        Assert.Equal(2, compressed.Linears.Count(l => l.IsLowRank));
        var q = compressed.GetLinear(replaced[0]);
        Assert.Equal((long)q.Rank!.Value * (q.InFeatures + q.OutFeatures) + q.OutFeatures, q.ParameterCount);

        var tokens = ForwardParityTests.RandomTokens(6, 9, 99);
        using var a = dense.Logits(tokens, 1, 9);
        using var b = compressed.Logits(tokens, 1, 9);
        for (int i = 0; i < a.Length; i++) Assert.Equal(a.Span[i], b.Span[i], 1e-4f);
    }

    [Fact]
    public void Truncated_low_rank_linear_set_in_memory_changes_the_output()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Llama2, seed: 3);
        using var model = ModelLoader.Load(ckpt.Directory);
        model.LoadAll();
        var tokens = ForwardParityTests.RandomTokens(2, 6, 99);
        using var before = model.Logits(tokens, 1, 6);
        var linear = model.GetLinear("model.layers.0.mlp.up_proj");
        using var w = Tensor<float>.From(linear.Weight.Span, linear.OutFeatures, linear.InFeatures);
        using var svd = Lapack.Svd(w);
        int k = 2;
        var u = Tensor<float>.Zeros(linear.OutFeatures, k);
        var v = Tensor<float>.Zeros(k, linear.InFeatures);
        for (int i = 0; i < linear.OutFeatures; i++) for (int j = 0; j < k; j++) u[i, j] = svd.U[i, j] * svd.S[j];
        for (int i = 0; i < k; i++) for (int j = 0; j < linear.InFeatures; j++) v[i, j] = svd.Vt[i, j];
        linear.SetLowRank(u, v, null);
        Assert.Equal(k, linear.Rank);
        using var after = model.Logits(tokens, 1, 6);
        double diff = 0;
        for (int i = 0; i < before.Length; i++) diff = Math.Max(diff, Math.Abs(before.Span[i] - after.Span[i]));
        Assert.True(diff > 1e-3, "a rank-2 truncation must change the logits");
        Assert.Throws<ArgumentException>(() => linear.SetLowRank(Tensor<float>.Zeros(linear.OutFeatures, 0), Tensor<float>.Zeros(1, linear.InFeatures), null));
    }

    private sealed class RecordingObserver : ILinearObserver
    {
        public readonly List<(string Name, string Key, int Rows, float[] X)> Seen = [];
        public void OnInput(Linear linear, ReadOnlySpan<float> x, int rows) => Seen.Add((linear.Name, linear.InputKey, rows, x.ToArray()));
    }

    [Theory]
    [InlineData(TinyArch.Llama3, 7)]
    [InlineData(TinyArch.Opt, 6)]
    public void Observer_sees_every_linear_input_once_per_forward(TinyArch arch, int linearsPerLayer)
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), arch, seed: 12);
        using var model = ModelLoader.Load(ckpt.Directory);
        var observer = new RecordingObserver();
        model.Observer = observer;
        var tokens = ForwardParityTests.RandomTokens(3, 5, 99);
        model.Logits(tokens, 1, 5).Dispose();
        Assert.Equal(model.NumLayers * linearsPerLayer, model.Linears.Count);
        Assert.Equal(model.Linears.Select(l => l.Name), observer.Seen.Select(s => s.Name));
        foreach (var s in observer.Seen)
        {
            var linear = model.GetLinear(s.Name);
            Assert.Equal(5, s.Rows);
            Assert.Equal(5 * linear.InFeatures, s.X.Length);
        }
        // Linears sharing an input key saw identical activations.
        foreach (var group in observer.Seen.GroupBy(s => s.Key))
            Assert.All(group, s => Assert.Equal(group.First().X, s.X));
        Assert.Contains(observer.Seen.GroupBy(s => s.Key), g => g.Count() == 3); // q, k, v
    }

    [Fact]
    public void Parameter_counts_follow_the_config()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Llama3, seed: 1);
        using var model = ModelLoader.Load(ckpt.Directory);
        // Every stored tensor is a parameter; the tied lm_head is not stored and not counted twice.
        long stored = ckpt.Weights.Values.Sum(w => (long)w.Length);
        Assert.Equal(stored, model.ParameterCount);
        long linear = ckpt.Weights.Where(kv => kv.Key.Contains("_proj.")).Sum(kv => (long)kv.Value.Length);
        Assert.Equal(linear, model.LinearParameterCount);
    }

    [Fact]
    public void GetLinear_suggests_the_closest_name()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Llama2, seed: 1);
        using var model = ModelLoader.Load(ckpt.Directory);
        var e = Assert.Throws<KeyNotFoundException>(() => model.GetLinear("model.layers.0.self_attn.q_prj"));
        Assert.Contains("did you mean 'model.layers.0.self_attn.q_proj'", e.Message);
    }
}
