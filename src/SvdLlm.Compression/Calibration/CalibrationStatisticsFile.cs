using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Calibration;

/// <summary>
/// The statistics file, format version 2. Layout (all little-endian):
/// <code>
/// [0, 16)            magic "SVDLLMCS", int32 version = 2, int32 0
/// [16, toc_offset)   entries, each a run of float64 appended as calibration produced it:
///                      "gram_lower"  shape [n, n]: the packed lower triangle, rows 0…n−1, row i holding C[i, 0…i]
///                                    (n(n+1)/2 values: half of the full matrix, which is symmetric)
///                      "abs_sum"     shape [n]:    Σ_t |x_t,j|
///                      "fisher_rows" shape [m]:    FWSVD's Σ (∂L/∂W_ij)² over j, per linear
/// [toc_offset, +toc_length)  the JSON table of contents: {"format": 2, "entries": [{kind, name, shape, offset, length}],
///                            "tokens": {input: count}, "metadata": {…}}  (offset/length in bytes)
/// [end − 24, end)    trailer: int64 toc_offset, int64 toc_length, "SVDLLMCT"
/// </code>
/// The table of contents is a footer so that the writer needs nothing up front; the fixed trailer finds it.
/// </summary>
internal static class StatisticsFormat
{
    public static ReadOnlySpan<byte> Magic => "SVDLLMCS"u8;
    public static ReadOnlySpan<byte> TrailerMagic => "SVDLLMCT"u8;
    public const int HeaderBytes = 16;
    public const int TrailerBytes = 24;
    public const long MaxTocBytes = 256L << 20;

    public const string Gram = "gram_lower";
    public const string AbsSum = "abs_sum";
    public const string FisherRows = "fisher_rows";

    public static long PackedLength(long n) => n * (n + 1) / 2;
}

/// <summary>
/// Writes a statistics file (format 2) entry by entry as calibration produces them: each input's packed Gram and
/// Σ|x| as soon as its layer is done, Fisher row sums whenever they are known; the table of contents goes into a
/// footer at <see cref="Commit"/>. The data go to a temporary file next to the target, renamed on Commit, so a crash
/// leaves no file under the final name; disposing without Commit deletes the temporary file.
/// </summary>
public sealed class CalibrationStatisticsWriter : IDisposable
{
    private sealed record Entry(string Kind, string Name, int[] Shape, long Offset, long Length);

    private readonly string _path;
    private readonly string _tmp;
    private FileStream? _fs;
    private readonly List<Entry> _entries = [];
    private readonly Dictionary<string, long> _tokens = new(StringComparer.Ordinal);
    private readonly HashSet<string> _fisher = new(StringComparer.Ordinal);
    private bool _committed;

