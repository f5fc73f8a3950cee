using System.Text.Json;
using System.Text.Json.Nodes;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Checkpoints;

namespace SvdLlm.Compression;

/// <summary>
/// Writes a compressed model as a standard Hugging Face directory: every tensor of the original, except
/// that a compressed linear "…q_proj" becomes "…q_u_proj.weight" [m, k] and "…q_v_proj.weight" [k, n]
/// (y = U(Vx)), its bias "…q_u_proj.bias"; factors keep the original weight's dtype. config.json is the
/// original plus an "svd_compression" block (method, ratio, the rank of every compressed linear), so the
/// directory loads in every svdllm command, and compression-report.json sits beside the weights.
/// The directory appears complete or not at all (written to DIR.partial, then renamed).
/// </summary>
public static class CompressedCheckpoint
{
    /// <summary>Files copied unchanged from the original directory when present.</summary>
    private static readonly string[] CopiedFiles =
        ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "vocab.json", "merges.txt", "tokenizer.model"];

    public static void Write(CausalLanguageModel model, string outDir, CompressionReport report)
    {
        outDir = Path.GetFullPath(outDir);
        if (Directory.Exists(outDir)) throw new IOException($"{outDir} already exists; refusing to overwrite (delete it or choose another --out)");
        string staging = outDir + ".partial";
        if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
        Directory.CreateDirectory(staging);
        try
        {
            var reader = model.Reader;
            var lowRank = model.Linears.Where(l => l.IsLowRank).ToDictionary(l => l.Name);
            var tensors = new List<WriterTensor>();
            foreach (string name in reader.TensorNames)
            {
                var info = reader.GetInfo(name);
                var dtype = info.DType.IsLoadableAsFloat32() ? info.DType : throw new CheckpointFormatException(reader.Directory, $"dtype {info.DType} cannot be rewritten", name, "dtype");
                int dot = name.LastIndexOf('.');
                string module = dot < 0 ? name : name[..dot], suffix = dot < 0 ? "" : name[(dot + 1)..];
                if (lowRank.TryGetValue(module, out var l))
                {
                    if (suffix == "weight")
                    {
                        tensors.Add(WriterTensor.Lazy(Linear.UName(l.Name) + ".weight", dtype, [l.OutFeatures, l.Rank!.Value], () => l.U.Span.ToArray()));
                        tensors.Add(WriterTensor.Lazy(Linear.VName(l.Name) + ".weight", dtype, [l.Rank!.Value, l.InFeatures], () => l.V.Span.ToArray()));
                        continue;
                    }
                    if (suffix == "bias")
                    {
                        tensors.Add(WriterTensor.Lazy(Linear.UName(l.Name) + ".bias", dtype, info.Shape, () => reader.ReadAsFloat32(name)));
                        continue;
                    }
                }
                tensors.Add(WriterTensor.Lazy(name, dtype, info.Shape, () => reader.ReadAsFloat32(name)));
            }
            SafeTensorsWriter.Write(Path.Combine(staging, "model.safetensors"), tensors, new Dictionary<string, string> { ["format"] = "pt" });

            var config = JsonNode.Parse(File.ReadAllText(Path.Combine(model.Directory, "config.json")))!.AsObject();
            var ranks = new JsonObject();
            foreach (var l in model.Linears.Where(l => l.IsLowRank)) ranks[l.Name] = l.Rank!.Value;
            config["svd_compression"] = new JsonObject
            {
                ["method"] = report.Method,
                ["ratio"] = report.Ratio,
                ["ratio_definition"] = "fraction of the decoder linears' parameters removed",
                ["achieved_linear_ratio"] = Math.Round(report.AchievedLinearRatio, 6),
                ["achieved_model_ratio"] = Math.Round(report.AchievedModelRatio, 6),
                ["factor_names"] = "<name>_u_proj.weight [out, k] and <name>_v_proj.weight [k, in]; y = U (V x); bias on <name>_u_proj.bias",
                ["ranks"] = ranks,
            };
            var options = new JsonSerializerOptions { WriteIndented = true };
            File.WriteAllText(Path.Combine(staging, "config.json"), config.ToJsonString(options));
            foreach (string f in CopiedFiles)
            {
                string src = Path.Combine(model.Directory, f);
                if (File.Exists(src)) File.Copy(src, Path.Combine(staging, f));
            }
            File.WriteAllText(Path.Combine(staging, "compression-report.json"), ReportJson(report).ToJsonString(options));
            Directory.Move(staging, outDir);
        }
        catch
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
            throw;
        }
    }

    public static JsonObject ReportJson(CompressionReport r)
    {
        var matrices = new JsonArray();
        foreach (var m in r.Matrices)
        {
            matrices.Add(new JsonObject
            {
                ["name"] = m.Name,
                ["shape"] = new JsonArray(m.Shape[0], m.Shape[1]),
                ["group"] = m.Group,
                ["allocated_ratio"] = Math.Round(m.AllocatedRatio, 6),
                ["rank"] = m.Rank,
                ["theoretical_loss"] = m.TheoreticalLoss,
                ["loss_objective"] = m.LossObjective,
                ["measured_loss"] = m.MeasuredLoss,
                ["allocation_loss"] = m.AllocationLoss,
                ["params_before"] = m.ParamsBefore,
                ["params_after"] = m.ParamsAfter,
                ["seconds"] = Math.Round(m.Seconds, 4),
                ["note"] = m.Note,
            });
        }
        var stages = new JsonObject();
        foreach (var (k, v) in r.StageSeconds) stages[k] = Math.Round(v, 3);
        var calibration = new JsonObject();
        foreach (var (k, v) in r.Calibration) calibration[k] = v;
        return new JsonObject
        {
            ["method"] = r.Method,
            ["ratio"] = r.Ratio,
            ["linear_params_before"] = r.LinearParamsBefore,
            ["linear_params_after"] = r.LinearParamsAfter,
            ["model_params_before"] = r.ModelParamsBefore,
            ["model_params_after"] = r.ModelParamsAfter,
            ["achieved_linear_ratio"] = Math.Round(r.AchievedLinearRatio, 6),
            ["achieved_model_ratio"] = Math.Round(r.AchievedModelRatio, 6),
            ["largest_svd"] = r.LargestSvdMatrix,
            ["largest_svd_seconds"] = Math.Round(r.LargestSvdSeconds, 4),
            ["stage_seconds"] = stages,
            ["calibration"] = calibration,
            ["notes"] = new JsonArray(r.Notes.Select(n => (JsonNode)JsonValue.Create(n)!).ToArray()),
            ["matrices"] = matrices,
        };
    }
}
