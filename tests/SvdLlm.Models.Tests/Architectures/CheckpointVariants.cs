using System.Text.Json.Nodes;
using SvdLlm.Models.Checkpoints;
using SvdLlm.Models.Tests.Reference;

namespace SvdLlm.Models.Tests.Architectures;

/// <summary>Writes modified copies of a tiny checkpoint (edited config, replaced tensors) for structural tests.</summary>
internal static class CheckpointVariants
{
    /// <param name="ints">I32 tensors written beside the float ones (a pruned model's kept rotary pairs)</param>
    public static string Write(string directory, JsonObject config, IEnumerable<(string Name, long[] Shape, float[] Data)> tensors,
        IEnumerable<(string Name, long[] Shape, int[] Data)>? ints = null)
    {
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, "config.json"), config.ToJsonString());
        SafeTensorsWriter.Write(Path.Combine(directory, "model.safetensors"),
            tensors.Select(t => new WriterTensor(t.Name, SafeTensorsDType.F32, t.Shape, t.Data))
                .Concat((ints ?? []).Select(t => WriterTensor.Int32(t.Name, t.Shape, () => t.Data))).ToList());
        return directory;
    }

    public static JsonObject Config(TinyCheckpoint ckpt)
        => JsonNode.Parse(File.ReadAllText(Path.Combine(ckpt.Directory, "config.json")))!.AsObject();

    /// <summary>The checkpoint's tensors with their stored shapes, read back through the production reader.</summary>
    public static List<(string Name, long[] Shape, float[] Data)> Tensors(TinyCheckpoint ckpt)
    {
        using var reader = CheckpointReader.Open(ckpt.Directory);
        return reader.TensorNames.OrderBy(n => n, StringComparer.Ordinal)
            .Select(n => (n, reader.GetInfo(n).Shape, reader.ReadAsFloat32(n))).ToList();
    }
}
