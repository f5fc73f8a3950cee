using SvdLlm.Models.Tests;
using SvdLlm.Models.Tests.Reference;

namespace SvdLlm.Cli.Tests;

public class RunMatrixCliTests
{
    [Fact]
    public void Run_matrix_lists_every_matrix_error_with_its_position_and_runs_nothing()
    {
        using var dir = new TempDirectory();
        string matrix = dir.File("m.yaml");
        File.WriteAllText(matrix, "models: [default]\nmethod: [svd]\nratios: [1.5]\ntasks: [demo_ppl_brown]\n");
        string db = dir.File("r.db");
        var (exit, _, err) = CliRunner.Run("run-matrix", "--matrix", matrix, "--db", db, "--quiet");
        Assert.Equal(1, exit);
        Assert.Contains($"{matrix}:2:1: unknown key 'method'; did you mean 'methods'?", err, StringComparison.Ordinal);
        Assert.Contains($"{matrix}:3:10: ratios[0]: ratio 1.5 is outside (0, 1)", err, StringComparison.Ordinal);
        Assert.Contains("problem(s) in", err, StringComparison.Ordinal);
        Assert.False(File.Exists(db));
    }

    [Fact]
    public void Dry_run_prints_the_cells_and_merge_results_merges()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Llama2, seed: 1);
        File.WriteAllText(dir.File("text.txt"), string.Join(" ", Enumerable.Range(0, 500).Select(i => "w" + i % 37)));
        string matrix = dir.File("m.yaml");
        File.WriteAllText(matrix, $"""
            models: [{ckpt.Directory}]
            calibration: {"{"}dataset: text.txt, samples: 4, seq_len: 16{"}"}
            methods: [svd, asvd]
            ratios: [0.5]
            tasks: [{"{"}name: wikitext2, data: text.txt{"}"}]
            run: {"{"}cache_dir: cache{"}"}
            """);
        var (exit, output, err) = CliRunner.Run("run-matrix", "--matrix", matrix, "--db", dir.File("r.db"), "--dry-run", "--shard", "1/1");
        Assert.True(exit == 0, err);
        Assert.Contains("3 cells", output, StringComparison.Ordinal);
        Assert.Contains("would compute: 2 compressed models, 3 evaluations", output, StringComparison.Ordinal);
        Assert.False(File.Exists(dir.File("r.db")), "the dry run created the database");
        SvdLlm.Experiments.Store.ResultStore.Open(dir.File("r.db")).Dispose();

        var (bad, _, badErr) = CliRunner.Run("run-matrix", "--matrix", matrix, "--db", dir.File("r.db"), "--shard", "3/2");
        Assert.Equal(1, bad);
        Assert.Contains("--shard '3/2' must be I/N", badErr, StringComparison.Ordinal);

        var (m, mergeOut, mergeErr) = CliRunner.Run("merge-results", "--into", dir.File("all.db"), "--from", dir.File("r.db") + "," + dir.File("r.db"));
        Assert.True(m == 0, mergeErr);
        Assert.Contains("merged 2 database(s)", mergeOut, StringComparison.Ordinal);
    }
}
