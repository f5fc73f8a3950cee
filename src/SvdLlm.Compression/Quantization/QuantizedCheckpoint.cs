using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using SvdLlm.Compression.Calibration;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Checkpoints;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Quantization;

/// <summary>One quantized linear in compression-report.json.</summary>
/// <param name="Loss">GPTQ's objective ½ tr(E (H + λI) Eᵀ), E = W − Q (null for round-to-nearest, which has no H)</param>
public sealed record QuantizedMatrixReport(string Name, int[] Shape, int Groups, double? Loss, double? Damping, long BytesBefore, long BytesAfter, double Seconds, string? Note);

/// <summary>
/// Quantizes every decoder linear of a checkpoint with round-to-nearest or GPTQ (sequential calibration) and writes the
/// result layer by layer in the GPTQ layout (<see cref="GptqLayout"/>), with quantization_config in config.json, so the
/// directory loads here (dequantized) and in the Hugging Face GPTQ stack. Memory: one layer's weights and one H.
/// </summary>
public static class QuantizedCheckpoint
{
    /// <summary>
    /// Quantizes and writes the directory; returns this quantization's report. <paramref name="compose"/> turns it into
    /// the compression-report.json the directory is committed with (by default the quantization report itself).
    /// </summary>
    public static JsonObject Write(CausalLanguageModel model, MatrixQuantizer quantizer, CalibrationWindows? windows, string outDir, Action<string>? log = null,
        Func<JsonObject, JsonObject>? compose = null)
    {
        log ??= _ => { };
        string method = quantizer.Name;
        if (quantizer.NeedsHessian && windows is null) throw new ArgumentException($"{method} runs the model on calibration windows; pass them");
        if (model.Linears.Any(l => l.QuantizedBits is not null)) throw new InvalidOperationException($"{model.Directory} is already quantized; quantize the original (or low-rank) model");
        foreach (var l in model.Linears)
        {
            // A low-rank linear's factors are padded to a rank that is a multiple of 32, so only its outer dimensions are checked.
            quantizer.CheckShape(l.Name, l.IsLowRank ? 32 : l.OutFeatures, l.InFeatures);
            quantizer.CheckShape(l.Name, l.OutFeatures, l.IsLowRank ? 32 : l.InFeatures);
        }

        var matrices = new List<QuantizedMatrixReport>();
        var notes = new List<string>();
        var clock = Stopwatch.StartNew();
        using var writer = new CompressedCheckpoint.Writer(model, outDir);
        void Sink(int layer, IReadOnlyList<QuantizedLinear> done)
        {
            var replacements = new Dictionary<string, LinearReplacement>(StringComparer.Ordinal);
            foreach (var d in done)
            {
                var l = d.Linear;
                replacements[l.Name] = Replacement(d);
                foreach (var part in d.Parts)
                {
                    var q = part.Matrix;
                    var original = model.Reader.GetInfo(part.Module + ".weight");
                    matrices.Add(new QuantizedMatrixReport(part.Module, [q.Rows, q.Cols], q.Groups, part.Result?.Loss, part.Result?.Damping,
                        original.ByteLength, q.StoredBytes, d.Seconds / d.Parts.Count, part.Result?.Note));
                    if (part.Result?.Note is { } note) notes.Add($"{part.Module}: {note}");
                }
            }
            writer.WriteLayer(layer, replacements);
        }

        if (quantizer.NeedsHessian)
        {
            SequentialGptq.Run(model, windows!, quantizer, Sink, log);
        }
        else
        {
            foreach (var layer in CompressedCheckpoint.LinearsByLayer(model))
            {
                var done = layer.Select(l => SequentialGptq.Quantize(model, l, (w, _) => quantizer.Quantize(w, null))).ToList();
                Sink(layer.Key, done);
                foreach (var l in layer) l.Unload();
                log($"{method}: layer {layer.Key} ({done.Count} linears)");
            }
        }
        double seconds = clock.Elapsed.TotalSeconds;
        long bytesBefore = matrices.Sum(m => m.BytesBefore), bytesAfter = matrices.Sum(m => m.BytesAfter);
        // Per weight of the dense linears (not per factor entry), as inspect reports it: the axis methods are compared on.
        long weights = model.Linears.Sum(l => (long)l.OutFeatures * l.InFeatures);
        var report = new JsonObject { ["method"] = method };
        foreach (var (k, v) in quantizer.Settings()) report[k] = v?.DeepClone();
        foreach (var (k, v) in new JsonObject
        {
            ["calibration"] = windows is null ? null : new JsonObject { ["windows"] = windows.Count, ["seq_len"] = windows.SeqLen, ["sequential"] = true },
            ["linear_bytes_before"] = bytesBefore,
            ["linear_bytes_after"] = bytesAfter,
            ["bits_per_weight"] = Math.Round(8.0 * bytesAfter / weights, 4),
            ["stage_seconds"] = new JsonObject { ["quantization"] = Math.Round(seconds, 3) },
            ["notes"] = new JsonArray(notes.Select(n => (JsonNode)JsonValue.Create(n)!).ToArray()),
            ["matrices"] = JsonSerializer.SerializeToNode(matrices.Select(m => new
            {
                name = m.Name, shape = m.Shape, groups = m.Groups, loss = m.Loss, damping = m.Damping,
                bytes_before = m.BytesBefore, bytes_after = m.BytesAfter, seconds = Math.Round(m.Seconds, 4), note = m.Note,
            })),
        }) report[k] = v?.DeepClone();
        writer.Commit(compose is null ? report : compose(report), config => config["quantization_config"] = quantizer.QuantizationConfig(method));
        log($"{method} {quantizer.Bits}-bit: {bytesBefore / 1e6:F1} MB of linear weights → {bytesAfter / 1e6:F1} MB ({8.0 * bytesAfter / weights:F3} bits per weight) in {seconds:F1} s");
        return report;
    }

    /// <summary>The layout tensors of every quantized part of a linear; the bias stays on W's name, or goes to U's.</summary>
    public static LinearReplacement Replacement(QuantizedLinear d)
        => new(_ => d.Parts.SelectMany(p => p.Matrix.LayoutTensors(p.Module)).ToList(),
            (d.Rank is null ? d.Linear.Name : Linear.UName(d.Linear.Name)) + ".bias", d.Rank);
}
