using System.Text.Json.Nodes;
using SvdLlm.Models.Checkpoints;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Quantization;

/// <summary>A quantized matrix [rows, cols] as a checkpoint stores it: codes on a grid (GPTQ layout) or indices into codebooks (VQ layout).</summary>
public interface IQuantizedMatrix
{
    int Rows { get; }
    int Cols { get; }

    /// <summary>Scale-and-zero groups per row (grid), or codebooks (VQ): for the report.</summary>
    int Groups { get; }

    Tensor<double> Dequantize();

    /// <summary>The tensors of module <paramref name="name"/> in the matrix's layout.</summary>
    IReadOnlyList<WriterTensor> LayoutTensors(string name);

    /// <summary>Bytes of <see cref="LayoutTensors"/> on disk.</summary>
    long StoredBytes { get; }
}

/// <summary>Helpers shared by the quantized matrix kinds.</summary>
internal static class QuantizedValues
{
    /// <summary>The dense [rows, cols] matrix of per-entry values (a grid code's or a centroid's).</summary>
    public static Tensor<double> Dense(int rows, int cols, Func<int, int, double> value)
    {
        var w = Tensor<double>.Uninitialized(rows, cols);
        for (int i = 0; i < rows; i++)
        {
            var row = w.Row(i);
            for (int j = 0; j < cols; j++) row[j] = value(i, j);
        }
        return w;
    }
}

/// <summary>What a Hessian-aware quantizer did to one matrix besides its codes.</summary>
/// <param name="Loss">½ tr(E (H + λI) Eᵀ), E = W − Q</param>
/// <param name="Damping">λ finally added to diag H (raised when a Cholesky failed)</param>
/// <param name="Note">what was regularised (dead inputs, raised damping), for the report; null when nothing was</param>
public sealed record QuantizationOutcome(double Loss, double Damping, int DeadColumns, string? Note);

/// <summary>
/// One way of quantizing a matrix, what it needs (H from calibration or nothing) and how it is stored: round-to-nearest
/// and GPTQ (GPTQ layout), GPTVQ (VQ layout). <see cref="SequentialGptq"/> and <see cref="QuantizedCheckpoint"/> run any of them.
/// </summary>
public abstract class MatrixQuantizer
{
    /// <summary>The method name (rtn, gptq, gptvq).</summary>
    public abstract string Name { get; }

    /// <summary>Whether it needs H = X Xᵀ of the matrix's input (and so the sequential calibration pass).</summary>
    public abstract bool NeedsHessian { get; }

    /// <summary>Quantizes W [m, n] (not modified) given H [n, n] when <see cref="NeedsHessian"/>.</summary>
    public abstract (IQuantizedMatrix Matrix, QuantizationOutcome? Outcome) Quantize(Tensor<double> w, Tensor<double>? h);

    /// <summary>Refuses a [rows, cols] matrix the layout cannot store, naming the linear.</summary>
    public abstract void CheckShape(string name, int rows, int cols);

    /// <summary>Bytes of a [rows, cols] matrix in the layout (for the preflight).</summary>
    public abstract long StoredBytes(int rows, int cols);

    /// <summary>config.json's quantization_config.</summary>
    public abstract JsonObject QuantizationConfig(string method);

    /// <summary>The settings, as the report lists them.</summary>
    public abstract JsonObject Settings();

    /// <summary>Index bits per weight (the nominal width; scales and codebooks come on top).</summary>
    public abstract int Bits { get; }

    public static MatrixQuantizer Rtn(GptqOptions options) => new GridQuantizer("rtn", options);

    public static MatrixQuantizer Gptq(GptqOptions options) => new GridQuantizer("gptq", options);

    /// <summary>Round-to-nearest or GPTQ on GPTQ's uniform grid, stored in the GPTQ layout.</summary>
    private sealed class GridQuantizer : MatrixQuantizer
    {
        private readonly GptqOptions _options;

        public GridQuantizer(string name, GptqOptions options)
        {
            options.Check();
            if (!GptqLayout.IsPackable(options.Bits)) throw new ArgumentException($"--bits {options.Bits}: the GPTQ layout stores 2, 3, 4 or 8 bits");
            Name = name;
            _options = options;
        }

        public override string Name { get; }
        public override bool NeedsHessian => Name == "gptq";
        public override int Bits => _options.Bits;

        public override (IQuantizedMatrix Matrix, QuantizationOutcome? Outcome) Quantize(Tensor<double> w, Tensor<double>? h)
        {
            if (!NeedsHessian) return (Quantization.Gptq.RoundToNearest(w, _options.Bits, _options.GroupSize, _options.Symmetric), null);
            var r = Quantization.Gptq.Quantize(w, h ?? throw new ArgumentNullException(nameof(h), "GPTQ needs H"), _options);
            return (r.Matrix, new QuantizationOutcome(r.Loss, r.Damping, r.DeadColumns, r.Note));
        }

        public override void CheckShape(string name, int rows, int cols) => GptqLayout.CheckShape(name, rows, cols, _options.Bits);

        public override long StoredBytes(int rows, int cols)
            => QuantizedMatrix.LayoutBytes(rows, cols, _options.GroupSize > 0 ? (cols + _options.GroupSize - 1) / _options.GroupSize : 1, _options.Bits);

        public override JsonObject QuantizationConfig(string method) => new()
        {
            ["quant_method"] = "gptq",
            ["bits"] = _options.Bits,
            ["group_size"] = _options.GroupSize > 0 ? _options.GroupSize : -1,
            ["desc_act"] = _options.ActOrder,
            ["sym"] = _options.Symmetric,
            ["static_groups"] = _options.StaticGroups,
            ["true_sequential"] = true,
            ["damp_percent"] = _options.PercentDamping,
            // Both spellings: transformers' GPTQConfig reads checkpoint_format, optimum's newer quantizer and GPTQModel read format.
            // "gptq" (v1) stores zero − 1; the grid never makes a zero of 0, so no field wraps around.
            ["checkpoint_format"] = "gptq",
            ["format"] = "gptq",
            ["svdllm_method"] = method,
        };

        public override JsonObject Settings() => new()
        {
            ["bits"] = _options.Bits,
            ["group_size"] = _options.GroupSize > 0 ? _options.GroupSize : -1,
            ["act_order"] = _options.ActOrder,
            ["static_groups"] = _options.StaticGroups,
            ["sym"] = _options.Symmetric,
            ["damp_percent"] = _options.PercentDamping,
            ["block_size"] = _options.BlockSize,
        };
    }
}
