using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Text.Json;
using System.Text.Unicode;

namespace SvdLlm.Models.Checkpoints;

/// <summary>
/// One tensor's header entry. <see cref="Begin"/> and <see cref="End"/> are byte offsets relative to the
/// start of the data section (the byte after the header), as in the file.
/// </summary>
public sealed record TensorInfo(string Name, SafeTensorsDType DType, long[] Shape, long Begin, long End)
{
    /// <summary>Product of the shape (1 for a scalar). Validated not to overflow when the header was read.</summary>
    public long ElementCount
    {
        get
        {
            long count = 1;
            foreach (long dim in Shape) count = checked(count * dim);
            return count;
        }
    }

    /// <summary>Size of the tensor's data in bytes.</summary>
    public long ByteLength => End - Begin;

    /// <summary>The shape as "[64, 32]", for messages.</summary>
    public string ShapeText => FormatShape(Shape);

    internal static string FormatShape(IEnumerable<long> shape) => "[" + string.Join(", ", shape) + "]";
}

/// <summary>A validated safetensors header: what a tool needs to list tensors without mapping the data.</summary>
public sealed class SafeTensorsHeader
{
    internal SafeTensorsHeader(
        string path, long dataOffset, long dataLength,
        IReadOnlyDictionary<string, TensorInfo> tensors, IReadOnlyDictionary<string, string> metadata)
    {
        Path = path;
        DataOffset = dataOffset;
        DataLength = dataLength;
        Tensors = tensors;
        Metadata = metadata;
    }

    public string Path { get; }

    /// <summary>Absolute file offset of the data section (8 + header length).</summary>
    public long DataOffset { get; }

    /// <summary>Bytes in the data section; the tensors tile it exactly.</summary>
    public long DataLength { get; }

    /// <summary>Tensors by name, enumerated in header order.</summary>
    public IReadOnlyDictionary<string, TensorInfo> Tensors { get; }

    /// <summary>The optional "__metadata__" string map (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }
}

/// <summary>
/// A read-only, memory-mapped safetensors file. Opening validates the whole header strictly but reads no
/// tensor data; bytes are paged in only when a tensor is requested, so files larger than RAM work.
/// Reads are thread-safe. Pickle checkpoints are never handled here (see <see cref="CheckpointReader"/>).
/// </summary>
public sealed unsafe class SafeTensorsFile : IDisposable
{
    /// <summary>
    /// Largest header accepted. Real headers are a few hundred KB; the cap stops a corrupt length field
    /// from making us allocate gigabytes. Same limit as the reference Rust implementation.
    /// </summary>
    public const long MaxHeaderLength = 100_000_000;

    /// <summary>Elements converted per step; spans are int-indexed, so multi-GB tensors go in chunks.</summary>
    private const int ConversionChunkElements = 1 << 20;

    private readonly SafeTensorsHeader _header;
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _data; // start of the data section inside the mapping
    private readonly byte* _base; // start of the mapping (page aligned)
    private readonly long _mappedLength;
    private bool _disposed;

    private SafeTensorsFile(SafeTensorsHeader header, MemoryMappedFile map, MemoryMappedViewAccessor view, byte* data, byte* basePointer, long mappedLength)
    {
        _header = header;
        _map = map;
        _view = view;
        _data = data;
        _base = basePointer;
        _mappedLength = mappedLength;
    }

    public string Path => _header.Path;

    /// <summary>Tensors by name, enumerated in header order.</summary>
    public IReadOnlyDictionary<string, TensorInfo> Tensors => _header.Tensors;

    /// <summary>The optional "__metadata__" string map (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata => _header.Metadata;

    /// <summary>Opens and validates <paramref name="path"/> and memory-maps it read-only.</summary>
    /// <exception cref="CheckpointFormatException">The file is not a well-formed safetensors file.</exception>
    public static SafeTensorsFile Open(string path)
    {
        EnsureLittleEndianHost();
        string fullPath = System.IO.Path.GetFullPath(path);
        var stream = new FileStream(fullPath, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1);
        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        try
        {
            SafeTensorsHeader header = HeaderParser.Read(stream, fullPath);
            map = MemoryMappedFile.CreateFromFile(stream, mapName: null, capacity: 0,
                MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* basePointer = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref basePointer);
            byte* data = basePointer + view.PointerOffset + header.DataOffset;
            return new SafeTensorsFile(header, map, view, data, basePointer, (long)view.SafeMemoryMappedViewHandle.ByteLength);
        }
        catch
        {
            view?.Dispose();
            if (map is not null) map.Dispose();
            else stream.Dispose(); // the map owns the stream once created
            throw;
        }
    }

