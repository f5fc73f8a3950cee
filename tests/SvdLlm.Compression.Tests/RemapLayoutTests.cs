using SvdLlm.Compression.Dobi;
using SvdLlm.Models.Checkpoints;
using SvdLlm.Models.Tests;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Tests;

/// <summary>
/// Dobi-SVD's remapped factors through the checkpoint layout: what the loader reads back (SvdLlm.Models, its own
/// dequantizer) multiplies out to what DobiRemap's dequantizer gives, for tall and wide matrices, with the stored bytes
/// the layout promises; a wrong shape is refused naming the tensor.
/// </summary>
public class RemapLayoutTests
{
    [Theory]
    [InlineData(12, 7, 5)] // m ≥ n: the long vectors are U's columns
    [InlineData(6, 11, 4)] // m < n: the long vectors are V's rows
    [InlineData(8, 8, 8)]  // square at full rank: no float16 rest
    public void The_loaded_factors_multiply_to_the_remapped_weight(int m, int n, int k)
    {
        using var dir = new TempDirectory();
        var rng = new Random(m * 31 + n);
        using var w = Tensor<double>.Uninitialized(m, n);
        for (int i = 0; i < w.Span.Length; i++) w.Span[i] = rng.NextDouble() * 2 - 1;
        var f = DobiRemap.Quantize(w, k, halfPrecision: true);
        int p = Math.Min(m, n), big = Math.Max(m, n);
        SafeTensorsWriter.Write(Path.Combine(dir.Path, "model.safetensors"),
            RemapLayout.Tensors("x_u_proj", k, p, big, f.LongCodes, f.LongAbsmax, f.ShortCodes, f.ShortAbsmax, f.Remainder, DynamicMap.Codes));
        using var reader = CheckpointReader.Open(dir.Path);
        Assert.True(RemapLayout.IsRemapped(reader, "x_u_proj"));
        Assert.Equal(k, RemapLayout.Rank(reader, "x_u_proj", m, n));
        var (u, v) = RemapLayout.Dequantize(reader, "x_u_proj", m, n, k);
        using var expected = DobiRemap.Dequantize(f);
        double scale = expected.Span.ToArray().Max(Math.Abs);
        for (int r = 0; r < m; r++)
            for (int c = 0; c < n; c++)
            {
                double s = 0;
                for (int i = 0; i < k; i++) s += (double)u[r * k + i] * v[i * n + c];
                // float32 factors (8-bit codes × float16 scales are exact in float32; the code book rounds to float32): ~1e-7 relative.
                Assert.True(Math.Abs(s - expected[r, c]) <= 1e-5 * scale, $"[{r},{c}]: {s} vs {expected[r, c]}");
            }
        // Stored: two k×p code arrays, the float16 rest and 2k float16 scales, and the 256-entry float32 code book.
        long bytes = RemapLayout.Suffixes.Where(s => reader.Contains("x_u_proj." + s)).Sum(s => reader.GetInfo("x_u_proj." + s).ByteLength);
        Assert.Equal(2L * k * p + 2L * k * (big - p) + 4L * k + 1024, bytes);
    }

    [Fact]
    public void A_wrong_shape_is_refused_naming_the_tensor()
    {
        using var dir = new TempDirectory();
        var f = DobiRemap.Quantize(Tensor<double>.From(Enumerable.Range(0, 12).Select(i => (double)(i % 5) - 2).ToArray(), 4, 3), 2, halfPrecision: true);
        SafeTensorsWriter.Write(Path.Combine(dir.Path, "model.safetensors"),
            RemapLayout.Tensors("x_u_proj", 2, 3, 4, f.LongCodes, f.LongAbsmax, f.ShortCodes, f.ShortAbsmax, f.Remainder, DynamicMap.Codes));
        using var reader = CheckpointReader.Open(dir.Path);
        // Read as a 4 × 5 linear, whose short side would be 4, not 3.
        var e = Assert.Throws<CheckpointFormatException>(() => RemapLayout.Rank(reader, "x_u_proj", 4, 5));
        Assert.Contains("x_u_proj.remap_long", e.Message);
    }
}
