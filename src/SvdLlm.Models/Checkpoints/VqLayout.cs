namespace SvdLlm.Models.Checkpoints;

/// <summary>
/// This project's checkpoint layout for vector-quantized linears (GPTVQ; no standard layout exists). For a linear
/// <c>M</c> [out, in] quantized with vectors of D consecutive input columns of one row:
/// <list type="bullet">
/// <item><c>M.vq_grid</c> I32 [4]: D, rows per codebook R, columns per codebook C, index bits per weight b;</item>
/// <item><c>M.vq_indices</c> U8 [out, ⌈(in / D) · b·D / 8⌉]: the centroid of each vector, b·D bits each, packed per
/// row least significant bit first (index j of a row holds bits j·b·D … (j+1)·b·D − 1 of the row's bit stream, and
/// bit i of the stream is bit i mod 8 of byte ⌊i / 8⌋);</item>
/// <item><c>M.vq_codebooks</c> [codebooks, K, D] with K = 2^(b·D): I8 with <c>M.vq_scales</c> F32 [codebooks]
/// (centroid = scale · code), or F32/F16 as they are;</item>
/// </list>
/// codebook of (row r, column c) = (r / R) · ⌈in / C⌉ + c / C. Self-describing per tensor, so a reader needs no config.
/// </summary>
public static class VqLayout
{
    public static readonly string[] Suffixes = ["vq_grid", "vq_indices", "vq_codebooks", "vq_scales"];

    public static bool IsVq(CheckpointReader reader, string name) => reader.Contains(name + ".vq_indices");

    /// <summary>The grid of a VQ linear, checked: D, R, C, b.</summary>
    public static (int D, int RowsPerCodebook, int ColumnsPerCodebook, int Bits) Grid(CheckpointReader reader, string name, int outFeatures, int inFeatures)
    {
        reader.RequireShape(name + ".vq_grid", 4);
        var g = reader.ReadInt32(name + ".vq_grid");
        int d = g[0], r = g[1], c = g[2], bits = g[3];
        if (d < 1 || inFeatures % d != 0 || r < 1 || c < 1 || c % d != 0 || bits < 1 || bits * d > 8)
            throw CheckpointFormatException.WithMessage(reader.Directory, name + ".vq_grid",
                $"tensor '{name}.vq_grid' in {reader.Directory} is [{string.Join(", ", g)}]; expected [D, R, C, b] with D dividing {inFeatures} and C, R, C ≥ 1, b·D ≤ 8");
        return (d, r, c, bits);
    }

    /// <summary>Bytes of one row of packed indices: <paramref name="vectors"/> indices of <paramref name="indexBits"/> bits.</summary>
    public static int PackedRowBytes(int vectors, int indexBits) => (int)(((long)vectors * indexBits + 7) / 8);

    /// <summary>Packs indices [rows, vectors] (each &lt; 2^indexBits) row by row into the layout's bit stream.</summary>
    public static byte[] PackIndices(ReadOnlySpan<byte> indices, int rows, int vectors, int indexBits)
    {
        if (indexBits < 1 || indexBits > 8) throw new ArgumentOutOfRangeException(nameof(indexBits), $"index bits must be 1..8, got {indexBits}");
        if (indices.Length != (long)rows * vectors) throw new ArgumentException($"{indices.Length} indices for [{rows}, {vectors}]");
        int rowBytes = PackedRowBytes(vectors, indexBits);
        var packed = new byte[(long)rows * rowBytes];
        for (int r = 0; r < rows; r++)
        {
            var dst = packed.AsSpan(r * rowBytes, rowBytes);
            var src = indices.Slice(r * vectors, vectors);
            for (int j = 0; j < vectors; j++)
            {
                int v = src[j];
                if (v >> indexBits != 0) throw new ArgumentException($"index {v} at [{r}, {j}] does not fit {indexBits} bits");
                long bit = (long)j * indexBits;
                int at = (int)(bit >> 3), off = (int)(bit & 7);
                dst[at] |= (byte)(v << off);
                if (off + indexBits > 8) dst[at + 1] |= (byte)(v >> (8 - off));
            }
        }
        return packed;
    }

    /// <summary>The inverse of <see cref="PackIndices"/>.</summary>
    public static byte[] UnpackIndices(ReadOnlySpan<byte> packed, int rows, int vectors, int indexBits)
    {
        int rowBytes = PackedRowBytes(vectors, indexBits);
        if (packed.Length != (long)rows * rowBytes) throw new ArgumentException($"{packed.Length} bytes for {rows} rows of {rowBytes}");
        var indices = new byte[(long)rows * vectors];
        int mask = (1 << indexBits) - 1;
        for (int r = 0; r < rows; r++)
        {
            var src = packed.Slice(r * rowBytes, rowBytes);
            for (int j = 0; j < vectors; j++)
            {
                long bit = (long)j * indexBits;
                int at = (int)(bit >> 3), off = (int)(bit & 7);
                int v = src[at] >> off;
                if (off + indexBits > 8) v |= src[at + 1] << (8 - off);
                indices[(long)r * vectors + j] = (byte)(v & mask);
            }
        }
        return indices;
    }

    public static int Codebooks(int outFeatures, int inFeatures, int rowsPerCodebook, int columnsPerCodebook)
        => (outFeatures + rowsPerCodebook - 1) / rowsPerCodebook * ((inFeatures + columnsPerCodebook - 1) / columnsPerCodebook);

    /// <summary>W [out, in] float32 from one linear's VQ tensors; every error names the checkpoint, the tensor and what was expected.</summary>
    public static float[] Dequantize(CheckpointReader reader, string name, int outFeatures, int inFeatures)
    {
        var (d, r, c, bits) = Grid(reader, name, outFeatures, inFeatures);
        int k = 1 << (bits * d), codebooks = Codebooks(outFeatures, inFeatures, r, c), perRow = (inFeatures + c - 1) / c;
        reader.RequireShape(name + ".vq_indices", outFeatures, PackedRowBytes(inFeatures / d, bits * d));
        reader.RequireShape(name + ".vq_codebooks", codebooks, k, d);
        var indices = UnpackIndices(reader.ReadBytes(name + ".vq_indices", SafeTensorsDType.U8), outFeatures, inFeatures / d, bits * d);
        float[] centroids;
        if (reader.GetInfo(name + ".vq_codebooks").DType == SafeTensorsDType.I8)
        {
            reader.RequireShape(name + ".vq_scales", codebooks);
            var codes = reader.ReadBytes(name + ".vq_codebooks", SafeTensorsDType.I8);
            var scales = reader.ReadAsFloat32(name + ".vq_scales");
            centroids = new float[codes.Length];
            for (int i = 0; i < codes.Length; i++) centroids[i] = scales[i / (k * d)] * (sbyte)codes[i];
        }
        else centroids = reader.ReadAsFloat32(name + ".vq_codebooks");
        var w = new float[(long)outFeatures * inFeatures];
        for (int row = 0; row < outFeatures; row++)
            for (int v = 0; v < inFeatures / d; v++)
            {
                int col = v * d;
                int book = row / r * perRow + col / c;
                int centroid = indices[(long)row * (inFeatures / d) + v];
                for (int j = 0; j < d; j++) w[(long)row * inFeatures + col + j] = centroids[(book * k + centroid) * d + j];
            }
        return w;
    }
}
