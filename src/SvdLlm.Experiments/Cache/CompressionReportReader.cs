using System.Text.Json;
using System.Text.Json.Nodes;
using SvdLlm.Compression;

namespace SvdLlm.Experiments.Cache;

/// <summary>
/// Reads compression-report.json back from a compressed model directory. The pipeline records a cell's
/// compression statistics from this file, both right after compressing and when it finds a cached directory
/// that its database has no row for (another database's run made it, or a run died between the rename and
/// the commit), so both paths store the same numbers.
/// </summary>
public static class CompressionReportReader
{
    public static CompressionReport Read(string directory)
    {
        string path = Path.Combine(directory, "compression-report.json");
        try
        {
            var o = JsonNode.Parse(File.ReadAllText(path))?.AsObject() ?? throw new InvalidDataException("empty");
            var r = new CompressionReport { Method = Str(o, "method"), Ratio = Num(o, "ratio") };
            r.LinearParamsBefore = Long(o, "linear_params_before");
            r.LinearParamsAfter = Long(o, "linear_params_after");
            r.ModelParamsBefore = Long(o, "model_params_before");
            r.ModelParamsAfter = Long(o, "model_params_after");
            r.LinearBytesBefore = o["linear_bytes_before"]?.GetValue<long>();
            r.LinearBytesAfter = o["linear_bytes_after"]?.GetValue<long>();
            r.Label = o["label"]?.GetValue<string>();
            r.Quantization = o["quantization"]?.DeepClone().AsObject();
            r.Recovery = o["recovery"]?.DeepClone().AsObject();
            foreach (var (stage, values) in o["training_curves"]?.AsObject() ?? [])
                r.TrainingCurves[stage] = values!.AsArray().Select(v => v!.GetValue<double>()).ToList();
            r.LargestSvdMatrix = o["largest_svd"]?.GetValue<string>();
            r.LargestSvdSeconds = o["largest_svd_seconds"]?.GetValue<double>() ?? 0;
            foreach (var (k, v) in o["stage_seconds"]?.AsObject() ?? []) r.StageSeconds[k] = v!.GetValue<double>();
            foreach (var (k, v) in o["calibration"]?.AsObject() ?? []) r.Calibration[k] = v!.GetValue<string>();
            foreach (var n in o["notes"]?.AsArray() ?? []) r.Notes.Add(n!.GetValue<string>());
            foreach (var m in (o["matrices"] ?? throw new InvalidDataException("no 'matrices'")).AsArray())
            {
                var x = m!.AsObject();
                var shape = x["shape"]!.AsArray().Select(d => d!.GetValue<int>()).ToArray();
                r.Matrices.Add(new MatrixReport(Str(x, "name"), shape, Str(x, "group"), Num(x, "allocated_ratio"), (int)Long(x, "rank"),
                    Num(x, "theoretical_loss"), Str(x, "loss_objective"), Num(x, "measured_loss"), Long(x, "params_before"), Long(x, "params_after"),
                    Num(x, "seconds"), x["allocation_loss"]?.GetValue<double>(), x["note"]?.GetValue<string>()));
            }
            return r;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or InvalidDataException or FormatException or NullReferenceException or KeyNotFoundException)
        {
            throw new InvalidDataException($"{path}: not a compression report ({e.Message})", e);
        }
    }

    private static JsonNode Field(JsonObject o, string name) => o[name] ?? throw new InvalidDataException($"no '{name}'");
    private static string Str(JsonObject o, string name) => Field(o, name).GetValue<string>();
    private static double Num(JsonObject o, string name) => Field(o, name).GetValue<double>();
    private static long Long(JsonObject o, string name) => Field(o, name).GetValue<long>();
}
