using SvdLlm.Experiments.Matrix;
using SvdLlm.Experiments.Pipeline;
using SvdLlm.Experiments.Store;

namespace SvdLlm.Experiments.Tests;

/// <summary>
/// A matrix model made by fine-tuning another (<c>finetune:</c>): made once and cached, evaluated and compressed like any
/// model, fitting its text better than its source, and refused with the field named when misdeclared.
/// </summary>
public sealed class FineTunedModelPipelineTests
{
    private const string Matrix = """
        name: finetuned
        models:
          - {name: tiny, path: {model}}
          - {name: tiny-ft, finetune: {from: tiny, text: {domain}, steps: 12, lr: 3e-3, batch: 4, samples: 16, seq_len: 32, seed: 1}}
        calibration: {dataset: {text}, samples: 8, seq_len: 32, seed: 3}
        methods: [svd]
        ratios: [0.5]
        baseline: true
        tasks:
          - {name: wikitext2, data: {domain}, limit: 4, seq_len: 32}
        run: {threads: 1, batch_size: 2, keep_compressed: false, cache_dir: {cache}}
        """;

    /// <summary>The fine-tuning text: the micro world's pseudo-English with a shifted word distribution ("whale" → "ship ship").</summary>
    internal static string Domain(MicroWorld w)
    {
        string domain = w.Temp.File("domain.txt");
        File.WriteAllText(domain, MicroWorld.Text(seed: 11, words: 1500).Replace("whale", "ship ship"));
        return domain;
    }

    [Fact]
    public void A_fine_tuned_model_is_made_once_cached_and_fits_its_text_better_than_its_source()
    {
        using var w = new MicroWorld();
        string matrix = w.Matrix(Matrix.Replace("{domain}", Domain(w)));
        string db = w.Temp.File("results.db");

        var dry = new List<string>();
        MatrixRunner.Run(MatrixLoader.Load(matrix), db, new RunnerOptions { DryRun = true, Output = dry.Add });
        Assert.Contains(dry, l => l.Contains("model tiny-ft: not fine-tuned yet (will be fine-tuned from tiny", StringComparison.Ordinal));

        var seen = new List<(string Kind, string Key)>();
        var summary = MatrixRunner.Run(MatrixLoader.Load(matrix), db, new RunnerOptions { AfterArtifact = (k, key) => seen.Add((k, key)) });
        Assert.Equal("finished", summary.Status);
        Assert.Equal(1, seen.Count(s => s.Kind == "model"));         // the fine-tune; the path model needs no training
        Assert.Equal(2, seen.Count(s => s.Kind == "compressed"));    // svd @ 0.5 of each model
        Assert.Equal(4, seen.Count(s => s.Kind == "evaluation"));    // original and svd of each
        var dirs = Directory.GetDirectories(Path.Combine(w.CacheDir, "models"), "tiny-ft-*");
        Assert.Single(dirs);
        Assert.True(File.Exists(Path.Combine(dirs[0], "fine-tuning.json")));

        double Ppl(string model, string method) => ResultsDb.Scalar(db,
            $"SELECT m.value FROM metrics m JOIN cells c ON c.cell_key = m.cell_key WHERE c.model = '{model}' AND c.method = '{method}' AND m.task = 'wikitext2' AND m.metric = 'ppl'");
        double before = Ppl("tiny", "original"), after = Ppl("tiny-ft", "original");
        Assert.True(after < before, $"fine-tuned model's perplexity on its text {after:F2} not below its source's {before:F2}");

        var again = new List<(string Kind, string Key)>();
        MatrixRunner.Run(MatrixLoader.Load(matrix), db, new RunnerOptions { AfterArtifact = (k, key) => again.Add((k, key)) });
        Assert.Empty(again);

        // Another setting is another model: a new key, a new directory, the old one untouched.
        File.WriteAllText(matrix, File.ReadAllText(matrix).Replace("steps: 12", "steps: 6"));
        var third = new List<(string Kind, string Key)>();
        MatrixRunner.Run(MatrixLoader.Load(matrix), db, new RunnerOptions { AfterArtifact = (k, key) => third.Add((k, key)) });
        Assert.Equal(1, third.Count(s => s.Kind == "model"));
        Assert.Equal(2, Directory.GetDirectories(Path.Combine(w.CacheDir, "models"), "tiny-ft-*").Length);
    }

