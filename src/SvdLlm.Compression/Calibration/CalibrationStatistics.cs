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
/// Saved in our own format (version 2: packed lower-triangle Grams, Σ|x|, Fisher rows, a JSON table of contents in a
/// footer; see <see cref="CalibrationStatisticsFile"/>) — written to a temp file and renamed, so a cache entry is whole or absent.
/// </summary>
public sealed class CalibrationStatistics : IStatisticsSource, IDisposable
{
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

    /// <summary>Writes the statistics file (format 2, see <see cref="CalibrationStatisticsWriter"/>); every Gram must be symmetric.</summary>
    public void Save(string path)
    {
        using var writer = new CalibrationStatisticsWriter(path);
        foreach (var (k, s) in Inputs.OrderBy(kv => kv.Key, StringComparer.Ordinal)) writer.WriteInput(k, s);
        foreach (var (k, f) in Fisher.OrderBy(kv => kv.Key, StringComparer.Ordinal)) writer.WriteFisher(k, f);
        writer.Commit(Metadata);
    }

    /// <summary>Reads a whole statistics file into memory (small models; large ones use <see cref="CalibrationStatisticsFile"/>).</summary>
    public static CalibrationStatistics Load(string path)
    {
        using var file = CalibrationStatisticsFile.Open(path);
        return file.ReadAll();
    }

    public void Dispose()
    {
        foreach (var s in Inputs.Values) s.Dispose();
    }
}
