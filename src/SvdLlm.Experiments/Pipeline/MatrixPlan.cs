using System.Globalization;
using System.Text.Json.Nodes;
using SvdLlm.Compression;
using SvdLlm.Experiments.Cache;
using SvdLlm.Experiments.Matrix;
using SvdLlm.Experiments.Store;

namespace SvdLlm.Experiments.Pipeline;

/// <summary>One evaluation of a cell.</summary>
public sealed record EvaluationPlan(TaskSpec Task, string TaskKey, string ParamsJson);

/// <summary>One cell of the matrix with its keys and its evaluations.</summary>
/// <param name="DeltaBase">for a delta cell (<see cref="DeltaSpec"/>): the base model; <see cref="Model"/> is the fine-tuned one</param>
public sealed record CellPlan(string Key, ModelSpec Model, CalibrationSpec? Calibration, MethodSpec Method, double Ratio,
    string ModelKey, string? CalibrationKey, IReadOnlyList<EvaluationPlan> Evaluations, CellRecord Record, ModelSpec? DeltaBase = null)
{
    public bool IsOriginal => Method.Name == MethodSpec.Original;

    public bool IsDelta => DeltaBase is not null;

    public string Label => IsOriginal ? $"{Model.Name} original"
        : IsDelta ? $"{Model.Name} Δ{Method.Name[SvdLlm.Compression.Delta.DeltaCheckpoint.MethodPrefix.Length..]}{(Method.Parameters.Count > 0 ? "(" + string.Join(",", Method.Parameters.Select(kv => kv.Key + "=" + kv.Value)) + ")" : "")} CR {Ratio.ToString("0.###", CultureInfo.InvariantCulture)}"
        : Method.Recipe.TakesRatio ? $"{Model.Name} {Method.Recipe.Label} @ {Ratio.ToString("0.###", CultureInfo.InvariantCulture)}"
        : $"{Model.Name} {Method.Recipe.Label}";
}

/// <summary>Statistics for one (model, calibration): computed once, shared by the cells that reference them.</summary>
/// <param name="Fisher">collected with Fisher statistics: decided over the whole matrix (not the shard) so every shard asks for the same file</param>
/// <param name="Float32Gram">Grams accumulated in float32, for the cells with <c>numerics: reference</c> (a group of their own)</param>
public sealed record CalibrationPlan(string Key, ModelSpec Model, CalibrationSpec Calibration, bool Fisher, bool Float32Gram = false);

/// <summary>
/// A deterministic partition of the cells: shard I of N (1-based) holds the cells whose key, read as a
/// 64-bit number from its first 16 hex digits, is ≡ I−1 (mod N). Keys are SHA-256 digests, so the split is
/// even in expectation, independent of the order of the matrix, and the same on every machine.
/// </summary>
public sealed record Shard(int Index, int Count)
{
    public static Shard All { get; } = new(1, 1);

    public static Shard Parse(string text)
    {
        var parts = text.Split('/');
        if (parts.Length == 2 && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int i)
            && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n >= 1 && i >= 1 && i <= n)
            return new Shard(i, n);
        throw new ArgumentException($"--shard '{text}' must be I/N with 1 ≤ I ≤ N (e.g. 2/4)");
    }

    public bool Contains(string cellKey) => ulong.Parse(cellKey.AsSpan(0, 16), NumberStyles.HexNumber, CultureInfo.InvariantCulture) % (ulong)Count == (ulong)(Index - 1);

    public override string ToString() => $"{Index}/{Count}";
}

/// <summary>The expanded matrix: every cell (in matrix order: model, calibration, method, ratio; baseline first) and the calibrations they need.</summary>
public sealed class MatrixPlan
{
    public required MatrixSpec Matrix { get; init; }
    public required IReadOnlyList<CellPlan> Cells { get; init; }
    public required IReadOnlyList<CalibrationPlan> Calibrations { get; init; }

