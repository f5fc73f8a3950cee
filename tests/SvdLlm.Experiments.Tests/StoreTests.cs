using Microsoft.Data.Sqlite;
using SvdLlm.Compression;
using SvdLlm.Evaluation.Tasks;
using SvdLlm.Experiments.Store;
using SvdLlm.Models.Tests;

namespace SvdLlm.Experiments.Tests;

public sealed class StoreTests
{
    private static RunInfo Info(string shard = "1/1") => new("abc", false, "machine", "os", "dotnet", 2, "blas", "{}", "/m.yaml", new string('0', 64), shard, "evaluate", null);

    private static CellRecord Cell(string key, string method = "svd") => new(key, "m", "tiny", "mk", method, 0.2, "{}", "ck", "{}");

    private static TaskResult Result(string task, double ppl) => new(task, "protocol", 100, [new TaskMetric("ppl", ppl, null), new TaskMetric("nll", Math.Log(ppl), 0.01)], 0.5);

    private static long Count(SqliteConnection db, string sql)
    {
        using var cmd = db.CreateCommand();
        cmd.CommandText = sql;
        return (long)cmd.ExecuteScalar()!;
    }

    private static long Count(string path, string sql)
    {
        using var s = ResultStore.Open(path);
        return Count(s.Connection, sql);
    }

    [Fact]
    public void MigrationsBringAVersion1DatabaseUpToDateAndWalIsOn()
    {
        using var dir = new TempDirectory();
        string path = dir.File("old.db");
        using (var db = new SqliteConnection($"Data Source={path};Pooling=False"))
        {
            db.Open();
            using var cmd = db.CreateCommand();
            cmd.CommandText = Schema.Migrations[0] + "\nPRAGMA user_version = 1;";
            cmd.ExecuteNonQuery();
        }
        using var store = ResultStore.Open(path);
        Assert.Equal(Schema.Migrations.Count, ResultStore.UserVersion(store.Connection));
        using var mode = store.Connection.CreateCommand();
        mode.CommandText = "PRAGMA journal_mode;";
        Assert.Equal("wal", (string)mode.ExecuteScalar()!);
        Assert.Equal(0, Count(store.Connection, "SELECT count(*) FROM evaluations"));
        // Reopening applies nothing again (a second CREATE TABLE would throw).
        store.Dispose();
        using var again = ResultStore.Open(path);
        Assert.Equal(Schema.Migrations.Count, ResultStore.UserVersion(again.Connection));
    }

    [Fact]
    public void RecordingTheSameResultTwiceLeavesOneRowAndNewParametersReplaceTheOldMetrics()
    {
        using var dir = new TempDirectory();
        using var store = ResultStore.Open(dir.File("r.db"));
        long run = store.BeginRun(Info());
        store.RecordEvaluation(Cell("c1"), "k1", "{}", Result("wikitext2", 10), run);
        store.RecordEvaluation(Cell("c1"), "k1", "{}", Result("wikitext2", 10), run);
        Assert.Equal(1, Count(store.Connection, "SELECT count(*) FROM cells"));
        Assert.Equal(2, Count(store.Connection, "SELECT count(*) FROM metrics"));
        store.RecordEvaluation(Cell("c1"), "k2", "{}", new TaskResult("wikitext2", "p", 5, [new TaskMetric("ppl", 12, null)], 0.1), run);
        Assert.Equal(1, Count(store.Connection, "SELECT count(*) FROM metrics"));
        Assert.Equal("k2", store.Evaluations()[("c1", "wikitext2")]);
        Assert.Throws<InvalidOperationException>(() => store.RecordEvaluation(Cell("c1"), "k3", "{}", Result("ptb", double.NaN), run));
        Assert.Equal(0, Count(store.Connection, "SELECT count(*) FROM metrics WHERE task = 'ptb'"));
        store.EndRun(run, "finished");
        Assert.Equal(1, Count(store.Connection, "SELECT count(*) FROM runs WHERE status = 'finished' AND ended_utc IS NOT NULL"));
    }

