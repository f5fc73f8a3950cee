using System.Globalization;
using Microsoft.Data.Sqlite;

namespace SvdLlm.Experiments.Store;

/// <summary>What a merge copied.</summary>
public sealed record MergeSummary(int Runs, int Cells, int Metrics, int Evaluations);

/// <summary>
/// Merges shard databases into one. Runs get new ids in the target (a run already merged, recognised by its
/// start time, machine, matrix hash and shard, is mapped to its existing row instead of copied again); cells,
/// compression statistics and artifacts are keyed by content hashes and copied when absent; a metric or
/// evaluation present in both is kept from the more recent evaluation. Merging the same file twice changes nothing.
/// Each source is merged in one transaction; a new target is written under a temporary name and renamed into place.
/// </summary>
public static class MergeResults
{
    public static MergeSummary Merge(string into, IReadOnlyList<string> from)
    {
        // Every source is checked (and brought up to the current schema: it may be older) before the target is
        // opened, so a bad source leaves no target behind, not even an empty one.
        foreach (string f in from)
        {
            if (!File.Exists(f)) throw new FileNotFoundException($"merge-results: source database '{f}' not found", f);
            if (Path.GetFullPath(f) == Path.GetFullPath(into)) throw new ArgumentException($"merge-results: '{f}' is the target database itself");
            using (ResultStore.Open(f)) { }
        }
        // A new target is built under a temporary name and renamed into place whole, so a failure or a kill leaves no
        // half-merged database. An existing one is merged in place, one transaction per source (each lands whole or not
        // at all; rerunning is idempotent): renaming a copy over it would drop what a run wrote to it meanwhile.
        string target = Path.GetFullPath(into);
        if (File.Exists(target)) return MergeInto(target, from);
        string temp = SvdLlm.Models.Data.Leftovers.TempPath(target);
        try
        {
            var summary = MergeInto(temp, from);
            File.Move(temp, target, overwrite: false);
            return summary;
        }
        finally
        {
            foreach (string f in new[] { temp, temp + "-wal", temp + "-shm" })
                if (File.Exists(f)) File.Delete(f);
        }
    }

