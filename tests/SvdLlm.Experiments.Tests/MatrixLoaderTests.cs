using SvdLlm.Experiments.Cache;
using SvdLlm.Experiments.Pipeline;
using SvdLlm.Experiments.Matrix;
using SvdLlm.Models.Tests;

namespace SvdLlm.Experiments.Tests;

public sealed class MatrixLoaderTests
{
    private static MatrixValidationException Invalid(string path) => Assert.Throws<MatrixValidationException>(() => MatrixLoader.Load(path));

    /// <summary>"file:line:column" of the <paramref name="nth"/> occurrence of <paramref name="token"/> on a 1-based line of the written file, counted by hand.</summary>
    private static string At(string file, int line, string token, int nth = 1)
    {
        string text = File.ReadAllLines(file)[line - 1];
        int col = -1;
        for (int i = 0; i < nth; i++) col = text.IndexOf(token, col + 1, StringComparison.Ordinal);
        Assert.True(col >= 0, $"'{token}' not on line {line}: {text}");
        return $"{file}:{line}:{col + 1}";
    }

    private const string Valid = """
        name: micro
        models:
          - {name: tiny, path: {model}}
        calibration: {dataset: {text}, samples: 8, seq_len: 32, seed: 5}
        methods: [svd, {name: svdllm}]
        ratios: [0.25, 0.5]
        tasks:
          - {name: wikitext2, data: {text}, limit: 3, seq_len: 32}
        run: {threads: 1, batch_size: 2, keep_compressed: true, cache_dir: {cache}}
        """;

    [Fact]
    public void ValidMatrixBindsEveryField()
    {
        using var w = new MicroWorld();
        var m = MatrixLoader.Load(w.Matrix(Valid));
        Assert.Equal("micro", m.Name);
        var model = Assert.Single(m.Models);
        Assert.Equal(("tiny", w.ModelDir), (model.Name, model.Source));
        Assert.Equal(new CalibrationSpec(w.TextFile, 8, 32, 5, m.Calibrations[0].Position), Assert.Single(m.Calibrations));
        Assert.Equal(["svd", "svdllm"], m.Methods.Select(x => x.Name));
        Assert.Equal([0.25, 0.5], m.Ratios);
        Assert.True(m.Baseline);
        var task = Assert.Single(m.Tasks);
        Assert.Equal(("wikitext2", w.TextFile, 3, 32), (task.Name, task.Data, task.Limit, task.SeqLen));
        Assert.Equal(new RunOptions(1, 2, true, w.CacheDir), m.Run);
        Assert.Equal(64, m.Sha256.Length);
    }

    [Fact]
    public void UnknownKeysAreReportedWithPositionAndSuggestion()
    {
        using var w = new MicroWorld();
        var e = Invalid(w.Matrix(Valid.Replace("ratios:", "ratio:").Replace("samples: 8", "sample: 8")));
        string file = w.Temp.File("matrix.yaml");
        Assert.Contains($"{file}:6:1: unknown key 'ratio'; did you mean 'ratios'?; allowed here: " + string.Join(", ",
            "name description extends paths models calibration methods ratios baseline tasks task_defaults run delta".Split(' ')), e.Errors.Select(x => x.ToString()));
        Assert.Contains(e.Errors, x => x.Position.ToString() == At(file, 4, "sample:") && x.Message.StartsWith("unknown key 'calibration.sample'; did you mean 'samples'?", StringComparison.Ordinal));
    }

