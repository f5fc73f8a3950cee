using System.Text.Json;
using System.Text.Json.Nodes;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Checkpoints;
using SvdLlm.Numerics;

namespace SvdLlm.Compression;

/// <summary>
/// What replaces one linear's "weight" tensor in a written checkpoint: the tensors, made for the original weight's dtype,
/// and where its bias goes; <paramref name="Rank"/> when the replacement is low-rank (recorded in config.json).
/// </summary>
public sealed record LinearReplacement(Func<SafeTensorsDType, IReadOnlyList<WriterTensor>> Tensors, string BiasName, int? Rank = null);

/// <summary>
/// Writes a compressed model as a standard Hugging Face directory: every tensor of the original, except
/// that a compressed linear "…q_proj" becomes "…q_u_proj.weight" [m, k] and "…q_v_proj.weight" [k, n]
/// (y = U(Vx)), its bias "…q_u_proj.bias"; factors keep the original weight's dtype. config.json is the
/// original plus an "svd_compression" block (method, ratio, the rank of every compressed linear), so the
/// directory loads in every svdllm command, and compression-report.json sits beside the weights.
/// The directory appears complete or not at all (written to DIR.partial, then renamed).
/// </summary>
public static class CompressedCheckpoint
{
    /// <summary>Files copied unchanged from the original directory when present.</summary>
    /// <summary>The tokenizer and generation files every writer of a model directory copies beside the weights.</summary>
    internal static IReadOnlyList<string> TokenizerFiles => CopiedFiles;

