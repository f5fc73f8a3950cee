using System.Buffers;
using System.Buffers.Binary;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace SvdLlm.Models.Checkpoints;

/// <summary>
/// One tensor to write: float32 <paramref name="Data"/> (row-major, length = product of
/// <paramref name="Shape"/>) stored as <paramref name="DType"/> (F32, F16, BF16 or F64).
/// </summary>
public sealed record WriterTensor(string Name, SafeTensorsDType DType, long[] Shape, ReadOnlyMemory<float> Data)
{
    /// <summary>
    /// A tensor whose data is produced only when the writer reaches it, so a multi-gigabyte model can be
    /// written holding one tensor in memory at a time (the header needs only names, dtypes and shapes).
    /// </summary>
    public static WriterTensor Lazy(string name, SafeTensorsDType dtype, long[] shape, Func<ReadOnlyMemory<float>> producer)
        => new(name, dtype, shape, ReadOnlyMemory<float>.Empty) { Producer = producer };

    /// <summary>Produces the data at write time instead of <see cref="Data"/>; see <see cref="Lazy"/>.</summary>
    public Func<ReadOnlyMemory<float>>? Producer { get; init; }

    /// <summary>
    /// An integer tensor (I32, the GPTQ layout's packed qweight, qzeros and g_idx) whose little-endian bytes are produced
    /// when the writer reaches it.
    /// </summary>
    public static WriterTensor Int32(string name, long[] shape, Func<int[]> producer)
        => new(name, SafeTensorsDType.I32, shape, ReadOnlyMemory<float>.Empty) { IntProducer = producer };

    /// <summary>Produces an I32 tensor's values; see <see cref="Int32"/>.</summary>
    public Func<int[]>? IntProducer { get; init; }

    /// <summary>A U8 or I8 tensor (codes, indices) produced at write time as its raw bytes.</summary>
    public static WriterTensor Bytes(string name, SafeTensorsDType dtype, long[] shape, Func<byte[]> producer)
        => new(name, dtype, shape, ReadOnlyMemory<float>.Empty) { ByteProducer = producer };

    /// <summary>Produces a U8/I8 tensor's bytes; see <see cref="Bytes"/>.</summary>
    public Func<byte[]>? ByteProducer { get; init; }

    internal long ElementCount => Shape.Aggregate(1L, (a, b) => checked(a * b));
}

/// <summary>
/// Writes safetensors files atomically: the file at the target path is either the old one or the
/// complete new one, never a partial write (a crash mid-save must not destroy a checkpoint).
/// </summary>
public static class SafeTensorsWriter
{
    /// <summary>Float elements converted per write call; bounds the scratch buffer at 8 MB (F64).</summary>
    private const int ChunkElements = 1 << 20;

    private const string MetadataKey = "__metadata__";

    /// <summary>
    /// Writes <paramref name="tensors"/> (header keys in the given order, "__metadata__" first) to
    /// <paramref name="path"/>, replacing any existing file only once the new one is fully on disk.
    /// Data is streamed tensor by tensor; the header is padded with spaces so the data section starts at
    /// an 8-byte aligned offset.
    /// </summary>
    /// <exception cref="ArgumentException">Duplicate or reserved name, bad shape, data length mismatch, or a non-float dtype.</exception>
    public static void Write(string path, IEnumerable<WriterTensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(tensors);
        string fullPath = Path.GetFullPath(path);
        // Same directory as the target, so the final rename cannot cross file systems.
        string tempPath = $"{fullPath}.tmp-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6))}";
        try
        {
            using (var stream = new FileStream(tempPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1 << 16))
            {
                // Enumerated inside the try: a producer that throws midway still gets the temp file removed.
                List<WriterTensor> list = Validate(tensors);
                WriteHeader(stream, list, metadata);
                foreach (WriterTensor tensor in list) WriteData(stream, tensor);
                stream.Flush(flushToDisk: true);
            }
            File.Move(tempPath, fullPath, overwrite: true);
        }
        catch
        {
            TryDelete(tempPath);
            throw;
        }
    }

