using System.CommandLine;
using System.Text.Json;
using SvdLlm.Models.Architectures;

namespace SvdLlm.Cli.Commands;

/// <summary><c>svdllm inspect --model DIR [--json]</c>: architecture, dimensions and parameter counts.</summary>
internal static class InspectCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Hugging Face model directory (config.json + safetensors)", Required = true };
        var json = new Option<bool>("--json") { Description = "print one JSON object" };
        var command = new Command("inspect", "Show a model's architecture, dimensions and parameter counts (total and compressible linears).") { model, json };
        command.SetAction(parse => CliErrors.Run(() => Run(parse.GetValue(model)!, parse.GetValue(json))));
        return command;
    }

    private static int Run(string directory, bool json)
    {
        using var m = ModelLoader.Load(directory);
        var info = Describe(m);
        if (json)
        {
            Console.WriteLine(JsonSerializer.Serialize(info, JsonOutput.Options));
            return 0;
        }
        foreach (var (key, value) in info)
            Console.WriteLine($"{key,-28} {(value is IEnumerable<int> list ? string.Join(" ", list) : value)}");
        return 0;
    }

    internal static Dictionary<string, object?> Describe(CausalLanguageModel m)
    {
        var d = new Dictionary<string, object?>
        {
            ["model"] = Path.GetFullPath(m.Directory),
            ["architecture"] = m.Architecture,
            ["vocab_size"] = m.VocabSize,
            ["hidden_size"] = m.HiddenSize,
            ["num_hidden_layers"] = m.NumLayers,
        };
        switch (m)
        {
            case LlamaForCausalLM l:
                var c = l.Config;
                d["model_type"] = c.ModelType;
                d["num_attention_heads"] = c.NumAttentionHeads;
                d["num_key_value_heads"] = c.NumKeyValueHeads;
                d["head_dim"] = c.HeadDim;
                d["intermediate_size"] = c.IntermediateSize;
                // A structurally pruned model's per-layer widths (MoDeGPT), only when config.json has them.
                if (c.IntermediateSizes is { } inter) d["intermediate_sizes"] = inter;
                if (c.QkHeadDims is { } qk) d["qk_head_dims"] = qk;
                if (c.VHeadDims is { } vd) d["v_head_dims"] = vd;
                int pruned = Enumerable.Range(0, c.NumHiddenLayers).Count(i => m.Reader.Contains(LlamaForCausalLM.RopePairsName(i)));
                if (pruned > 0) d["layers_with_rope_pairs"] = pruned;
                d["max_position_embeddings"] = c.MaxPositionEmbeddings;
                d["rope_theta"] = c.RopeTheta;
                d["rope_scaling"] = c.RopeScaling?.Type;
                d["sliding_window"] = c.SlidingWindow;
                d["tie_word_embeddings"] = c.TieWordEmbeddings;
                break;
            case OptForCausalLM o:
                var oc = o.Config;
                d["model_type"] = "opt";
                d["num_attention_heads"] = oc.NumAttentionHeads;
                d["head_dim"] = oc.HeadDim;
                d["ffn_dim"] = oc.FfnDim;
                d["max_position_embeddings"] = oc.MaxPositionEmbeddings;
                d["word_embed_proj_dim"] = oc.WordEmbedProjDim;
                d["do_layer_norm_before"] = oc.DoLayerNormBefore;
                break;
        }
        d["parameters_total"] = m.ParameterCount;
        d["parameters_linear"] = m.LinearParameterCount;
        d["parameters_linear_dense"] = m.Linears.Sum(l => l.DenseParameterCount);
        d["linears"] = m.Linears.Count;
        d["linears_low_rank"] = m.Linears.Count(l => l.IsLowRank);
        d["linears_quantized"] = m.Linears.Count(l => l.QuantizedBits is not null);
        // Memory of the decoder linears as stored (what SVD at a ratio and GPTQ at b bits are compared by).
        long bytes = m.Linears.Sum(l => l.StoredWeightBytes(m.Reader));
        d["linear_weight_bytes"] = bytes;
        d["bits_per_weight"] = Math.Round(8.0 * bytes / m.Linears.Sum(l => (long)l.InFeatures * l.OutFeatures), 4);
        return d;
    }
}
