using System.IO.Compression;
using System.Text;
using System.Text.Json;

namespace SvdLlm.Evaluation.Tasks;

/// <summary>A task data file is malformed; the message starts with <c>file:line:</c> and says what was expected.</summary>
public sealed class TaskDataException(string message, Exception? inner = null) : UserInputException(message, inner);

/// <summary>One JSON record of a task file and where it came from, with typed field access whose errors name file, line and field.</summary>
public readonly struct JsonRecord(JsonElement root, string file, int line)
{
    public JsonElement Root { get; } = root;
    public string File { get; } = file;
    public int Line { get; } = line;

    /// <summary>"path:line", for messages.</summary>
    public string Where => $"{File}:{Line}";

    public TaskDataException Error(string what) => new($"{Where}: {what}");

    public bool Has(string field) => Root.ValueKind == JsonValueKind.Object && Root.TryGetProperty(field, out var v) && v.ValueKind != JsonValueKind.Null;

    public JsonElement Field(string field) => Field(Root, field, field);

    public string String(string field) => String(Root, field, field);

    /// <summary>A field at a dotted path ("question.stem") that must be a string.</summary>
    public string StringAt(string path)
    {
        JsonElement e = Root;
        string sofar = "";
        foreach (string part in path.Split('.'))
        {
            sofar = sofar.Length == 0 ? part : sofar + "." + part;
            e = Field(e, part, sofar);
        }
        if (e.ValueKind != JsonValueKind.String) throw Error($"field '{path}' is {Kind(e)}, expected a string");
        return e.GetString()!;
    }

    public JsonElement Field(JsonElement parent, string field, string path)
    {
        if (parent.ValueKind != JsonValueKind.Object)
            throw Error($"expected a JSON object holding '{path}', found {Kind(parent)}");
        if (!parent.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null)
            throw Error($"missing field '{path}'");
        return v;
    }

    public string String(JsonElement parent, string field, string path)
    {
        var v = Field(parent, field, path);
        if (v.ValueKind != JsonValueKind.String) throw Error($"field '{path}' is {Kind(v)}, expected a string");
        return v.GetString()!;
    }

    /// <summary>A field holding an array of strings with at least <paramref name="min"/> entries.</summary>
    public IReadOnlyList<string> Strings(JsonElement parent, string field, string path, int min)
    {
        var v = Field(parent, field, path);
        if (v.ValueKind != JsonValueKind.Array) throw Error($"field '{path}' is {Kind(v)}, expected an array of strings");
        var list = new List<string>();
        int i = 0;
        foreach (var x in v.EnumerateArray())
        {
            if (x.ValueKind != JsonValueKind.String) throw Error($"field '{path}[{i}]' is {Kind(x)}, expected a string");
            list.Add(x.GetString()!);
            i++;
        }
        if (list.Count < min) throw Error($"field '{path}' has {list.Count} entries, expected at least {min}");
        return list;
    }

    /// <summary>An integer label given as a JSON number or as a string of digits (Hugging Face exports store labels either way).</summary>
    public int Label(string field)
    {
        var v = Field(field);
        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int n)) return n;
        if (v.ValueKind == JsonValueKind.String && int.TryParse(v.GetString(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out n)) return n;
        throw Error($"field '{field}' is {Describe(v)}, expected an integer label");
    }

    public static string Kind(JsonElement e) => SvdLlm.Models.JsonKinds.Describe(e.ValueKind);

    public static string Describe(JsonElement e) => e.ValueKind is JsonValueKind.String or JsonValueKind.Number ? $"{Kind(e)} ({e.GetRawText()})" : Kind(e);
}

