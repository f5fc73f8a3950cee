using System.Text.Json;
using System.Text.Json.Nodes;
using SvdLlm.Models.Checkpoints;

namespace SvdLlm.Models.Training;

/// <summary>
/// A resumable snapshot: parameters and both AdamW moments as three flat F32 tensors in one
/// safetensors file, and a JSON with the step, the config it belongs to and the curves so far.
/// Written to a fresh directory that replaces the previous checkpoint only when complete.
/// </summary>
internal static class TrainingCheckpoint
{
    public static void Save(string dir, TrainConfig config, LlamaTrainingModel model, AdamW adam, int step, JsonArray curve, JsonArray evals)
    {
        string tmp = dir + ".tmp";
        if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
        Directory.CreateDirectory(tmp);
        long n = model.Parameters.Length;
        SafeTensorsWriter.Write(Path.Combine(tmp, "state.safetensors"),
        [
            new WriterTensor("params", SafeTensorsDType.F32, [n], model.Parameters.Data.Span.ToArray()),
            new WriterTensor("adam_m", SafeTensorsDType.F32, [n], adam.M.Span.ToArray()),
            new WriterTensor("adam_v", SafeTensorsDType.F32, [n], adam.V.Span.ToArray()),
        ]);
        var meta = new JsonObject
        {
            ["step"] = step,
            ["adam_step"] = adam.Step,
            ["config"] = JsonNode.Parse(config.CanonicalJson()),
            ["loss_curve"] = curve.DeepClone(),
            ["evaluations"] = evals.DeepClone(),
        };
        File.WriteAllText(Path.Combine(tmp, "checkpoint.json"), meta.ToJsonString());
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        Directory.Move(tmp, dir);
    }

    /// <summary>Restores a checkpoint written for the same config; returns the step to continue from (0 when there is none).</summary>
    public static int TryLoad(string dir, TrainConfig config, LlamaTrainingModel model, AdamW adam, JsonArray curve, JsonArray evals)
    {
        string metaPath = Path.Combine(dir, "checkpoint.json");
        if (!File.Exists(metaPath)) return 0;
        var meta = JsonNode.Parse(File.ReadAllText(metaPath))!.AsObject();
        if (meta["config"]!.ToJsonString() != JsonNode.Parse(config.CanonicalJson())!.ToJsonString())
            throw new InvalidOperationException($"{dir} holds a checkpoint of a different training config; delete {Path.GetDirectoryName(dir)} to start over");
        using var file = SafeTensorsFile.Open(Path.Combine(dir, "state.safetensors"));
        file.ReadAsFloat32("params", model.Parameters.Data.Span);
        file.ReadAsFloat32("adam_m", adam.M.Span);
        file.ReadAsFloat32("adam_v", adam.V.Span);
        adam.Step = (int)meta["adam_step"]!;
        foreach (var p in meta["loss_curve"]!.AsArray()) curve.Add(p!.DeepClone());
        foreach (var e in meta["evaluations"]!.AsArray()) evals.Add(e!.DeepClone());
        return (int)meta["step"]!;
    }
}
