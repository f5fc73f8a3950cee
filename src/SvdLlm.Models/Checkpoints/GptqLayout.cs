namespace SvdLlm.Models.Checkpoints;

/// <summary>
/// The GPTQ checkpoint layout the Hugging Face stack loads (AutoGPTQ's and GPTQModel's QuantLinear, checkpoint_format
/// "gptq"), for a linear "name" with W [out, in] quantized to b bits in G groups:
/// - name.qweight I32 [in·b/32, out]: the codes of W transposed, 32 consecutive input rows packed into b words per
///   column as one little-endian bit stream (code j of the 32 at stream bit b·j; for b = 3 a code can straddle words);
/// - name.qzeros I32 [G, out·b/32]: zero − 1 per group and output, packed the same way along the output axis;
/// - name.scales F16 [G, out]; name.g_idx I32 [in]: the group of each input column; name.bias as the original.
/// W[o, i] = scales[g, o]·(code[o, i] − (stored_zero[g, o] + 1)), g = g_idx[i]. Packing needs in and out to be multiples of 32.
/// </summary>
public static class GptqLayout
{
    public static readonly string[] Suffixes = ["qweight", "qzeros", "scales", "g_idx"];

    /// <summary>The layout stores zero − 1, so a zero point of 0 cannot be written (the quantizer never makes one).</summary>
    public const int StoredZeroOffset = 1;

    public static bool IsPackable(int bits) => bits is 2 or 3 or 4 or 8;

    public static void CheckShape(string name, int rows, int cols, int bits)
    {
        if (!IsPackable(bits)) throw new ArgumentException($"{name}: the GPTQ layout packs 2, 3, 4 or 8 bits, not {bits}");
        if (rows % 32 != 0 || cols % 32 != 0)
            throw new ArgumentException($"{name}: the GPTQ layout packs along both axes in runs of 32; [{rows}, {cols}] is not a multiple of 32 in both");
    }

    /// <summary>Packs values [rows, cols] (each &lt; 2^bits) along the row axis: [rows·bits/32, cols].</summary>
    public static int[] PackRows(ReadOnlySpan<int> values, int rows, int cols, int bits)
    {
        Check(values.Length, rows, cols, bits, rows, "rows");
        var packed = new int[(long)rows / 32 * bits * cols];
        Span<int> chunk = stackalloc int[32];
        Span<uint> words = stackalloc uint[8];
        for (int c = 0; c < cols; c++)
            for (int r0 = 0; r0 < rows; r0 += 32)
            {
                for (int j = 0; j < 32; j++) chunk[j] = values[(r0 + j) * cols + c];
                PackChunk(chunk, words[..bits], bits);
                for (int w = 0; w < bits; w++) packed[(r0 / 32 * bits + w) * cols + c] = (int)words[w];
            }
        return packed;
    }

    /// <summary>Inverse of <see cref="PackRows"/>: values [rows, cols].</summary>
    public static int[] UnpackRows(ReadOnlySpan<int> packed, int rows, int cols, int bits)
    {
        Check(packed.Length, rows / 32 * bits, cols, bits, rows, "rows");
        var values = new int[(long)rows * cols];
        Span<int> chunk = stackalloc int[32];
        Span<uint> words = stackalloc uint[8];
        for (int c = 0; c < cols; c++)
            for (int r0 = 0; r0 < rows; r0 += 32)
            {
                for (int w = 0; w < bits; w++) words[w] = (uint)packed[(r0 / 32 * bits + w) * cols + c];
                UnpackChunk(words[..bits], chunk, bits);
                for (int j = 0; j < 32; j++) values[(r0 + j) * cols + c] = chunk[j];
            }
        return values;
    }

    /// <summary>Packs values [rows, cols] along the column axis: [rows, cols·bits/32] (qzeros; small, so packed through a transpose).</summary>
    public static int[] PackCols(ReadOnlySpan<int> values, int rows, int cols, int bits)
    {
        Check(values.Length, rows, cols, bits, cols, "columns");
        return Transposed(PackRows(Transposed(values, rows, cols), cols, rows, bits), cols / 32 * bits, rows);
    }

    /// <summary>Inverse of <see cref="PackCols"/>: values [rows, cols].</summary>
    public static int[] UnpackCols(ReadOnlySpan<int> packed, int rows, int cols, int bits)
    {
        int wcols = cols / 32 * bits;
        Check(packed.Length, rows, wcols, bits, cols, "columns");
        return Transposed(UnpackRows(Transposed(packed, rows, wcols), cols, rows, bits), cols, rows);
    }