    [Fact]
    public void Misdeclared_fine_tunes_are_refused_with_the_field_named()
    {
        using var w = new MicroWorld();
        var cases = new (string Model, string Message)[]
        {
            ("{name: ft, finetune: {from: nothere, text: {text}, steps: 2}}", "models[1].finetune.from: no earlier models entry is named 'nothere'"),
            ("{name: ft, finetune: {from: tiny, steps: 2}}", "models[1].finetune.text: required"),
            ("{name: ft, finetune: {from: tiny, text: {text}}}", "models[1].finetune.steps: required"),
            ("{name: ft, finetune: {from: tiny, text: demo:wiki, steps: 2}}", "models[1].finetune.text: unknown corpus 'wiki'"),
            ("{name: ft, finetune: {from: tiny, text: {text}, steps: 2, lr: -1}}", "models[1].finetune.lr: -1 must be positive"),
            ("{name: ft, finetune: {from: tiny, text: {text}, steps: 2, epochs: 3}}", "unknown key 'models[1].finetune.epochs'"),
            ("{finetune: {from: tiny, text: {text}, steps: 2}}", "models[1].name: required for a fine-tuned model"),
            ("{name: ft, path: {model}, finetune: {from: tiny, text: {text}, steps: 2}}", "give path: or finetune:, not both"),
            ("{name: tiny, finetune: {from: tiny, text: {text}, steps: 2}}", "duplicate model name 'tiny'"),
        };
        foreach (var (model, message) in cases)
        {
            string matrix = w.Matrix("name: bad\nmodels:\n  - {name: tiny, path: {model}}\n  - " + model
                + "\ntasks: [{name: wikitext2, data: {text}, limit: 2, seq_len: 16}]\nrun: {cache_dir: {cache}}\n");
            var e = Assert.Throws<MatrixValidationException>(() => MatrixLoader.Load(matrix));
            Assert.True(e.Message.Contains(message, StringComparison.Ordinal), $"{model}: expected '{message}' in: {e.Message}");
        }
    }
}

/// <summary>A matrix's <c>delta:</c> block end to end: base, fine-tuned and every delta method at each CR, stored, reported, resumable.</summary>
public sealed class DeltaPipelineTests
{
    private const string Matrix = """
        name: delta
        models:
          - {name: tiny, path: {model}}
          - {name: tiny-ft, finetune: {from: tiny, text: {domain}, steps: 12, lr: 3e-3, batch: 4, samples: 16, seq_len: 32, seed: 1}}
        delta:
          base: tiny
          finetuned: tiny-ft
          methods: [impart, svd, dare, {name: impart, params: {exponent: 0}}, {name: impart-qt, params: {bits: "8x1,3", group_size: 16}}]
          ratios: [2, 4]
        calibration: {dataset: {domain}, samples: 4, seq_len: 32, seed: 3}
        baseline: true
        tasks:
          - {name: wikitext2, data: {domain}, limit: 4, seq_len: 32}
          - {name: ptb, data: {text}, limit: 4, seq_len: 32}
        run: {threads: 1, batch_size: 2, keep_compressed: false, cache_dir: {cache}}
        """;