    public static MatrixPlan Build(MatrixSpec matrix, ArtifactKeys keys)
    {
        var cells = new List<CellPlan>();
        var calibrations = new List<CalibrationPlan>();
        bool fisher = matrix.Methods.Any(m => CompressionMethod.Get(m.Name).NeedsFisher);
        foreach (var model in matrix.Models)
        {
            string modelKey = keys.ModelKey(model);
            if (matrix.Baseline) cells.Add(Cell(matrix, keys, model, modelKey, null, null, new MethodSpec(MethodSpec.Original, new Dictionary<string, string>(), model.Position), 0));
            foreach (var calibration in matrix.Calibrations)
            {
                if (matrix.Methods.Count == 0) continue;
                string calKey64 = keys.CalibrationGroupKey(model, calibration);
                calibrations.Add(new CalibrationPlan(calKey64, model, calibration, fisher));
                // SVD-LLM as its public code computes it reads Grams accumulated in float32: a group of their own.
                string? calKey32 = null;
                if (matrix.Methods.Any(m => m.Recipe.ReferenceNumerics))
                {
                    calKey32 = keys.CalibrationGroupKey(model, calibration, float32Gram: true);
                    calibrations.Add(new CalibrationPlan(calKey32, model, calibration, Fisher: false, Float32Gram: true));
                }
                foreach (var method in matrix.Methods)
                {
                    string calKey = method.Recipe.ReferenceNumerics ? calKey32! : calKey64;
                    // A quantizer keeps every parameter: one cell at ratio 0, whatever the ratios.
                    if (CompressionMethod.Get(method.Name).IsQuantization) cells.Add(Cell(matrix, keys, model, modelKey, calibration, calKey, method, 0));
                    else
                        foreach (double ratio in matrix.Ratios)
                            cells.Add(Cell(matrix, keys, model, modelKey, calibration, calKey, method, ratio));
                }
            }
        }
        foreach (var delta in matrix.Deltas)
            foreach (var method in delta.Methods)
                foreach (double ratio in delta.Ratios)
                    cells.Add(DeltaCell(matrix, keys, delta, method, ratio));
        var duplicate = cells.GroupBy(c => c.Key).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
        {
            var list = duplicate.ToList();
            throw new MatrixValidationException([new MatrixError(list[1].Model.Position,
                $"duplicate cell: '{list[1].Label}' and '{list[0].Label}' have the same content key (the same model weights listed twice?)")]);
        }
        return new MatrixPlan { Matrix = matrix, Cells = cells, Calibrations = calibrations };
    }

    private static List<EvaluationPlan> Evaluations(MatrixSpec matrix, ArtifactKeys keys, string cellKey) => matrix.Tasks.Select(t =>
    {
        var p = new JsonObject { ["data"] = t.Data, ["limit"] = t.Limit, ["seq_len"] = t.SeqLen, ["batch_size"] = matrix.Run.BatchSize };
        return new EvaluationPlan(t, keys.TaskKey(cellKey, t), p.ToJsonString());
    }).ToList();

    private static CellPlan DeltaCell(MatrixSpec matrix, ArtifactKeys keys, DeltaSpec delta, MethodSpec method, double ratio)
    {
        // ImPart-Qt weighs its GPTQ by the fine-tuned model's input Grams, from the matrix's first calibration.
        var calibration = DeltaSpec.IsQuantized(method) ? matrix.Calibrations[0] : null;
        string key = keys.DeltaCellKey(delta.Base, delta.FineTuned, method, ratio, calibration);
        string modelKey = keys.ModelKey(delta.FineTuned);
        var parameters = new JsonObject();
        foreach (var (k, v) in method.Parameters) parameters[k] = v;
        var config = new JsonObject
        {
            ["matrix"] = matrix.Name,
            ["model"] = new JsonObject { ["name"] = delta.FineTuned.Name, ["source"] = delta.FineTuned.Source, ["key"] = modelKey },
            ["delta"] = new JsonObject { ["base"] = delta.Base.Name, ["base_key"] = keys.ModelKey(delta.Base) },
            ["method"] = method.Name,
            ["params"] = parameters,
            ["ratio"] = ratio,
            ["delta_version"] = SvdLlm.Compression.Delta.DeltaCheckpoint.CodeVersion,
            ["pipeline_version"] = ArtifactVersions.Pipeline,
        };
        if (calibration is not null) config["calibration"] = keys.CalibrationJson(calibration);
        var record = new CellRecord(key, matrix.Name, delta.FineTuned.Name, modelKey, method.Name, ratio, null, null, config.ToJsonString());
        return new CellPlan(key, delta.FineTuned, calibration, method, ratio, modelKey, null, Evaluations(matrix, keys, key), record, delta.Base);
    }

    private static CellPlan Cell(MatrixSpec matrix, ArtifactKeys keys, ModelSpec model, string modelKey, CalibrationSpec? calibration, string? calKey, MethodSpec method, double ratio)
    {
        string key = keys.CellKey(model, calibration, method, ratio);
        var evaluations = Evaluations(matrix, keys, key);
        JsonObject? calJson = calibration is null ? null : new JsonObject
        {
            ["dataset"] = calibration.Dataset,
            ["dataset_sha256"] = keys.DatasetKey(calibration),
            ["samples"] = calibration.Samples,
            ["seq_len"] = calibration.SeqLen,
            ["seed"] = calibration.Seed,
        };
        var parameters = new JsonObject();
        foreach (var (k, v) in method.Parameters) parameters[k] = v;
        var config = new JsonObject
        {
            ["matrix"] = matrix.Name,
            ["model"] = new JsonObject { ["name"] = model.Name, ["source"] = model.Source, ["key"] = modelKey },
            ["method"] = method.Name,
            ["params"] = parameters,
            ["ratio"] = ratio,
            ["calibration"] = calJson?.DeepClone(),
            ["statistics_version"] = SvdLlm.Compression.Calibration.CalibrationCache.StatisticsVersion,
            ["compression_version"] = Compressor.CodeVersion,
            ["pipeline_version"] = ArtifactVersions.Pipeline,
        };
        var record = new CellRecord(key, matrix.Name, model.Name, modelKey, method.Name, ratio, calJson?.ToJsonString(), calKey, config.ToJsonString());
        return new CellPlan(key, model, calibration, method, ratio, modelKey, calKey, evaluations, record);
    }
}