    private static readonly string[] CopiedFiles =
        ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "vocab.json", "merges.txt", "tokenizer.model"];

    /// <summary>The model's decoder linears grouped by layer index (".layers.{i}."), in layer order; -1 for any outside a layer.</summary>
    public static List<IGrouping<int, Linear>> LinearsByLayer(CausalLanguageModel model)
        => model.Linears.GroupBy(l => Writer.LayerIndex(l.Name + ".") ?? -1).OrderBy(g => g.Key).ToList();

    /// <summary>Writes a model compressed in memory (its low-rank linears) through the same layer-sharded writer.</summary>
    public static void Write(CausalLanguageModel model, string outDir, CompressionReport report)
    {
        using var writer = new Writer(model, outDir);
        foreach (int layer in writer.Layers)
        {
            var factors = model.Linears.Where(l => l.IsLowRank && writer.LayerOf(l.Name) == layer)
                .ToDictionary(l => l.Name, l => (l.U, l.V));
            writer.WriteLayer(layer, factors);
        }
        writer.Commit(report);
    }

    /// <summary>
    /// The layer-streamed writer: one safetensors shard per decoder layer, written as soon as that layer's factors exist
    /// (so no finished layer stays in memory), one shard for everything else, and model.safetensors.index.json, the
    /// standard sharded Hugging Face layout. Everything goes to DIR.partial and is renamed by <see cref="Commit"/>; a
    /// writer disposed without Commit deletes it.
    /// </summary>
    public sealed class Writer : IDisposable
    {
        private readonly CausalLanguageModel _model;
        private readonly string _outDir, _staging;
        private readonly Dictionary<string, int> _layerOfTensor = new(StringComparer.Ordinal);
        private readonly Dictionary<string, string> _shardOfTensor = new(StringComparer.Ordinal);
        private readonly Dictionary<string, int> _ranks = new(StringComparer.Ordinal);
        private readonly HashSet<int> _written = [];
        private readonly int _shards;
        private long _bytes;
        private bool _committed;

        public Writer(CausalLanguageModel model, string outDir)
        {
            _model = model;
            _outDir = Path.GetFullPath(outDir);
            if (System.IO.Directory.Exists(_outDir)) throw new IOException($"{_outDir} already exists; refusing to overwrite (delete it or choose another --out)");
            _staging = _outDir + ".partial";
            if (System.IO.Directory.Exists(_staging)) System.IO.Directory.Delete(_staging, recursive: true);
            System.IO.Directory.CreateDirectory(_staging);
            foreach (string name in model.Reader.TensorNames)
                if (LayerIndex(name) is int layer) _layerOfTensor[name] = layer;
            Layers = _layerOfTensor.Values.Distinct().Order().ToList();
            _shards = Layers.Count + 1;
        }

        /// <summary>Decoder layer indices present in the checkpoint, in order.</summary>
        public IReadOnlyList<int> Layers { get; }

        /// <summary>The decoder layer a tensor or module name belongs to (".layers.{i}."), or null.</summary>
        public int? LayerOf(string name) => LayerIndex(name + ".");

        internal static int? LayerIndex(string name)
        {
            int at = name.IndexOf(".layers.", StringComparison.Ordinal);
            if (at < 0) return null;
            int start = at + ".layers.".Length, end = name.IndexOf('.', start);
            return end > start && int.TryParse(name.AsSpan(start, end - start), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int i) ? i : null;
        }

        private string ShardName(int index) => $"model-{index + 1:D5}-of-{_shards:D5}.safetensors";

        /// <summary>Writes layer <paramref name="layer"/>'s shard: its tensors, with each compressed linear replaced by its factors.</summary>
        public void WriteLayer(int layer, IReadOnlyDictionary<string, (Tensor<float> U, Tensor<float> V)> factors)
            => WriteLayer(layer, factors.ToDictionary(kv => kv.Key, kv => Factors(kv.Key, kv.Value.U, kv.Value.V)));

        /// <summary>Writes layer <paramref name="layer"/>'s shard: its tensors, with each listed linear's weight replaced as given.</summary>
        public void WriteLayer(int layer, IReadOnlyDictionary<string, LinearReplacement> replacements)
        {
            int index = Layers.ToList().IndexOf(layer);
            if (index < 0) throw new ArgumentException($"the checkpoint has no decoder layer {layer}");
            if (!_written.Add(layer)) throw new InvalidOperationException($"layer {layer} written twice");
            var names = _layerOfTensor.Where(kv => kv.Value == layer).Select(kv => kv.Key);
            Write(ShardName(index), names, replacements);
        }

        /// <summary>U and V in the original weight's dtype, the bias on U (y = U(Vx) + b).</summary>
        private LinearReplacement Factors(string module, Tensor<float> u, Tensor<float> v)
        {
            var l = _model.GetLinear(module);
            return new LinearReplacement(dtype =>
            [
                WriterTensor.Lazy(Linear.UName(module) + ".weight", dtype, [l.OutFeatures, u.Cols], () => u.Span.ToArray()),
                WriterTensor.Lazy(Linear.VName(module) + ".weight", dtype, [v.Rows, l.InFeatures], () => v.Span.ToArray()),
            ], Linear.UName(module) + ".bias", u.Cols);
        }

        private void Write(string shard, IEnumerable<string> names, IReadOnlyDictionary<string, LinearReplacement> replacements)
        {
            var reader = _model.Reader;
            var tensors = new List<WriterTensor>();
            // A source linear may itself be low-rank ("…q_u_proj.weight", "…q_v_proj.weight"): its tensors belong to "…q_proj".
            var ofModule = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (string linear in replacements.Keys)
            {
                ofModule[linear] = linear;
                ofModule[Linear.UName(linear)] = linear;
                ofModule[Linear.VName(linear)] = linear;
            }
            var emitted = new HashSet<string>(StringComparer.Ordinal);
            foreach (string name in names)
            {
                var info = reader.GetInfo(name);
                int dot = name.LastIndexOf('.');
                string module = dot < 0 ? name : name[..dot], suffix = dot < 0 ? "" : name[(dot + 1)..];
                if (info.DType == SafeTensorsDType.I32 && !IsLinearModule(module))
                {
                    // Integer tensors outside the linears (a pruned model's kept rotary pairs, self_attn.rope_pairs) are
                    // part of the architecture, not weights: copied as they are.
                    Add(tensors, WriterTensor.Int32(name, info.Shape, () => reader.ReadInt32(name)), shard);
                    continue;
                }
                var dtype = info.DType.IsLoadableAsFloat32() ? info.DType : throw new CheckpointFormatException(reader.Directory, $"dtype {info.DType} cannot be rewritten", name, "dtype");
                if (ofModule.TryGetValue(module, out string? linearName) && replacements[linearName] is var r)
                {
                    if (suffix == "weight")
                    {
                        if (!emitted.Add(linearName)) continue;
                        foreach (var t in r.Tensors(dtype)) Add(tensors, t, shard);
                        if (r.Rank is int k) _ranks[linearName] = k;
                        continue;
                    }
                    if (suffix == "bias")
                    {
                        Add(tensors, WriterTensor.Lazy(r.BiasName, dtype, info.Shape, () => reader.ReadAsFloat32(name)), shard);
                        continue;
                    }
                }
                Add(tensors, WriterTensor.Lazy(name, dtype, info.Shape, () => reader.ReadAsFloat32(name)), shard);
            }
            string path = Path.Combine(_staging, shard);
            SafeTensorsWriter.Write(path, tensors, new Dictionary<string, string> { ["format"] = "pt" });
            _bytes += new FileInfo(path).Length;
        }

        /// <summary>Whether <paramref name="module"/> is one of the model's linears, or the U or V factor of one.</summary>
        private bool IsLinearModule(string module)
        {
            if (_linearModules is null)
            {
                _linearModules = new HashSet<string>(StringComparer.Ordinal);
                foreach (var l in _model.Linears)
                {
                    _linearModules.Add(l.Name);
                    _linearModules.Add(Linear.UName(l.Name));
                    _linearModules.Add(Linear.VName(l.Name));
                }
            }
            return _linearModules.Contains(module);
        }

        private HashSet<string>? _linearModules;

        private void Add(List<WriterTensor> tensors, WriterTensor t, string shard)
        {
            tensors.Add(t);
            _shardOfTensor[t.Name] = shard;
        }

        /// <summary>Writes the non-layer shard, the index, config.json (with svd_compression), tokenizer files and the report; renames into place.</summary>
        public void Commit(CompressionReport report) => Commit(ReportJson(report), config => AddSvdCompression(config, report));

        private void AddSvdCompression(JsonObject config, CompressionReport report)
        {
            var ranks = new JsonObject();
            foreach (var l in _model.Linears.Where(l => _ranks.ContainsKey(l.Name))) ranks[l.Name] = _ranks[l.Name];
            config["svd_compression"] = new JsonObject
            {
                ["method"] = report.Method,
                ["ratio"] = report.Ratio,
                ["ratio_definition"] = "fraction of the decoder linears' parameters removed",
                ["achieved_linear_ratio"] = Math.Round(report.AchievedLinearRatio, 6),
                ["achieved_model_ratio"] = Math.Round(report.AchievedModelRatio, 6),
                ["factor_names"] = "<name>_u_proj.weight [out, k] and <name>_v_proj.weight [k, in]; y = U (V x); bias on <name>_u_proj.bias",
                ["ranks"] = ranks,
            };
        }

        /// <summary>
        /// Writes the non-layer shard, the index, config.json (the original, changed by <paramref name="configure"/>),
        /// tokenizer files and compression-report.json; renames the directory into place.
        /// </summary>
        public void Commit(JsonObject reportJson, Action<JsonObject> configure)
        {
            var missing = Layers.Where(l => !_written.Contains(l)).ToList();
            if (missing.Count > 0) throw new InvalidOperationException($"layers {string.Join(", ", missing)} were never written");
            Write(ShardName(Layers.Count), _model.Reader.TensorNames.Where(n => !_layerOfTensor.ContainsKey(n)), new Dictionary<string, LinearReplacement>());
            var weightMap = new JsonObject();
            foreach (var (name, shard) in _shardOfTensor.OrderBy(kv => kv.Key, StringComparer.Ordinal)) weightMap[name] = shard;
            var index = new JsonObject { ["metadata"] = new JsonObject { ["total_size"] = _bytes }, ["weight_map"] = weightMap };
            var options = new JsonSerializerOptions { WriteIndented = true };
            File.WriteAllText(Path.Combine(_staging, CheckpointReader.IndexFileName), index.ToJsonString(options));

            var config = JsonNode.Parse(File.ReadAllText(Path.Combine(_model.Directory, "config.json")))!.AsObject();
            configure(config);
            File.WriteAllText(Path.Combine(_staging, "config.json"), config.ToJsonString(options));
            foreach (string f in CopiedFiles)
            {
                string src = Path.Combine(_model.Directory, f);
                if (File.Exists(src)) File.Copy(src, Path.Combine(_staging, f));
            }
            File.WriteAllText(Path.Combine(_staging, "compression-report.json"), reportJson.ToJsonString(options));
            System.IO.Directory.Move(_staging, _outDir);
            _committed = true;
        }

        public void Dispose()
        {
            if (!_committed && System.IO.Directory.Exists(_staging)) System.IO.Directory.Delete(_staging, recursive: true);
        }
    }

    public static JsonObject ReportJson(CompressionReport r)
    {
        var matrices = new JsonArray();
        foreach (var m in r.Matrices)
        {
            matrices.Add(new JsonObject
            {
                ["name"] = m.Name,
                ["shape"] = new JsonArray(m.Shape[0], m.Shape[1]),
                ["group"] = m.Group,
                ["allocated_ratio"] = Math.Round(m.AllocatedRatio, 6),
                ["rank"] = m.Rank,
                ["theoretical_loss"] = m.TheoreticalLoss,
                ["loss_objective"] = m.LossObjective,
                ["measured_loss"] = m.MeasuredLoss,
                ["allocation_loss"] = m.AllocationLoss,
                ["params_before"] = m.ParamsBefore,
                ["params_after"] = m.ParamsAfter,
                ["seconds"] = Math.Round(m.Seconds, 4),
                ["note"] = m.Note,
                ["route"] = m.Route,
            });
        }
        var stages = new JsonObject();
        foreach (var (k, v) in r.StageSeconds) stages[k] = Math.Round(v, 3);
        var calibration = new JsonObject();
        foreach (var (k, v) in r.Calibration) calibration[k] = v;
        return new JsonObject
        {
            ["method"] = r.Method,
            ["ratio"] = r.Ratio,
            ["linear_params_before"] = r.LinearParamsBefore,
            ["linear_params_after"] = r.LinearParamsAfter,
            ["model_params_before"] = r.ModelParamsBefore,
            ["model_params_after"] = r.ModelParamsAfter,
            ["achieved_linear_ratio"] = Math.Round(r.AchievedLinearRatio, 6),
            ["achieved_model_ratio"] = Math.Round(r.AchievedModelRatio, 6),
            ["linear_bytes_before"] = r.LinearBytesBefore,
            ["linear_bytes_after"] = r.LinearBytesAfter,
            ["bits_per_weight"] = r.BitsPerWeight is double bpw ? Math.Round(bpw, 4) : null,
            ["label"] = r.Label,
            ["largest_svd"] = r.LargestSvdMatrix,
            ["largest_svd_seconds"] = Math.Round(r.LargestSvdSeconds, 4),
            ["stage_seconds"] = stages,
            ["calibration"] = calibration,
            ["notes"] = new JsonArray(r.Notes.Select(n => (JsonNode)JsonValue.Create(n)!).ToArray()),
            ["matrices"] = matrices,
            ["quantization"] = r.Quantization?.DeepClone(),
            ["recovery"] = r.Recovery?.DeepClone(),
            ["training_curves"] = r.TrainingCurves.Count == 0 ? null
                : new JsonObject(r.TrainingCurves.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)new JsonArray(kv.Value.Select(v => (JsonNode)Math.Round(v, 6)).ToArray())))),
        };
    }
}