    private static int[] Transposed(ReadOnlySpan<int> a, int rows, int cols)
    {
        var t = new int[a.Length];
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++) t[j * rows + i] = a[i * cols + j];
        return t;
    }

    /// <summary>32 values of b bits → b words: value j at bit b·j of the little-endian stream w₀ w₁ … .</summary>
    private static void PackChunk(ReadOnlySpan<int> chunk, Span<uint> words, int bits)
    {
        words.Clear();
        uint mask = (1u << bits) - 1;
        for (int j = 0; j < 32; j++)
        {
            uint v = (uint)chunk[j];
            if (v > mask) throw new ArgumentOutOfRangeException(nameof(chunk), $"value {chunk[j]} does not fit in {bits} bits");
            int bit = bits * j, w = bit >> 5, off = bit & 31;
            words[w] |= v << off;
            if (off + bits > 32) words[w + 1] |= v >> (32 - off);
        }
    }

    private static void UnpackChunk(ReadOnlySpan<uint> words, Span<int> chunk, int bits)
    {
        uint mask = (1u << bits) - 1;
        for (int j = 0; j < 32; j++)
        {
            int bit = bits * j, w = bit >> 5, off = bit & 31;
            uint v = words[w] >> off;
            if (off + bits > 32) v |= words[w + 1] << (32 - off);
            chunk[j] = (int)(v & mask);
        }
    }

    private static void Check(long length, int rows, int cols, int bits, int packedAxis, string axis)
    {
        if (!IsPackable(bits)) throw new ArgumentException($"the GPTQ layout packs 2, 3, 4 or 8 bits, not {bits}");
        if (packedAxis % 32 != 0) throw new ArgumentException($"{packedAxis} {axis} are not a multiple of 32");
        if (length != (long)rows * cols) throw new ArgumentException($"{length} values for [{rows}, {cols}]");
    }

    /// <summary>
    /// W [out, in] float32 from one linear's GPTQ tensors, checked against the shapes the layout implies; every error names
    /// the checkpoint, the tensor and what was expected.
    /// </summary>
    public static float[] Dequantize(CheckpointReader reader, string name, int outFeatures, int inFeatures)
    {
        int bits = BitsOf(reader, name, inFeatures);
        var scalesInfo = reader.GetInfo(name + ".scales");
        if (scalesInfo.Shape.Length != 2 || scalesInfo.Shape[1] != outFeatures || scalesInfo.Shape[0] < 1)
            throw CheckpointFormatException.WithMessage(reader.Directory, name + ".scales", $"tensor '{name}.scales' in {reader.Directory} has shape {scalesInfo.ShapeText}; expected [groups, {outFeatures}]");
        int groups = (int)scalesInfo.Shape[0];
        reader.RequireShape(name + ".qzeros", groups, outFeatures / 32 * bits);
        reader.RequireShape(name + ".g_idx", inFeatures);
        var codes = UnpackRows(reader.ReadInt32(name + ".qweight"), inFeatures, outFeatures, bits);
        var zeros = UnpackCols(reader.ReadInt32(name + ".qzeros"), groups, outFeatures, bits);
        var scales = reader.ReadAsFloat32(name + ".scales");
        var gIdx = reader.ReadInt32(name + ".g_idx");
        var w = new float[(long)outFeatures * inFeatures];
        for (int i = 0; i < inFeatures; i++)
        {
            int g = gIdx[i];
            if (g < 0 || g >= groups)
                throw CheckpointFormatException.WithMessage(reader.Directory, name + ".g_idx", $"tensor '{name}.g_idx' in {reader.Directory} gives input {i} group {g}; there are {groups} groups");
            for (int o = 0; o < outFeatures; o++)
                w[(long)o * inFeatures + i] = scales[g * outFeatures + o] * (codes[(long)i * outFeatures + o] - (zeros[g * outFeatures + o] + StoredZeroOffset));
        }
        return w;
    }

    /// <summary>b from qweight's shape [in·b/32, out]; a shape no b in {2, 3, 4, 8} explains is a format error.</summary>
    public static int BitsOf(CheckpointReader reader, string name, int inFeatures)
    {
        var info = reader.GetInfo(name + ".qweight");
        if (info.Shape.Length == 2 && inFeatures % 32 == 0)
            foreach (int b in new[] { 2, 3, 4, 8 })
                if (info.Shape[0] == (long)inFeatures / 32 * b) return b;
        throw CheckpointFormatException.WithMessage(reader.Directory, name + ".qweight",
            $"tensor '{name}.qweight' in {reader.Directory} has shape {info.ShapeText}; expected [{inFeatures}·b/32, out] for b in 2, 3, 4, 8");
    }
}
