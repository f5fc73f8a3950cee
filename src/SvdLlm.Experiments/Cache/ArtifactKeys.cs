using System.Collections.Concurrent;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using SvdLlm.Compression;
using SvdLlm.Compression.Calibration;
using SvdLlm.Experiments.Matrix;
using SvdLlm.Models.Data;

namespace SvdLlm.Experiments.Cache;

/// <summary>Code versions that enter the keys besides <see cref="CalibrationCache.StatisticsVersion"/> and <see cref="Compressor.CodeVersion"/>.</summary>
public static class ArtifactVersions
{
    /// <summary>Bump when the pipeline's own handling changes what a cell's numbers mean (e.g. how demo calibration text is assembled).</summary>
    public const int Pipeline = 1;

    /// <summary>Bump when a change to the evaluation protocols changes the numbers for the same model and task parameters.</summary>
    public const int Evaluation = 1;

    /// <summary>The efficiency task's own version: 2 measures compressed cells paired with their original model.</summary>
    public const int Efficiency = 2;
}

/// <summary>
/// The content keys of the artifact graph. A key hashes a canonical JSON of every input that decides the
/// artifact's bytes: content hashes of files (not their paths or mtimes), parameters, and code versions.
/// What does not change the numbers (threads, batch size, cache location) stays out.
/// </summary>
/// <remarks>
/// File hashes are memoised per process and on disk under <c>&lt;cache&gt;/hashes/</c>, keyed by (absolute path,
/// length, last-write time), so a 13 GB checkpoint is read once, not at every run; a rewritten file has a
/// new length or time and is hashed again.
/// </remarks>
public sealed class ArtifactKeys(string cacheRoot)
{
    private readonly ConcurrentDictionary<string, string> _memo = new();

    public string CacheRoot { get; } = cacheRoot;

