using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using SvdLlm.Compression;
using SvdLlm.Experiments.Cache;
using SvdLlm.Models.Data;
using SvdLlm.Models;
using SvdLlm.Numerics;

namespace SvdLlm.Experiments.Matrix;

/// <summary>
/// Reads and validates a matrix file before any work starts. Every problem is collected (unknown keys with
/// a suggestion, wrong types, ratios outside (0, 1), missing files, duplicate cells) and thrown together as
/// a <see cref="MatrixValidationException"/> whose lines read <c>file:line:column: message</c>.
/// </summary>
/// <remarks>
/// Reuse: YAML anchors and aliases (also merge keys, <c>&lt;&lt;: *anchor</c>) inside a file, and
/// <c>extends: base.yaml</c> (relative to the file) across files: the child's top-level keys replace the
/// base's, <c>calibration</c> (when both are mappings), <c>run</c>, <c>task_defaults</c> and <c>paths</c>
/// are merged key by key. <c>paths:</c> is free-form: a place for anchors that the rest of the file uses.
/// Relative paths are resolved against the directory of the file that wrote them.
/// </remarks>
public static class MatrixLoader
{
    private static readonly string[] TopLevelKeys = ["name", "description", "extends", "paths", "models", "calibration", "methods", "ratios", "baseline", "tasks", "task_defaults", "run", "delta"];
    private static readonly string[] DeltaKeys = ["base", "finetuned", "methods", "ratios"];
    private static readonly string[] DeltaMethodNames = ["impart", "impart-qt", "svd", "dare"];
    private static readonly string[] DeltaParameters = ["beta", "exponent", "seed", "bits", "group_size"];
    private static readonly HashSet<string> DeepKeys = ["calibration", "run", "task_defaults", "paths"];
    private static readonly string[] ModelKeys = ["name", "path", "finetune"];
    private static readonly string[] FineTuneKeys = ["from", "text", "steps", "lr", "batch", "samples", "seq_len", "seed", "weight_decay"];
    private static readonly string[] CalibrationKeys = ["dataset", "samples", "seq_len", "seed"];
    private static readonly string[] MethodKeys = ["name", "params"];
    private static readonly string[] TaskKeys = ["name", "data", "limit", "seq_len"];
    private static readonly string[] TaskDefaultKeys = ["limit", "seq_len"];
    private static readonly string[] RunKeys = ["threads", "batch_size", "keep_compressed", "cache_dir"];

    public static MatrixSpec Load(string path)
    {
        string full = Path.GetFullPath(path);
        if (!File.Exists(full))
            throw new MatrixValidationException([new MatrixError(new SourcePosition(path, 1, 1), "matrix file not found")]);
        var hashes = new List<string>();
        var errors = new List<MatrixError>();
        var root = SubstitutePaths(LoadWithExtends(full, [], hashes), errors);
        var spec = Bind(root, full, string.Join("\n", hashes), errors);
        if (errors.Count > 0) throw new MatrixValidationException(errors);
        return spec!;
    }

    private const long MaxFileBytes = 1 << 20;