    [Fact]
    public void TwoWritersOnOneDatabaseNeitherCorruptNorDuplicate()
    {
        using var dir = new TempDirectory();
        string path = dir.File("shared.db");
        // Both writers start on a file that does not exist yet: the migration itself is contended too.
        const int Cells = 40;
        var errors = new List<Exception>();
        var threads = Enumerable.Range(0, 2).Select(t => new Thread(() =>
        {
            try
            {
                using var store = ResultStore.Open(path);
                long run = store.BeginRun(Info($"{t + 1}/2"));
                // Overlapping work: both record every cell (as two processes running the same matrix would).
                for (int i = 0; i < Cells; i++)
                {
                    int c = t == 0 ? i : Cells - 1 - i;
                    store.RecordEvaluation(Cell($"cell{c}"), $"key{c}", "{}", Result("wikitext2", 10 + c), run);
                    store.RecordArtifact($"key{c}", "evaluation", 0.1, "", run);
                }
                store.EndRun(run, "finished");
            }
            catch (Exception e)
            {
                lock (errors) errors.Add(e);
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        Assert.Empty(errors);
        using var check = ResultStore.Open(path);
        using (var cmd = check.Connection.CreateCommand())
        {
            cmd.CommandText = "PRAGMA integrity_check;";
            Assert.Equal("ok", (string)cmd.ExecuteScalar()!);
        }
        Assert.Equal(2, Count(check.Connection, "SELECT count(*) FROM runs"));
        Assert.Equal(Cells, Count(check.Connection, "SELECT count(*) FROM cells"));
        Assert.Equal(Cells, Count(check.Connection, "SELECT count(*) FROM evaluations"));
        Assert.Equal(2 * Cells, Count(check.Connection, "SELECT count(*) FROM metrics"));
        Assert.Equal(Cells, Count(check.Connection, "SELECT count(*) FROM artifacts"));
        for (int c = 0; c < Cells; c += 13)
            Assert.Equal(10.0 + c, (double)new SqliteCommand($"SELECT value FROM metrics WHERE cell_key = 'cell{c}' AND metric = 'ppl'", check.Connection).ExecuteScalar()!);
    }

    [Fact]
    public void MergingShardDatabasesCopiesEverythingOnceAndIsIdempotent()
    {
        using var dir = new TempDirectory();
        string a = dir.File("a.db"), b = dir.File("b.db"), into = dir.File("all.db");
        using (var s = ResultStore.Open(a))
        {
            long run = s.BeginRun(Info("1/2"));
            s.RecordEvaluation(Cell("c1"), "k1", "{}", Result("wikitext2", 11), run);
            s.RecordEvaluation(Cell("c2"), "k2", "{}", Result("wikitext2", 12), run);
            s.EndRun(run, "finished");
        }
        Thread.Sleep(5); // distinct start times, as two real shards have
        using (var s = ResultStore.Open(b))
        {
            long run = s.BeginRun(Info("2/2"));
            s.RecordEvaluation(Cell("c3"), "k3", "{}", Result("wikitext2", 13), run);
            // A compressed cell that trained while compressing: its loss per step comes along.
            var report = new SvdLlm.Compression.CompressionReport { Method = "svdllm", Ratio = 0.4, LinearParamsBefore = 100, LinearParamsAfter = 60, ModelParamsBefore = 200, ModelParamsAfter = 160 };
            report.TrainingCurves["lora_u"] = [4.5, 4.4, 4.3];
            report.TrainingCurves["lora_v"] = [4.2, 4.1];
            s.RecordCompression(Cell("c3"), report, run);
            // c2 again with other task parameters, later: the merge keeps this one.
            s.RecordEvaluation(Cell("c2"), "k2b", "{}", new TaskResult("wikitext2", "p", 7, [new TaskMetric("ppl", 22, null)], 0.1), run);
            s.EndRun(run, "finished");
        }
        MergeResults.Merge(into, [a, b]);
        void Check()
        {
            Assert.Equal(2, Count(into, "SELECT count(*) FROM runs"));
            Assert.Equal(3, Count(into, "SELECT count(*) FROM cells"));
            Assert.Equal(3, Count(into, "SELECT count(*) FROM evaluations"));
            Assert.Equal(1, Count(into, "SELECT count(*) FROM metrics WHERE cell_key = 'c2'"));
            Assert.Equal(22, Count(into, "SELECT CAST(value AS INTEGER) FROM metrics WHERE cell_key = 'c2' AND metric = 'ppl'"));
            Assert.Equal(2, Count(into, "SELECT count(*) FROM metrics WHERE cell_key = 'c1'"));
            Assert.Equal(3, Count(into, "SELECT count(*) FROM training_curves WHERE cell_key = 'c3' AND stage = 'lora_u'"));
            Assert.Equal(41, Count(into, "SELECT CAST(loss * 10 AS INTEGER) FROM training_curves WHERE cell_key = 'c3' AND stage = 'lora_v' AND step = 2"));
            // Every row points at a run of the merged database.
            Assert.Equal(0, Count(into, "SELECT count(*) FROM metrics WHERE run_id NOT IN (SELECT run_id FROM runs)"));
            Assert.Equal(0, Count(into, "SELECT count(*) FROM cells WHERE run_id NOT IN (SELECT run_id FROM runs)"));
        }
        Check();
        MergeResults.Merge(into, [b, a]);
        Check();
    }

    /// <summary>SQL on a file through a plain connection, as another application would write it.</summary>
    private static void ExecRaw(string path, string sql)
    {
        using var c = new SqliteConnection($"Data Source={path};Pooling=False");
        c.Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        cmd.ExecuteNonQuery();
    }

    [Fact]
    public void WhatIsNotOurDatabaseIsRefusedAndLeftAsItWas()
    {
        using var dir = new TempDirectory();
        string text = dir.File("notes.txt");
        File.WriteAllText(text, "these are my notes, not a database\n");
        string foreign = dir.File("foreign.db");
        ExecRaw(foreign, "CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO photos (name) VALUES ('cat');");
        string newer = dir.File("newer.db");
        ResultStore.Open(newer).Dispose();
        ExecRaw(newer, "PRAGMA user_version = 999;");
        string folder = dir.Sub("a-directory");

        foreach (var (path, expected) in new[] { (text, "not an SQLite database"), (foreign, "another application"), (newer, "schema version 999 is newer"), (folder, "is a directory") })
        {
            byte[]? before = File.Exists(path) ? File.ReadAllBytes(path) : null;
            var e = Assert.Throws<ResultDatabaseException>(() => ResultStore.Open(path));
            Assert.StartsWith(path + ": ", e.Message, StringComparison.Ordinal);
            Assert.Contains(expected, e.Message, StringComparison.Ordinal);
            if (before is not null) Assert.Equal(before, File.ReadAllBytes(path));
        }
        // The foreign file was not switched to WAL (that leaves a -wal beside it and rewrites its header).
        Assert.False(File.Exists(foreign + "-wal"));
    }

    [Fact]
    public void AMergeWithABadSourceLeavesNoTarget()
    {
        using var dir = new TempDirectory();
        string good = dir.File("good.db"), bad = dir.File("bad.db"), into = dir.File("all.db");
        ResultStore.Open(good).Dispose();
        File.WriteAllText(bad, "not a database");
        Assert.Throws<ResultDatabaseException>(() => MergeResults.Merge(into, [good, bad]));
        Assert.False(File.Exists(into), "the failed merge created its target");

        // A good merge into a new target appears whole under its name and leaves no temporary behind.
        var summary = MergeResults.Merge(into, [good]);
        Assert.True(File.Exists(into));
        Assert.Empty(Directory.GetFiles(dir.Path, "all.db.tmp-*"));
        Assert.Equal(0, MergeResults.Merge(into, [good]).Runs);
    }
}
