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

    private static double Scalar(string db, string sql)
    {
        using var s = ResultStore.Open(db);
        using var cmd = s.Connection.CreateCommand();
        cmd.CommandText = sql;
        return Convert.ToDouble(cmd.ExecuteScalar());
    }

    [Fact]
    public void A_fine_tuned_model_is_made_once_cached_and_fits_its_text_better_than_its_source()
    {
        using var w = new MicroWorld();
        string domain = w.Temp.File("domain.txt");
        File.WriteAllText(domain, MicroWorld.Text(seed: 11, words: 1500).Replace("whale", "ship ship"));
        string matrix = w.Matrix(Matrix.Replace("{domain}", domain));
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

        double Ppl(string model, string method) => Scalar(db,
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
            Assert.Contains(message, e.Message);
        }
    }
}
