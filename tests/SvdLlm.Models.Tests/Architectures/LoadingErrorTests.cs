using System.Text.Json.Nodes;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Checkpoints;
using SvdLlm.Models.Tests.Reference;

namespace SvdLlm.Models.Tests.Architectures;

/// <summary>Checkpoints that do not fit their config are rejected at load time with the file, tensor or field named.</summary>
public class LoadingErrorTests
{
    private static string Variant(TempDirectory dir, TinyArch arch, Action<JsonObject> editConfig,
        Func<List<(string Name, long[] Shape, float[] Data)>, List<(string Name, long[] Shape, float[] Data)>>? editTensors = null)
    {
        var ckpt = TinyCheckpoint.Create(dir.Sub("orig"), arch, seed: 1);
        var config = CheckpointVariants.Config(ckpt);
        editConfig(config);
        var tensors = CheckpointVariants.Tensors(ckpt);
        if (editTensors is not null) tensors = editTensors(tensors);
        return CheckpointVariants.Write(dir.Sub("variant"), config, tensors);
    }

    [Fact]
    public void Missing_tensor_is_named()
    {
        using var dir = new TempDirectory();
        string path = Variant(dir, TinyArch.Llama2, _ => { }, ts => ts.Where(t => t.Name != "model.layers.1.mlp.up_proj.weight").ToList());
        var e = Assert.Throws<CheckpointFormatException>(() => ModelLoader.Load(path));
        Assert.Contains("model.layers.1.mlp.up_proj.weight", e.Message);
    }

    [Fact]
    public void Wrong_shape_names_tensor_and_both_shapes()
    {
        using var dir = new TempDirectory();
        string path = Variant(dir, TinyArch.Llama2, c => c["intermediate_size"] = 96);
        var e = Assert.Throws<CheckpointFormatException>(() => ModelLoader.Load(path));
        Assert.Contains("gate_proj.weight", e.Message);
        Assert.Contains("96", e.Message);
    }

    [Fact]
    public void Untied_model_without_lm_head_is_rejected()
    {
        using var dir = new TempDirectory();
        string path = Variant(dir, TinyArch.Llama3, c => c["tie_word_embeddings"] = false);
        var e = Assert.Throws<CheckpointFormatException>(() => ModelLoader.Load(path));
        Assert.Contains("lm_head.weight", e.Message);
    }

    [Theory]
    [InlineData("num_key_value_heads", 3, "must divide")]
    [InlineData("hidden_size", "abc", "'hidden_size' must be an integer")]
    [InlineData("rms_norm_eps", -1.0, "must be positive")]
    public void Bad_config_values_name_the_field(string field, object value, string expected)
    {
        using var dir = new TempDirectory();
        string path = Variant(dir, TinyArch.Llama2, c => c[field] = JsonValue.Create(value));
        var e = Assert.Throws<ModelConfigException>(() => ModelLoader.Load(path));
        Assert.Contains(expected, e.Message);
        Assert.Contains("config.json", e.Message);
    }

    [Fact]
    public void Unsupported_architecture_and_rope_type_are_named()
    {
        using var dir = new TempDirectory();
        string a = Variant(dir, TinyArch.Llama2, c => c["architectures"] = new JsonArray("GPTNeoXForCausalLM"));
        Assert.Contains("GPTNeoXForCausalLM", Assert.Throws<ModelConfigException>(() => ModelLoader.Load(a)).Message);
        using var dir2 = new TempDirectory();
        string b = Variant(dir2, TinyArch.Llama2, c => c["rope_scaling"] = new JsonObject { ["rope_type"] = "yarn", ["factor"] = 4.0 });
        Assert.Contains("yarn", Assert.Throws<ModelConfigException>(() => ModelLoader.Load(b)).Message);
    }

    [Fact]
    public void Nan_weights_surface_as_non_finite_logits_not_a_number()
    {
        using var dir = new TempDirectory();
        string path = Variant(dir, TinyArch.Llama2, _ => { }, ts => ts.Select(t =>
            t.Name == "lm_head.weight" ? (t.Name, t.Shape, t.Data.Select((x, i) => i == 5 ? float.NaN : x).ToArray()) : t).ToList());
        using var model = ModelLoader.Load(path);
        var e = Assert.Throws<NonFiniteLogitsException>(() => model.TokenNll([1, 2, 3, 4], 1, 4));
        Assert.Equal(0, e.Position);
    }
}