    private static YMapping LoadWithExtends(string file, List<string> chain, List<string> hashes)
    {
        var length = new FileInfo(file).Length;
        if (length > MaxFileBytes)
            throw new MatrixValidationException([new MatrixError(new SourcePosition(file, 1, 1), $"the matrix file is {length} bytes; a matrix is at most {MaxFileBytes} (is this the right file?)")]);
        byte[] bytes = File.ReadAllBytes(file);
        hashes.Add(Convert.ToHexStringLower(SHA256.HashData(bytes)));
        string text = SvdLlm.Models.Data.Utf8Text.TryDecode(bytes, 0, out int badOffset, out int badLine)
            ?? throw new MatrixValidationException([new MatrixError(new SourcePosition(file, badLine, 1), $"invalid UTF-8 at byte offset {badOffset}; a matrix file is UTF-8 text")]);
        var node = YamlTree.Parse(text, file);
        var pos = new SourcePosition(file, 1, 1);
        if (node is null) throw new MatrixValidationException([new MatrixError(pos, "the matrix file is empty")]);
        if (node is not YMapping map) throw new MatrixValidationException([new MatrixError(node.Position, "a matrix is a mapping (name:, models:, methods:, ...)")]);
        var extends = map["extends"];
        if (extends is null) return map;
        if (extends is not YScalar s || s.IsNull)
            throw new MatrixValidationException([new MatrixError(extends.Position, "'extends' must be the path of another matrix file")]);
        string basePath = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(file)!, s.Value));
        if (!File.Exists(basePath)) throw new MatrixValidationException([new MatrixError(s.Position, $"extends: file '{basePath}' not found")]);
        if (basePath == file || chain.Contains(basePath))
            throw new MatrixValidationException([new MatrixError(s.Position, $"extends: cycle through '{basePath}'")]);
        var parent = LoadWithExtends(basePath, [.. chain, file], hashes);
        var childWithoutExtends = new YMapping(map.Entries.Where(e => e.Key.Value != "extends").ToList(), map.Position, map.Anchor);
        return YamlTree.Overlay(parent, childWithoutExtends, DeepKeys);
    }

    /// <summary>
    /// <c>${paths.NAME}</c> inside any string is replaced by the value of <c>paths.NAME</c> of the merged
    /// matrix: YAML anchors do not cross files, this does (a file that extends another reuses its paths).
    /// The substituted value keeps the position where <c>paths.NAME</c> was written, the place to edit.
    /// </summary>
    private static YMapping SubstitutePaths(YMapping root, List<MatrixError> errors)
    {
        var paths = root["paths"] as YMapping;
        YNode Walk(YNode n) => n switch
        {
            YScalar s when s.Value.Contains("${", StringComparison.Ordinal) => Substitute(s),
            YSequence q => q with { Items = q.Items.Select(Walk).ToList() },
            YMapping m when !ReferenceEquals(m, paths) => m with { Entries = m.Entries.Select(e => new KeyValuePair<YScalar, YNode>(e.Key, Walk(e.Value))).ToList() },
            _ => n,
        };
        YNode Substitute(YScalar s)
        {
            var text = new StringBuilder();
            SourcePosition? from = null;
            int i = 0;
            while (i < s.Value.Length)
            {
                int open = s.Value.IndexOf("${", i, StringComparison.Ordinal);
                if (open < 0) { text.Append(s.Value, i, s.Value.Length - i); break; }
                int close = s.Value.IndexOf('}', open);
                if (close < 0) { errors.Add(new MatrixError(s.Position, $"unterminated '${{' in '{s.Value}'")); return s; }
                text.Append(s.Value, i, open - i);
                string name = s.Value[(open + 2)..close];
                string key = name.StartsWith("paths.", StringComparison.Ordinal) ? name[6..] : "";
                if (key.Length == 0 || paths?[key] is not YScalar value)
                {
                    var known = paths?.Entries.Select(e => "paths." + e.Key.Value).ToList() ?? [];
                    errors.Add(new MatrixError(s.Position, $"'${{{name}}}' is not a string under paths:{Suggest(name, known)}"));
                    return s;
                }
                text.Append(value.Value);
                from ??= value.Position;
                i = close + 1;
            }
            return new YScalar(text.ToString(), s.Quoted, from ?? s.Position, s.Anchor);
        }
        return (YMapping)Walk(root);
    }

    private static MatrixSpec? Bind(YMapping root, string file, string hashes, List<MatrixError> errors)
    {
        var e = new Errors(errors);
        e.CheckKeys(root, TopLevelKeys, "");

        string name = root["name"] is { } n ? e.String(n, "name") ?? "" : Path.GetFileNameWithoutExtension(file);

        // Models.
        var models = new List<ModelSpec>();
        if (e.Sequence(root["models"], "models", root.Position, required: true) is { } modelItems)
        {
            for (int i = 0; i < modelItems.Count; i++)
            {
                string where = $"models[{i}]";
                var item = modelItems[i];
                YScalar? pathNode = null;
                string? modelName = null;
                if (item is YScalar sc) pathNode = sc;
                else if (item is YMapping { } ft && ft["finetune"] is { } ftNode)
                {
                    e.CheckKeys(ft, ModelKeys, where + ".");
                    if (ft["path"] is not null) e.Add(ft["path"]!.Position, $"{where}: give path: or finetune:, not both (a fine-tuned model is made from its finetune.from model)");
                    if (ft["name"] is not { } fn) { e.Add(ft.Position, $"{where}.name: required for a fine-tuned model (cells and tables name it)"); continue; }
                    if (e.String(fn, where + ".name") is not { } ftName) continue;
                    if (FineTune(ftNode, where + ".finetune", models, e) is not { } fineTune) continue;
                    if (models.FirstOrDefault(m => m.Name == ftName) is { } dupName)
                        e.Add(item.Position, $"{where}: duplicate model name '{ftName}' (also at line {dupName.Position.Line}); give one a different name:");
                    else models.Add(new ModelSpec(ftName, ModelSpec.FineTunedPrefix + ftName, item.Position, fineTune));
                    continue;
                }
                else if (item is YMapping mm)
                {
                    e.CheckKeys(mm, ModelKeys, where + ".");
                    if (mm["name"] is { } nn) modelName = e.String(nn, where + ".name");
                    pathNode = mm["path"] as YScalar;
                    if (mm["path"] is null) e.Add(mm.Position, $"{where}.path: required (a Hugging Face model directory, or 'default' for the embedded default model)");
                    else if (pathNode is null) e.Add(mm["path"]!.Position, $"{where}.path: expected a string");
                }
                else e.Add(item.Position, $"{where}: expected a path or a mapping with name: and path:");
                if (pathNode is null) continue;
                string source;
                if (pathNode.Value == ModelTraining.DefaultModel) source = ModelTraining.DefaultModel;
                else
                {
                    source = Resolve(pathNode);
                    if (!Directory.Exists(source)) e.Add(pathNode.Position, $"{where}.path: model directory '{source}' not found{FromAnchor(pathNode)}");
                    else if (!File.Exists(Path.Combine(source, "config.json"))) e.Add(pathNode.Position, $"{where}.path: '{source}' has no config.json (not a Hugging Face model directory){FromAnchor(pathNode)}");
                }
                modelName ??= source == ModelTraining.DefaultModel ? ModelTraining.DefaultModel : Path.GetFileName(source.TrimEnd('/'));
                var spec = new ModelSpec(modelName, source, item.Position);
                if (models.FirstOrDefault(m => m.Source == spec.Source) is { } dup)
                    e.Add(item.Position, $"{where}: duplicate cell: model '{source}' is already models entry at line {dup.Position.Line}");
                else if (models.FirstOrDefault(m => m.Name == spec.Name) is { } dupName)
                    e.Add(item.Position, $"{where}: duplicate model name '{spec.Name}' (also at line {dupName.Position.Line}); give one a different name:");
                else models.Add(spec);
            }
        }

        // Calibration: one mapping, or a list of them (each is a dimension value of the matrix).
        var calibrations = new List<CalibrationSpec>();
        var calNode = root["calibration"];
        var calItems = calNode switch
        {
            null => [],
            YMapping m => [m],
            YSequence q => q.Items.ToList(),
            _ => null,
        };
        if (calItems is null) e.Add(calNode!.Position, "calibration: expected a mapping (dataset:, samples:, seq_len:, seed:) or a list of them");
        for (int i = 0; calItems is not null && i < calItems.Count; i++)
        {
            string where = calNode is YSequence ? $"calibration[{i}]" : "calibration";
            if (calItems[i] is not YMapping cm)
            {
                e.Add(calItems[i].Position, $"{where}: expected a mapping (dataset:, samples:, seq_len:, seed:)");
                continue;
            }
            e.CheckKeys(cm, CalibrationKeys, where + ".");
            string? dataset = null;
            if (cm["dataset"] is not { } dn) e.Add(cm.Position, $"{where}.dataset: required ('demo' or a text file)");
            else if (dn is not YScalar ds || ds.IsNull) e.Add(dn.Position, $"{where}.dataset: expected 'demo' or the path of a text file");
            else if (ds.Value == CalibrationSpec.Demo) dataset = CalibrationSpec.Demo;
            else
            {
                dataset = Resolve(ds);
                if (!File.Exists(dataset)) e.Add(ds.Position, $"{where}.dataset: calibration text '{dataset}' not found{FromAnchor(ds)}");
            }
            int samples = e.Int(cm["samples"], where + ".samples", 256, min: 1);
            int seqLen = e.Int(cm["seq_len"], where + ".seq_len", 2048, min: 1);
            int seed = e.Int(cm["seed"], where + ".seed", 3, min: int.MinValue);
            if (dataset is null) continue;
            var spec = new CalibrationSpec(dataset, samples, seqLen, seed, cm.Position);
            if (calibrations.FirstOrDefault(c => c with { Position = spec.Position } == spec) is { } dup)
                e.Add(cm.Position, $"{where}: duplicate cell: the same calibration as at line {dup.Position.Line}");
            else calibrations.Add(spec);
        }

        // Methods.
        var methods = new List<MethodSpec>();
        var knownMethods = CompressionMethod.All.Select(m => m.Name).ToList();
        if (e.Sequence(root["methods"], "methods", root.Position, required: false) is { } methodItems)
        {
            for (int i = 0; i < methodItems.Count; i++)
            {
                string where = $"methods[{i}]";
                var item = methodItems[i];
                YScalar? nameNode = null;
                var parameters = new SortedDictionary<string, string>(StringComparer.Ordinal);
                if (item is YScalar sc) nameNode = sc;
                else if (item is YMapping mm)
                {
                    e.CheckKeys(mm, MethodKeys, where + ".");
                    nameNode = mm["name"] as YScalar;
                    if (nameNode is null) e.Add(mm.Position, $"{where}.name: required, one of {string.Join(", ", knownMethods)}");
                    if (mm["params"] is YMapping pm)
                    {
                        foreach (var (k, v) in pm.Entries)
                        {
                            if (v is YScalar pv) parameters[k.Value] = pv.Value;
                            else e.Add(v.Position, $"{where}.params.{k.Value}: expected a scalar");
                        }
                    }
                    else if (mm["params"] is { } other) e.Add(other.Position, $"{where}.params: expected a mapping");
                }
                else e.Add(item.Position, $"{where}: expected a method name or a mapping with name: and params:");
                if (nameNode is null) continue;
                if (!knownMethods.Contains(nameNode.Value))
                {
                    e.Add(nameNode.Position, $"{where}: unknown method '{nameNode.Value}'{Suggest(nameNode.Value, knownMethods)}; known: {string.Join(", ", knownMethods)}");
                    continue;
                }
                var allowed = CompressionMethod.Get(nameNode.Value).Parameters;
                var unknown = parameters.Keys.Where(p => !allowed.Contains(p)).ToList();
                foreach (string p in unknown)
                    e.Add(item.Position, $"{where}.params: unknown parameter '{p}' of '{nameNode.Value}'{Suggest(p, allowed)}; it takes {string.Join(", ", allowed)}");
                if (unknown.Count > 0) continue;
                SvdLlm.Compression.MethodRecipe recipe;
                try
                {
                    recipe = SvdLlm.Compression.MethodRecipe.Parse(nameNode.Value, parameters, p => $"{where}.params.{p}");
                }
                catch (ArgumentException x)
                {
                    e.Add(item.Position, x.Message);
                    continue;
                }
                // Canonical: {bits: 4, sym: false} and {bits: "4"} are one cell, with one key.
                var spec = new MethodSpec(nameNode.Value, recipe.Canonical(), item.Position);
                if (methods.FirstOrDefault(m => m.Name == spec.Name && m.Parameters.SequenceEqual(spec.Parameters)) is { } dup)
                    e.Add(item.Position, $"{where}: duplicate cell: {recipe.Label} is already listed at line {dup.Position.Line}");
                else methods.Add(spec);
            }
        }

        // Ratios.
        var ratios = new List<double>();
        var ratioPositions = new List<SourcePosition>();
        if (e.Sequence(root["ratios"], "ratios", root.Position, required: false) is { } ratioItems)
        {
            for (int i = 0; i < ratioItems.Count; i++)
            {
                string where = $"ratios[{i}]";
                if (ratioItems[i] is not YScalar rs || !double.TryParse(rs.Value, NumberStyles.Float, CultureInfo.InvariantCulture, out double r))
                {
                    e.Add(ratioItems[i].Position, $"{where}: expected a number in (0, 1), the fraction of parameters removed");
                    continue;
                }
                if (!(r > 0 && r < 1)) e.Add(rs.Position, $"{where}: ratio {rs.Value} is outside (0, 1): it is the fraction of the linears' parameters removed");
                else if (ratios.IndexOf(r) is int at and >= 0) e.Add(rs.Position, $"{where}: duplicate cell: ratio {rs.Value} is already listed at line {ratioPositions[at].Line}");
                else
                {
                    ratios.Add(r);
                    ratioPositions.Add(rs.Position);
                }
            }
        }
        bool baseline = root["baseline"] is { } bn ? e.Bool(bn, "baseline") ?? true : true;
        var deltas = Deltas(root["delta"], models, e, hasCalibration: calibrations.Count > 0 || calNode is not null);
        // Quantizers (rtn, gptq, gptvq) take no ratio: each is one cell per model and calibration, at full rank.
        bool lowRank = methods.Any(m => !CompressionMethod.Get(m.Name).IsQuantization);
        if (lowRank && ratios.Count == 0 && root["ratios"] is null) e.Add(root.Position, "ratios: required when SVD methods are listed (e.g. ratios: [0.2, 0.4])");
        if (ratios.Count > 0 && methods.Count == 0 && root["methods"] is null) e.Add(root.Position, "methods: required when ratios are listed");
        else if (ratios.Count > 0 && methods.Count > 0 && !lowRank)
            e.Add(root["ratios"]!.Position, "ratios: only SVD methods take a ratio; the listed methods all quantize at full rank (drop ratios:)");
        if ((methods.Count > 0 || root["methods"] is not null) && calibrations.Count == 0 && calNode is null)
            e.Add(root.Position, "calibration: required when methods are listed (dataset:, samples:, seq_len:, seed:)");
        if (methods.Count == 0 && !baseline && root["methods"] is not null) e.Add(root.Position, "the matrix has no cells: no methods and baseline: false");

        // Task defaults, then tasks.
        int? defaultLimit = null, defaultSeqLen = null;
        if (root["task_defaults"] is { } td)
        {
            if (td is YMapping tdm)
            {
                e.CheckKeys(tdm, TaskDefaultKeys, "task_defaults.");
                defaultLimit = e.OptionalInt(tdm["limit"], "task_defaults.limit", 1);
                defaultSeqLen = e.OptionalInt(tdm["seq_len"], "task_defaults.seq_len", 1);
            }
            else e.Add(td.Position, "task_defaults: expected a mapping (limit:, seq_len:)");
        }
        var tasks = new List<TaskSpec>();
        var knownTasks = TaskCatalog.Names;
        if (e.Sequence(root["tasks"], "tasks", root.Position, required: true) is { } taskItems)
        {
            for (int i = 0; i < taskItems.Count; i++)
            {
                string where = $"tasks[{i}]";
                var item = taskItems[i];
                YScalar? nameNode = null;
                YScalar? dataNode = null;
                int? limit = defaultLimit, seqLen = defaultSeqLen;
                if (item is YScalar sc) nameNode = sc;
                else if (item is YMapping tm)
                {
                    e.CheckKeys(tm, TaskKeys, where + ".");
                    nameNode = tm["name"] as YScalar;
                    if (nameNode is null) e.Add(tm.Position, $"{where}.name: required");
                    if (tm["data"] is { } dn2)
                    {
                        dataNode = dn2 as YScalar;
                        if (dataNode is null || dataNode.IsNull) e.Add(dn2.Position, $"{where}.data: expected a file or directory path");
                    }
                    limit = e.OptionalInt(tm["limit"], where + ".limit", 1) ?? limit;
                    seqLen = e.OptionalInt(tm["seq_len"], where + ".seq_len", 1) ?? seqLen;
                }
                else e.Add(item.Position, $"{where}: expected a task name or a mapping (name:, data:, limit:, seq_len:)");
                if (nameNode is null) continue;
                if (!knownTasks.Contains(nameNode.Value))
                {
                    e.Add(nameNode.Position, $"{where}: unknown task '{nameNode.Value}'{Suggest(nameNode.Value, knownTasks)}; known: {string.Join(", ", knownTasks)}");
                    continue;
                }
                string? data = null;
                if (dataNode is { IsNull: false })
                {
                    data = Resolve(dataNode);
                    if (!File.Exists(data) && !Directory.Exists(data)) e.Add(dataNode.Position, $"{where}.data: '{data}' not found (task {nameNode.Value}){FromAnchor(dataNode)}");
                }
                else if (TaskCatalog.NeedsData(nameNode.Value) && dataNode is null)
                    e.Add(item.Position, $"{where}: task '{nameNode.Value}' needs data: (the dataset file or directory)");
                var spec = new TaskSpec(nameNode.Value, data, limit, seqLen, item.Position);
                if (tasks.FirstOrDefault(t => t.Name == spec.Name) is { } dup)
                    e.Add(item.Position, $"{where}: duplicate cell: task '{spec.Name}' is already listed at line {dup.Position.Line}");
                else tasks.Add(spec);
            }
        }

        // Run options.
        int? threads = null;
        int batchSize = 4;
        bool keep = false;
        string? cacheDir = null;
        if (root["run"] is { } rn)
        {
            if (rn is YMapping rm)
            {
                e.CheckKeys(rm, RunKeys, "run.");
                threads = e.OptionalInt(rm["threads"], "run.threads", 1, NumericsRuntime.MaxThreads);
                batchSize = e.Int(rm["batch_size"], "run.batch_size", 4, min: 1);
                if (rm["keep_compressed"] is { } kn) keep = e.Bool(kn, "run.keep_compressed") ?? false;
                if (rm["cache_dir"] is { } cn)
                {
                    if (cn is YScalar cs && !cs.IsNull) cacheDir = Resolve(cs);
                    else e.Add(cn.Position, "run.cache_dir: expected a directory path");
                }
            }
            else e.Add(rn.Position, "run: expected a mapping (threads:, batch_size:, keep_compressed:, cache_dir:)");
        }

        if (errors.Count > 0) return null;
        return new MatrixSpec
        {
            Name = name,
            Path = file,
            Sha256 = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(hashes))),
            Models = models,
            Deltas = deltas,
            Calibrations = calibrations,
            Methods = methods,
            Ratios = ratios,
            Baseline = baseline,
            Tasks = tasks,
            Run = new RunOptions(threads, batchSize, keep, cacheDir),
        };
    }

    /// <summary><c>delta:</c>, one mapping or a list: base and finetuned name models entries, methods and CRs say what to compress.</summary>
    private static List<DeltaSpec> Deltas(YNode? node, List<ModelSpec> models, Errors e, bool hasCalibration)
    {
        var result = new List<DeltaSpec>();
        var items = node switch
        {
            null => [],
            YMapping m => [m],
            YSequence q => q.Items.ToList(),
            _ => null,
        };
        if (items is null) e.Add(node!.Position, "delta: expected a mapping (base:, finetuned:, methods:, ratios:) or a list of them");
        for (int i = 0; items is not null && i < items.Count; i++)
        {
            string where = node is YSequence ? $"delta[{i}]" : "delta";
            if (items[i] is not YMapping dm)
            {
                e.Add(items[i].Position, $"{where}: expected a mapping (base:, finetuned:, methods:, ratios:)");
                continue;
            }
            e.CheckKeys(dm, DeltaKeys, where + ".");
            ModelSpec? Model(string key)
            {
                if (dm[key] is not { } n) { e.Add(dm.Position, $"{where}.{key}: required (the name of a models entry)"); return null; }
                if (e.String(n, $"{where}.{key}") is not { } name) return null;
                if (models.FirstOrDefault(m => m.Name == name) is { } found) return found;
                e.Add(n.Position, $"{where}.{key}: no models entry is named '{name}'{Suggest(name, models.Select(m => m.Name))}; known: {string.Join(", ", models.Select(m => m.Name))}");
                return null;
            }
            var b = Model("base");
            var f = Model("finetuned");
            if (b is not null && f is not null && b == f) e.Add(dm.Position, $"{where}: base and finetuned are the same model '{b.Name}': there is no delta");
            var methods = new List<MethodSpec>();
            if (e.Sequence(dm["methods"], where + ".methods", dm.Position, required: true) is { } methodItems)
                for (int j = 0; j < methodItems.Count; j++)
                {
                    string mw = $"{where}.methods[{j}]";
                    var item = methodItems[j];
                    YScalar? nameNode = item as YScalar;
                    var parameters = new SortedDictionary<string, string>(StringComparer.Ordinal);
                    if (item is YMapping mm)
                    {
                        e.CheckKeys(mm, MethodKeys, mw + ".");
                        nameNode = mm["name"] as YScalar;
                        if (mm["params"] is YMapping pm)
                            foreach (var (k, v) in pm.Entries)
                            {
                                if (!DeltaParameters.Contains(k.Value)) { e.Add(k.Position, $"{mw}.params: unknown parameter '{k.Value}'{Suggest(k.Value, DeltaParameters)}; delta methods take {string.Join(", ", DeltaParameters)}"); continue; }
                                if (k.Value == "bits")
                                {
                                    if (v is not YScalar bs) { e.Add(v.Position, $"{mw}.params.bits: expected a width plan such as 8x2,3x32,2"); continue; }
                                    try { parameters["bits"] = SvdLlm.Compression.Delta.DeltaBitPlan.Parse(bs.Value).ToString(); }
                                    catch (ArgumentException ex) { e.Add(v.Position, $"{mw}.params.bits: {ex.Message}"); }
                                    continue;
                                }
                                if (v is not YScalar vs || !double.TryParse(vs.Value, NumberStyles.Float, CultureInfo.InvariantCulture, out double x) || !double.IsFinite(x))
                                { e.Add(v.Position, $"{mw}.params.{k.Value}: expected a number"); continue; }
                                bool ok = k.Value switch { "beta" => x >= 0 && x < 1, "exponent" => x >= 0, "group_size" => x == -1 || (x >= 1 && x == Math.Floor(x)), _ => x >= 0 && x == Math.Floor(x) };
                                if (!ok) { e.Add(v.Position, $"{mw}.params.{k.Value}: {vs.Value} must be {k.Value switch { "beta" => "in [0, 1)", "exponent" => "≥ 0", "group_size" => "a positive integer, or -1 for one group per row", _ => "a non-negative integer" }}"); continue; }
                                parameters[k.Value] = x.ToString("R", CultureInfo.InvariantCulture);
                            }
                        else if (mm["params"] is { } bad) e.Add(bad.Position, $"{mw}.params: expected a mapping");
                    }
                    if (nameNode is null || nameNode.IsNull) { e.Add(item.Position, $"{mw}: expected impart, svd or dare, or a mapping with name: and params:"); continue; }
                    if (!DeltaMethodNames.Contains(nameNode.Value)) { e.Add(nameNode.Position, $"{mw}: unknown delta method '{nameNode.Value}'{Suggest(nameNode.Value, DeltaMethodNames)}; known: {string.Join(", ", DeltaMethodNames)}"); continue; }
                    if (!nameNode.Value.StartsWith("impart", StringComparison.Ordinal) && parameters.Keys.FirstOrDefault(k => k != "seed") is { } only)
                    { e.Add(item.Position, $"{mw}.params.{only}: ImPart's parameter; {nameNode.Value} has none"); continue; }
                    if (nameNode.Value == "impart" && parameters.Keys.FirstOrDefault(k => k is "bits" or "group_size") is { } qt)
                    { e.Add(item.Position, $"{mw}.params.{qt}: ImPart-Qt's parameter (name: impart-qt); impart stores float16 values"); continue; }
                    if (nameNode.Value == "svd" && parameters.ContainsKey("seed")) { e.Add(item.Position, $"{mw}.params.seed: svd draws nothing at random"); continue; }
                    if (nameNode.Value == "impart-qt" && !hasCalibration)
                    { e.Add(item.Position, $"{mw}: calibration: required when impart-qt is listed (its GPTQ weighs by the fine-tuned model's input Grams from the first calibration entry)"); continue; }
                    var spec = new MethodSpec(SvdLlm.Compression.Delta.DeltaCheckpoint.MethodPrefix + nameNode.Value, parameters, item.Position);
                    if (methods.FirstOrDefault(m => m.Name == spec.Name && m.Parameters.SequenceEqual(spec.Parameters)) is { } dup)
                        e.Add(item.Position, $"{mw}: duplicate cell: already listed at line {dup.Position.Line}");
                    else methods.Add(spec);
                }
            var ratios = new List<double>();
            if (e.Sequence(dm["ratios"], where + ".ratios", dm.Position, required: true) is { } ratioItems)
                for (int j = 0; j < ratioItems.Count; j++)
                {
                    string rw = $"{where}.ratios[{j}]";
                    if (ratioItems[j] is not YScalar rs || !double.TryParse(rs.Value, NumberStyles.Float, CultureInfo.InvariantCulture, out double r) || !double.IsFinite(r) || r <= 0)
                    { e.Add(ratioItems[j].Position, $"{rw}: expected a positive number, the delta's compression ratio CR (dense values / stored values, e.g. 32)"); continue; }
                    if (r < 1 && methods.Any(m => m.Name == SvdLlm.Compression.Delta.DeltaCheckpoint.MethodName(SvdLlm.Compression.Delta.DeltaMethod.Dare))) e.Add(rs.Position, $"{rw}: CR {rs.Value} < 1 cannot be met by DARE (it keeps each value with probability 1/CR)");
                    else if (ratios.Contains(r)) e.Add(rs.Position, $"{rw}: duplicate cell: CR {rs.Value} is listed twice");
                    else ratios.Add(r);
                }
            if (b is not null && f is not null && b != f) result.Add(new DeltaSpec(b, f, methods, ratios, dm.Position));
        }
        return result;
    }

    /// <summary>A model's <c>finetune:</c> mapping; <c>from</c> names an earlier models entry.</summary>
    private static FineTuneSpec? FineTune(YNode node, string where, List<ModelSpec> earlier, Errors e)
    {
        if (node is not YMapping m)
        {
            e.Add(node.Position, $"{where}: expected a mapping (from:, text:, steps:, lr:, ...)");
            return null;
        }
        e.CheckKeys(m, FineTuneKeys, where + ".");
        ModelSpec? from = null;
        if (m["from"] is not { } fromNode) e.Add(m.Position, $"{where}.from: required (the name of an earlier models entry to start from)");
        else if (e.String(fromNode, where + ".from") is { } fromName)
        {
            from = earlier.FirstOrDefault(x => x.Name == fromName);
            if (from is null) e.Add(fromNode.Position, $"{where}.from: no earlier models entry is named '{fromName}'{Suggest(fromName, earlier.Select(x => x.Name))}; known: {string.Join(", ", earlier.Select(x => x.Name))}");
        }
        string? text = null;
        if (m["text"] is not { } textNode) e.Add(m.Position, $"{where}.text: required ('demo', 'demo:<corpus>' or the path of a text file)");
        else if (textNode is not YScalar ts || ts.IsNull) e.Add(textNode.Position, $"{where}.text: expected 'demo', 'demo:<corpus>' or the path of a text file");
        else if (ts.Value == CalibrationSpec.Demo) text = ts.Value;
        else if (ts.Value.StartsWith(DemoCalibrationText.Prefix, StringComparison.Ordinal))
        {
            string corpus = ts.Value[DemoCalibrationText.Prefix.Length..];
            if (Corpora.Names.Contains(corpus)) text = ts.Value;
            else e.Add(ts.Position, $"{where}.text: unknown corpus '{corpus}'{Suggest(corpus, Corpora.Names)}; known corpora: {string.Join(", ", Corpora.Names)}");
        }
        else
        {
            text = Resolve(ts);
            if (!File.Exists(text)) e.Add(ts.Position, $"{where}.text: text file '{text}' not found{FromAnchor(ts)}");
        }
        var d = new SvdLlm.Compression.Recovery.FineTuneOptions();
        int? steps = e.OptionalInt(m["steps"], where + ".steps", min: 1);
        if (m["steps"] is null) e.Add(m.Position, $"{where}.steps: required (optimizer steps)");
        double lr = e.Double(m["lr"], where + ".lr", d.LearningRate, min: double.Epsilon);
        int batch = e.Int(m["batch"], where + ".batch", d.BatchSize, min: 1);
        int samples = e.Int(m["samples"], where + ".samples", 512, min: 1);
        int seqLen = e.Int(m["seq_len"], where + ".seq_len", 128, min: 2);
        int seed = e.Int(m["seed"], where + ".seed", 0, min: int.MinValue);
        double wd = e.Double(m["weight_decay"], where + ".weight_decay", 0, min: 0);
        return from is null || text is null || steps is null ? null : new FineTuneSpec(from, text, steps.Value, lr, batch, samples, seqLen, seed, wd);
    }

    private static string Resolve(YScalar s)
    {
        string v = s.Value.StartsWith("~/", StringComparison.Ordinal)
            ? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), s.Value[2..])
            : s.Value;
        return Path.GetFullPath(Path.Combine(Path.GetDirectoryName(s.Position.File)!, v));
    }

    private static string FromAnchor(YNode n) => n.Anchor is null ? "" : $" (set by the anchor &{n.Anchor}: edit it there)";

    private static string Suggest(string name, IEnumerable<string> candidates) =>
        NameSuggestions.Closest(name, candidates) is { } c ? $"; did you mean '{c}'?" : "";

    /// <summary>Collects errors and reads typed scalars, reporting each problem with the node's position.</summary>
    private sealed class Errors(List<MatrixError> list)
    {
        public void Add(SourcePosition p, string message) => list.Add(new MatrixError(p, message));

        public void CheckKeys(YMapping map, IReadOnlyList<string> allowed, string prefix)
        {
            foreach (var (k, _) in map.Entries)
            {
                if (allowed.Contains(k.Value)) continue;
                Add(k.Position, $"unknown key '{prefix}{k.Value}'{Suggest(k.Value, allowed)}; allowed here: {string.Join(", ", allowed)}");
            }
        }

        public IReadOnlyList<YNode>? Sequence(YNode? node, string field, SourcePosition parent, bool required)
        {
            if (node is null)
            {
                if (required) Add(parent, $"{field}: required");
                return null;
            }
            if (node is YSequence q) return q.Items;
            Add(node.Position, $"{field}: expected a list");
            return null;
        }

        public string? String(YNode node, string field)
        {
            if (node is YScalar s && !s.IsNull) return s.Value;
            Add(node.Position, $"{field}: expected a string");
            return null;
        }

        public bool? Bool(YNode node, string field)
        {
            if (node is YScalar { Value: "true" or "True" or "TRUE" or "yes" }) return true;
            if (node is YScalar { Value: "false" or "False" or "FALSE" or "no" }) return false;
            Add(node.Position, $"{field}: expected true or false, got {Describe(node)}");
            return null;
        }

        public int Int(YNode? node, string field, int fallback, int min) => OptionalInt(node, field, min) ?? fallback;

        public double Double(YNode? node, string field, double fallback, double min)
        {
            if (node is null || node is YScalar { IsNull: true }) return fallback;
            if (node is YScalar s && !s.Quoted && double.TryParse(s.Value, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && double.IsFinite(v))
            {
                if (v >= min) return v;
                Add(node.Position, $"{field}: {s.Value} must be {(min == double.Epsilon ? "positive" : $"≥ {min.ToString(CultureInfo.InvariantCulture)}")}");
                return fallback;
            }
            Add(node.Position, $"{field}: expected a number, got {Describe(node)}");
            return fallback;
        }

        public int? OptionalInt(YNode? node, string field, int min, int max = int.MaxValue)
        {
            if (node is null || node is YScalar { IsNull: true }) return null;
            if (node is YScalar s && !s.Quoted && int.TryParse(s.Value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int v))
            {
                if (v >= min && v <= max) return v;
                Add(node.Position, v < min ? $"{field}: {v} must be ≥ {min}" : $"{field}: {v} must be ≤ {max}");
                return null;
            }
            Add(node.Position, $"{field}: expected an integer, got {Describe(node)}");
            return null;
        }

        private static string Describe(YNode n) => n switch
        {
            YScalar s => $"'{s.Value}'",
            YSequence => "a list",
            _ => "a mapping",
        };
    }
}
