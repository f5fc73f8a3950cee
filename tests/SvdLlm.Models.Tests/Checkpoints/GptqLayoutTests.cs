using SvdLlm.Models.Checkpoints;

namespace SvdLlm.Models.Tests.Checkpoints;

/// <summary>
/// The GPTQ layout's bit packing against words worked out by hand from AutoGPTQ's packing loops (3 bits: ten codes per
/// word, the 11th split 2 + 1 bits across words 0 and 1, the 22nd 1 + 2 bits across words 1 and 2) and against a naive
/// bit-by-bit reader, and a whole linear read back through the checkpoint reader.
/// </summary>
public class GptqLayoutTests
{
    /// <summary>Bit t of code j in a chunk of 32 b-bit codes is bit (b·j + t) of the little-endian stream of b words.</summary>
    private static int NaiveCode(Func<int, uint> word, int bits, int j)
    {
        int v = 0;
        for (int t = 0; t < bits; t++)
        {
            int s = bits * j + t;
            if (((word(s / 32) >> (s % 32)) & 1) != 0) v |= 1 << t;
        }
        return v;
    }

    [Fact]
    public void FourBitsPutEightCodesInAWordLowestFirst()
    {
        var values = new int[32];
        for (int j = 0; j < 8; j++) values[j] = j;
        values[8] = 15;
        var packed = GptqLayout.PackRows(values, 32, 1, 4);
        Assert.Equal(4, packed.Length);
        Assert.Equal(0x76543210, packed[0]);
        Assert.Equal(0xF, packed[1]);
    }

    [Fact]
    public void ThreeBitsSplitTheEleventhAndTwentySecondCodesAcrossWords()
    {
        var values = new int[32];
        values[10] = 0b111;
        values[21] = 0b101;
        values[0] = 0b011;
        values[31] = 0b100;
        var packed = GptqLayout.PackRows(values, 32, 1, 3);
        Assert.Equal(3, packed.Length);
        Assert.Equal(unchecked((int)0xC0000003u), packed[0]);          // code 0 in bits 0–2, code 10's low two bits in 30–31
        Assert.Equal(unchecked((int)0x80000001u), packed[1]);          // code 10's high bit in bit 0, code 21's low bit in bit 31
        Assert.Equal(unchecked((int)(0b10u | (0b100u << 29))), packed[2]); // code 21's high two bits in 0–1, code 31 in bits 29–31
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(8)]
    public void PackingAlongEitherAxisMatchesTheNaiveBitReader(int bits)
    {
        var r = new Random(bits);
        int rows = 64, cols = 96;
        var values = Enumerable.Range(0, rows * cols).Select(_ => r.Next(1 << bits)).ToArray();

        var byRows = GptqLayout.PackRows(values, rows, cols, bits);
        Assert.Equal(rows / 32 * bits * cols, byRows.Length);
        for (int c = 0; c < cols; c++)
            for (int i = 0; i < rows; i++)
            {
                int chunk = i / 32;
                Assert.Equal(values[i * cols + c], NaiveCode(w => (uint)byRows[(chunk * bits + w) * cols + c], bits, i % 32));
            }
        Assert.Equal(values, GptqLayout.UnpackRows(byRows, rows, cols, bits));

        var byCols = GptqLayout.PackCols(values, rows, cols, bits);
        int wcols = cols / 32 * bits;
        for (int i = 0; i < rows; i++)
            for (int c = 0; c < cols; c++)
                Assert.Equal(values[i * cols + c], NaiveCode(w => (uint)byCols[i * wcols + c / 32 * bits + w], bits, c % 32));
        Assert.Equal(values, GptqLayout.UnpackCols(byCols, rows, cols, bits));
    }

    [Fact]
    public void ALinearReadsBackAsScaleTimesCodeMinusStoredZeroPlusOne()
    {
        using var dir = new TempDirectory();
        int outF = 64, inF = 96, bits = 4, groups = 3;
        var r = new Random(5);
        var codes = Enumerable.Range(0, inF * outF).Select(_ => r.Next(16)).ToArray();       // [in, out]
        var zeros = Enumerable.Range(0, groups * outF).Select(_ => 1 + r.Next(15)).ToArray();  // [groups, out], ≥ 1
        var scales = Enumerable.Range(0, groups * outF).Select(_ => (float)(Half)(0.01 + r.NextDouble() * 0.1)).ToArray();
        var gIdx = Enumerable.Range(0, inF).Select(i => (i * 7) % groups).ToArray();
        var stored = zeros.Select(z => z - GptqLayout.StoredZeroOffset).ToArray();
        SafeTensorsWriter.Write(Path.Combine(dir.Path, "model.safetensors"),
        [
            WriterTensor.Int32("l.qweight", [inF / 32 * bits, outF], () => GptqLayout.PackRows(codes, inF, outF, bits)),
            WriterTensor.Int32("l.qzeros", [groups, outF / 32 * bits], () => GptqLayout.PackCols(stored, groups, outF, bits)),
            new WriterTensor("l.scales", SafeTensorsDType.F16, [groups, outF], scales),
            WriterTensor.Int32("l.g_idx", [inF], () => gIdx),
        ]);
        using var reader = CheckpointReader.Open(dir.Path);
        Assert.Equal(bits, GptqLayout.BitsOf(reader, "l", inF));
        var w = GptqLayout.Dequantize(reader, "l", outF, inF);
        for (int o = 0; o < outF; o++)
            for (int i = 0; i < inF; i++)
            {
                int g = gIdx[i];
                float expected = scales[g * outF + o] * (codes[i * outF + o] - zeros[g * outF + o]);
                Assert.Equal(expected, w[o * inF + i]);
            }
        // A g_idx naming a group that does not exist is a format error naming the tensor.
        SafeTensorsWriter.Write(Path.Combine(dir.Path, "model.safetensors"),
        [
            WriterTensor.Int32("l.qweight", [inF / 32 * bits, outF], () => GptqLayout.PackRows(codes, inF, outF, bits)),
            WriterTensor.Int32("l.qzeros", [groups, outF / 32 * bits], () => GptqLayout.PackCols(stored, groups, outF, bits)),
            new WriterTensor("l.scales", SafeTensorsDType.F16, [groups, outF], scales),
            WriterTensor.Int32("l.g_idx", [inF], () => gIdx.Select(g => g + 1).ToArray()),
        ]);
        using var bad = CheckpointReader.Open(dir.Path);
        var e = Assert.Throws<CheckpointFormatException>(() => GptqLayout.Dequantize(bad, "l", outF, inF));
        Assert.Contains("l.g_idx", e.Message);
    }
}
