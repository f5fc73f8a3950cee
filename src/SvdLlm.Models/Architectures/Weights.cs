using SvdLlm.Models.Checkpoints;
using SvdLlm.Numerics;

namespace SvdLlm.Models.Architectures;

/// <summary>Reads named checkpoint tensors into float32 tensors after checking their shapes against the config.</summary>
internal static class Weights
{
    public static Tensor<float> Matrix(CheckpointReader reader, string name, int rows, int cols)
    {
        reader.RequireShape(name, rows, cols);
        var t = Tensor<float>.Uninitialized(rows, cols);
        try
        {
            reader.ReadAsFloat32(name, t.Span);
            return t;
        }
        catch
        {
            t.Dispose();
            throw;
        }
    }

    public static Tensor<float> Vector(CheckpointReader reader, string name, int length)
    {
        reader.RequireShape(name, length);
        var t = Tensor<float>.Uninitialized(length);
        try
        {
            reader.ReadAsFloat32(name, t.Span);
            return t;
        }
        catch
        {
            t.Dispose();
            throw;
        }
    }
}
