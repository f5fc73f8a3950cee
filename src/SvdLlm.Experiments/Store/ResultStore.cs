using System.Globalization;
using System.Text.Json;
using Microsoft.Data.Sqlite;
using SvdLlm.Compression;
using SvdLlm.Evaluation.Tasks;

namespace SvdLlm.Experiments.Store;

/// <summary>Provenance of one run-matrix invocation (a row of <c>runs</c>).</summary>
public sealed record RunInfo(string GitCommit, bool GitDirty, string Machine, string Os, string DotNet, int Threads, string Blas,
    string PackagesJson, string MatrixPath, string MatrixSha256, string Shard, string Stage, string? LogPath);

/// <summary>A cell as recorded in <c>cells</c>.</summary>
public sealed record CellRecord(string CellKey, string MatrixName, string Model, string ModelKey, string Method, double Ratio,
    string? CalibrationJson, string? CalibrationKey, string ConfigJson);

/// <summary>
/// The results database. Opening applies the schema's migrations (PRAGMA user_version), turns on WAL and a
/// busy timeout, so several processes (shards) can write one file: each result is one IMMEDIATE transaction
/// (the write lock is taken up front, so two writers never deadlock upgrading read locks), and every write is
/// an upsert keyed by content hashes, so recording a result twice leaves one row.
/// </summary>
public sealed class ResultStore : IDisposable
{
    private const int BusyTimeoutMs = 60_000;
    private readonly SqliteConnection _db;

    private ResultStore(SqliteConnection db) => _db = db;

    public string Path { get; private init; } = "";

    public SqliteConnection Connection => _db;