/// <summary>Reads task files: text (UTF-8, optionally .gz), JSON lines and JSON arrays, keeping line numbers for errors.</summary>
public static class TaskFiles
{
    /// <summary>The file's bytes, gunzipped when the name ends in .gz.</summary>
    public static byte[] ReadBytes(string path)
    {
        if (Directory.Exists(path)) throw new TaskDataException($"{path}: is a directory; give the data file itself");
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: data file not found", path);
        if (!path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase)) return File.ReadAllBytes(path);
        try
        {
            using var gz = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
            using var ms = new MemoryStream();
            gz.CopyTo(ms);
            return ms.ToArray();
        }
        catch (InvalidDataException e)
        {
            throw new TaskDataException($"{path}: not a valid gzip file ({e.Message})", e);
        }
    }

    /// <summary>The file as UTF-8 text (a leading byte-order mark dropped); invalid UTF-8 is an error naming the line.</summary>
    public static string ReadText(string path)
    {
        byte[] bytes = ReadBytes(path);
        int start = bytes.Length >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF ? 3 : 0;
        return SvdLlm.Models.Data.Utf8Text.TryDecode(bytes, start, out _, out int line)
            ?? throw new TaskDataException($"{path}:{line}: invalid UTF-8");
    }

    /// <summary>True when the first non-blank character is '[' (a JSON array rather than JSON lines).</summary>
    public static bool LooksLikeJsonArray(string text)
    {
        foreach (char c in text)
        {
            if (char.IsWhiteSpace(c)) continue;
            return c == '[';
        }
        return false;
    }

    /// <summary>
    /// The records of a JSON-lines file (one object per line; blank lines skipped) or, when the file is a JSON
    /// array, of its elements, each with the line it starts on.
    /// </summary>
    public static List<JsonRecord> ReadRecords(string path)
    {
        string text = ReadText(path);
        return LooksLikeJsonArray(text) ? ReadArray(path, text) : ReadLines(path, text);
    }

    private static List<JsonRecord> ReadLines(string path, string text)
    {
        var records = new List<JsonRecord>();
        int lineNo = 0;
        foreach (string raw in text.Split('\n'))
        {
            lineNo++;
            string line = raw.TrimEnd('\r');
            if (line.Trim().Length == 0) continue;
            JsonElement root;
            try
            {
                using var doc = JsonDocument.Parse(line);
                root = doc.RootElement.Clone();
            }
            catch (JsonException e)
            {
                throw new TaskDataException($"{path}:{lineNo}: not a JSON object ({e.Message})", e);
            }
            if (root.ValueKind != JsonValueKind.Object)
                throw new TaskDataException($"{path}:{lineNo}: expected a JSON object, found {JsonRecord.Kind(root)}");
            records.Add(new JsonRecord(root, path, lineNo));
        }
        if (records.Count == 0) throw new TaskDataException($"{path}: no records (expected one JSON object per line)");
        return records;
    }

    private static List<JsonRecord> ReadArray(string path, string text)
    {
        byte[] utf8 = Encoding.UTF8.GetBytes(text);
        // Line starts by byte offset, so that every element's error names the line it begins on.
        var lineStarts = new List<long> { 0 };
        for (int i = 0; i < utf8.Length; i++) if (utf8[i] == '\n') lineStarts.Add(i + 1);
        int LineOf(long offset)
        {
            int k = lineStarts.BinarySearch(offset);
            return (k >= 0 ? k : ~k - 1) + 1;
        }

        var records = new List<JsonRecord>();
        var reader = new Utf8JsonReader(utf8, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow });
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartArray)
                throw new TaskDataException($"{path}:1: expected a JSON array");
            while (true)
            {
                if (!reader.Read()) throw new TaskDataException($"{path}:{LineOf(reader.TokenStartIndex)}: unterminated JSON array");
                if (reader.TokenType == JsonTokenType.EndArray) break;
                int line = LineOf(reader.TokenStartIndex);
                using var doc = JsonDocument.ParseValue(ref reader);
                var root = doc.RootElement.Clone();
                if (root.ValueKind != JsonValueKind.Object)
                    throw new TaskDataException($"{path}:{line}: array element {records.Count} is {JsonRecord.Kind(root)}, expected a JSON object");
                records.Add(new JsonRecord(root, path, line));
            }
        }
        catch (JsonException e)
        {
            long line = e.LineNumber is long l ? l + 1 : LineOf(reader.TokenStartIndex);
            throw new TaskDataException($"{path}:{line}: invalid JSON ({e.Message})", e);
        }
        if (records.Count == 0) throw new TaskDataException($"{path}: the JSON array is empty");
        return records;
    }
}