    [Fact]
    public void EveryProblemIsListedNotJustTheFirst()
    {
        using var w = new MicroWorld();
        string yaml = """
            models: [{path: /nonexistent/model}]
            calibration: {dataset: /nonexistent/text.txt, samples: lots, seq_len: 32}
            methods: [svd, svdd, svd]
            ratios: [0.2, 1.5, 0, 0.2]
            tasks:
              - {name: wikitext2, data: /nonexistent/wiki.test.raw}
              - wikitext2
              - {name: pbt, data: {text}}
            run: {keep_compressed: maybe, threads: 100000}
            """;
        var e = Invalid(w.Matrix(yaml));
        string f = w.Temp.File("matrix.yaml");
        string[] expected =
        [
            $"{At(f, 1, "/nonexistent")}: models[0].path: model directory '/nonexistent/model' not found",
            $"{At(f, 2, "/nonexistent")}: calibration.dataset: calibration text '/nonexistent/text.txt' not found",
            $"{At(f, 2, "lots")}: calibration.samples: expected an integer, got 'lots'",
            $"{At(f, 3, "svdd")}: methods[1]: unknown method 'svdd'; did you mean 'svd'?; known: svd, asvd, asvd-search, fwsvd, gfwsvd, svdllm, svdllm-update, svdllm-v2, svdllm-v2-alloc, svdllm-v2-trunc, dobi-svd, modegpt, rtn, gptq, gptvq",
            $"{At(f, 3, "svd", 3)}: methods[2]: duplicate cell: SVD is already listed at line 3",
            $"{At(f, 4, "1.5")}: ratios[1]: ratio 1.5 is outside (0, 1): it is the fraction of the linears' parameters removed",
            $"{At(f, 4, "0,")}: ratios[2]: ratio 0 is outside (0, 1): it is the fraction of the linears' parameters removed",
            $"{At(f, 4, "0.2", 2)}: ratios[3]: duplicate cell: ratio 0.2 is already listed at line 4",
            $"{At(f, 6, "/nonexistent")}: tasks[0].data: '/nonexistent/wiki.test.raw' not found (task wikitext2)",
            $"{At(f, 7, "wikitext2")}: tasks[1]: task 'wikitext2' needs data: (the dataset file or directory)",
            $"{At(f, 7, "wikitext2")}: tasks[1]: duplicate cell: task 'wikitext2' is already listed at line 6",
            $"{At(f, 9, "maybe")}: run.keep_compressed: expected true or false, got 'maybe'",
            $"{At(f, 9, "100000")}: run.threads: 100000 must be ≤ 512",
        ];
        foreach (string line in expected) Assert.Contains(line, e.Errors.Select(x => x.ToString()));
        Assert.Contains(e.Errors, x => x.Position.Line == 8 && x.Message.StartsWith("tasks[2]: unknown task 'pbt'; did you mean 'ptb'?", StringComparison.Ordinal));
        Assert.Equal(expected.Length + 1, e.Errors.Count);
    }