    [Fact]
    public void Delta_cells_compress_the_pair_evaluate_and_a_rerun_recomputes_nothing()
    {
        using var w = new MicroWorld();
        // Two perplexity sets need two task names: ptb reads the micro world's own text, off the fine-tuning domain.
        string matrix = w.Matrix(Matrix.Replace("{domain}", FineTunedModelPipelineTests.Domain(w)));
        string db = w.Temp.File("results.db");
        var seen = new List<(string Kind, string Key)>();
        var summary = MatrixRunner.Run(MatrixLoader.Load(matrix), db, new RunnerOptions { AfterArtifact = (k, key) => seen.Add((k, key)) });
        Assert.Equal("finished", summary.Status);
        Assert.Equal(1, seen.Count(s => s.Kind == "model"));
        Assert.Equal(10, seen.Count(s => s.Kind == "compressed"));           // 5 methods × 2 CRs
        Assert.Equal(1, seen.Count(s => s.Kind == "calibration"));           // ImPart-Qt's Grams of the fine-tuned model, once for both CRs
        Assert.Equal((2 + 10) * 2, seen.Count(s => s.Kind == "evaluation"));  // both originals and 10 delta cells, 2 tasks each
        Assert.Equal(10, ResultsDb.Scalar(db, "SELECT count(*) FROM compression c JOIN cells x ON x.cell_key = c.cell_key WHERE x.method LIKE 'delta-%'"));
        // ImPart-Qt meets CR_qt in bits: its stored bytes are at most the deltas' float16 bytes over the CR.
        Assert.Equal(2, ResultsDb.Scalar(db, "SELECT count(*) FROM compression c JOIN cells x ON x.cell_key = c.cell_key WHERE x.method = 'delta-impart-qt' AND c.linear_bytes_after * x.ratio <= c.linear_bytes_before + x.ratio"));
        // DARE at CR r keeps about 1/r of the deltas' values: 1 − 1/r of them removed (binomial; a few % either way here).
        Assert.Equal(1, ResultsDb.Scalar(db, "SELECT count(*) FROM compression c JOIN cells x ON x.cell_key = c.cell_key WHERE x.method = 'delta-dare' AND x.ratio = 4 AND c.achieved_linear_ratio BETWEEN 0.72 AND 0.78"));
        Assert.Equal(1, ResultsDb.Scalar(db, "SELECT count(*) FROM compression c JOIN cells x ON x.cell_key = c.cell_key WHERE x.method = 'delta-dare' AND x.ratio = 2 AND c.achieved_linear_ratio BETWEEN 0.47 AND 0.53"));
        Assert.Equal(24, ResultsDb.Scalar(db, "SELECT count(*) FROM metrics WHERE metric = 'ppl' AND value > 1"));
        // ImPart at exponent 0 is truncation at the equal-budget rank: the same perplexity as svd at each CR.
        foreach (double cr in new[] { 2.0, 4.0 })
        {
            double svd = ResultsDb.Scalar(db, $"SELECT m.value FROM metrics m JOIN cells c ON c.cell_key = m.cell_key WHERE c.method = 'delta-svd' AND c.ratio = {cr} AND m.task = 'wikitext2' AND m.metric = 'ppl'");
            double imp0 = ResultsDb.Scalar(db, $"SELECT m.value FROM metrics m JOIN cells c ON c.cell_key = m.cell_key WHERE c.method = 'delta-impart' AND c.ratio = {cr} AND c.config_json LIKE '%exponent%' AND m.task = 'wikitext2' AND m.metric = 'ppl'");
            Assert.Equal(svd, imp0, 4);
        }
        var again = new List<(string Kind, string Key)>();
        MatrixRunner.Run(MatrixLoader.Load(matrix), db, new RunnerOptions { AfterArtifact = (k, key) => again.Add((k, key)) });
        Assert.Empty(again);

        // The report: one delta table (base, fine-tuned, 8 delta rows; both tasks as columns), and no SVD table of the
        // fine-tuned model at a "ratio" of 2 or 4.
        string outDir = w.Temp.Sub("report");
        SvdLlm.Experiments.Reports.ReportGenerator.Generate(db, outDir);
        var csv = File.ReadAllLines(Path.Combine(outDir, "tables", "delta_tiny-ft.csv"));
        Assert.Equal(1 + 2 + 10, csv.Length);
        Assert.StartsWith("finetuned_model,row,method,target_cr,achieved_cr,cell_key,", csv[0]);
        Assert.Contains("wikitext2", csv[0]);
        Assert.Contains("ptb", csv[0]);
        Assert.StartsWith("tiny-ft,tiny (base),original,", csv[1]);
        Assert.StartsWith("tiny-ft,tiny-ft (fine-tuned),original,", csv[2]);
        Assert.StartsWith("tiny-ft,ImPart Δ,delta-impart,2,", csv[3]);   // the catalog's order: ImPart, low-rank, DARE
        Assert.Contains(csv, l => l.StartsWith("tiny-ft,ImPart Δ (exponent=0),delta-impart,4,", StringComparison.Ordinal));
        // ImPart-Qt's CR achieved is in bits (CR_qt): at least the target, where its stored values alone would give far less.
        string qt = csv.Single(l => l.Contains(",delta-impart-qt,4,", StringComparison.Ordinal));
        string achieved = qt[(qt.IndexOf(",delta-impart-qt,4,", StringComparison.Ordinal) + ",delta-impart-qt,4,".Length)..].Split(',')[0];
        Assert.InRange(double.Parse(achieved, System.Globalization.CultureInfo.InvariantCulture), 4, 4.5);
        Assert.DoesNotContain(Directory.GetFiles(Path.Combine(outDir, "tables")), f => Path.GetFileName(f).Contains("400", StringComparison.Ordinal));
        Assert.Contains("id=\"delta\"", File.ReadAllText(Path.Combine(outDir, "report.html")));
        // One plot per perplexity task: a curve per delta method (ImPart with and without exponent 0 are two curves).
        foreach (string task in new[] { "wikitext2", "ptb" })
        {
            string svg = File.ReadAllText(Path.Combine(outDir, "plots", $"delta_tiny-ft_{task}.svg"));
            Assert.Contains("ImPart Δ (exponent=0)", svg);
            Assert.Contains("DARE Δ", svg);
            Assert.Contains("ImPart-Qt Δ", svg);
            Assert.Contains("fine-tuned (", svg);
        }
    }

