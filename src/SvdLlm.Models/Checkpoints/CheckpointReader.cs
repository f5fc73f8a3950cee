using System.Text.Json;

namespace SvdLlm.Models.Checkpoints;

/// <summary>
/// A Hugging Face model directory's weights: either one <c>model.safetensors</c> or shards listed in
/// <c>model.safetensors.index.json</c>. Each shard is opened (memory-mapped) once; tensor data is read
/// only on request. Pickle checkpoints are refused, never loaded.
/// </summary>
public sealed class CheckpointReader : IDisposable
{
    public const string SingleFileName = "model.safetensors";
    public const string IndexFileName = "model.safetensors.index.json";

    private static readonly string[] PickleExtensions = [".bin", ".pt", ".pth"];

    private readonly Dictionary<string, SafeTensorsFile> _fileByTensor;
    private readonly List<SafeTensorsFile> _files;
    private readonly List<string> _tensorNames;

    private CheckpointReader(string directory, List<SafeTensorsFile> files, Dictionary<string, SafeTensorsFile> fileByTensor, List<string> tensorNames)
    {
        Directory = directory;
        _files = files;
        _fileByTensor = fileByTensor;
        _tensorNames = tensorNames;
    }

    /// <summary>The model directory (full path).</summary>
    public string Directory { get; }

    /// <summary>Every tensor name, in index (or header) order.</summary>
    public IEnumerable<string> TensorNames => _tensorNames;

    /// <summary>Full paths of the opened safetensors files (one, or one per shard).</summary>
    public IReadOnlyList<string> FilePaths => _files.Select(f => f.Path).ToList();

    /// <summary>
    /// Opens the checkpoint in <paramref name="modelDirectory"/>: the sharded index if present, else
    /// model.safetensors. Pickle-only directories are refused with an explanation.
    /// </summary>
    /// <exception cref="CheckpointFormatException">No usable checkpoint, or a malformed index or shard.</exception>
    /// <exception cref="DirectoryNotFoundException">The directory does not exist.</exception>
    public static CheckpointReader Open(string modelDirectory)
    {
        string directory = Path.GetFullPath(modelDirectory);
        if (!System.IO.Directory.Exists(directory))
        {
            throw new DirectoryNotFoundException($"Model directory not found: {directory}");
        }
        string indexPath = Path.Combine(directory, IndexFileName);
        if (File.Exists(indexPath)) return OpenSharded(directory, indexPath);

        string singlePath = Path.Combine(directory, SingleFileName);
        if (File.Exists(singlePath)) return OpenSingle(directory, singlePath);

        RefusePickle(directory);
        throw new CheckpointFormatException(directory, $"no {SingleFileName} or {IndexFileName} in {directory}.");
    }

    public bool Contains(string name) => _fileByTensor.ContainsKey(name);

    /// <summary>Header entry of <paramref name="name"/>.</summary>
    /// <exception cref="CheckpointFormatException">No such tensor; the message suggests the closest name.</exception>
    public TensorInfo GetInfo(string name) => FileOf(name).Tensors[name];

    /// <summary>Converts the tensor to float32 into <paramref name="destination"/> (length = element count).</summary>
    public void ReadAsFloat32(string name, Span<float> destination) => FileOf(name).ReadAsFloat32(name, destination);

    /// <summary>Converts the tensor to a new float32 array.</summary>
    public float[] ReadAsFloat32(string name)
    {
        SafeTensorsFile file = FileOf(name);
        TensorInfo info = file.Tensors[name];
        if (info.ElementCount > Array.MaxLength)
        {
            throw new CheckpointFormatException(file.Path,
                $"has {info.ElementCount} elements, more than one array can hold; read it into a span in parts.", name);
        }
        var result = new float[info.ElementCount];
        file.ReadAsFloat32(name, result);
        return result;
    }

    /// <summary>An I32 tensor's values (the GPTQ layout's qweight, qzeros, g_idx); any other dtype is a format error naming the tensor.</summary>
    public int[] ReadInt32(string name)
    {
        SafeTensorsFile file = FileOf(name);
        TensorInfo info = file.Tensors[name];
        if (info.DType != SafeTensorsDType.I32)
            throw CheckpointFormatException.WithMessage(file.Path, name, $"tensor '{name}' in {file.Path} has dtype {info.DType}; expected I32");
        return System.Runtime.InteropServices.MemoryMarshal.Cast<byte, int>(file.GetRawBytes(name)).ToArray();
    }

    /// <summary>A one-byte tensor's raw bytes (U8 indices, I8 codes); any other dtype is a format error naming the tensor.</summary>
    public byte[] ReadBytes(string name, SafeTensorsDType expected)
    {
        SafeTensorsFile file = FileOf(name);
        TensorInfo info = file.Tensors[name];
        if (info.DType != expected)
            throw CheckpointFormatException.WithMessage(file.Path, name, $"tensor '{name}' in {file.Path} has dtype {info.DType}; expected {expected}");
        return file.GetRawBytes(name).ToArray();
    }

    /// <summary>Fails unless the tensor's shape equals <paramref name="expected"/>, the shape config.json implies.</summary>
    public void RequireShape(string name, params long[] expected)
    {
        SafeTensorsFile file = FileOf(name);
        TensorInfo info = file.Tensors[name];
        if (!info.Shape.AsSpan().SequenceEqual(expected))
        {
            throw CheckpointFormatException.WithMessage(file.Path, name,
                $"tensor '{name}' in {file.Path} has shape {info.ShapeText}; the architecture (config.json) expects {TensorInfo.FormatShape(expected)}");
        }
    }

