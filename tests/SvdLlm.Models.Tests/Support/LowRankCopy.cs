using SvdLlm.Models.Architectures;
using SvdLlm.Models.Checkpoints;
using SvdLlm.Models.Tests.Reference;

namespace SvdLlm.Models.Tests;

/// <summary>
/// A copy of a tiny checkpoint with every decoder linear W [m, n] stored as U = W[:, :k], V = I[:k, :] and its
/// bias on the U factor: the layout of a compressed checkpoint, for tests of sizes and speed that need only the
/// shapes (the values are not a good approximation of W).
/// </summary>
internal static class LowRankCopy
{
    public static string Write(TinyCheckpoint ckpt, string directory, int rank)
    {
        var tensors = new List<WriterTensor>();
        foreach (var (name, shape) in ckpt.Shapes)
        {
            var data = ckpt.Weights[name].Select(x => (float)x).ToArray();
            string linear = name[..name.LastIndexOf('.')];
            if (!IsLayerLinear(name))
            {
                tensors.Add(new WriterTensor(name, SafeTensorsDType.F32, shape.Select(d => (long)d).ToArray(), data));
                continue;
            }
            if (name.EndsWith(".bias", StringComparison.Ordinal))
            {
                tensors.Add(new WriterTensor(Linear.UName(linear) + ".bias", SafeTensorsDType.F32, [shape[0]], data));
                continue;
            }
            int m = shape[0], n = shape[1];
            var u = new float[m * rank];
            var v = new float[rank * n];
            for (int i = 0; i < m; i++) for (int j = 0; j < rank; j++) u[i * rank + j] = data[i * n + j];
            for (int j = 0; j < rank; j++) v[j * n + j] = 1f;
            tensors.Add(new WriterTensor(Linear.UName(linear) + ".weight", SafeTensorsDType.F32, [m, rank], u));
            tensors.Add(new WriterTensor(Linear.VName(linear) + ".weight", SafeTensorsDType.F32, [rank, n], v));
        }
        Directory.CreateDirectory(directory);
        File.Copy(ckpt.ConfigPath, Path.Combine(directory, "config.json"));
        SafeTensorsWriter.Write(Path.Combine(directory, "model.safetensors"), tensors);
        return directory;
    }

    /// <summary>A decoder linear's weight or bias ("model.layers.0.self_attn.q_proj.weight").</summary>
    public static bool IsLayerLinear(string name)
        => name.Contains(".layers.", StringComparison.Ordinal) && name[..name.LastIndexOf('.')].EndsWith("_proj", StringComparison.Ordinal);
}