    private static MergeSummary MergeInto(string into, IReadOnlyList<string> from)
    {
        using var target = ResultStore.Open(into);
        int runs = 0, cells = 0, metrics = 0, evaluations = 0;
        foreach (string source in from)
        {
            var db = target.Connection;
            using (var attach = db.CreateCommand())
            {
                attach.CommandText = "ATTACH DATABASE $p AS src;";
                attach.Parameters.AddWithValue("$p", Path.GetFullPath(source));
                attach.ExecuteNonQuery();
            }
            try
            {
                using var tx = db.BeginTransaction(deferred: false);
                runs += Exec(db, tx, """
                    INSERT INTO runs (started_utc, ended_utc, status, git_commit, git_dirty, machine, os, dotnet, threads, blas, packages_json,
                                      matrix_path, matrix_sha256, shard, stage, log_path, error)
                    SELECT s.started_utc, s.ended_utc, s.status, s.git_commit, s.git_dirty, s.machine, s.os, s.dotnet, s.threads, s.blas, s.packages_json,
                           s.matrix_path, s.matrix_sha256, s.shard, s.stage, s.log_path, s.error
                    FROM src.runs s
                    WHERE NOT EXISTS (SELECT 1 FROM main.runs t WHERE t.started_utc = s.started_utc AND t.machine = s.machine
                                      AND t.matrix_sha256 = s.matrix_sha256 AND t.shard = s.shard AND t.stage = s.stage);
                    """);
                Exec(db, tx, """
                    CREATE TEMP TABLE run_map AS
                    SELECT s.run_id AS old_id, (SELECT t.run_id FROM main.runs t WHERE t.started_utc = s.started_utc AND t.machine = s.machine
                                                AND t.matrix_sha256 = s.matrix_sha256 AND t.shard = s.shard AND t.stage = s.stage) AS new_id
                    FROM src.runs s;
                    """);
                const string Map = "(SELECT new_id FROM temp.run_map WHERE old_id = s.run_id)";
                cells += Exec(db, tx, $"""
                    INSERT INTO cells (cell_key, matrix_name, model, model_key, method, ratio, calibration_json, calibration_key, config_json, run_id, created_utc)
                    SELECT s.cell_key, s.matrix_name, s.model, s.model_key, s.method, s.ratio, s.calibration_json, s.calibration_key, s.config_json, {Map}, s.created_utc
                    FROM src.cells s WHERE true ON CONFLICT (cell_key) DO NOTHING;
                    """);
                Exec(db, tx, """
                    INSERT INTO compression SELECT * FROM src.compression WHERE true ON CONFLICT (cell_key) DO NOTHING;
                    INSERT INTO matrix_stats SELECT * FROM src.matrix_stats WHERE true ON CONFLICT (cell_key, name) DO NOTHING;
                    """);
                // Metrics follow their evaluation: a (cell, task) evaluated more recently in the source replaces the target's.
                evaluations += Exec(db, tx, $"""
                    CREATE TEMP TABLE newer AS
                    SELECT s.cell_key, s.task FROM src.evaluations s
                    LEFT JOIN main.evaluations t ON t.cell_key = s.cell_key AND t.task = s.task
                    WHERE t.cell_key IS NULL OR (s.created_utc > t.created_utc AND s.task_key <> t.task_key);
                    DELETE FROM main.metrics WHERE EXISTS (SELECT 1 FROM temp.newer n WHERE n.cell_key = metrics.cell_key AND n.task = metrics.task);
                    INSERT INTO evaluations (cell_key, task, task_key, params_json, seconds, run_id, created_utc)
                    SELECT s.cell_key, s.task, s.task_key, s.params_json, s.seconds, {Map}, s.created_utc
                    FROM src.evaluations s WHERE EXISTS (SELECT 1 FROM temp.newer n WHERE n.cell_key = s.cell_key AND n.task = s.task)
                    ON CONFLICT (cell_key, task) DO UPDATE SET task_key = excluded.task_key, params_json = excluded.params_json,
                        seconds = excluded.seconds, run_id = excluded.run_id, created_utc = excluded.created_utc;
                    """);
                metrics += Exec(db, tx, $"""
                    INSERT INTO metrics (cell_key, task, metric, value, stderr, n, protocol, run_id, created_utc)
                    SELECT s.cell_key, s.task, s.metric, s.value, s.stderr, s.n, s.protocol, {Map}, s.created_utc
                    FROM src.metrics s WHERE EXISTS (SELECT 1 FROM temp.newer n WHERE n.cell_key = s.cell_key AND n.task = s.task)
                    ON CONFLICT (cell_key, task, metric) DO NOTHING;
                    """);
                Exec(db, tx, $"""
                    INSERT INTO timings (cell_key, stage, seconds, run_id)
                    SELECT s.cell_key, s.stage, s.seconds, {Map} FROM src.timings s WHERE true ON CONFLICT (cell_key, stage) DO NOTHING;
                    INSERT INTO training_curves SELECT * FROM src.training_curves WHERE true ON CONFLICT (cell_key, stage, step) DO NOTHING;
                    INSERT INTO artifacts (artifact_key, kind, seconds, detail, run_id, created_utc)
                    SELECT s.artifact_key, s.kind, s.seconds, s.detail, {Map}, s.created_utc FROM src.artifacts s WHERE true
                    ON CONFLICT (artifact_key, kind) DO NOTHING;
                    DROP TABLE temp.run_map;
                    DROP TABLE temp.newer;
                    """);
                tx.Commit();
            }
            finally
            {
                using var detach = db.CreateCommand();
                detach.CommandText = "DETACH DATABASE src;";
                detach.ExecuteNonQuery();
            }
        }
        return new MergeSummary(runs, cells, metrics, evaluations);
    }

    private static int Exec(SqliteConnection db, SqliteTransaction tx, string sql)
    {
        using var cmd = db.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = sql;
        return Convert.ToInt32(cmd.ExecuteNonQuery(), CultureInfo.InvariantCulture);
    }
}
