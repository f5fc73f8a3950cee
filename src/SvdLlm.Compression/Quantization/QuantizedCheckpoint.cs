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
    /// <summary>The options GPTQ takes that this writer can also store (2, 3, 4 or 8 bits); checked before any work.</summary>
    public static void Check(GptqOptions options)
    {
        options.Check();
        if (!GptqLayout.IsPackable(options.Bits)) throw new ArgumentException($"--bits {options.Bits}: the GPTQ layout stores 2, 3, 4 or 8 bits");
    }

    /// <summary>
    /// Quantizes and writes the directory; returns this quantization's report. <paramref name="compose"/> turns it into
    /// the compression-report.json the directory is committed with (by default the quantization report itself).
    /// </summary>
    public static JsonObject Write(CausalLanguageModel model, string method, GptqOptions options, CalibrationWindows? windows, string outDir, Action<string>? log = null,
        Func<JsonObject, JsonObject>? compose = null)
    {
        Check(options);
        log ??= _ => { };
        if (method is not ("rtn" or "gptq")) throw new ArgumentException($"unknown quantization method '{method}'; known: rtn, gptq");
        if (method == "gptq" && windows is null) throw new ArgumentException("gptq runs the model on calibration windows; pass them");
        if (model.Linears.Any(l => l.QuantizedBits is not null)) throw new InvalidOperationException($"{model.Directory} is already quantized; quantize the original (or low-rank) model");
        foreach (var l in model.Linears)
        {
            // A low-rank linear's factors are padded to a rank that is a multiple of 32, so only its outer dimensions are checked.
            GptqLayout.CheckShape(l.Name, l.IsLowRank ? 32 : l.OutFeatures, l.InFeatures, options.Bits);
            GptqLayout.CheckShape(l.Name, l.OutFeatures, l.IsLowRank ? 32 : l.InFeatures, options.Bits);
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
                        original.ByteLength, StoredBytes(q.Rows, q.Cols, q.Groups, q.Bits), d.Seconds / d.Parts.Count, part.Result?.Note));
                    if (part.Result?.Note is { } note) notes.Add($"{part.Module}: {note}");
                }
            }
            writer.WriteLayer(layer, replacements);
        }

        if (method == "gptq")
        {
            SequentialGptq.Run(model, windows!, options, Sink, log);
        }
        else
        {
            foreach (var layer in CompressedCheckpoint.LinearsByLayer(model))
            {
                var done = layer.Select(l => SequentialGptq.Quantize(model, l,
                    (w, _) => (Gptq.RoundToNearest(w, options.Bits, options.GroupSize, options.Symmetric), null))).ToList();
                Sink(layer.Key, done);
                foreach (var l in layer) l.Unload();
                log($"rtn: layer {layer.Key} ({done.Count} linears)");
            }
        }
        double seconds = clock.Elapsed.TotalSeconds;
        long bytesBefore = matrices.Sum(m => m.BytesBefore), bytesAfter = matrices.Sum(m => m.BytesAfter);
        // Per weight of the dense linears (not per factor entry), as inspect reports it: the axis methods are compared on.
        long weights = model.Linears.Sum(l => (long)l.OutFeatures * l.InFeatures);
        var report = new JsonObject
        {
            ["method"] = method,
            ["bits"] = options.Bits,
            ["group_size"] = options.GroupSize > 0 ? options.GroupSize : -1,
            ["act_order"] = options.ActOrder,
            ["static_groups"] = options.StaticGroups,
            ["sym"] = options.Symmetric,
            ["damp_percent"] = options.PercentDamping,
            ["block_size"] = options.BlockSize,
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
        };
        writer.Commit(compose is null ? report : compose(report), config => config["quantization_config"] = QuantizationConfig(method, options));
        log($"{method} {options.Bits}-bit: {bytesBefore / 1e6:F1} MB of linear weights → {bytesAfter / 1e6:F1} MB ({8.0 * bytesAfter / weights:F3} bits per weight) in {seconds:F1} s");
        return report;
    }

    /// <summary>config.json's quantization_config as the Hugging Face GPTQ stack reads it (checkpoint_format "gptq": zeros stored − 1).</summary>
    public static JsonObject QuantizationConfig(string method, GptqOptions options) => new()
    {
        ["quant_method"] = "gptq",
        ["bits"] = options.Bits,
        ["group_size"] = options.GroupSize > 0 ? options.GroupSize : -1,
        ["desc_act"] = options.ActOrder,
        ["sym"] = options.Symmetric,
        ["static_groups"] = options.StaticGroups,
        ["true_sequential"] = true,
        ["damp_percent"] = options.PercentDamping,
        // Both spellings: transformers' GPTQConfig reads checkpoint_format, optimum's newer quantizer and GPTQModel read format.
        // "gptq" (v1) stores zero − 1; the grid never makes a zero of 0, so no field wraps around.
        ["checkpoint_format"] = "gptq",
        ["format"] = "gptq",
        ["svdllm_method"] = method,
    };

    /// <summary>Bytes of one linear in the layout: qweight, qzeros (int32), scales (float16), g_idx (int32).</summary>
    public static long StoredBytes(int outFeatures, int inFeatures, int groups, int bits)
        => 4L * inFeatures / 32 * bits * outFeatures + 4L * groups * outFeatures / 32 * bits + 2L * groups * outFeatures + 4L * inFeatures;

    /// <summary>The layout tensors of every quantized part of a linear; the bias stays on W's name, or goes to U's.</summary>
    public static LinearReplacement Replacement(QuantizedLinear d)
        => new(_ => d.Parts.SelectMany(p => LayoutTensors(p.Module, p.Matrix)).ToList(),
            (d.Rank is null ? d.Linear.Name : Linear.UName(d.Linear.Name)) + ".bias", d.Rank);

    /// <summary>The four layout tensors of a matrix [out, in] quantized as <paramref name="q"/>.</summary>
    public static IReadOnlyList<WriterTensor> LayoutTensors(string name, QuantizedMatrix q)
    {
        int outF = q.Rows, inF = q.Cols, bits = q.Bits, groups = q.Groups;
        return
        [
            WriterTensor.Int32(name + ".qweight", [inF / 32 * bits, outF], () =>
            {
                // The layout packs W transposed ([in, out]) along the input axis.
                var t = new int[(long)inF * outF];
                for (int o = 0; o < outF; o++)
                    for (int i = 0; i < inF; i++) t[(long)i * outF + o] = q.Codes[(long)o * inF + i];
                return GptqLayout.PackRows(t, inF, outF, bits);
            }),
            WriterTensor.Int32(name + ".qzeros", [groups, outF / 32 * bits], () =>
                GptqLayout.PackCols(q.Zeros.Select(z => z - GptqLayout.StoredZeroOffset).ToArray(), groups, outF, bits)),
            WriterTensor.Lazy(name + ".scales", SafeTensorsDType.F16, [groups, outF], () => q.Scales.Select(s => (float)s).ToArray()),
            WriterTensor.Int32(name + ".g_idx", [inF], () => q.GroupIndex),
        ];
    }
}