    [Fact]
    public void SyntaxErrorsCarryTheirPosition()
    {
        using var w = new MicroWorld();
        var e = Invalid(w.Matrix("models: [default\nratios: [0.2]\n"));
        var error = Assert.Single(e.Errors);
        Assert.Equal(w.Temp.File("matrix.yaml"), error.Position.File);
        Assert.StartsWith("YAML syntax", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AnchorsMergeKeysAndTaskDefaultsApply()
    {
        using var w = new MicroWorld();
        string yaml = """
            paths:
              text: &text {text}
            models: [{model}]
            calibration: {dataset: *text, samples: 4, seq_len: 16}
            methods: [svd]
            ratios: [0.5]
            task_defaults: {seq_len: 24}
            tasks:
              - &wiki {name: wikitext2, data: *text, limit: 2}
              - {<<: *wiki, name: ptb, limit: 5}
            """;
        var m = MatrixLoader.Load(w.Matrix(yaml));
        Assert.Equal(w.TextFile, m.Calibrations[0].Dataset);
        Assert.Equal([("wikitext2", w.TextFile, 2, 24), ("ptb", w.TextFile, 5, 24)],
            m.Tasks.Select(t => (t.Name, t.Data!, t.Limit!.Value, t.SeqLen!.Value)));
        Assert.Equal(4, m.Run.BatchSize);
        Assert.False(m.Run.KeepCompressed);
    }

    [Fact]
    public void MissingPathFromAnAnchorPointsAtTheAnchor()
    {
        using var w = new MicroWorld();
        string yaml = """
            paths:
              model: &m /nowhere/llama-7b
            models: [{name: llama, path: *m}]
            tasks: [{name: wikitext2, data: {text}}]
            """;
        var error = Assert.Single(Invalid(w.Matrix(yaml)).Errors);
        Assert.Equal($"{At(w.Temp.File("matrix.yaml"), 2, "&m")}: models[0].path: model directory '/nowhere/llama-7b' not found (set by the anchor &m: edit it there)", error.ToString());
    }

    [Fact]
    public void AMethodParameterIsCheckedAgainstTheMethodsOwnList()
    {
        using var w = new MicroWorld();
        string Yaml(string methods, string ratios = "ratios: [0.2]") => $$$"""
            models: [{model}]
            calibration: {dataset: {text}, samples: 8, seq_len: 32}
            methods: {{{methods}}}
            {{{ratios}}}
            tasks: [{name: wikitext2, data: {text}}]
            """;
        string Error(string methods, string ratios = "ratios: [0.2]") => Assert.Single(Invalid(w.Matrix(Yaml(methods, ratios))).Errors).ToString();
        Assert.Contains("methods[0].params: unknown parameter 'alpha' of 'svdllm'; it takes quantize, bits, group_size, act_order, static_groups, sym, damp",
            Error("[{name: svdllm, params: {alpha: 0.5}}]"), StringComparison.Ordinal);
        Assert.Contains("methods[0].params: unknown parameter 'act_order' of 'rtn'", Error("[{name: rtn, params: {bits: 4, act_order: true}}]"), StringComparison.Ordinal);
        Assert.Contains("gptq needs methods[0].params.bits (2, 3, 4 or 8)", Error("[{name: gptq, params: {group_size: 128}}]"), StringComparison.Ordinal);
        Assert.Contains("methods[0].params.bits: 'four' is not an integer", Error("[{name: gptq, params: {bits: four}}]"), StringComparison.Ordinal);
        Assert.Contains("2, 3, 4 or 8", Error("[{name: gptq, params: {bits: 5}}]"), StringComparison.Ordinal);
        Assert.Contains("methods[0].params.bits applies to a quantizer: give methods[0].params.quantize", Error("[{name: svdllm, params: {bits: 4}}]"), StringComparison.Ordinal);
        Assert.Contains("methods[0].params.quantize: 'awq' is not a quantizer", Error("[{name: svdllm, params: {quantize: awq, bits: 4}}]"), StringComparison.Ordinal);
        Assert.Contains("methods[0].params.damp is GPTQ's", Error("[{name: svdllm, params: {quantize: rtn, bits: 4, damp: 0.1}}]"), StringComparison.Ordinal);
        // numerics: reference is SVD-LLM's Cholesky truncation's; V2's eigen route has none.
        Assert.Contains("methods[0].params.numerics: 'float16' is not a numerics; expected float64 (the default) or reference",
            Error("[{name: svdllm, params: {numerics: float16}}]"), StringComparison.Ordinal);
        Assert.Contains("unknown parameter 'numerics' of 'svdllm-v2'", Error("[{name: svdllm-v2, params: {numerics: reference}}]"), StringComparison.Ordinal);
        // Quantizers take no ratio: a matrix of quantizers only with ratios is a mistake, and without them is complete.
        Assert.Contains("ratios: only SVD methods take a ratio", Error("[{name: gptq, params: {bits: 4}}]"), StringComparison.Ordinal);
        var quantOnly = MatrixLoader.Load(w.Matrix(Yaml("[{name: gptq, params: {bits: 4}}, {name: rtn, params: {bits: 4}}]", "")));
        Assert.Equal(2, quantOnly.Methods.Count);
    }

    /// <summary>Parameters are stored canonically, so spellings of one configuration are one cell (a duplicate), and other values are other cells with other keys.</summary>
    [Fact]
    public void MethodParametersAreCanonicalSoOneConfigurationIsOneCell()
    {
        using var w = new MicroWorld();
        string Yaml(string methods) => $$$"""
            models: [{model}]
            calibration: {dataset: {text}, samples: 8, seq_len: 32}
            methods: {{{methods}}}
            ratios: [0.2]
            tasks: [{name: wikitext2, data: {text}}]
            """;
        var e = Invalid(w.Matrix(Yaml("[svd, {name: gptq, params: {bits: 4, group_size: 128}}, {name: gptq, params: {bits: \"4\", group_size: 128, sym: false, damp: 0.01}}]")));
        Assert.Contains("methods[2]: duplicate cell: GPTQ 4-bit g128 is already listed at line", Assert.Single(e.Errors).ToString(), StringComparison.Ordinal);

        var spec = MatrixLoader.Load(w.Matrix(Yaml("[{name: gptq, params: {bits: 4, group_size: 128}}, {name: gptq, params: {bits: 3, group_size: 128}}, " +
            "{name: svdllm-v2, params: {quantize: gptq, bits: 4, group_size: 128, act_order: false}}, svdllm-v2]")));
        Assert.Equal(["bits=4,group_size=128", "bits=3,group_size=128", "bits=4,group_size=128,quantize=gptq", ""],
            spec.Methods.Select(m => string.Join(",", m.Parameters.Select(kv => $"{kv.Key}={kv.Value}"))));
        // GFWSVD's own parameters: the default K is no parameter at all, another K is one, and other methods refuse it.
        var g = MatrixLoader.Load(w.Matrix(Yaml("[{name: gfwsvd, params: {gradient_samples: 16}}, {name: gfwsvd, params: {gradient_samples: 32}}]")));
        Assert.Equal(["", "gradient_samples=32"], g.Methods.Select(m => string.Join(",", m.Parameters.Select(kv => $"{kv.Key}={kv.Value}"))));
        Assert.Equal("GFWSVD K32", g.Methods[1].Recipe.Label);
        Assert.Contains("unknown parameter 'gradient_samples' of 'fwsvd'", Assert.Single(Invalid(w.Matrix(Yaml("[{name: fwsvd, params: {gradient_samples: 8}}]"))).Errors).ToString(), StringComparison.Ordinal);
        var plan = MatrixPlan.Build(spec, new ArtifactKeys(w.CacheDir));
        var cells = plan.Cells.Where(c => !c.IsOriginal).ToList();
        // One cell per quantizer (at ratio 0, full rank) and per SVD recipe and ratio; every key distinct.
        Assert.Equal([0.0, 0.0, 0.2, 0.2], cells.Select(c => c.Ratio));
        Assert.Equal(4, cells.Select(c => c.Key).Distinct().Count());
        Assert.Equal(["micro GPTQ 4-bit g128", "micro GPTQ 3-bit g128", "micro SVD-LLM V2 + GPTQ 4-bit g128 @ 0.2", "micro SVD-LLM V2 @ 0.2"],
            cells.Select(c => c.Label.Replace(Path.GetFileName(w.ModelDir), "micro")));
    }

    [Fact]
    public void ExtendsOverlaysTheBaseAndReportsErrorsInTheFileThatWroteThem()
    {
        using var w = new MicroWorld();
        w.Matrix("""
            name: base
            paths: {text: {text}}
            models: [{model}]
            calibration: {dataset: {text}, samples: 8, seq_len: 32, seed: 1}
            methods: [svd, asvd]
            ratios: [0.2]
            tasks: [{name: wikitext2, data: {text}}]
            run: {batch_size: 3, keep_compressed: true}
            """, "base.yaml");
        var child = MatrixLoader.Load(w.Matrix("""
            extends: base.yaml
            name: child
            calibration: {seed: 9}
            methods: [svdllm]
            tasks: [{name: ptb, data: '${paths.text}'}]
            run: {batch_size: 5}
            """, "child.yaml"));
        Assert.Equal("child", child.Name);
        Assert.Equal(new CalibrationSpec(w.TextFile, 8, 32, 9, child.Calibrations[0].Position), child.Calibrations[0]);
        Assert.Equal(["svdllm"], child.Methods.Select(m => m.Name));
        Assert.Equal([0.2], child.Ratios);
        Assert.Equal(("ptb", w.TextFile), (child.Tasks[0].Name, child.Tasks[0].Data));
        Assert.Equal(new RunOptions(null, 5, true, null), child.Run);

        // The base's matrix hash is part of the child's.
        var before = child.Sha256;
        File.AppendAllText(w.Temp.File("base.yaml"), "\n# comment\n");
        Assert.NotEqual(before, MatrixLoader.Load(w.Temp.File("child.yaml")).Sha256);

        // An error inherited from the base names the base file; a bad ${paths.*} names the child.
        w.Matrix("extends: base.yaml\nratios: [2]\ntasks: [{name: ptb, data: '${paths.txt}'}]\n", "bad.yaml");
        File.WriteAllText(w.Temp.File("base.yaml"), File.ReadAllText(w.Temp.File("base.yaml")).Replace("samples: 8", "samples: -1"));
        var e = Invalid(w.Temp.File("bad.yaml"));
        Assert.Contains(e.Errors, x => x.Position.File == w.Temp.File("base.yaml") && x.Position.Line == 4 && x.Message == "calibration.samples: -1 must be ≥ 1");
        Assert.Contains(e.Errors, x => x.Position.ToString() == At(w.Temp.File("bad.yaml"), 2, "2]") && x.Message.StartsWith("ratios[0]: ratio 2 is outside", StringComparison.Ordinal));
        Assert.Contains(e.Errors, x => x.Position.File == w.Temp.File("bad.yaml") && x.Message == "'${paths.txt}' is not a string under paths:; did you mean 'paths.text'?");
    }

    [Fact]
    public void ExtendsCyclesAreRefused()
    {
        using var w = new MicroWorld();
        w.Matrix("extends: b.yaml\n", "a.yaml");
        w.Matrix("extends: a.yaml\n", "b.yaml");
        var error = Assert.Single(Invalid(w.Temp.File("a.yaml")).Errors);
        Assert.StartsWith("extends: cycle", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void DuplicateModelsAreDuplicateCells()
    {
        using var w = new MicroWorld();
        var e = Invalid(w.Matrix("models: [{model}, {name: again, path: {model}}]\ntasks: [{name: wikitext2, data: {text}}]\n"));
        Assert.Contains("duplicate cell: model", Assert.Single(e.Errors).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TheShippedMatricesValidateUpToTheirPlaceholderPaths()
    {
        string root = Repository();
        var d = MatrixLoader.Load(Path.Combine(root, "experiments", "default.yaml"));
        // Seven SVD recipes (SVD-LLM also with LoRA recovery, V2 also with GPTQ-quantized factors) at four ratios, eight quantizers at full rank.
        Assert.Equal(7, d.Methods.Count(m => !SvdLlm.Compression.CompressionMethod.Get(m.Name).IsQuantization));
        Assert.Equal(8, d.Methods.Count(m => SvdLlm.Compression.CompressionMethod.Get(m.Name).IsQuantization));
        Assert.Equal(4, d.Ratios.Count);
        Assert.True(d.Baseline);
        Assert.Equal(["demo_ppl_moby_dick", "demo_ppl_sotu", "demo_ppl_brown", "demo_next_sentence", "demo_cloze", "efficiency"], d.Tasks.Select(t => t.Name));

        // paper-table2 has only placeholder paths: each missing one is named, at its line under paths:.
        var e = Invalid(Path.Combine(root, "experiments", "paper-table2.yaml"));
        Assert.Contains(e.Errors, x => x.Message.StartsWith("models[0].path: model directory '/path/to/EDIT-ME/llama-7b' not found (set by the anchor &llama_7b", StringComparison.Ordinal));
        Assert.Contains(e.Errors, x => x.Message.StartsWith("calibration.dataset: calibration text '/path/to/EDIT-ME/wikitext-2-raw-v1/wiki.train.raw' not found", StringComparison.Ordinal));
        var a = Invalid(Path.Combine(root, "experiments", "ablation-v2.yaml"));
        Assert.Contains(a.Errors, x => x.Position.File.EndsWith("paper-table2.yaml", StringComparison.Ordinal) && x.Message.StartsWith("tasks[0].data: '/path/to/EDIT-ME/wikitext-2-raw-v1/wiki.test.raw' not found", StringComparison.Ordinal));
    }

    internal static string Repository()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "SvdLlm.Experiments.sln"))) dir = Path.GetDirectoryName(dir);
        return dir ?? throw new InvalidOperationException("repository root not found above " + AppContext.BaseDirectory);
    }

    [Fact]
    public void HostileYamlIsRefusedWithAnErrorNotExecuted()
    {
        using var dir = new TempDirectory();
        // A self-referencing anchor: a cycle once aliases resolve (the old loader overflowed the stack).
        string recursive = dir.File("recursive.yaml");
        File.WriteAllText(recursive, "name: r\npaths: &p {x: *p}\n");
        Assert.Contains("recursive", Invalid(recursive).Message, StringComparison.Ordinal);

        // "Billion laughs": ten levels of ten aliases each name 10¹⁰ values in under a kilobyte.
        var laughs = new System.Text.StringBuilder("a0: &a0 [lol]\n");
        for (int l = 1; l <= 10; l++)
            laughs.Append($"a{l}: &a{l} [{string.Join(", ", Enumerable.Repeat($"*a{l - 1}", 10))}]\n");
        string bomb = dir.File("laughs.yaml");
        File.WriteAllText(bomb, laughs.ToString());
        Assert.Contains("more than 100000 values", Invalid(bomb).Message, StringComparison.Ordinal);

        // Deep nesting is refused by a depth limit, not by the stack.
        string deep = dir.File("deep.yaml");
        File.WriteAllText(deep, "name: " + new string('[', 200) + new string(']', 200) + "\n");
        Assert.Contains("nested deeper than 64", Invalid(deep).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void InvalidUtf8IsAnErrorNamingTheByteOffset()
    {
        using var dir = new TempDirectory();
        string f = dir.File("bad.yaml");
        byte[] head = System.Text.Encoding.UTF8.GetBytes("name: ok\nmethods: [svd]\n# caf");
        File.WriteAllBytes(f, [.. head, 0xC3, 0x28, (byte)'\n']);
        var e = Invalid(f);
        Assert.Contains($"{f}:3:1: invalid UTF-8 at byte offset {head.Length}", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AnOversizedFileIsRefusedBeforeParsing()
    {
        using var dir = new TempDirectory();
        string f = dir.File("big.yaml");
        File.WriteAllText(f, "name: big\n# " + new string('x', 2 << 20) + "\n");
        Assert.Contains("a matrix is at most 1048576", Invalid(f).Message, StringComparison.Ordinal);
    }
}
