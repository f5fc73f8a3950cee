using System.Text.Json;

namespace SvdLlm.Models.Architectures;

/// <summary>
/// config.json's "rope_scaling": how the rotary inverse frequencies are adjusted for long context.
/// Supported: none/"default", "linear" (all frequencies / factor) and "llama3" (Llama-3.1's
/// band-wise rule). Other types (yarn, dynamic, longrope) are rejected by name rather than ignored,
/// because ignoring them silently changes the model.
/// </summary>
public sealed record RopeScaling(string Type, double Factor, double LowFreqFactor, double HighFreqFactor, int OriginalMaxPositionEmbeddings)
{
    public static RopeScaling? Parse(ConfigJson config)
    {
        var obj = config.Object("rope_scaling");
        if (obj is null) return null;
        var e = obj.Value;
        string type = e.TryGetProperty("rope_type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()!
            : e.TryGetProperty("type", out var t2) && t2.ValueKind == JsonValueKind.String ? t2.GetString()!
            : throw config.Invalid("'rope_scaling' has neither 'rope_type' nor 'type'");
        double Num(string name, double? fallback)
        {
            if (e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number) return v.GetDouble();
            if (fallback is { } f) return f;
            throw config.Invalid($"'rope_scaling.{name}' is required for rope_type \"{type}\"");
        }
        switch (type)
        {
            case "default":
                return null;
            case "linear":
                return new RopeScaling(type, Num("factor", null), 0, 0, 0);
            case "llama3":
                var s = new RopeScaling(type, Num("factor", null), Num("low_freq_factor", null), Num("high_freq_factor", null),
                    (int)Num("original_max_position_embeddings", null));
                if (s.Factor <= 0 || s.LowFreqFactor <= 0 || s.HighFreqFactor <= s.LowFreqFactor || s.OriginalMaxPositionEmbeddings <= 0)
                    throw config.Invalid($"'rope_scaling' llama3 needs factor > 0, 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings > 0; got {s}");
                return s;
            default:
                throw config.Invalid($"'rope_scaling' type \"{type}\" is not supported (supported: default, linear, llama3)");
        }
    }

    /// <summary>The rotary inverse frequencies θ^(−2i/D), i &lt; D/2, adjusted by <paramref name="scaling"/>.</summary>
    public static double[] InverseFrequencies(int headDim, double theta, RopeScaling? scaling)
    {
        int half = headDim / 2;
        var inv = new double[half];
        for (int i = 0; i < half; i++) inv[i] = 1.0 / Math.Pow(theta, 2.0 * i / headDim);
        if (scaling is null) return inv;
        if (scaling.Type == "linear")
        {
            for (int i = 0; i < half; i++) inv[i] /= scaling.Factor;
            return inv;
        }
        // llama3: keep high frequencies (short wavelengths), divide low ones by factor, interpolate between.
        double lowFreqWavelen = scaling.OriginalMaxPositionEmbeddings / scaling.LowFreqFactor;
        double highFreqWavelen = scaling.OriginalMaxPositionEmbeddings / scaling.HighFreqFactor;
        for (int i = 0; i < half; i++)
        {
            double wavelen = 2 * Math.PI / inv[i];
            if (wavelen < highFreqWavelen) continue;
            if (wavelen > lowFreqWavelen)
            {
                inv[i] /= scaling.Factor;
                continue;
            }
            double smooth = (scaling.OriginalMaxPositionEmbeddings / wavelen - scaling.LowFreqFactor) / (scaling.HighFreqFactor - scaling.LowFreqFactor);
            inv[i] = (1 - smooth) * inv[i] / scaling.Factor + smooth * inv[i];
        }
        return inv;
    }
}