    public CalibrationStatisticsWriter(string path)
    {
        _path = Path.GetFullPath(path);
        string? dir = Path.GetDirectoryName(_path);
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        _tmp = SvdLlm.Models.Data.Leftovers.TempPath(_path);
        _fs = new FileStream(_tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
        Span<byte> header = stackalloc byte[StatisticsFormat.HeaderBytes];
        header.Clear();
        StatisticsFormat.Magic.CopyTo(header);
        BinaryPrimitives.WriteInt32LittleEndian(header[8..], CalibrationStatistics.FormatVersion);
        _fs.Write(header);
    }

    /// <summary>The file the statistics appear under after <see cref="Commit"/>.</summary>
    public string TargetPath => _path;

    /// <summary>Input keys written so far.</summary>
    public IReadOnlyCollection<string> InputKeys => _tokens.Keys;

    /// <summary>
    /// Appends one input's statistics. The Gram must be symmetric (checked exactly): only its lower triangle is stored.
    /// </summary>
    public void WriteInput(string key, InputStatistics s)
    {
        var fs = Open();
        if (_tokens.ContainsKey(key)) throw new InvalidOperationException($"{_path}: input '{key}' written twice");
        int n = s.Features;
        var g = s.Gram;
        CheckSymmetric(key, g.Span, n);
        long start = fs.Position;
        for (int i = 0; i < n; i++) fs.Write(MemoryMarshal.AsBytes(g.Span.Slice(i * n, i + 1)));
        _entries.Add(new Entry(StatisticsFormat.Gram, key, [n, n], start, fs.Position - start));
        start = fs.Position;
        fs.Write(MemoryMarshal.AsBytes(s.AbsSum.AsSpan()));
        _entries.Add(new Entry(StatisticsFormat.AbsSum, key, [n], start, fs.Position - start));
        _tokens[key] = s.Tokens;
    }

    /// <summary>Appends one linear's Fisher row sums [out_features].</summary>
    public void WriteFisher(string linearName, ReadOnlySpan<double> rowSums)
    {
        var fs = Open();
        if (!_fisher.Add(linearName)) throw new InvalidOperationException($"{_path}: Fisher rows of '{linearName}' written twice");
        long start = fs.Position;
        fs.Write(MemoryMarshal.AsBytes(rowSums));
        _entries.Add(new Entry(StatisticsFormat.FisherRows, linearName, [rowSums.Length], start, fs.Position - start));
    }

    /// <summary>Writes the table of contents and the trailer, flushes to disk and renames the file to its final name.</summary>
    public void Commit(IReadOnlyDictionary<string, string> metadata)
    {
        var fs = Open();
        long tocOffset = fs.Position;
        var toc = JsonSerializer.SerializeToUtf8Bytes(new
        {
            format = CalibrationStatistics.FormatVersion,
            entries = _entries.Select(e => new { kind = e.Kind, name = e.Name, shape = e.Shape, offset = e.Offset, length = e.Length }),
            tokens = _tokens,
            metadata,
        });
        fs.Write(toc);
        Span<byte> trailer = stackalloc byte[StatisticsFormat.TrailerBytes];
        BinaryPrimitives.WriteInt64LittleEndian(trailer, tocOffset);
        BinaryPrimitives.WriteInt64LittleEndian(trailer[8..], toc.Length);
        StatisticsFormat.TrailerMagic.CopyTo(trailer[16..]);
        fs.Write(trailer);
        fs.Flush(flushToDisk: true);
        fs.Dispose();
        _fs = null;
        File.Move(_tmp, _path, overwrite: true);
        _committed = true;
    }

    public void Dispose()
    {
        _fs?.Dispose();
        _fs = null;
        if (!_committed && File.Exists(_tmp)) File.Delete(_tmp);
    }

    private FileStream Open() => _fs ?? throw new ObjectDisposedException(nameof(CalibrationStatisticsWriter), $"{_path}: the writer is committed or disposed");

    /// <summary>Exact symmetry, compared in 64×64 tiles so the transposed reads stay in cache.</summary>
    private void CheckSymmetric(string key, ReadOnlySpan<double> g, int n)
    {
        const int B = 64;
        for (int i0 = 0; i0 < n; i0 += B)
            for (int j0 = 0; j0 <= i0; j0 += B)
                for (int i = i0; i < Math.Min(n, i0 + B); i++)
                    for (int j = j0; j < Math.Min(i, j0 + B); j++)
                        if (BitConverter.DoubleToInt64Bits(g[i * n + j]) != BitConverter.DoubleToInt64Bits(g[j * n + i]))
                            throw new ArgumentException($"{_path}: the Gram of input '{key}' is not symmetric at [{i}, {j}] ({g[i * n + j]} vs {g[j * n + i]}); only the lower triangle is stored");
    }
}

/// <summary>
/// A statistics file (format 2) opened for random access: the whole table of contents is validated at
/// <see cref="Open"/>, and <see cref="Input"/> reads one input's entries on demand (seek + read, the packed triangle
/// unpacked into a full symmetric Gram), cached until <see cref="Release"/>. Peak memory is what the caller holds.
/// </summary>
public sealed class CalibrationStatisticsFile : IStatisticsSource, IDisposable
{
    private sealed record InputEntry(int Features, long GramOffset, long AbsOffset, long Tokens);

    private readonly SafeFileHandle _handle;
    private readonly Dictionary<string, InputEntry> _inputs;
    private readonly Dictionary<string, (int Length, long Offset)> _fisher;
    private readonly Dictionary<string, InputStatistics> _loaded = new(StringComparer.Ordinal);
    private readonly Dictionary<string, double[]> _fisherLoaded = new(StringComparer.Ordinal);
    private readonly object _lock = new();

    private CalibrationStatisticsFile(string path, SafeFileHandle handle, Dictionary<string, InputEntry> inputs,
        Dictionary<string, (int, long)> fisher, Dictionary<string, string> metadata)
    {
        Path = path;
        _handle = handle;
        _inputs = inputs;
        _fisher = fisher;
        Metadata = metadata;
    }

