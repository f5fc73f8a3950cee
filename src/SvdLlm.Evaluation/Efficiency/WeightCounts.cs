using SvdLlm.Models.Checkpoints;

namespace SvdLlm.Evaluation.Efficiency;

/// <summary>What a checkpoint stores: tensors, their elements (parameters) and their bytes in the stored dtype.</summary>
public sealed record WeightCounts(int Tensors, long Parameters, long StoredBytes)
{
    /// <summary>Bytes once every weight is converted to float32, as the model computes with them.</summary>
    public long Float32Bytes => Parameters * sizeof(float);

    /// <summary>Counts every tensor of the checkpoint's safetensors files (headers only; no data is read).</summary>
    public static WeightCounts FromCheckpoint(CheckpointReader reader)
    {
        int tensors = 0;
        long parameters = 0, bytes = 0;
        foreach (string name in reader.TensorNames)
        {
            var info = reader.GetInfo(name);
            tensors++;
            parameters += info.ElementCount;
            bytes += info.ByteLength;
        }
        return new WeightCounts(tensors, parameters, bytes);
    }
}