    /// <summary>Reads and validates only the header, e.g. for tools that list tensors.</summary>
    /// <exception cref="CheckpointFormatException">The file is not a well-formed safetensors file.</exception>
    public static SafeTensorsHeader ReadHeader(string path)
    {
        string fullPath = System.IO.Path.GetFullPath(path);
        using var stream = new FileStream(fullPath, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1);
        return HeaderParser.Read(stream, fullPath);
    }

    public bool Contains(string name) => _header.Tensors.ContainsKey(name);

    /// <summary>Header entry of <paramref name="name"/>.</summary>
    /// <exception cref="CheckpointFormatException">No such tensor in this file.</exception>
    public TensorInfo GetInfo(string name) =>
        _header.Tensors.TryGetValue(name, out TensorInfo? info)
            ? info
            : throw new CheckpointFormatException(Path, "no such tensor in this file.", name);

    /// <summary>
    /// Converts tensor <paramref name="name"/> (F32, F16, BF16 or F64) to float32 into <paramref name="destination"/>,
    /// whose length must equal the element count.
    /// </summary>
    /// <exception cref="CheckpointFormatException">Missing tensor, or a dtype that is not a float weight type.</exception>
    /// <exception cref="ArgumentException">Destination length differs from the element count.</exception>
    public void ReadAsFloat32(string name, Span<float> destination)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        TensorInfo info = GetInfo(name);
        if (!info.DType.IsLoadableAsFloat32())
        {
            throw new CheckpointFormatException(Path,
                $"tensor {name} has dtype {info.DType}; only F32/F16/BF16/F64 can be loaded as weights.", name, "dtype");
        }
        if (destination.Length != info.ElementCount)
        {
            throw new ArgumentException(
                $"Destination has {destination.Length} elements but tensor '{name}' {info.ShapeText} in {Path} has {info.ElementCount}.",
                nameof(destination));
        }