    public static ResultStore Open(string path)
    {
        string full = System.IO.Path.GetFullPath(path);
        CheckBeforeWriting(full);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(full)!);
        var db = new SqliteConnection(new SqliteConnectionStringBuilder
        {
            DataSource = full,
            Mode = SqliteOpenMode.ReadWriteCreate,
            Pooling = false,
            DefaultTimeout = BusyTimeoutMs / 1000,
        }.ToString());
        db.Open();
        Exec(db, $"PRAGMA busy_timeout = {BusyTimeoutMs};");
        Exec(db, "PRAGMA journal_mode = WAL;");
        Exec(db, "PRAGMA foreign_keys = ON;");
        Exec(db, "PRAGMA synchronous = NORMAL;");
        Migrate(db, full);
        return new ResultStore(db) { Path = full };
    }

    /// <summary>
    /// For looking only (a dry run): the database at <paramref name="path"/> when it exists, else an empty one in
    /// memory with the current schema, so that asking what a run would do never creates a file.
    /// </summary>
    public static ResultStore OpenExistingOrEmpty(string path)
    {
        string full = System.IO.Path.GetFullPath(path);
        if (File.Exists(full)) return Open(full);
        var db = new SqliteConnection("Data Source=:memory:;Pooling=False");
        db.Open();
        Exec(db, "PRAGMA foreign_keys = ON;");
        Migrate(db, full);
        return new ResultStore(db) { Path = full };
    }

    private static readonly byte[] SqliteHeader = "SQLite format 3\0"u8.ToArray();

    /// <summary>
    /// Refuses, before anything is written (the WAL switch included), a path that is a directory, a file that is not
    /// SQLite, an SQLite file of another application, or a results database of a newer schema.
    /// </summary>
    private static void CheckBeforeWriting(string full)
    {
        if (Directory.Exists(full)) throw new ResultDatabaseException($"{full}: is a directory; --db names the results database file");
        if (!File.Exists(full) || new FileInfo(full).Length == 0) return;
        var head = new byte[SqliteHeader.Length];
        int read;
        using (var f = new FileStream(full, FileMode.Open, FileAccess.Read, FileShare.ReadWrite)) read = f.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        if (read < head.Length || !head.AsSpan().SequenceEqual(SqliteHeader))
            throw new ResultDatabaseException($"{full}: not an SQLite database (its first bytes are not the SQLite header); --db names a results database or a new file");
        using var db = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = full, Mode = SqliteOpenMode.ReadOnly, Pooling = false }.ToString());
        db.Open();
        int version = UserVersion(db);
        if (version > Schema.Migrations.Count) throw NewerSchema(full, version);
        if (version == 0 && Convert.ToInt64(Scalar(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table';"), CultureInfo.InvariantCulture) > 0)
            throw new ResultDatabaseException($"{full}: an SQLite database of another application (it has tables but no results schema version); refusing to add tables to it");
    }

    private static ResultDatabaseException NewerSchema(string path, int version) =>
        new($"{path}: results schema version {version} is newer than this build's {Schema.Migrations.Count}; update svdllm");

    public static int UserVersion(SqliteConnection db) => Convert.ToInt32(Scalar(db, "PRAGMA user_version;"), CultureInfo.InvariantCulture);

    private static void Migrate(SqliteConnection db, string path)
    {
        var migrations = Schema.Migrations;
        if (UserVersion(db) == migrations.Count) return;
        // Inside the write lock: a second process opening the same new file waits here, then sees the version
        // the first one reached and applies nothing twice.
        using var tx = db.BeginTransaction(deferred: false);
        int version = UserVersion(db);
        if (version > migrations.Count) throw NewerSchema(path, version);
        for (int v = version; v < migrations.Count; v++)
        {
            using var cmd = db.CreateCommand();
            cmd.Transaction = tx;
            cmd.CommandText = migrations[v] + $"\nPRAGMA user_version = {v + 1};";
            cmd.ExecuteNonQuery();
        }
        tx.Commit();
    }

    public static string Now() => DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture);

    public long BeginRun(RunInfo r)
    {
        using var tx = _db.BeginTransaction(deferred: false);
        using var cmd = Command(tx, """
            INSERT INTO runs (started_utc, status, git_commit, git_dirty, machine, os, dotnet, threads, blas, packages_json, matrix_path, matrix_sha256, shard, stage, log_path)
            VALUES ($started, 'running', $git, $dirty, $machine, $os, $dotnet, $threads, $blas, $packages, $matrix, $sha, $shard, $stage, $log)
            RETURNING run_id;
            """,
            ("$started", Now()), ("$git", r.GitCommit), ("$dirty", r.GitDirty ? 1 : 0), ("$machine", r.Machine), ("$os", r.Os), ("$dotnet", r.DotNet),
            ("$threads", r.Threads), ("$blas", r.Blas), ("$packages", r.PackagesJson), ("$matrix", r.MatrixPath), ("$sha", r.MatrixSha256),
            ("$shard", r.Shard), ("$stage", r.Stage), ("$log", r.LogPath));
        long id = Convert.ToInt64(cmd.ExecuteScalar(), CultureInfo.InvariantCulture);
        tx.Commit();
        return id;
    }

    public void EndRun(long runId, string status, string? error = null)
    {
        using var tx = _db.BeginTransaction(deferred: false);
        using var cmd = Command(tx, "UPDATE runs SET status = $s, ended_utc = $t, error = $e WHERE run_id = $id;",
            ("$s", status), ("$t", Now()), ("$e", error), ("$id", runId));
        cmd.ExecuteNonQuery();
        tx.Commit();
    }

    /// <summary>Runs of <paramref name="machine"/> whose row still says running: (run id, log path).</summary>
    public List<(long RunId, string? LogPath)> RunningRuns(string machine)
    {
        var result = new List<(long, string?)>();
        using var cmd = Command(null, "SELECT run_id, log_path FROM runs WHERE status = 'running' AND machine = $m ORDER BY run_id;", ("$m", machine));
        using var r = cmd.ExecuteReader();
        while (r.Read()) result.Add((r.GetInt64(0), r.IsDBNull(1) ? null : r.GetString(1)));
        return result;
    }

    /// <summary>Marks a run interrupted if its row still says running (a run that ended meanwhile keeps its status).</summary>
    public bool MarkInterrupted(long runId, string error)
    {
        using var tx = _db.BeginTransaction(deferred: false);
        using var cmd = Command(tx, "UPDATE runs SET status = 'interrupted', ended_utc = $t, error = $e WHERE run_id = $id AND status = 'running';",
            ("$t", Now()), ("$e", error), ("$id", runId));
        int changed = cmd.ExecuteNonQuery();
        tx.Commit();
        return changed == 1;
    }

    /// <summary>Keys of the evaluations stored: (cell, task) → task key.</summary>
    public Dictionary<(string Cell, string Task), string> Evaluations()
    {
        var result = new Dictionary<(string, string), string>();
        using var cmd = Command(null, "SELECT cell_key, task, task_key FROM evaluations;");
        using var r = cmd.ExecuteReader();
        while (r.Read()) result[(r.GetString(0), r.GetString(1))] = r.GetString(2);
        return result;
    }

    /// <summary>The stored evaluations of one cell: task → task key.</summary>
    public Dictionary<string, string> EvaluationsOf(string cellKey)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        using var cmd = Command(null, "SELECT task, task_key FROM evaluations WHERE cell_key = $cell;", ("$cell", cellKey));
        using var r = cmd.ExecuteReader();
        while (r.Read()) result[r.GetString(0)] = r.GetString(1);
        return result;
    }

    /// <summary>Are the compression statistics of this cell stored?</summary>
    public bool IsCompressed(string cellKey)
    {
        using var cmd = Command(null, "SELECT 1 FROM compression WHERE cell_key = $cell;", ("$cell", cellKey));
        return cmd.ExecuteScalar() is not null;
    }

    /// <summary>Cells whose compression statistics are stored.</summary>
    public HashSet<string> CompressedCells()
    {
        var result = new HashSet<string>(StringComparer.Ordinal);
        using var cmd = Command(null, "SELECT cell_key FROM compression;");
        using var r = cmd.ExecuteReader();
        while (r.Read()) result.Add(r.GetString(0));
        return result;
    }

    /// <summary>Records a computed artifact and its wall time (idempotent: the first record stays).</summary>
    public void RecordArtifact(string key, string kind, double seconds, string detail, long runId)
    {
        using var tx = _db.BeginTransaction(deferred: false);
        using var cmd = Command(tx, """
            INSERT INTO artifacts (artifact_key, kind, seconds, detail, run_id, created_utc) VALUES ($k, $kind, $s, $d, $run, $t)
            ON CONFLICT (artifact_key, kind) DO NOTHING;
            """, ("$k", key), ("$kind", kind), ("$s", seconds), ("$d", detail), ("$run", runId), ("$t", Now()));
        cmd.ExecuteNonQuery();
        tx.Commit();
    }

    /// <summary>A compressed cell: its cells row, compression totals, per-matrix statistics and stage timings, in one transaction.</summary>
    public void RecordCompression(CellRecord cell, CompressionReport report, long runId)
    {
        using var tx = _db.BeginTransaction(deferred: false);
        UpsertCell(tx, cell, runId);
        // Only what the schema's notes_json is for (clipping, jitter, fallbacks): a JSON array of strings. The
        // calibration behind the cell is in cells.calibration_json.
        string notes = JsonSerializer.Serialize(report.Notes);
        using (var cmd = Command(tx, """
            INSERT INTO compression (cell_key, linear_params_before, linear_params_after, model_params_before, model_params_after,
                                     achieved_linear_ratio, achieved_model_ratio, largest_svd, largest_svd_seconds, notes_json,
                                     linear_bytes_before, linear_bytes_after)
            VALUES ($k, $lb, $la, $mb, $ma, $alr, $amr, $ls, $lss, $n, $bb, $ba)
            ON CONFLICT (cell_key) DO UPDATE SET linear_params_before = excluded.linear_params_before, linear_params_after = excluded.linear_params_after,
                model_params_before = excluded.model_params_before, model_params_after = excluded.model_params_after,
                achieved_linear_ratio = excluded.achieved_linear_ratio, achieved_model_ratio = excluded.achieved_model_ratio,
                largest_svd = excluded.largest_svd, largest_svd_seconds = excluded.largest_svd_seconds, notes_json = excluded.notes_json,
                linear_bytes_before = excluded.linear_bytes_before, linear_bytes_after = excluded.linear_bytes_after;
            """,
            ("$k", cell.CellKey), ("$bb", report.LinearBytesBefore), ("$ba", report.LinearBytesAfter), ("$lb", report.LinearParamsBefore), ("$la", report.LinearParamsAfter), ("$mb", report.ModelParamsBefore),
            ("$ma", report.ModelParamsAfter), ("$alr", report.AchievedLinearRatio), ("$amr", report.AchievedModelRatio),
            ("$ls", report.LargestSvdMatrix), ("$lss", report.LargestSvdSeconds), ("$n", notes)))
            cmd.ExecuteNonQuery();
        foreach (var m in report.Matrices)
        {
            using var cmd = Command(tx, """
                INSERT INTO matrix_stats (cell_key, name, layer, matrix_type, out_features, in_features, rank, ratio, theoretical_loss, measured_loss, note)
                VALUES ($k, $name, $layer, $type, $out, $in, $rank, $ratio, $tl, $ml, $note)
                ON CONFLICT (cell_key, name) DO UPDATE SET layer = excluded.layer, matrix_type = excluded.matrix_type, out_features = excluded.out_features,
                    in_features = excluded.in_features, rank = excluded.rank, ratio = excluded.ratio, theoretical_loss = excluded.theoretical_loss,
                    measured_loss = excluded.measured_loss, note = excluded.note;
                """,
                ("$k", cell.CellKey), ("$name", m.Name), ("$layer", LayerOf(m.Name)), ("$type", m.Group), ("$out", m.Shape[0]), ("$in", m.Shape[1]),
                ("$rank", m.Rank), ("$ratio", m.AllocatedRatio), ("$tl", Finite(m.TheoreticalLoss)), ("$ml", Finite(m.MeasuredLoss)), ("$note", m.Note));
            cmd.ExecuteNonQuery();
        }
        foreach (var (stage, seconds) in report.StageSeconds) UpsertTiming(tx, cell.CellKey, stage, seconds, runId);
        using (var del = Command(tx, "DELETE FROM training_curves WHERE cell_key = $k;", ("$k", cell.CellKey))) del.ExecuteNonQuery();
        foreach (var (stage, losses) in report.TrainingCurves)
            for (int i = 0; i < losses.Count; i++)
            {
                if (!double.IsFinite(losses[i])) throw new InvalidOperationException($"cell {cell.CellKey}: {stage} loss at step {i + 1} is {losses[i]}; not stored");
                using var cmd = Command(tx, "INSERT INTO training_curves (cell_key, stage, step, loss) VALUES ($k, $s, $i, $l);",
                    ("$k", cell.CellKey), ("$s", stage), ("$i", i + 1), ("$l", losses[i]));
                cmd.ExecuteNonQuery();
            }
        tx.Commit();
    }


    /// <summary>
    /// One task's result on one cell, in one transaction: the cells row, the metrics (replacing those of an
    /// earlier evaluation with other parameters), the evaluations row and the timing.
    /// </summary>
    public void RecordEvaluation(CellRecord cell, string taskKey, string paramsJson, TaskResult result, long runId)
    {
        foreach (var m in result.Metrics)
            if (!double.IsFinite(m.Value)) throw new InvalidOperationException($"task {result.Task} returned a non-finite {m.Name} ({m.Value}) for cell {cell.CellKey}; not stored");
        using var tx = _db.BeginTransaction(deferred: false);
        UpsertCell(tx, cell, runId);
        using (var del = Command(tx, "DELETE FROM metrics WHERE cell_key = $k AND task = $task;", ("$k", cell.CellKey), ("$task", result.Task)))
            del.ExecuteNonQuery();
        string now = Now();
        foreach (var m in result.Metrics)
        {
            using var cmd = Command(tx, """
                INSERT INTO metrics (cell_key, task, metric, value, stderr, n, protocol, run_id, created_utc)
                VALUES ($k, $task, $metric, $v, $se, $n, $p, $run, $t);
                """,
                ("$k", cell.CellKey), ("$task", result.Task), ("$metric", m.Name), ("$v", m.Value), ("$se", m.Stderr is double s && double.IsFinite(s) ? s : null),
                ("$n", result.N), ("$p", result.Protocol), ("$run", runId), ("$t", now));
            cmd.ExecuteNonQuery();
        }
        using (var cmd = Command(tx, """
            INSERT INTO evaluations (cell_key, task, task_key, params_json, seconds, run_id, created_utc) VALUES ($k, $task, $tk, $p, $s, $run, $t)
            ON CONFLICT (cell_key, task) DO UPDATE SET task_key = excluded.task_key, params_json = excluded.params_json, seconds = excluded.seconds,
                run_id = excluded.run_id, created_utc = excluded.created_utc;
            """, ("$k", cell.CellKey), ("$task", result.Task), ("$tk", taskKey), ("$p", paramsJson), ("$s", result.Seconds), ("$run", runId), ("$t", now)))
            cmd.ExecuteNonQuery();
        UpsertTiming(tx, cell.CellKey, "eval:" + result.Task, result.Seconds, runId);
        tx.Commit();
    }

    private void UpsertCell(SqliteTransaction tx, CellRecord c, long runId)
    {
        using var cmd = Command(tx, """
            INSERT INTO cells (cell_key, matrix_name, model, model_key, method, ratio, calibration_json, calibration_key, config_json, run_id, created_utc)
            VALUES ($k, $matrix, $model, $mk, $method, $ratio, $cj, $ck, $config, $run, $t)
            ON CONFLICT (cell_key) DO NOTHING;
            """,
            ("$k", c.CellKey), ("$matrix", c.MatrixName), ("$model", c.Model), ("$mk", c.ModelKey), ("$method", c.Method), ("$ratio", c.Ratio),
            ("$cj", c.CalibrationJson), ("$ck", c.CalibrationKey), ("$config", c.ConfigJson), ("$run", runId), ("$t", Now()));
        cmd.ExecuteNonQuery();
    }

    private void UpsertTiming(SqliteTransaction tx, string cellKey, string stage, double seconds, long runId)
    {
        using var cmd = Command(tx, """
            INSERT INTO timings (cell_key, stage, seconds, run_id) VALUES ($k, $stage, $s, $run)
            ON CONFLICT (cell_key, stage) DO UPDATE SET seconds = excluded.seconds, run_id = excluded.run_id;
            """, ("$k", cellKey), ("$stage", stage), ("$s", seconds), ("$run", runId));
        cmd.ExecuteNonQuery();
    }

    private static object? Finite(double v) => double.IsFinite(v) ? v : null;

    /// <summary>"model.layers.3.self_attn.q_proj" → 3; −1 when the name has no layer index.</summary>
    private static int LayerOf(string name)
    {
        var parts = name.Split('.');
        for (int i = 0; i + 1 < parts.Length; i++)
            if (parts[i] is "layers" or "layer" or "h" && int.TryParse(parts[i + 1], NumberStyles.None, CultureInfo.InvariantCulture, out int l)) return l;
        return -1;
    }

    internal SqliteCommand Command(SqliteTransaction? tx, string sql, params (string Name, object? Value)[] parameters) => Command(_db, tx, sql, parameters);

    internal static SqliteCommand Command(SqliteConnection db, SqliteTransaction? tx, string sql, params (string Name, object? Value)[] parameters)
    {
        var cmd = db.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = sql;
        foreach (var (n, v) in parameters) cmd.Parameters.AddWithValue(n, v ?? DBNull.Value);
        return cmd;
    }

    private static void Exec(SqliteConnection db, string sql)
    {
        using var cmd = db.CreateCommand();
        cmd.CommandText = sql;
        cmd.ExecuteNonQuery();
    }

    private static object? Scalar(SqliteConnection db, string sql)
    {
        using var cmd = db.CreateCommand();
        cmd.CommandText = sql;
        return cmd.ExecuteScalar();
    }

    public void Dispose() => _db.Dispose();
}

/// <summary>A results database that cannot be used (wrong kind of file, newer schema): the user's input, reported in one line.</summary>
public sealed class ResultDatabaseException(string message) : UserInputException(message);