    public void Dispose()
    {
        foreach (SafeTensorsFile file in _files) file.Dispose();
    }

    private SafeTensorsFile FileOf(string name)
    {
        if (_fileByTensor.TryGetValue(name, out SafeTensorsFile? file)) return file;
        string? suggestion = NameSuggestions.Closest(name, _tensorNames);
        string hint = suggestion is null ? "" : $" Did you mean '{suggestion}'?";
        throw new CheckpointFormatException(Directory, $"no such tensor in the checkpoint.{hint}", name);
    }

    private static CheckpointReader OpenSingle(string directory, string path)
    {
        SafeTensorsFile file = SafeTensorsFile.Open(path);
        var byTensor = file.Tensors.Keys.ToDictionary(name => name, _ => file, StringComparer.Ordinal);
        return new CheckpointReader(directory, [file], byTensor, file.Tensors.Keys.ToList());
    }

    private static CheckpointReader OpenSharded(string directory, string indexPath)
    {
        List<KeyValuePair<string, string>> weightMap = ReadWeightMap(indexPath);
        var shards = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
        try
        {
            foreach (string shard in weightMap.Select(entry => entry.Value).Distinct())
            {
                shards.Add(shard, OpenShard(directory, indexPath, shard));
            }
            var byTensor = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
            foreach ((string tensor, string shard) in weightMap)
            {
                if (!shards[shard].Contains(tensor))
                {
                    throw new CheckpointFormatException(indexPath,
                        $"the weight_map places this tensor in {shard}, but {shards[shard].Path} does not contain it.", tensor, "weight_map");
                }
                byTensor.Add(tensor, shards[shard]);
            }
            EnsureNoTensorInTwoShards(shards, indexPath);
            return new CheckpointReader(directory, shards.Values.ToList(), byTensor, weightMap.Select(e => e.Key).ToList());
        }
        catch
        {
            foreach (SafeTensorsFile file in shards.Values) file.Dispose();
            throw;
        }
    }

    private static SafeTensorsFile OpenShard(string directory, string indexPath, string shard)
    {
        // Shard names come from a downloaded file: keep them inside the model directory.
        if (shard.Length == 0 || shard != Path.GetFileName(shard) || shard is "." or "..")
        {
            throw new CheckpointFormatException(indexPath,
                $"shard name '{shard}' must be a plain file name in the model directory.", field: "weight_map");
        }
        string shardPath = Path.Combine(directory, shard);
        if (!File.Exists(shardPath))
        {
            throw new CheckpointFormatException(indexPath,
                $"shard {shard} is listed in the weight_map but {shardPath} does not exist (incomplete download?).", field: "weight_map");
        }
        return SafeTensorsFile.Open(shardPath);
    }

    /// <summary>The same name in two shards makes the weights ambiguous even if the index picks one.</summary>
    private static void EnsureNoTensorInTwoShards(Dictionary<string, SafeTensorsFile> shards, string indexPath)
    {
        var owner = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
        foreach (SafeTensorsFile file in shards.Values)
        {
            foreach (string tensor in file.Tensors.Keys)
            {
                if (owner.TryGetValue(tensor, out SafeTensorsFile? first))
                {
                    throw new CheckpointFormatException(indexPath,
                        $"appears in two shards, {first.Path} and {file.Path}; each tensor must be stored once.", tensor);
                }
                owner.Add(tensor, file);
            }
        }
    }

    /// <summary>Parses {"metadata": {...}, "weight_map": {tensor: shard}}; entries keep file order.</summary>
    private static List<KeyValuePair<string, string>> ReadWeightMap(string indexPath)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(indexPath));
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException(indexPath, $"not valid JSON: {e.Message}", innerException: e);
        }
        using (document)
        {
            JsonElement root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new CheckpointFormatException(indexPath, $"expected a JSON object; found {root.ValueKind}.");
            }
            if (!root.TryGetProperty("weight_map", out JsonElement map) || map.ValueKind != JsonValueKind.Object)
            {
                throw new CheckpointFormatException(indexPath, "expected an object mapping tensor names to shard file names.", field: "weight_map");
            }
            var entries = new List<KeyValuePair<string, string>>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (JsonProperty entry in map.EnumerateObject())
            {
                if (!seen.Add(entry.Name))
                {
                    throw new CheckpointFormatException(indexPath, "listed twice in the weight_map (duplicate JSON key).", entry.Name, "weight_map");
                }
                if (entry.Value.ValueKind != JsonValueKind.String)
                {
                    throw new CheckpointFormatException(indexPath,
                        $"expected a shard file name string; found {entry.Value.GetRawText()}.", entry.Name, "weight_map");
                }
                entries.Add(new(entry.Name, entry.Value.GetString()!));
            }
            return entries;
        }
    }

    private static void RefusePickle(string directory)
    {
        List<string> pickles = System.IO.Directory.EnumerateFiles(directory)
            .Select(Path.GetFileName)
            .OfType<string>()
            .Where(name => PickleExtensions.Contains(Path.GetExtension(name), StringComparer.OrdinalIgnoreCase))
            .Order(StringComparer.Ordinal)
            .ToList();
        if (pickles.Count == 0) return;
        throw new CheckpointFormatException(directory,
            $"no safetensors weights, only pickle checkpoint files ({string.Join(", ", pickles)}); " +
            "pickle checkpoints (pytorch_model.bin) are not loaded because unpickling can execute arbitrary code; " +
            "convert the directory to safetensors (e.g. with the Hugging Face `safetensors` convert script, " +
            "or `model.save_pretrained(dir, safe_serialization=True)`).");
    }
}