    /// <summary>Rounds to the nearest bfloat16, ties to even; NaN stays NaN (quiet bit forced, sign kept).</summary>
    internal static ushort ToBFloat16Bits(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value))
        {
            // Plain truncation could clear every payload bit left and turn a NaN into infinity.
            return (ushort)((bits >> 16) | 0x0040);
        }
        // Adding 0x7FFF plus the lowest kept bit rounds half-way cases towards an even result; a carry
        // into the exponent is correct (it rounds up to the next binade, or to infinity).
        uint roundingBias = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + roundingBias) >> 16);
    }

    private static List<WriterTensor> Validate(IEnumerable<WriterTensor> tensors)
    {
        var list = new List<WriterTensor>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (WriterTensor tensor in tensors)
        {
            ArgumentNullException.ThrowIfNull(tensor, nameof(tensors));
            ArgumentNullException.ThrowIfNull(tensor.Name, nameof(tensors));
            if (tensor.Name == MetadataKey)
            {
                throw new ArgumentException($"'{MetadataKey}' is reserved for metadata and cannot name a tensor.", nameof(tensors));
            }
            if (!names.Add(tensor.Name))
            {
                throw new ArgumentException($"Duplicate tensor name '{tensor.Name}'.", nameof(tensors));
            }
            ValidateTensor(tensor);
            list.Add(tensor);
        }
        return list;
    }

    private static void ValidateTensor(WriterTensor tensor)
    {
        if (tensor.IntProducer is not null)
        {
            if (tensor.DType != SafeTensorsDType.I32) throw new ArgumentException($"Tensor '{tensor.Name}': integer data is written as I32, not {tensor.DType}.", nameof(tensor));
        }
        else if (tensor.ByteProducer is not null)
        {
            if (tensor.DType is not (SafeTensorsDType.U8 or SafeTensorsDType.I8)) throw new ArgumentException($"Tensor '{tensor.Name}': byte data is written as U8 or I8, not {tensor.DType}.", nameof(tensor));
        }
        else if (!tensor.DType.IsLoadableAsFloat32())
        {
            throw new ArgumentException(
                $"Tensor '{tensor.Name}': dtype {tensor.DType} cannot be written from float data; use F32, F16, BF16 or F64.", nameof(tensor));
        }
        ArgumentNullException.ThrowIfNull(tensor.Shape, nameof(tensor));
        long count = 1;
        foreach (long dim in tensor.Shape)
        {
            if (dim < 0) throw new ArgumentException($"Tensor '{tensor.Name}' has a negative dimension in shape {TensorInfo.FormatShape(tensor.Shape)}.", nameof(tensor));
            count = checked(count * dim);
        }
        if (tensor.Producer is null && tensor.IntProducer is null && tensor.ByteProducer is null && count != tensor.Data.Length)
        {
            throw new ArgumentException(
                $"Tensor '{tensor.Name}' has shape {TensorInfo.FormatShape(tensor.Shape)} ({count} elements) but {tensor.Data.Length} data elements.",
                nameof(tensor));
        }
    }

    private static void WriteHeader(Stream stream, List<WriterTensor> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        byte[] json = BuildHeaderJson(tensors, metadata);
        // Pad with spaces (legal trailing JSON whitespace) so that 8 + length is a multiple of 8.
        int paddedLength = (json.Length + 7) & ~7;
        Span<byte> lengthField = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(lengthField, (ulong)paddedLength);
        stream.Write(lengthField);
        stream.Write(json);
        for (int i = json.Length; i < paddedLength; i++) stream.WriteByte((byte)' ');
    }

    private static byte[] BuildHeaderJson(List<WriterTensor> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        using var buffer = new MemoryStream();
        // Relaxed escaping keeps names like "a+b" readable; the output is still valid JSON.
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject(MetadataKey);
                foreach ((string key, string value) in metadata) json.WriteString(key, value);
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (WriterTensor tensor in tensors)
            {
                long end = offset + tensor.ElementCount * tensor.DType.ElementSize();
                json.WriteStartObject(tensor.Name);
                json.WriteString("dtype", tensor.DType.ToHeaderString());
                json.WriteStartArray("shape");
                foreach (long dim in tensor.Shape) json.WriteNumberValue(dim);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(end);
                json.WriteEndArray();
                json.WriteEndObject();
                offset = end;
            }
            json.WriteEndObject();
        }
        return buffer.ToArray();
    }

    /// <summary>Converts and writes one tensor in chunks, so no full-size copy of a large tensor is made.</summary>
    private static void WriteData(Stream stream, WriterTensor tensor)
    {
        if (tensor.IntProducer is { } ints)
        {
            int[] values = ints();
            if (values.Length != tensor.ElementCount)
                throw new ArgumentException($"Tensor '{tensor.Name}' has shape {TensorInfo.FormatShape(tensor.Shape)} ({tensor.ElementCount} elements) but its producer gave {values.Length}.");
            if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("safetensors is little-endian; this writer runs on little-endian machines only");
            stream.Write(MemoryMarshal.AsBytes(values.AsSpan()));
            return;
        }
        if (tensor.ByteProducer is { } bytes)
        {
            byte[] values = bytes();
            if (values.Length != tensor.ElementCount)
                throw new ArgumentException($"Tensor '{tensor.Name}' has shape {TensorInfo.FormatShape(tensor.Shape)} ({tensor.ElementCount} elements) but its producer gave {values.Length}.");
            stream.Write(values);
            return;
        }
        ReadOnlyMemory<float> memory = tensor.Producer?.Invoke() ?? tensor.Data;
        if (memory.Length != tensor.ElementCount)
            throw new ArgumentException($"Tensor '{tensor.Name}' has shape {TensorInfo.FormatShape(tensor.Shape)} ({tensor.ElementCount} elements) but its producer gave {memory.Length}.");
        ReadOnlySpan<float> data = memory.Span;
        if (tensor.DType == SafeTensorsDType.F32)
        {
            stream.Write(MemoryMarshal.AsBytes(data));
            return;
        }
        byte[] scratch = ArrayPool<byte>.Shared.Rent(ChunkElements * tensor.DType.ElementSize());
        try
        {
            for (int done = 0; done < data.Length; done += ChunkElements)
            {
                ReadOnlySpan<float> chunk = data.Slice(done, Math.Min(ChunkElements, data.Length - done));
                int byteCount = chunk.Length * tensor.DType.ElementSize();
                ConvertFromFloat32(tensor.DType, chunk, scratch.AsSpan(0, byteCount));
                stream.Write(scratch, 0, byteCount);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(scratch);
        }
    }

    private static void ConvertFromFloat32(SafeTensorsDType dtype, ReadOnlySpan<float> source, Span<byte> destination)
    {
        switch (dtype)
        {
            case SafeTensorsDType.F16:
                // Round-to-nearest-even, same result as a (Half) cast, vectorised.
                TensorPrimitives.ConvertToHalf(source, MemoryMarshal.Cast<byte, Half>(destination));
                break;
            case SafeTensorsDType.BF16:
                Span<ushort> halves = MemoryMarshal.Cast<byte, ushort>(destination);
                for (int i = 0; i < source.Length; i++) halves[i] = ToBFloat16Bits(source[i]);
                break;
            case SafeTensorsDType.F64:
                Span<double> doubles = MemoryMarshal.Cast<byte, double>(destination);
                for (int i = 0; i < source.Length; i++) doubles[i] = source[i];
                break;
            default:
                throw new InvalidOperationException($"dtype {dtype} is not writable (checked by Validate).");
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
            // Best effort: the original exception is the one worth reporting.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
