using System.Security.Cryptography;
using System.Text;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Data;

namespace SvdLlm.Compression.Calibration;

/// <summary>What calibration is asked to measure.</summary>
/// <param name="Float32Gram">Grams accumulated in float32 as SVD-LLM's public code does (<c>numerics: reference</c>); a
/// separate statistics file, since every other method reads the float64 ones</param>
public sealed record CalibrationRequest(string ModelDirectory, string TextFile, int Samples, int SeqLen, int Seed, bool Fisher, bool Float32Gram = false);

/// <summary>
/// Content-addressed calibration statistics. The key hashes everything the numbers depend on — the
/// statistics code version, the model's config and weight files, its tokenizer files, the calibration
/// text, the sampling parameters and whether Fisher statistics are included — unlike the reference, whose
/// cache key (nsamples, seqlen, seed) lets a different model silently reuse another model's statistics.
/// </summary>
public static class CalibrationCache
{
    /// <summary>Bump when a change alters the statistics computed for the same inputs.</summary>
    public const int StatisticsVersion = 2;

    public static string Directory => Path.Combine(AssetCache.Root, "calibration");

    /// <summary>
    /// The statistics' content key. <paramref name="fileHash"/> (SHA-256 hex of a file; default: read it) lets a caller
    /// that hashes many keys per run (the experiment pipeline) read each weight file once.
    /// </summary>
    public static string Key(CalibrationRequest r, Func<string, string>? fileHash = null)
    {
        fileHash ??= AssetCache.Sha256;
        var sb = new StringBuilder();
        sb.Append($"statistics-v{StatisticsVersion}\nsamples={r.Samples}\nseq_len={r.SeqLen}\nseed={r.Seed}\nfisher={r.Fisher}\n");
        foreach (string f in SvdLlm.Models.Checkpoints.ModelContentFiles.In(r.ModelDirectory)) sb.Append($"model:{Path.GetFileName(f)}={fileHash(f)}\n");
        sb.Append($"text={fileHash(r.TextFile)}\n");
        // Only when set, so every float64 statistics file keeps its key.
        if (r.Float32Gram) sb.Append("gram=float32\n");
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString())));
    }

    public static string PathFor(string key, string? cacheDirectory = null) => Path.Combine(cacheDirectory ?? Directory, key + ".svdstats");

    /// <summary>
    /// Opens the statistics for <paramref name="request"/> if cached, otherwise collects them straight into the cache
    /// file (layer by layer, <see cref="Calibrator.CollectToFile(CausalLanguageModel, int[], int, string, IReadOnlyDictionary{string, string}, int, Action{int, int}?)"/>;
    /// Fisher row sums first, in memory, when requested) and opens that. The returned file reads one input at a time.
    /// </summary>
    /// <param name="force">run the Fisher pass even when its memory estimate exceeds what is available</param>
    /// <param name="fileHash">how model and text files are hashed for the key (see <see cref="Key"/>)</param>
    /// <param name="layerDone">called with (layers done, layers) as the collection goes; without it, a log line per layer</param>
    public static (CalibrationStatisticsFile Stats, string Key, string Path, bool Hit) GetOrCollect(CausalLanguageModel model, CalibrationWindows windows, CalibrationRequest request,
        Action<string>? log = null, string? cacheDirectory = null, bool force = false, Func<string, string>? fileHash = null,
        Action<int, int>? layerDone = null)
    {
        if (windows.SeqLen != request.SeqLen) throw new ArgumentException($"windows of {windows.SeqLen} tokens do not match the request's seq_len {request.SeqLen}", nameof(windows));
        string key = Key(request, fileHash);
        string path = PathFor(key, cacheDirectory);
        if (File.Exists(path))
        {
            log?.Invoke($"calibration statistics cached: {path}");
            return (CalibrationStatisticsFile.Open(path), key, path, true);
        }
        foreach (string gone in SvdLlm.Models.Data.Leftovers.Sweep(System.IO.Path.GetDirectoryName(path)!, ""))
            log?.Invoke($"removed {gone}, left by a calibration that was killed");
        log?.Invoke($"collecting calibration statistics ({request.Samples} × {request.SeqLen} tokens, seed {request.Seed}{(request.Fisher ? ", with Fisher" : "")}{(request.Float32Gram ? ", Grams accumulated in float32" : "")}) into {path}");
        Dictionary<string, double[]>? fisher = null;
        if (request.Fisher)
        {
            fisher = new(StringComparer.Ordinal);
            FisherCollector.Collect(model, windows.Tokens, request.SeqLen, fisher, force: force);
        }
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["key"] = key,
            ["model"] = System.IO.Path.GetFullPath(request.ModelDirectory),
            ["text_file"] = System.IO.Path.GetFullPath(request.TextFile),
            ["samples"] = request.Samples.ToString(),
            ["seq_len"] = request.SeqLen.ToString(),
            ["seed"] = request.Seed.ToString(),
            ["fisher"] = request.Fisher.ToString(),
        };
        if (request.Float32Gram) metadata["gram_accumulation"] = "float32";
        Calibrator.CollectToFile(model, windows.Tokens, request.SeqLen, path, metadata, batchSize: 4,
            (l, n) =>
            {
                if (layerDone is not null) layerDone(l, n);
                else log?.Invoke($"calibration: layer {l}/{n}");
            }, fisher, Calibrator.DefaultHiddenInMemoryLimit, request.Float32Gram);
        return (CalibrationStatisticsFile.Open(path), key, path, false);
    }
}