    [Fact]
    public void Misdeclared_delta_blocks_are_refused_with_the_field_named()
    {
        using var w = new MicroWorld();
        var cases = new (string Delta, string Message)[]
        {
            ("{base: tiny, finetuned: nope, methods: [svd], ratios: [4]}", "delta.finetuned: no models entry is named 'nope'"),
            ("{base: tiny, finetuned: tiny, methods: [svd], ratios: [4]}", "base and finetuned are the same model"),
            ("{base: tiny, finetuned: ft, methods: [lowrank], ratios: [4]}", "unknown delta method 'lowrank'"),
            ("{base: tiny, finetuned: ft, methods: [{name: svd, params: {beta: 0.5}}], ratios: [4]}", "delta.methods[0].params.beta: ImPart's parameter; svd has none"),
            ("{base: tiny, finetuned: ft, methods: [{name: impart, params: {beta: 1.5}}], ratios: [4]}", "delta.methods[0].params.beta: 1.5 must be in [0, 1)"),
            ("{base: tiny, finetuned: ft, methods: [dare], ratios: [0.5]}", "CR 0.5 < 1 cannot be met by DARE"),
            ("{base: tiny, finetuned: ft, methods: [svd]}", "delta.ratios: required"),
            ("{base: tiny, finetuned: ft, methods: [svd], ratios: [4], seed: 2}", "unknown key 'delta.seed'"),
            ("{base: tiny, finetuned: ft, methods: [impart-qt], ratios: [4]}", "calibration: required when impart-qt is listed"),
            ("{base: tiny, finetuned: ft, methods: [{name: impart, params: {bits: 4}}], ratios: [4]}", "params.bits: ImPart-Qt's parameter (name: impart-qt)"),
            ("{base: tiny, finetuned: ft, methods: [{name: impart-qt, params: {bits: 8x2}}], ratios: [4]}", "delta.methods[0].params.bits: --bits '8x2'"),
            ("{base: tiny, finetuned: ft, methods: [{name: impart-qt, params: {group_size: 0}}], ratios: [4]}", "params.group_size: 0 must be a positive integer"),
        };
        foreach (var (delta, message) in cases)
        {
            string matrix = w.Matrix("name: bad\nmodels:\n  - {name: tiny, path: {model}}\n  - {name: ft, path: {model}}\ndelta: " + delta
                + "\ntasks: [{name: wikitext2, data: {text}, limit: 2, seq_len: 16}]\nrun: {cache_dir: {cache}}\n");
            var e = Assert.Throws<MatrixValidationException>(() => MatrixLoader.Load(matrix));
            Assert.True(e.Message.Contains(message, StringComparison.Ordinal), $"{delta}: expected '{message}' in: {e.Message}");
        }
    }
}
