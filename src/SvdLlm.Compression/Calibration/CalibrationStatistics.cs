using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Calibration;

/// <summary>Statistics of one linear input (shared by the linears that read it: q/k/v, gate/up).</summary>
public sealed class InputStatistics(int features) : IDisposable
{
    /// <summary>C = Σ_t x_t x_tᵀ [n, n], raw sum over all calibration tokens, float64.</summary>
    public Tensor<double> Gram { get; } = Tensor<double>.Zeros(features, features);

    /// <summary>Σ_t |x_t,j| [n].</summary>
    public double[] AbsSum { get; } = new double[features];

    public long Tokens { get; set; }

    public int Features => AbsSum.Length;

    /// <summary>mean_t |x_j| (ASVD's activation scale).</summary>
    public double[] MeanAbs() => AbsSum.Select(s => Tokens > 0 ? s / Tokens : 0).ToArray();

    public void Dispose() => Gram.Dispose();
}

/// <summary>
/// Everything calibration measured for one (model, tokenizer, dataset, sampling) tuple: per input key the
/// Gram matrix, Σ|x| and the token count, and per linear (when requested) the Fisher information Σ g_W².
/// Saved in our own format: magic "SVDLLMCS", a format version, a JSON table of contents, then raw
/// little-endian float64 data — written to a temp file and renamed, so a cache entry is whole or absent.
/// </summary>
public sealed class CalibrationStatistics : IStatisticsSource, IDisposable
{
    private static readonly byte[] Magic = "SVDLLMCS"u8.ToArray();
    public const int FormatVersion = 2;

    public Dictionary<string, InputStatistics> Inputs { get; } = new(StringComparer.Ordinal);
    /// <summary>Per linear, FWSVD's row Fisher Σ_windows Σ_j (∂L/∂W_ij)² [out_features] (all FWSVD uses of Î).</summary>
    public Dictionary<string, double[]> Fisher { get; } = new(StringComparer.Ordinal);

    /// <summary>Free-form provenance (model, dataset, samples, seed, key) stored with the data.</summary>
    public Dictionary<string, string> Metadata { get; } = new(StringComparer.Ordinal);

    IReadOnlyDictionary<string, string> IStatisticsSource.Metadata => Metadata;
    public IReadOnlyCollection<string> InputKeys => Inputs.Keys;
    public bool HasFisher => Fisher.Count > 0;

    public InputStatistics Input(string key)
        => Inputs.TryGetValue(key, out var s) ? s : throw new KeyNotFoundException($"no calibration statistics for input '{key}'; were they collected on this model?");

    public void Release(string key) { }

    public double[]? FisherRowSums(string linearName) => Fisher.GetValueOrDefault(linearName);

    public InputStatistics GetOrAdd(string key, int features)
    {
        if (!Inputs.TryGetValue(key, out var s)) Inputs[key] = s = new InputStatistics(features);
        else if (s.Features != features) throw new InvalidOperationException($"input '{key}' seen with {features} features, earlier with {s.Features}");
        return s;
    }

    public void Save(string path)
    {
        var toc = new List<object>();
        long offset = 0;
        void Entry(string kind, string name, int[] shape, long length)
        {
            toc.Add(new { kind, name, shape, offset, length });
            offset += length;
        }
        foreach (var (k, s) in Inputs.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            Entry("gram", k, [s.Features, s.Features], s.Gram.Length);
            Entry("abs_sum", k, [s.Features], s.Features);
        }
        foreach (var (k, f) in Fisher.OrderBy(kv => kv.Key, StringComparer.Ordinal)) Entry("fisher_rows", k, [f.Length], f.Length);
        var header = JsonSerializer.SerializeToUtf8Bytes(new
        {
            entries = toc,
            tokens = Inputs.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToDictionary(kv => kv.Key, kv => kv.Value.Tokens),
            metadata = Metadata,
        });
        string tmp = path + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                Span<byte> intBuf = stackalloc byte[8];
                fs.Write(Magic);
                BinaryPrimitives.WriteInt32LittleEndian(intBuf, FormatVersion);
                fs.Write(intBuf[..4]);
                BinaryPrimitives.WriteInt64LittleEndian(intBuf, header.Length);
                fs.Write(intBuf);
                fs.Write(header);
                foreach (var (_, s) in Inputs.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                {
                    fs.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(s.Gram.Span));
                    fs.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(s.AbsSum.AsSpan()));
                }
                foreach (var (_, f) in Fisher.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                    fs.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(f.AsSpan()));
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }

    public static CalibrationStatistics Load(string path)
    {
        using var fs = File.OpenRead(path);
        var magic = new byte[8];
        var intBuf = new byte[8];
        if (fs.Read(magic) != 8 || !magic.AsSpan().SequenceEqual(Magic))
            throw new InvalidDataException($"{path}: not a calibration statistics file (bad magic)");
        fs.ReadExactly(intBuf.AsSpan(0, 4));
        int version = BinaryPrimitives.ReadInt32LittleEndian(intBuf);
        if (version != FormatVersion) throw new InvalidDataException($"{path}: statistics format version {version}, this build reads {FormatVersion}");
        fs.ReadExactly(intBuf);
        long headerLength = BinaryPrimitives.ReadInt64LittleEndian(intBuf);
        if (headerLength <= 0 || headerLength > 100_000_000) throw new InvalidDataException($"{path}: bad header length {headerLength}");
        var header = new byte[headerLength];
        fs.ReadExactly(header);
        using var doc = JsonDocument.Parse(header);
        var stats = new CalibrationStatistics();
        try
        {
            foreach (var m in doc.RootElement.GetProperty("metadata").EnumerateObject()) stats.Metadata[m.Name] = m.Value.GetString() ?? "";
            var tokens = doc.RootElement.GetProperty("tokens");
            foreach (var e in doc.RootElement.GetProperty("entries").EnumerateArray())
            {
                string kind = e.GetProperty("kind").GetString()!, name = e.GetProperty("name").GetString()!;
                var shape = e.GetProperty("shape").EnumerateArray().Select(x => x.GetInt32()).ToArray();
                Span<double> target = kind switch
                {
                    "gram" => stats.GetOrAdd(name, shape[0]).Gram.Span,
                    "abs_sum" => stats.GetOrAdd(name, shape[0]).AbsSum,
                    "fisher_rows" => stats.Fisher[name] = new double[shape[0]],
                    _ => throw new InvalidDataException($"{path}: unknown entry kind '{kind}'"),
                };
                fs.ReadExactly(System.Runtime.InteropServices.MemoryMarshal.AsBytes(target));
                if (kind == "gram") stats.Inputs[name].Tokens = tokens.GetProperty(name).GetInt64();
            }
            if (fs.Position != fs.Length) throw new InvalidDataException($"{path}: {fs.Length - fs.Position} trailing bytes");
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
        foreach (var s in Inputs.Values) s.Dispose();
    }
}
