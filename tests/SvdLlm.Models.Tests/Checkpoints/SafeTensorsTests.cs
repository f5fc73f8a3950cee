using System.Buffers.Binary;
using System.Text;
using SvdLlm.Models.Checkpoints;

namespace SvdLlm.Models.Tests.Checkpoints;

/// <summary>Assembles safetensors bytes by hand, independently of <see cref="SafeTensorsWriter"/>.</summary>
internal static class HandBuilt
{
    public static byte[] File(string headerJson, byte[] data, ulong? declaredHeaderLength = null)
    {
        byte[] header = Encoding.UTF8.GetBytes(headerJson);
        var bytes = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, declaredHeaderLength ?? (ulong)header.Length);
        header.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + header.Length);
        return bytes;
    }

    public static string Entry(string name, string dtype, string shape, long begin, long end) =>
        $"\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape},\"data_offsets\":[{begin},{end}]}}";
}

public sealed class SafeTensorsTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    // Values chosen to hit zeros, subnormals, F16 overflow/limits, ties and specials.
    private static readonly float[] Samples =
    [
        0f, -0f, 1e-8f, -1e-8f, 65504f, 65520f, 70000f, 3.14159f, -2.71828f, 1e30f, -1e-30f,
        float.MaxValue, float.MinValue, float.Epsilon, 6.1e-5f, 5.96e-8f, 1f / 3f,
        BitConverter.UInt32BitsToSingle(0x3F808000), // BF16 tie, even below -> rounds down
        BitConverter.UInt32BitsToSingle(0x3F818000), // BF16 tie, odd below -> rounds up
        BitConverter.UInt32BitsToSingle(0x3F808001), // just above a BF16 tie
        BitConverter.UInt32BitsToSingle(0x7F7FFFFF), // rounds to +Inf in BF16
        1.00048828125f, 1.00146484375f,             // F16 ties (half an F16 ulp above 1 and 1+ulp)
        float.NaN, -float.NaN, BitConverter.UInt32BitsToSingle(0x7F800001), // incl. a signalling NaN with low payload
        float.PositiveInfinity, float.NegativeInfinity,
    ];

    /// <summary>Reference BF16 rounding written differently from the writer: compare the dropped half to 0x8000.
    /// Any NaN maps to a NaN (callers compare NaNs by NaN-ness only).</summary>
    private static ushort ExpectedBFloat16Bits(float value)
    {
        if (float.IsNaN(value)) return 0x7FC0;
        uint bits = BitConverter.SingleToUInt32Bits(value);
        uint kept = bits >> 16;
        uint dropped = bits & 0xFFFF;
        if (dropped > 0x8000 || (dropped == 0x8000 && (kept & 1) == 1)) kept++;
        return (ushort)kept;
    }

    private static float[] Decode(SafeTensorsDType dtype, float[] values) => dtype switch
    {
        SafeTensorsDType.F32 or SafeTensorsDType.F64 => values,
        SafeTensorsDType.F16 => values.Select(v => (float)(Half)v).ToArray(),
        SafeTensorsDType.BF16 => values.Select(v => BitConverter.Int32BitsToSingle(ExpectedBFloat16Bits(v) << 16)).ToArray(),
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    private static void AssertSameFloats(float[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            if (float.IsNaN(expected[i]))
            {
                Assert.True(float.IsNaN(actual[i]), $"element {i}: expected NaN, got {actual[i]}");
            }
            else
            {
                // Bit equality distinguishes -0 from 0.
                Assert.True(BitConverter.SingleToUInt32Bits(expected[i]) == BitConverter.SingleToUInt32Bits(actual[i]),
                    $"element {i}: expected {expected[i]:R} got {actual[i]:R}");
            }
        }
    }

    [Theory]
    [InlineData(SafeTensorsDType.F32)]
    [InlineData(SafeTensorsDType.F16)]
    [InlineData(SafeTensorsDType.BF16)]
    [InlineData(SafeTensorsDType.F64)]
    public void RoundTripsEveryFloatDType(SafeTensorsDType dtype)
    {
        string path = _temp.File("m.safetensors");
        SafeTensorsWriter.Write(path, [new WriterTensor("w", dtype, [Samples.Length], Samples)]);

        using SafeTensorsFile file = SafeTensorsFile.Open(path);
        var actual = new float[Samples.Length];
        file.ReadAsFloat32("w", actual);

        AssertSameFloats(Decode(dtype, Samples), actual);
        Assert.Equal(dtype, file.Tensors["w"].DType);
    }

    [Fact]
    public void StoredHalfPrecisionBitsMatchIndependentRounding()
    {
        string path = _temp.File("m.safetensors");
        SafeTensorsWriter.Write(path,
        [
            new WriterTensor("bf", SafeTensorsDType.BF16, [Samples.Length], Samples),
            new WriterTensor("h", SafeTensorsDType.F16, [Samples.Length], Samples),
        ]);

        using SafeTensorsFile file = SafeTensorsFile.Open(path);
        ReadOnlySpan<byte> bf = file.GetRawBytes("bf");
        ReadOnlySpan<byte> h = file.GetRawBytes("h");
        for (int i = 0; i < Samples.Length; i++)
        {
            ushort bfBits = BinaryPrimitives.ReadUInt16LittleEndian(bf[(2 * i)..]);
            ushort hBits = BinaryPrimitives.ReadUInt16LittleEndian(h[(2 * i)..]);
            if (float.IsNaN(Samples[i]))
            {
                // NaN stays NaN (not truncated to Inf) and is quiet: exponent all ones, top mantissa bit set.
                Assert.Equal(0x7FC0, bfBits & 0x7FC0);
                Assert.True(Half.IsNaN(BitConverter.UInt16BitsToHalf(hBits)));
                continue;
            }
            Assert.Equal(ExpectedBFloat16Bits(Samples[i]), bfBits);
            Assert.Equal(BitConverter.HalfToUInt16Bits((Half)Samples[i]), hBits);
        }
    }

    [Fact]
    public void LargeBFloat16TensorUsesTheVectorPathCorrectly()
    {
        // Long, odd length so both the vector loop and the scalar tail run, across more than one chunk.
        var values = new float[(1 << 20) + 13];
        var random = new Random(7);
        for (int i = 0; i < values.Length; i++) values[i] = (float)(random.NextDouble() * 200 - 100);
        string path = _temp.File("big.safetensors");
        SafeTensorsWriter.Write(path, [new WriterTensor("w", SafeTensorsDType.BF16, [values.Length], values)]);

        using SafeTensorsFile file = SafeTensorsFile.Open(path);
        var actual = new float[values.Length];
        file.ReadAsFloat32("w", actual);
        AssertSameFloats(Decode(SafeTensorsDType.BF16, values), actual);
    }

    [Fact]
    public void ReadsAHandBuiltFile()
    {
        // Four dtypes at deliberately unaligned offsets; bytes written here, not by the writer.
        var data = new byte[16 + 6 + 4 + 8];
        float[] a = [1.5f, -2f, 0f, 1e-8f];
        for (int i = 0; i < 4; i++) BinaryPrimitives.WriteSingleLittleEndian(data.AsSpan(4 * i), a[i]);
        BinaryPrimitives.WriteUInt16LittleEndian(data.AsSpan(16), 0x3F80); // BF16 1.0
        BinaryPrimitives.WriteUInt16LittleEndian(data.AsSpan(18), 0xC040); // BF16 -3.0
        BinaryPrimitives.WriteUInt16LittleEndian(data.AsSpan(20), 0x7F80); // BF16 +Inf
        BinaryPrimitives.WriteUInt16LittleEndian(data.AsSpan(22), 0x3C00); // F16 1.0
        BinaryPrimitives.WriteUInt16LittleEndian(data.AsSpan(24), 0xC500); // F16 -5.0
        BinaryPrimitives.WriteDoubleLittleEndian(data.AsSpan(26), 0.25);
        string header = "{\"__metadata__\":{\"format\":\"pt\"}," +
            HandBuilt.Entry("a", "F32", "[2,2]", 0, 16) + "," +
            HandBuilt.Entry("b", "BF16", "[3]", 16, 22) + "," +
            HandBuilt.Entry("c", "F16", "[1,2]", 22, 26) + "," +
            HandBuilt.Entry("d", "F64", "[]", 26, 34) + "}  ";
        string path = _temp.File("hand.safetensors");
        File.WriteAllBytes(path, HandBuilt.File(header, data));

        using SafeTensorsFile file = SafeTensorsFile.Open(path);
        Assert.Equal(["a", "b", "c", "d"], file.Tensors.Keys);
        Assert.Equal("pt", file.Metadata["format"]);
        Assert.Equal([2L, 2L], file.Tensors["a"].Shape);
        Assert.Equal(1, file.Tensors["d"].ElementCount);
        AssertSameFloats(a, Read(file, "a"));
        AssertSameFloats([1f, -3f, float.PositiveInfinity], Read(file, "b"));
        AssertSameFloats([1f, -5f], Read(file, "c"));
        AssertSameFloats([0.25f], Read(file, "d"));
        Assert.Equal(data.AsSpan(16, 6).ToArray(), file.GetRawBytes("b").ToArray());
    }

    private static float[] Read(SafeTensorsFile file, string name)
    {
        var result = new float[file.Tensors[name].ElementCount];
        file.ReadAsFloat32(name, result);
        return result;
    }

    [Fact]
    public void WriterAlignsDataSectionAndKeepsOrderAndMetadata()
    {
        string path = _temp.File("m.safetensors");
        var metadata = new Dictionary<string, string> { ["format"] = "pt", ["note"] = "a+b <c>" };
        SafeTensorsWriter.Write(path,
        [
            new WriterTensor("z.odd_name_1", SafeTensorsDType.BF16, [3], new float[] { 1, 2, 3 }),
            new WriterTensor("a", SafeTensorsDType.F32, [1, 2], new float[] { 4, 5 }),
            new WriterTensor("empty", SafeTensorsDType.F16, [0, 4], Array.Empty<float>()),
        ], metadata);

        byte[] bytes = File.ReadAllBytes(path);
        long headerLength = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0, (8 + headerLength) % 8);
        string headerText = Encoding.UTF8.GetString(bytes, 8, (int)headerLength);
        Assert.StartsWith("{\"__metadata__\":", headerText);
        Assert.True(headerText.IndexOf("z.odd_name_1", StringComparison.Ordinal) < headerText.IndexOf("\"a\"", StringComparison.Ordinal));
        Assert.EndsWith("}", headerText.TrimEnd(' ')); // padding is spaces only
        Assert.Equal(8 + headerLength + 6 + 8, bytes.Length);

        SafeTensorsHeader header = SafeTensorsFile.ReadHeader(path);
        Assert.Equal(["z.odd_name_1", "a", "empty"], header.Tensors.Keys);
        Assert.Equal(metadata, header.Metadata);
        Assert.Equal(8 + headerLength, header.DataOffset);
        Assert.Equal(0, header.Tensors["empty"].ElementCount);
    }

    [Fact]
    public void WriterRejectsDuplicateNamesAndBadTensors()
    {
        string path = _temp.File("m.safetensors");
        Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path,
        [
            new WriterTensor("w", SafeTensorsDType.F32, [1], new float[] { 1 }),
            new WriterTensor("w", SafeTensorsDType.F32, [1], new float[] { 2 }),
        ]));
        Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path,
            [new WriterTensor("w", SafeTensorsDType.F32, [3], new float[] { 1 })]));
        Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path,
            [new WriterTensor("w", SafeTensorsDType.I64, [1], new float[] { 1 })]));
        Assert.False(File.Exists(path));
        Assert.Empty(Directory.GetFiles(_temp.Path));
    }

    private static IEnumerable<WriterTensor> ThrowsMidway()
    {
        yield return new WriterTensor("first", SafeTensorsDType.F32, [2], new float[] { 1, 2 });
        throw new InvalidOperationException("producer failed");
    }

    [Fact]
    public void FailedWriteLeavesTheOriginalFileAndNoTempFile()
    {
        string path = _temp.File("model.safetensors");
        SafeTensorsWriter.Write(path, [new WriterTensor("orig", SafeTensorsDType.F32, [1], new float[] { 42 })]);
        byte[] original = File.ReadAllBytes(path);

        Assert.Throws<InvalidOperationException>(() => SafeTensorsWriter.Write(path, ThrowsMidway()));

        Assert.Equal(original, File.ReadAllBytes(path));
        Assert.Equal([path], Directory.GetFiles(_temp.Path));
    }

    [Fact]
    public void WriteReplacesAnExistingFile()
    {
        string path = _temp.File("model.safetensors");
        SafeTensorsWriter.Write(path, [new WriterTensor("old", SafeTensorsDType.F32, [1], new float[] { 1 })]);
        SafeTensorsWriter.Write(path, [new WriterTensor("new", SafeTensorsDType.F16, [2], new float[] { 2, 3 })]);

        using SafeTensorsFile file = SafeTensorsFile.Open(path);
        Assert.Equal(["new"], file.Tensors.Keys);
        Assert.Equal([path], Directory.GetFiles(_temp.Path));
    }

    [Fact]
    public void IntegerTensorCannotBeLoadedAsWeights()
    {
        string path = _temp.File("ints.safetensors");
        File.WriteAllBytes(path, HandBuilt.File("{" + HandBuilt.Entry("pos_ids", "I64", "[2]", 0, 16) + "}", new byte[16]));

        using SafeTensorsFile file = SafeTensorsFile.Open(path);
        var e = Assert.Throws<CheckpointFormatException>(() => file.ReadAsFloat32("pos_ids", new float[2]));
        Assert.Contains("tensor pos_ids has dtype I64; only F32/F16/BF16/F64 can be loaded as weights", e.Message);
        Assert.Contains("ints.safetensors", e.Message);
        Assert.Equal(16, file.GetRawBytes("pos_ids").Length);
    }

    [Fact]
    public void DestinationLengthMustMatch()
    {
        string path = _temp.File("m.safetensors");
        SafeTensorsWriter.Write(path, [new WriterTensor("w", SafeTensorsDType.F32, [2, 3], new float[6])]);
        using SafeTensorsFile file = SafeTensorsFile.Open(path);
        Assert.Throws<ArgumentException>(() => file.ReadAsFloat32("w", new float[5]));
        Assert.False(file.Contains("v"));
        Assert.Throws<CheckpointFormatException>(() => file.ReadAsFloat32("v", new float[6]));
    }

    // ---- Malformed files: each must fail at Open with a message naming the file (and tensor, field). ----

    private void AssertMalformed(byte[] bytes, string? tensorName, params string[] fragments)
    {
        string path = _temp.File("bad.safetensors");
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<CheckpointFormatException>(() => SafeTensorsFile.Open(path).Dispose());
        Assert.Contains("bad.safetensors", e.Message);
        if (tensorName is not null)
        {
            Assert.Contains($"'{tensorName}'", e.Message);
            Assert.Equal(tensorName, e.TensorName);
        }
        foreach (string fragment in fragments) Assert.Contains(fragment, e.Message);
        // The header-only reader applies the same validation.
        Assert.Throws<CheckpointFormatException>(() => SafeTensorsFile.ReadHeader(path));
    }

    private void AssertMalformedHeader(string header, int dataLength, string? tensorName, params string[] fragments) =>
        AssertMalformed(HandBuilt.File(header, new byte[dataLength]), tensorName, fragments);

    [Fact]
    public void TruncatedFile() => AssertMalformed([1, 0, 0, 0, 0], null, "5 bytes");

    [Fact]
    public void EmptyFile() => AssertMalformed([], null, "0 bytes");

    [Fact]
    public void HeaderLengthLargerThanFile() =>
        AssertMalformed(HandBuilt.File("{}", [], declaredHeaderLength: 1000), null, "1000", "truncated");

    [Fact]
    public void HeaderLengthOverCap() =>
        AssertMalformed(HandBuilt.File("{}", [], declaredHeaderLength: 200_000_000), null, "200000000", "limit");

    [Fact]
    public void HeaderLengthZero() => AssertMalformed(HandBuilt.File("", [], declaredHeaderLength: 0), null, "header length is 0");

    [Fact]
    public void InvalidJson() => AssertMalformedHeader("{\"a\": {\"dtype\": ", 0, null, "not valid JSON");

    [Fact]
    public void InvalidUtf8()
    {
        byte[] bytes = HandBuilt.File("{\"\u00e9\":1}", []);
        bytes[10] = 0xFF; // corrupt the first byte of the two-byte UTF-8 sequence
        AssertMalformed(bytes, null, "UTF-8");
    }

    [Fact]
    public void JsonNotAnObject() => AssertMalformedHeader("[1, 2]", 0, null, "must be a JSON object", "array");

    [Fact]
    public void TrailingGarbageAfterJson() => AssertMalformedHeader("{} x", 0, null, "not valid JSON");

    [Fact]
    public void DuplicateTensorKey() => AssertMalformedHeader(
        "{" + HandBuilt.Entry("w", "F32", "[1]", 0, 4) + "," + HandBuilt.Entry("w", "F32", "[1]", 4, 8) + "}", 8, "w", "twice");

    [Fact]
    public void DuplicateFieldInEntry() => AssertMalformedHeader(
        "{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "w", "dtype", "duplicate");

    [Fact]
    public void UnknownDType() => AssertMalformedHeader(
        "{" + HandBuilt.Entry("w", "F12", "[1]", 0, 4) + "}", 4, "w", "F12", "dtype");

    [Fact]
    public void DTypeNotAString() => AssertMalformedHeader(
        "{\"w\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "w", "dtype", "a number");

    [Fact]
    public void NegativeShape() => AssertMalformedHeader(
        "{" + HandBuilt.Entry("w", "F32", "[2,-1]", 0, 4) + "}", 4, "w", "shape", "-1");

    [Fact]
    public void FractionalShape() => AssertMalformedHeader(
        "{" + HandBuilt.Entry("w", "F32", "[1.5]", 0, 4) + "}", 4, "w", "shape", "1.5");

    [Fact]
    public void ShapeProductOverflows() => AssertMalformedHeader(
        "{" + HandBuilt.Entry("w", "F32", "[4611686018427387904,4]", 0, 4) + "}", 4, "w", "overflow");

    [Fact]
    public void MissingField() => AssertMalformedHeader(
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "w", "data_offsets", "missing");

    [Fact]
    public void ExtraField() => AssertMalformedHeader(
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"stride\":[1]}}", 4, "w", "stride");

    [Fact]
    public void OffsetsNotTwoIntegers() => AssertMalformedHeader(
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8, "w", "data_offsets", "3 elements");

    [Fact]
    public void BeginAfterEnd() => AssertMalformedHeader(
        "{" + HandBuilt.Entry("w", "F32", "[1]", 8, 4) + "}", 8, "w", "data_offsets", "begin 8 is after end 4");

    [Fact]
    public void WrongByteSize() => AssertMalformedHeader(
        "{" + HandBuilt.Entry("w", "F32", "[3]", 0, 8) + "}", 8, "w", "8 bytes", "needs 12 bytes");

    [Fact]
    public void OffsetsOutOfRange() => AssertMalformedHeader(
        "{" + HandBuilt.Entry("w", "F32", "[2]", 0, 8) + "}", 4, "w", "data_offsets", "4 bytes");

    [Fact]
    public void OverlappingTensors() => AssertMalformedHeader(
        "{" + HandBuilt.Entry("a", "F32", "[2]", 0, 8) + "," + HandBuilt.Entry("b", "F32", "[2]", 4, 12) + "}", 12,
        "b", "overlaps tensor 'a'", "expected begin 8");

    [Fact]
    public void HoleBetweenTensors() => AssertMalformedHeader(
        "{" + HandBuilt.Entry("a", "F32", "[1]", 0, 4) + "," + HandBuilt.Entry("b", "F32", "[1]", 8, 12) + "}", 12,
        "b", "hole", "expected begin 4");

    [Fact]
    public void HoleAtStart() => AssertMalformedHeader(
        "{" + HandBuilt.Entry("a", "F32", "[1]", 4, 8) + "}", 8, "a", "expected begin 0");

    [Fact]
    public void TrailingBytesAfterLastTensor() => AssertMalformedHeader(
        "{" + HandBuilt.Entry("a", "F32", "[1]", 0, 4) + "}", 7, "a", "3 trailing bytes");

    [Fact]
    public void MetadataValueNotString() => AssertMalformedHeader(
        "{\"__metadata__\":{\"format\":1}}", 0, null, "__metadata__", "format", "must be a string");

    [Fact]
    public void MetadataNotObject() => AssertMalformedHeader(
        "{\"__metadata__\":[\"pt\"]}", 0, null, "__metadata__", "an array");

    [Fact]
    public void EmptyHeaderObjectWithNoDataIsValid()
    {
        string path = _temp.File("empty.safetensors");
        File.WriteAllBytes(path, HandBuilt.File("{}      ", []));
        using SafeTensorsFile file = SafeTensorsFile.Open(path);
        Assert.Empty(file.Tensors);
        Assert.Empty(file.Metadata);
    }
}