    public static string Sha256Hex(string text) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));

    /// <summary>The default model: its training key (known before it is trained). A directory: its <see cref="SvdLlm.Models.Checkpoints.ModelContentFiles"/>.</summary>
    public string ModelKey(ModelSpec model) => _memo.GetOrAdd("model:" + model.Source, _ =>
    {
        if (model.IsDefault) return Sha256Hex("trained-default\n" + ModelTraining.CacheKey(ModelTraining.DefaultConfig()));
        if (model.FineTune is { } t)
            return Sha256Hex(string.Join("\n", "fine-tuned", $"version={SvdLlm.Compression.Recovery.FineTuning.CodeVersion}", "from=" + ModelKey(t.From),
                "text=" + FileHash(DemoCalibrationText.Resolve(t.Text, CacheRoot)), $"steps={t.Steps}", "lr=" + t.LearningRate.ToString("R", CultureInfo.InvariantCulture),
                $"batch={t.BatchSize}", $"samples={t.Samples}", $"seq_len={t.SeqLen}", $"seed={t.Seed}", "weight_decay=" + t.WeightDecay.ToString("R", CultureInfo.InvariantCulture)));
        var sb = new StringBuilder("model-directory\n");
        foreach (string f in SvdLlm.Models.Checkpoints.ModelContentFiles.In(model.Source)) sb.Append(Path.GetFileName(f)).Append('=').Append(FileHash(f)).Append('\n');
        return Sha256Hex(sb.ToString());
    });

    /// <summary>The calibration text's content hash (the demo text is assembled from the pinned corpora).</summary>
    public string DatasetKey(CalibrationSpec c) => c.IsDemo ? FileHash(DemoCalibrationText.Ensure(CacheRoot)) : FileHash(c.Dataset);

    /// <summary>A task's data: a file's hash, or a directory's relative paths and file hashes (the demo tasks: the file the suite builds).</summary>
    public string DataKey(string? path)
    {
        if (path is null) return "none";
        if (File.Exists(path)) return FileHash(path);
        var sb = new StringBuilder("directory\n");
        foreach (string f in Directory.EnumerateFiles(path, "*", SearchOption.AllDirectories).OrderBy(f => f, StringComparer.Ordinal))
            sb.Append(Path.GetRelativePath(path, f).Replace('\\', '/')).Append('=').Append(FileHash(f)).Append('\n');
        return Sha256Hex(sb.ToString());
    }

    /// <summary>
    /// The calibration statistics file of a request: <see cref="CalibrationCache.Key"/> (the one definition, also used by
    /// the compress and calibrate commands) over this run's memoised file hashes.
    /// </summary>
    public string StatisticsKey(CalibrationRequest request) => CalibrationCache.Key(request, FileHash);

    /// <summary>Statistics for (model, calibration): shared by every method and ratio of that pair.</summary>
    /// <param name="float32Gram">the Grams accumulated in float32 (<c>numerics: reference</c>); the key is unchanged without it</param>
    public string CalibrationGroupKey(ModelSpec model, CalibrationSpec c, bool float32Gram = false)
    {
        var o = new JsonObject
        {
            ["kind"] = "calibration",
            ["model"] = ModelKey(model),
            ["calibration"] = CalibrationJson(c),
            ["statistics_version"] = CalibrationCache.StatisticsVersion,
        };
        if (float32Gram) o["gram"] = "float32";
        return Sha256Hex(o.ToJsonString());
    }

    public JsonObject CalibrationJson(CalibrationSpec c) => new()
    {
        ["dataset"] = DatasetKey(c),
        ["samples"] = c.Samples,
        ["seq_len"] = c.SeqLen,
        ["seed"] = c.Seed,
    };

    /// <summary>
    /// A cell: the original model (method "original"), or (model, calibration, method, params, ratio) with the
    /// statistics and compression code versions. The compressed model's cache directory is named by it.
    /// </summary>
    public string CellKey(ModelSpec model, CalibrationSpec? calibration, MethodSpec method, double ratio)
    {
        var o = new JsonObject
        {
            ["kind"] = "cell",
            ["pipeline"] = ArtifactVersions.Pipeline,
            ["model"] = ModelKey(model),
            ["method"] = method.Name,
        };
        if (method.Name != MethodSpec.Original)
        {
            var p = new JsonObject();
            foreach (var (k, v) in method.Parameters.OrderBy(kv => kv.Key, StringComparer.Ordinal)) p[k] = v;
            o["params"] = p;
            o["ratio"] = ratio.ToString("R", CultureInfo.InvariantCulture);
            o["calibration"] = CalibrationJson(calibration ?? throw new ArgumentException("a compressed cell needs a calibration"));
            o["statistics_version"] = CalibrationCache.StatisticsVersion;
            o["compression_version"] = Compressor.CodeVersion;
        }
        return Sha256Hex(o.ToJsonString());
    }

    /// <summary>
    /// A delta cell: both models' keys, the method with its parameters, the CR and the delta code's version; for ImPart-Qt
    /// also the calibration its GPTQ weighs by (and the statistics' version).
    /// </summary>
    public string DeltaCellKey(ModelSpec baseModel, ModelSpec fineTuned, MethodSpec method, double ratio, CalibrationSpec? calibration = null)
    {
        var p = new JsonObject();
        foreach (var (k, v) in method.Parameters.OrderBy(kv => kv.Key, StringComparer.Ordinal)) p[k] = v;
        var o = new JsonObject
        {
            ["kind"] = "delta-cell",
            ["pipeline"] = ArtifactVersions.Pipeline,
            ["base"] = ModelKey(baseModel),
            ["model"] = ModelKey(fineTuned),
            ["method"] = method.Name,
            ["params"] = p,
            ["ratio"] = ratio.ToString("R", CultureInfo.InvariantCulture),
            ["delta_version"] = SvdLlm.Compression.Delta.DeltaCheckpoint.CodeVersion,
        };
        if (calibration is not null)
        {
            o["calibration"] = CalibrationJson(calibration);
            o["statistics_version"] = CalibrationCache.StatisticsVersion;
        }
        return Sha256Hex(o.ToJsonString());
    }

    /// <summary>One (cell, task) evaluation: the task's name, data content and protocol parameters.</summary>
    public string TaskKey(string cellKey, TaskSpec task)
    {
        var o = new JsonObject
        {
            ["kind"] = "evaluation",
            ["cell"] = cellKey,
            ["task"] = task.Name,
            ["data"] = DataKey(TaskCatalog.DataFile(task)),
            ["limit"] = task.Limit,
            ["seq_len"] = task.SeqLen,
            ["evaluation_version"] = ArtifactVersions.Evaluation,
        };
        // Only the efficiency task's keys carry its own version, so a change to it leaves every other result current.
        if (task.Name == TaskCatalog.Efficiency) o["efficiency_version"] = ArtifactVersions.Efficiency;
        return Sha256Hex(o.ToJsonString());
    }

    /// <summary>SHA-256 of a file, memoised by (path, length, mtime).</summary>
    public string FileHash(string path)
    {
        var info = new FileInfo(Path.GetFullPath(path));
        string id = Sha256Hex($"{info.FullName}\n{info.Length}\n{info.LastWriteTimeUtc.Ticks}");
        return _memo.GetOrAdd("file:" + id, _ =>
        {
            string memoFile = Path.Combine(CacheRoot, "hashes", id + ".sha256");
            if (File.Exists(memoFile) && File.ReadAllText(memoFile).Trim() is { Length: 64 } cached) return cached;
            string hash = AssetCache.Sha256(info.FullName);
            Directory.CreateDirectory(Path.GetDirectoryName(memoFile)!);
            SvdLlm.Models.Training.AtomicFile.WriteAllText(memoFile, hash);
            return hash;
        });
    }
}

