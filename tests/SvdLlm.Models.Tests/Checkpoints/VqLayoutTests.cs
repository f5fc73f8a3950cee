using SvdLlm.Models.Checkpoints;

namespace SvdLlm.Models.Tests.Checkpoints;

/// <summary>The VQ layout read back against a naive dequantizer written from the layout's definition, and its format errors.</summary>
public class VqLayoutTests
{
    /// <summary>Bit i of a row's stream, read naively: bit i mod 8 of byte ⌊i / 8⌋.</summary>
    private static int Bit(byte[] packed, int rowStart, long i) => (packed[rowStart + (int)(i / 8)] >> (int)(i % 8)) & 1;

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(6)]
    [InlineData(8)]
    public void IndicesPackLowestBitFirstPerRowAndUnpackToThemselves(int indexBits)
    {
        int rows = 3, vectors = 11;
        var rng = new Random(indexBits);
        var indices = Enumerable.Range(0, rows * vectors).Select(_ => (byte)rng.Next(1 << indexBits)).ToArray();
        var packed = VqLayout.PackIndices(indices, rows, vectors, indexBits);
        int rowBytes = (vectors * indexBits + 7) / 8;
        Assert.Equal(rows * rowBytes, packed.Length);
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < vectors; j++)
            {
                int v = 0;
                for (int b = 0; b < indexBits; b++) v |= Bit(packed, r * rowBytes, (long)j * indexBits + b) << b;
                Assert.Equal(indices[r * vectors + j], v);
            }
        Assert.Equal(indices, VqLayout.UnpackIndices(packed, rows, vectors, indexBits));
        if (indexBits < 8) Assert.Throws<ArgumentException>(() => VqLayout.PackIndices([(byte)(1 << indexBits)], 1, 1, indexBits));
    }

    [Fact]
    public void ALinearReadsBackAsTheCentroidOfEachVectorFromItsRowAndColumnBlocksCodebook()
    {
        using var dir = new TempDirectory();
        // 10 rows with 4 per codebook (3 row blocks, the last short), 12 columns with 8 per codebook (2 column blocks,
        // the last short), vectors of 2, 2 bits per weight: K = 16 centroids per codebook, 6 codebooks.
        int outF = 10, inF = 12, d = 2, r = 4, c = 8, bits = 2, k = 16, books = 6;
        var rng = new Random(9);
        var indices = Enumerable.Range(0, outF * inF / d).Select(_ => (byte)rng.Next(k)).ToArray();
        var codes = Enumerable.Range(0, books * k * d).Select(_ => (byte)(sbyte)rng.Next(-127, 128)).ToArray();
        var scales = Enumerable.Range(0, books).Select(_ => (float)(0.001 + rng.NextDouble() * 0.01)).ToArray();
        void Write(int[] grid, SafeTensorsDType indexType = SafeTensorsDType.U8) => SafeTensorsWriter.Write(Path.Combine(dir.Path, "model.safetensors"),
        [
            WriterTensor.Int32("l.vq_grid", [4], () => grid),
            WriterTensor.Bytes("l.vq_indices", indexType, [outF, VqLayout.PackedRowBytes(inF / d, bits * d)], () => VqLayout.PackIndices(indices, outF, inF / d, bits * d)),
            WriterTensor.Bytes("l.vq_codebooks", SafeTensorsDType.I8, [books, k, d], () => codes),
            new WriterTensor("l.vq_scales", SafeTensorsDType.F32, [books], scales),
        ]);
        Write([d, r, c, bits]);
        using (var reader = CheckpointReader.Open(dir.Path))
        {
            Assert.True(VqLayout.IsVq(reader, "l"));
            var w = VqLayout.Dequantize(reader, "l", outF, inF);
            for (int row = 0; row < outF; row++)
                for (int col = 0; col < inF; col++)
                {
                    // Row block row/4, column block col/8, two column blocks per row block.
                    int book = row / 4 * 2 + col / 8;
                    int centroid = indices[row * (inF / d) + col / d];
                    float expected = scales[book] * (sbyte)codes[(book * k + centroid) * d + col % d];
                    Assert.Equal(expected, w[row * inF + col]);
                }
        }
        // A grid whose D does not divide the columns, and indices of the wrong dtype, are format errors naming the tensor.
        Write([5, r, c, bits]);
        using (var bad = CheckpointReader.Open(dir.Path))
            Assert.Contains("l.vq_grid", Assert.Throws<CheckpointFormatException>(() => VqLayout.Dequantize(bad, "l", outF, inF)).Message);
        Write([d, r, c, bits], SafeTensorsDType.I8);
        using (var bad = CheckpointReader.Open(dir.Path))
            Assert.Contains("l.vq_indices", Assert.Throws<CheckpointFormatException>(() => VqLayout.Dequantize(bad, "l", outF, inF)).Message);
    }
}