        int elementSize = info.DType.ElementSize();
        for (int done = 0; done < destination.Length; done += ConversionChunkElements)
        {
            int count = Math.Min(ConversionChunkElements, destination.Length - done);
            var source = new ReadOnlySpan<byte>(_data + info.Begin + (long)done * elementSize, count * elementSize);
            ConvertToFloat32(info.DType, source, destination.Slice(done, count));
        }
        ReleasePages(info.Begin, info.ByteLength);
    }

    /// <summary>
    /// Drops the just-read pages from this process's mapping (madvise DONTNEED; they stay in the page cache). Without it
    /// every tensor read once stays resident in our address space, so streaming a 13.5 GB checkpoint layer by layer
    /// would still end with 13.5 GB of resident set; the caller holds the converted copy anyway.
    /// </summary>
    private void ReleasePages(long begin, long length)
    {
        if (!OperatingSystem.IsLinux() || length <= 0) return;
        long page = Environment.SystemPageSize;
        long start = (_data - _base) + begin;
        long alignedStart = start / page * page;
        long end = Math.Min(_mappedLength, start + length);
        if (end <= alignedStart) return;
        _ = Madvise(_base + alignedStart, (nuint)(end - alignedStart), MadvDontNeed);
    }

    private const int MadvDontNeed = 4;

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "madvise", SetLastError = true)]
    private static extern int Madvise(byte* address, nuint length, int advice);

    /// <summary>
    /// The tensor's bytes exactly as stored (little-endian). Valid only while this file is open:
    /// the span points into the mapping. Mainly for tests and tools.
    /// </summary>
    public ReadOnlySpan<byte> GetRawBytes(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        TensorInfo info = GetInfo(name);
        if (info.ByteLength > int.MaxValue)
        {
            throw new NotSupportedException($"Tensor '{name}' in {Path} has {info.ByteLength} bytes; a span holds at most {int.MaxValue}.");
        }
        return new ReadOnlySpan<byte>(_data + info.Begin, (int)info.ByteLength);
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
    }

    /// <summary>The file format is little-endian and the conversions reinterpret bytes in place.</summary>
    private static void EnsureLittleEndianHost()
    {
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("safetensors loading requires a little-endian host.");
        }
    }

    private static void ConvertToFloat32(SafeTensorsDType dtype, ReadOnlySpan<byte> source, Span<float> destination)
    {
        switch (dtype)
        {
            case SafeTensorsDType.F32:
                // Byte copy: the data section need not be 4-byte aligned.
                source.CopyTo(MemoryMarshal.AsBytes(destination));
                break;
            case SafeTensorsDType.F16:
                TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(source), destination);
                break;
            case SafeTensorsDType.BF16:
                ConvertBFloat16ToSingle(MemoryMarshal.Cast<byte, ushort>(source), destination);
                break;
            case SafeTensorsDType.F64:
                ReadOnlySpan<double> doubles = MemoryMarshal.Cast<byte, double>(source);
                for (int i = 0; i < doubles.Length; i++) destination[i] = (float)doubles[i];
                break;
            default:
                throw new InvalidOperationException($"dtype {dtype} is not convertible (checked by the caller).");
        }
    }

    /// <summary>bfloat16 is the upper half of a float32, so widening is a 16-bit left shift; vectorised
    /// because BF16 is the most common dtype of large checkpoints.</summary>
    private static void ConvertBFloat16ToSingle(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        int i = 0;
        if (Vector128.IsHardwareAccelerated)
        {
            ref ushort src = ref MemoryMarshal.GetReference(source);
            ref float dst = ref MemoryMarshal.GetReference(destination);
            int step = Vector128<ushort>.Count;
            for (; i <= source.Length - step; i += step)
            {
                (Vector128<uint> low, Vector128<uint> high) = Vector128.Widen(Vector128.LoadUnsafe(ref src, (nuint)i));
                Vector128.ShiftLeft(low, 16).AsSingle().StoreUnsafe(ref dst, (nuint)i);
                Vector128.ShiftLeft(high, 16).AsSingle().StoreUnsafe(ref dst, (nuint)(i + step / 2));
            }
        }
        for (; i < source.Length; i++)
        {
            destination[i] = BitConverter.Int32BitsToSingle(source[i] << 16);
        }
    }

    /// <summary>
    /// Strict header validation. Every failure names the file and, when known, the tensor and field.
    /// Mirrors the reference Rust implementation: the tensors, sorted by offset, must tile the data
    /// section exactly, so no byte is shared or unaccounted for.
    /// </summary>
    private static class HeaderParser
    {
        private const string MetadataKey = "__metadata__";

        public static SafeTensorsHeader Read(FileStream stream, string path)
        {
            long fileLength = stream.Length;
            byte[] headerBytes = ReadHeaderBytes(stream, path, fileLength);
            long dataOffset = 8 + headerBytes.Length;
            long dataLength = fileLength - dataOffset;

            using JsonDocument document = ParseJson(headerBytes, path);
            var tensors = new Dictionary<string, TensorInfo>(StringComparer.Ordinal);
            IReadOnlyDictionary<string, string> metadata = new Dictionary<string, string>();
            foreach (JsonProperty property in document.RootElement.EnumerateObject())
            {
                // Duplicate keys were rejected by ParseJson, so each name is seen once here.
                if (property.Name == MetadataKey)
                {
                    metadata = ParseMetadata(property.Value, path);
                    continue;
                }
                tensors.Add(property.Name, ParseTensor(property.Name, property.Value, path, dataLength));
            }
            CheckTiling(tensors.Values, path, dataLength);
            return new SafeTensorsHeader(path, dataOffset, dataLength, tensors, metadata);
        }

        private static byte[] ReadHeaderBytes(FileStream stream, string path, long fileLength)
        {
            if (fileLength < 8)
            {
                throw new CheckpointFormatException(path,
                    $"file is {fileLength} bytes; a safetensors file starts with an 8-byte header length.");
            }
            Span<byte> lengthBytes = stackalloc byte[8];
            stream.ReadExactly(lengthBytes);
            ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
            if (headerLength == 0)
            {
                throw new CheckpointFormatException(path, "header length is 0; expected a JSON object of at least 2 bytes.");
            }
            if (headerLength > MaxHeaderLength)
            {
                throw new CheckpointFormatException(path,
                    $"header length is {headerLength} bytes, over the {MaxHeaderLength}-byte limit; the file is corrupt or not safetensors.");
            }
            if (8 + (long)headerLength > fileLength)
            {
                throw new CheckpointFormatException(path,
                    $"header length is {headerLength} bytes but the file has only {fileLength - 8} bytes after the length field (truncated file?).");
            }
            byte[] header = new byte[(int)headerLength];
            stream.ReadExactly(header);
            return header;
        }

        private static JsonDocument ParseJson(byte[] headerBytes, string path)
        {
            // System.Text.Json does not validate UTF-8 outside the strings it decodes, so check it all.
            if (!Utf8.IsValid(headerBytes))
            {
                throw new CheckpointFormatException(path, "header is not valid UTF-8.");
            }
            JsonDocument document;
            try
            {
                // JSON allows trailing whitespace, so writers' space padding parses as-is.
                document = JsonDocument.Parse(headerBytes);
            }
            catch (JsonException e)
            {
                throw new CheckpointFormatException(path, $"header is not valid JSON: {e.Message}", innerException: e);
            }
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                JsonValueKind kind = document.RootElement.ValueKind;
                document.Dispose();
                throw new CheckpointFormatException(path, $"header must be a JSON object; found {Describe(kind)}.");
            }
            if (FindDuplicateKey(document.RootElement) is string duplicate)
            {
                document.Dispose();
                throw duplicate == MetadataKey
                    ? new CheckpointFormatException(path, "appears twice in the header (duplicate JSON key).", field: MetadataKey)
                    : new CheckpointFormatException(path, "the header lists this tensor twice (duplicate JSON key).", duplicate);
            }
            return document;
        }

        /// <summary>
        /// JsonDocument keeps duplicate keys silently (last one wins on lookup), so a duplicate could hide a
        /// second definition; returns the first repeated key, or null.
        /// </summary>
        private static string? FindDuplicateKey(JsonElement element)
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (JsonProperty property in element.EnumerateObject())
            {
                if (!seen.Add(property.Name)) return property.Name;
            }
            return null;
        }

        private static IReadOnlyDictionary<string, string> ParseMetadata(JsonElement element, string path)
        {
            if (element.ValueKind != JsonValueKind.Object)
            {
                throw new CheckpointFormatException(path,
                    $"expected an object of string values; found {Describe(element.ValueKind)}.", field: MetadataKey);
            }
            if (FindDuplicateKey(element) is string duplicate)
            {
                throw new CheckpointFormatException(path, $"key '{duplicate}' appears twice (duplicate JSON key).", field: MetadataKey);
            }
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (JsonProperty entry in element.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.String)
                {
                    throw new CheckpointFormatException(path,
                        $"value of key '{entry.Name}' must be a string; found {Describe(entry.Value.ValueKind)} {entry.Value.GetRawText()}.",
                        field: MetadataKey);
                }
                metadata.Add(entry.Name, entry.Value.GetString()!);
            }
            return metadata;
        }

        private static TensorInfo ParseTensor(string name, JsonElement entry, string path, long dataLength)
        {
            if (entry.ValueKind != JsonValueKind.Object)
            {
                throw new CheckpointFormatException(path,
                    $"expected an object with dtype, shape and data_offsets; found {Describe(entry.ValueKind)}.", name);
            }
            if (FindDuplicateKey(entry) is string duplicate)
            {
                throw new CheckpointFormatException(path, "appears twice in the entry (duplicate JSON key).", name, duplicate);
            }
            EnsureExactFields(name, entry, path);

            SafeTensorsDType dtype = ParseDType(name, entry.GetProperty("dtype"), path);
            long[] shape = ParseIntegerArray(name, "shape", entry.GetProperty("shape"), path, requiredLength: null);
            long[] offsets = ParseIntegerArray(name, "data_offsets", entry.GetProperty("data_offsets"), path, requiredLength: 2);
            var info = new TensorInfo(name, dtype, shape, offsets[0], offsets[1]);
            CheckOffsets(info, path, dataLength);
            return info;
        }

        private static void EnsureExactFields(string name, JsonElement entry, string path)
        {
            string[] required = ["dtype", "shape", "data_offsets"];
            foreach (JsonProperty field in entry.EnumerateObject())
            {
                if (Array.IndexOf(required, field.Name) < 0)
                {
                    throw new CheckpointFormatException(path,
                        "unexpected field; a tensor entry has exactly dtype, shape and data_offsets.", name, field.Name);
                }
            }
            foreach (string field in required)
            {
                if (!entry.TryGetProperty(field, out _))
                {
                    throw new CheckpointFormatException(path, "missing; a tensor entry needs dtype, shape and data_offsets.", name, field);
                }
            }
        }

        private static SafeTensorsDType ParseDType(string name, JsonElement element, string path)
        {
            if (element.ValueKind != JsonValueKind.String)
            {
                throw new CheckpointFormatException(path,
                    $"expected a string such as \"F32\"; found {Describe(element.ValueKind)} {element.GetRawText()}.", name, "dtype");
            }
            string text = element.GetString()!;
            if (!SafeTensorsDTypes.TryParse(text, out SafeTensorsDType dtype))
            {
                throw new CheckpointFormatException(path,
                    $"unknown dtype '{text}'; expected one of {SafeTensorsDTypes.KnownList}.", name, "dtype");
            }
            return dtype;
        }

        private static long[] ParseIntegerArray(string name, string field, JsonElement element, string path, int? requiredLength)
        {
            string expected = requiredLength is int n
                ? $"an array of {n} non-negative integers"
                : "an array of non-negative integers";
            if (element.ValueKind != JsonValueKind.Array)
            {
                throw new CheckpointFormatException(path,
                    $"expected {expected}; found {Describe(element.ValueKind)} {element.GetRawText()}.", name, field);
            }
            int length = element.GetArrayLength();
            if (requiredLength is int required && length != required)
            {
                throw new CheckpointFormatException(path,
                    $"expected {expected}; found {length} elements: {element.GetRawText()}.", name, field);
            }
            var values = new long[length];
            int index = 0;
            foreach (JsonElement item in element.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt64(out long value) || value < 0)
                {
                    throw new CheckpointFormatException(path,
                        $"expected {expected}; element {index} is {item.GetRawText()}.", name, field);
                }
                values[index++] = value;
            }
            return values;
        }

        private static void CheckOffsets(TensorInfo info, string path, long dataLength)
        {
            if (info.Begin > info.End)
            {
                throw new CheckpointFormatException(path,
                    $"begin {info.Begin} is after end {info.End}; expected begin <= end.", info.Name, "data_offsets");
            }
            if (info.End > dataLength)
            {
                throw new CheckpointFormatException(path,
                    $"[{info.Begin}, {info.End}] runs past the end of the data section ({dataLength} bytes); truncated file?",
                    info.Name, "data_offsets");
            }
            long expectedBytes;
            try
            {
                expectedBytes = checked(info.ElementCount * info.DType.ElementSize());
            }
            catch (OverflowException)
            {
                throw new CheckpointFormatException(path,
                    $"shape {info.ShapeText} of {info.DType} overflows a 64-bit byte count.", info.Name, "shape");
            }
            if (expectedBytes != info.ByteLength)
            {
                throw new CheckpointFormatException(path,
                    $"[{info.Begin}, {info.End}] spans {info.ByteLength} bytes, but shape {info.ShapeText} of {info.DType} " +
                    $"needs {expectedBytes} bytes.", info.Name, "data_offsets");
            }
        }

        /// <summary>Sorted by offset, tensors must start at 0, follow each other with no gap or overlap, and end at the data end.</summary>
        private static void CheckTiling(IEnumerable<TensorInfo> tensors, string path, long dataLength)
        {
            long expectedBegin = 0;
            TensorInfo? previous = null;
            foreach (TensorInfo info in tensors.OrderBy(t => t.Begin).ThenBy(t => t.End))
            {
                string after = previous is null ? "the data section starts at 0" : $"tensor '{previous.Name}' ends at {expectedBegin}";
                if (info.Begin < expectedBegin)
                {
                    throw new CheckpointFormatException(path,
                        $"[{info.Begin}, {info.End}] overlaps tensor '{previous!.Name}' [{previous.Begin}, {previous.End}]; " +
                        $"expected begin {expectedBegin}.", info.Name, "data_offsets");
                }
                if (info.Begin > expectedBegin)
                {
                    throw new CheckpointFormatException(path,
                        $"begins at {info.Begin}, leaving a hole of {info.Begin - expectedBegin} bytes ({after}); expected begin {expectedBegin}.",
                        info.Name, "data_offsets");
                }
                expectedBegin = info.End;
                previous = info;
            }
            if (expectedBegin != dataLength)
            {
                string last = previous is null ? "there are no tensors" : $"the last tensor '{previous.Name}' ends at {expectedBegin}";
                throw new CheckpointFormatException(path,
                    $"the data section has {dataLength} bytes but {last}; {dataLength - expectedBegin} trailing bytes are not part of any tensor.",
                    previous?.Name, "data_offsets");
            }
        }

        private static string Describe(JsonValueKind kind) => JsonKinds.Describe(kind);
    }
}