/// <summary>
/// The <c>demo</c> calibration dataset: the training splits of the embedded corpora, written once as a text file; and
/// <c>demo:&lt;corpus&gt;</c>, one corpus's training split alone (the text a model is fine-tuned on to make a
/// base/fine-tuned pair). Held-out evaluation never sees these splits.
/// </summary>
public static class DemoCalibrationText
{
    public const string Prefix = "demo:";

    /// <summary>The text: each corpus's training split in <see cref="Corpora.Names"/> order (or only <paramref name="corpus"/>'s), separated by a blank line.</summary>
    public static string Text(string? corpus = null)
        => string.Join(Corpora.DocumentSeparator, (corpus is null ? Corpora.Names : [corpus]).Select(n => Corpora.ReadSplit(n, CorpusSplit.Train)));

    /// <summary>The file (created atomically when missing); its name carries the corpus checksums, so new corpora give a new file.</summary>
    public static string Ensure(string cacheRoot, string? corpus = null)
    {
        var names = corpus is null ? Corpora.Names : [corpus];
        string id = ArtifactKeys.Sha256Hex(string.Join("\n", names.SelectMany(n => Corpora.SourceChecksums(n)).OrderBy(kv => kv.Key, StringComparer.Ordinal)
            .Select(kv => kv.Key + "=" + kv.Value)))[..16];
        string path = Path.Combine(cacheRoot, "calibration-text", $"{(corpus is null ? "demo" : corpus)}-train-{id}.txt");
        if (File.Exists(path)) return path;
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        SvdLlm.Models.Training.AtomicFile.WriteAllText(path, Text(corpus));
        return path;
    }

    /// <summary>
    /// A <c>--text-file</c> value as a path: <c>demo</c> is every corpus's training split, <c>demo:&lt;corpus&gt;</c> one
    /// corpus's (an unknown corpus is refused with the known names); anything else is a file path, returned as given.
    /// </summary>
    public static string Resolve(string textFile, string cacheRoot)
    {
        if (textFile == "demo") return Ensure(cacheRoot);
        if (!textFile.StartsWith(Prefix, StringComparison.Ordinal)) return textFile;
        string corpus = textFile[Prefix.Length..];
        if (!Corpora.Names.Contains(corpus)) throw new ArgumentException($"--text-file {textFile}: unknown corpus '{corpus}'; known corpora: {string.Join(", ", Corpora.Names)}");
        return Ensure(cacheRoot, corpus);
    }
}