    public string Path { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }
    public IReadOnlyCollection<string> InputKeys => _inputs.Keys;
    public bool HasFisher => _fisher.Count > 0;

    /// <summary>Names of the linears with Fisher row sums.</summary>
    public IReadOnlyCollection<string> FisherNames => _fisher.Keys;

    /// <summary>Inputs currently loaded (not yet released).</summary>
    public int LoadedCount { get { lock (_lock) return _loaded.Count; } }

    public static CalibrationStatisticsFile Open(string path)
    {
        path = System.IO.Path.GetFullPath(path);
        var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        try
        {
            var (inputs, fisher, metadata) = ReadToc(path, handle);
            return new CalibrationStatisticsFile(path, handle, inputs, fisher, metadata);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    public InputStatistics Input(string key)
    {
        lock (_lock)
        {
            if (_loaded.TryGetValue(key, out var s)) return s;
            if (!_inputs.TryGetValue(key, out var e))
                throw new KeyNotFoundException($"{Path}: no calibration statistics for input '{key}'; were they collected on this model?");
            s = new InputStatistics(e.Features);
            try
            {
                int n = e.Features;
                var g = s.Gram.Span;
                long at = e.GramOffset;
                for (int i = 0; i < n; i++)
                {
                    ReadExactly(MemoryMarshal.AsBytes(g.Slice(i * n, i + 1)), at, "gram_lower", key);
                    at += (i + 1) * 8L;
                }
                Blas.SymmetrizeFromLower(g, n);
                ReadExactly(MemoryMarshal.AsBytes(s.AbsSum.AsSpan()), e.AbsOffset, "abs_sum", key);
                s.Tokens = e.Tokens;
            }
            catch
            {
                s.Dispose();
                throw;
            }
            _loaded[key] = s;
            return s;
        }
    }

    public void Release(string key)
    {
        lock (_lock)
        {
            if (_loaded.Remove(key, out var s)) s.Dispose();
        }
    }

    public double[]? FisherRowSums(string linearName)
    {
        lock (_lock)
        {
            if (_fisherLoaded.TryGetValue(linearName, out var f)) return f;
            if (!_fisher.TryGetValue(linearName, out var e)) return null;
            f = new double[e.Length];
            ReadExactly(MemoryMarshal.AsBytes(f.AsSpan()), e.Offset, "fisher_rows", linearName);
            _fisherLoaded[linearName] = f;
            return f;
        }
    }

    /// <summary>Everything in the file, in memory (small models and tests).</summary>
    public CalibrationStatistics ReadAll()
    {
        var stats = new CalibrationStatistics();
        try
        {
            foreach (var (k, v) in Metadata) stats.Metadata[k] = v;
            foreach (string key in _inputs.Keys.OrderBy(k => k, StringComparer.Ordinal))
            {
                bool wasLoaded;
                lock (_lock) wasLoaded = _loaded.ContainsKey(key);
                var s = Input(key);
                var copy = stats.GetOrAdd(key, s.Features);
                s.Gram.Span.CopyTo(copy.Gram.Span);
                s.AbsSum.CopyTo(copy.AbsSum, 0);
                copy.Tokens = s.Tokens;
                if (!wasLoaded) Release(key);
            }
            foreach (string name in _fisher.Keys.OrderBy(k => k, StringComparer.Ordinal)) stats.Fisher[name] = (double[])FisherRowSums(name)!.Clone();
            return stats;
        }
        catch
        {
            stats.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var s in _loaded.Values) s.Dispose();
            _loaded.Clear();
        }
        _handle.Dispose();
    }

    private void ReadExactly(Span<byte> buffer, long offset, string kind, string name)
    {
        while (buffer.Length > 0)
        {
            int read = RandomAccess.Read(_handle, buffer, offset);
            if (read <= 0) throw new InvalidDataException($"{Path}: entry {kind} '{name}' ends at {offset}, past the end of the file (truncated?)");
            buffer = buffer[read..];
            offset += read;
        }
    }

    private static (Dictionary<string, InputEntry>, Dictionary<string, (int, long)>, Dictionary<string, string>) ReadToc(string path, SafeFileHandle handle)
    {
        long fileLength = RandomAccess.GetLength(handle);
        Span<byte> header = stackalloc byte[StatisticsFormat.HeaderBytes];
        if (fileLength < 12 || RandomAccess.Read(handle, header, 0) < 12 || !header[..8].SequenceEqual(StatisticsFormat.Magic))
            throw new InvalidDataException($"{path}: not a calibration statistics file (bad magic; expected \"SVDLLMCS\")");
        int version = BinaryPrimitives.ReadInt32LittleEndian(header[8..]);
        if (version == 1)
            throw new InvalidDataException($"{path}: calibration statistics format version 1 (full Grams, table of contents first), which this build no longer reads; "
                + "delete the file and collect again (the statistics cache key changed with format 2, so the cache recollects by itself)");
        if (version != CalibrationStatistics.FormatVersion)
            throw new InvalidDataException($"{path}: field 'version' is {version}; this build reads statistics format {CalibrationStatistics.FormatVersion}");
        if (fileLength < StatisticsFormat.HeaderBytes + StatisticsFormat.TrailerBytes)
            throw new InvalidDataException($"{path}: {fileLength} bytes, too short for the header and trailer (truncated?)");
        Span<byte> trailer = stackalloc byte[StatisticsFormat.TrailerBytes];
        if (RandomAccess.Read(handle, trailer, fileLength - StatisticsFormat.TrailerBytes) != StatisticsFormat.TrailerBytes || !trailer[16..].SequenceEqual(StatisticsFormat.TrailerMagic))
            throw new InvalidDataException($"{path}: trailer: bad magic (expected \"SVDLLMCT\" in the last 8 bytes; truncated or not committed?)");
        long tocOffset = BinaryPrimitives.ReadInt64LittleEndian(trailer);
        long tocLength = BinaryPrimitives.ReadInt64LittleEndian(trailer[8..]);
        long dataEnd = fileLength - StatisticsFormat.TrailerBytes;
        if (tocLength <= 0 || tocLength > StatisticsFormat.MaxTocBytes)
            throw new InvalidDataException($"{path}: trailer: toc_length {tocLength} outside (0, {StatisticsFormat.MaxTocBytes}]");
        if (tocOffset < StatisticsFormat.HeaderBytes || tocOffset + tocLength != dataEnd)
            throw new InvalidDataException($"{path}: trailer: toc_offset {tocOffset} + toc_length {tocLength} does not end at the trailer ({dataEnd})");
        var toc = new byte[tocLength];
        if (RandomAccess.Read(handle, toc, tocOffset) != tocLength) throw new InvalidDataException($"{path}: table of contents: short read");

        JsonDocument doc;
        try { doc = JsonDocument.Parse(toc); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: table of contents: invalid JSON ({e.Message})", e); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{path}: table of contents: not a JSON object");
            JsonElement Field(JsonElement o, string name, JsonValueKind kind, string where)
            {
                if (o.ValueKind != JsonValueKind.Object || !o.TryGetProperty(name, out var v) || v.ValueKind != kind)
                    throw new InvalidDataException($"{path}: {where}: field '{name}' missing or not a {kind.ToString().ToLowerInvariant()}");
                return v;
            }
            long Long(JsonElement o, string name, string where)
            {
                var v = Field(o, name, JsonValueKind.Number, where);
                if (!v.TryGetInt64(out long x)) throw new InvalidDataException($"{path}: {where}: field '{name}' is not an integer");
                return x;
            }
            if (Long(root, "format", "table of contents") != CalibrationStatistics.FormatVersion)
                throw new InvalidDataException($"{path}: table of contents: field 'format' is not {CalibrationStatistics.FormatVersion}");

            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var m in Field(root, "metadata", JsonValueKind.Object, "table of contents").EnumerateObject())
            {
                if (m.Value.ValueKind != JsonValueKind.String) throw new InvalidDataException($"{path}: metadata: field '{m.Name}' is not a string");
                metadata[m.Name] = m.Value.GetString()!;
            }
            var tokens = new Dictionary<string, long>(StringComparer.Ordinal);
            foreach (var t in Field(root, "tokens", JsonValueKind.Object, "table of contents").EnumerateObject())
            {
                if (t.Value.ValueKind != JsonValueKind.Number || !t.Value.TryGetInt64(out long c) || c < 0)
                    throw new InvalidDataException($"{path}: tokens: field '{t.Name}' is not a non-negative integer");
                tokens[t.Name] = c;
            }

            var grams = new Dictionary<string, (int N, long Offset)>(StringComparer.Ordinal);
            var abs = new Dictionary<string, (int N, long Offset)>(StringComparer.Ordinal);
            var fisher = new Dictionary<string, (int, long)>(StringComparer.Ordinal);
            var spans = new List<(long Offset, long Length, string What)>();
            int index = 0;
            foreach (var e in Field(root, "entries", JsonValueKind.Array, "table of contents").EnumerateArray())
            {
                string where = $"entries[{index++}]";
                string kind = Field(e, "kind", JsonValueKind.String, where).GetString()!;
                string name = Field(e, "name", JsonValueKind.String, where).GetString()!;
                where += $" ({kind} '{name}')";
                var shape = Field(e, "shape", JsonValueKind.Array, where).EnumerateArray()
                    .Select(x => x.ValueKind == JsonValueKind.Number && x.TryGetInt32(out int d) && d > 0 ? d
                        : throw new InvalidDataException($"{path}: {where}: field 'shape' holds a non-positive or non-integer dimension"))
                    .ToArray();
                long offset = Long(e, "offset", where), length = Long(e, "length", where);
                long elements = kind switch
                {
                    StatisticsFormat.Gram when shape.Length == 2 && shape[0] == shape[1] => StatisticsFormat.PackedLength(shape[0]),
                    StatisticsFormat.AbsSum or StatisticsFormat.FisherRows when shape.Length == 1 => shape[0],
                    StatisticsFormat.Gram or StatisticsFormat.AbsSum or StatisticsFormat.FisherRows
                        => throw new InvalidDataException($"{path}: {where}: field 'shape' [{string.Join(", ", shape)}] is not valid for {kind}"),
                    _ => throw new InvalidDataException($"{path}: {where}: field 'kind': unknown entry kind '{kind}'"),
                };
                if (length != elements * 8)
                    throw new InvalidDataException($"{path}: {where}: field 'length' is {length} bytes; the shape needs {elements} float64 = {elements * 8} bytes");
                if (offset < StatisticsFormat.HeaderBytes || offset > tocOffset - length)
                    throw new InvalidDataException($"{path}: {where}: field 'offset' {offset} (+{length} bytes) is outside the data section [{StatisticsFormat.HeaderBytes}, {tocOffset})");
                var target = kind switch { StatisticsFormat.Gram => grams, StatisticsFormat.AbsSum => abs, _ => null };
                if (target is not null)
                {
                    if (!target.TryAdd(name, (shape[0], offset))) throw new InvalidDataException($"{path}: {where}: field 'name': a second {kind} entry for '{name}'");
                }
                else if (!fisher.TryAdd(name, (shape[0], offset))) throw new InvalidDataException($"{path}: {where}: field 'name': a second {kind} entry for '{name}'");
                spans.Add((offset, length, where));
            }
            spans.Sort((a, b) => a.Offset.CompareTo(b.Offset));
            for (int i = 1; i < spans.Count; i++)
                if (spans[i].Offset < spans[i - 1].Offset + spans[i - 1].Length)
                    throw new InvalidDataException($"{path}: {spans[i].What}: field 'offset' {spans[i].Offset} overlaps {spans[i - 1].What}");

            var inputs = new Dictionary<string, InputEntry>(StringComparer.Ordinal);
            foreach (var (name, g) in grams)
            {
                if (!abs.TryGetValue(name, out var a)) throw new InvalidDataException($"{path}: input '{name}' has a gram_lower entry but no abs_sum");
                if (a.N != g.N) throw new InvalidDataException($"{path}: input '{name}': abs_sum has {a.N} features, gram_lower {g.N}");
                if (!tokens.TryGetValue(name, out long count)) throw new InvalidDataException($"{path}: tokens: field '{name}' missing");
                inputs[name] = new InputEntry(g.N, g.Offset, a.Offset, count);
            }
            foreach (string name in abs.Keys.Where(k => !grams.ContainsKey(k)))
                throw new InvalidDataException($"{path}: input '{name}' has an abs_sum entry but no gram_lower");
            foreach (string name in tokens.Keys.Where(k => !grams.ContainsKey(k)))
                throw new InvalidDataException($"{path}: tokens: field '{name}' names no input");
            return (inputs, fisher, metadata);
        }
    }
}
