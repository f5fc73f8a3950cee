using System.Text.Json;

namespace SvdLlm.Models.Architectures;

/// <summary>A config.json value is missing, has the wrong type, or is out of range.</summary>
public sealed class ModelConfigException(string message) : UserInputException(message);

/// <summary>
/// Typed access to a parsed config.json with errors that name the file, the field and what was
/// expected ("config.json: 'num_key_value_heads' = 3 must divide 'num_attention_heads' = 8").
/// </summary>
public sealed class ConfigJson
{
    private readonly JsonElement _root;

    public string Path { get; }

    private ConfigJson(string path, JsonElement root)
    {
        Path = path;
        _root = root;
    }

    public static ConfigJson Load(string path)
    {
        if (!File.Exists(path)) throw new ModelConfigException($"{path}: file not found (a Hugging Face model directory needs config.json)");
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { AllowTrailingCommas = false, CommentHandling = JsonCommentHandling.Disallow });
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new ModelConfigException($"{path}: expected a JSON object at the top level, found {doc.RootElement.ValueKind}");
            return new ConfigJson(path, doc.RootElement.Clone());
        }
        catch (JsonException e)
        {
            throw new ModelConfigException($"{path}: not valid JSON ({e.Message})");
        }
    }

    public JsonElement Root => _root;

    public bool Has(string field) => _root.TryGetProperty(field, out var v) && v.ValueKind != JsonValueKind.Null;

    public string? String(string field)
    {
        if (!_root.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.String) throw Error(field, "a string", v);
        return v.GetString();
    }

    public int Int(string field, int? fallback = null)
    {
        if (!_root.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null)
            return fallback ?? throw new ModelConfigException($"{Path}: required field '{field}' is missing");
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int i)) throw Error(field, "an integer", v);
        return i;
    }

    public int? IntOrNull(string field) => Has(field) ? Int(field) : null;

    public int PositiveInt(string field, int? fallback = null)
    {
        int i = Int(field, fallback);
        if (i <= 0) throw new ModelConfigException($"{Path}: '{field}' = {i} must be a positive integer");
        return i;
    }

    /// <summary>
    /// An optional list of integers ("intermediate_sizes": [688, 512, …]), or null when the field is absent or null;
    /// anything else, or an element that is not an integer, is an error naming the field (and the element's index).
    /// </summary>
    public int[]? IntListOrNull(string field)
    {
        if (!_root.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Array) throw Error(field, "a list of integers", v);
        var result = new int[v.GetArrayLength()];
        int i = 0;
        foreach (var e in v.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out result[i]))
                throw new ModelConfigException($"{Path}: '{field}'[{i}] must be an integer, found {Describe(e)}");
            i++;
        }
        return result;
    }

    public double Double(string field, double? fallback = null)
    {
        if (!_root.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null)
            return fallback ?? throw new ModelConfigException($"{Path}: required field '{field}' is missing");
        if (v.ValueKind != JsonValueKind.Number) throw Error(field, "a number", v);
        double d = v.GetDouble();
        if (!double.IsFinite(d)) throw Error(field, "a finite number", v);
        return d;
    }

    public bool Bool(string field, bool fallback)
    {
        if (!_root.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null) return fallback;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Error(field, "true or false", v),
        };
    }

    public JsonElement? Object(string field)
    {
        if (!_root.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Object) throw Error(field, "an object", v);
        return v;
    }

    public ModelConfigException Error(string field, string expected, JsonElement found)
        => new($"{Path}: '{field}' must be {expected}, found {Describe(found)}");

    public ModelConfigException Invalid(string message) => new($"{Path}: {message}");

    private static string Describe(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.String => $"\"{e.GetString()}\"",
        JsonValueKind.Object or JsonValueKind.Array => e.ValueKind.ToString().ToLowerInvariant(),
        _ => e.GetRawText(),
    };
}
