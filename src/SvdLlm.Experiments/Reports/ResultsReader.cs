using Microsoft.Data.Sqlite;
using SvdLlm.Experiments.Store;

namespace SvdLlm.Experiments.Reports;

/// <summary>A results database that cannot be reported on: missing, not a results database, or from a newer schema.</summary>
public sealed class ReportException(string message, Exception? inner = null) : UserInputException(message, inner);

public sealed record RunRow(long RunId, string StartedUtc, string? EndedUtc, string Status, string GitCommit, bool GitDirty,
    string Machine, string Os, string Dotnet, long Threads, string Blas, string PackagesJson, string MatrixPath, string MatrixSha256, string Shard);

public sealed record CellRow(string CellKey, string MatrixName, string Model, string ModelKey, string Method, double Ratio,
    string? CalibrationJson, string? CalibrationKey, string ConfigJson, long RunId, string CreatedUtc);

public sealed record MetricRow(string CellKey, string Task, string Metric, double Value, double? Stderr, long N, string Protocol, long RunId);

public sealed record CompressionRow(string CellKey, long LinearParamsBefore, long LinearParamsAfter, long ModelParamsBefore, long ModelParamsAfter,
    double AchievedLinearRatio, double AchievedModelRatio, string? LargestSvd, double? LargestSvdSeconds, string NotesJson,
    long? LinearBytesBefore = null, long? LinearBytesAfter = null);

public sealed record MatrixStatRow(string CellKey, string Name, long Layer, string MatrixType, long OutFeatures, long InFeatures, long Rank,
    double Ratio, double? TheoreticalLoss, double? MeasuredLoss, string? Note);

public sealed record TimingRow(string CellKey, string Stage, double Seconds, long RunId);

/// <summary>One optimizer step of a training stage run while compressing (LoRA recovery): the loss after it.</summary>
public sealed record TrainingCurveRow(string CellKey, string Stage, long Step, double Loss);

/// <summary>Everything a report is made of, read in one go with a fixed row order so that the output is deterministic.</summary>
public sealed record ResultsSnapshot(
    string DatabaseName, int SchemaVersion,
    IReadOnlyList<RunRow> Runs, IReadOnlyList<CellRow> Cells, IReadOnlyList<MetricRow> Metrics,
    IReadOnlyList<CompressionRow> Compression, IReadOnlyList<MatrixStatRow> MatrixStats, IReadOnlyList<TimingRow> Timings,
    IReadOnlyList<TrainingCurveRow> TrainingCurves)
{
    public bool IsEmpty => Cells.Count == 0;
}

/// <summary>
/// The read side of the results store: plain SQL against schema v1 columns, opened read-only so that a report
/// never changes the database it describes (and can run while RunMatrix is still writing, thanks to WAL).
/// </summary>
public static class ResultsReader
{
    public static ResultsSnapshot Read(string dbPath)
    {
        if (!File.Exists(dbPath))
            throw new ReportException($"results database '{dbPath}' not found (run ./build.sh --target=RunMatrix first, or pass --db PATH)");
        // Pooling off: a pooled connection would keep the file open after the report is written.
        var builder = new SqliteConnectionStringBuilder { DataSource = dbPath, Mode = SqliteOpenMode.ReadOnly, Pooling = false };
        try
        {
            using var connection = new SqliteConnection(builder.ToString());
            connection.Open();
            int version = Convert.ToInt32(Scalar(connection, "PRAGMA user_version"), System.Globalization.CultureInfo.InvariantCulture);
            int known = Schema.Migrations.Count;
            if (version > known)
                throw new ReportException($"results database '{dbPath}' has schema version {version}, newer than this build reads (1..{known}); update svdllm");
            if (version < 1)
                throw new ReportException($"'{dbPath}' is not a results database: PRAGMA user_version is {version}, expected 1..{known}");
            return new ResultsSnapshot(Path.GetFileName(dbPath), version,
                Query(connection, "SELECT run_id, started_utc, ended_utc, status, git_commit, git_dirty, machine, os, dotnet, threads, blas, packages_json, matrix_path, matrix_sha256, shard FROM runs ORDER BY run_id",
                    r => new RunRow(r.GetInt64(0), r.GetString(1), NullableString(r, 2), r.GetString(3), r.GetString(4), r.GetInt64(5) != 0,
                        r.GetString(6), r.GetString(7), r.GetString(8), r.GetInt64(9), r.GetString(10), r.GetString(11), r.GetString(12), r.GetString(13), r.GetString(14))),
                Query(connection, "SELECT cell_key, matrix_name, model, model_key, method, ratio, calibration_json, calibration_key, config_json, run_id, created_utc FROM cells ORDER BY model, model_key, ratio, method, cell_key",
                    r => new CellRow(r.GetString(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetString(4), r.GetDouble(5),
                        NullableString(r, 6), NullableString(r, 7), r.GetString(8), r.GetInt64(9), r.GetString(10))),
                Query(connection, "SELECT cell_key, task, metric, value, stderr, n, protocol, run_id FROM metrics ORDER BY cell_key, task, metric",
                    r => new MetricRow(r.GetString(0), r.GetString(1), r.GetString(2), r.GetDouble(3), NullableDouble(r, 4), r.GetInt64(5), r.GetString(6), r.GetInt64(7))),
                // Bytes arrived with schema v3; an older database (read-only here, so not migrated) has none.
                Query(connection, "SELECT cell_key, linear_params_before, linear_params_after, model_params_before, model_params_after, achieved_linear_ratio, achieved_model_ratio, largest_svd, largest_svd_seconds, notes_json, "
                        + (version >= 3 ? "linear_bytes_before, linear_bytes_after" : "NULL, NULL") + " FROM compression ORDER BY cell_key",
                    r => new CompressionRow(r.GetString(0), r.GetInt64(1), r.GetInt64(2), r.GetInt64(3), r.GetInt64(4), r.GetDouble(5), r.GetDouble(6),
                        NullableString(r, 7), NullableDouble(r, 8), r.GetString(9), NullableLong(r, 10), NullableLong(r, 11))),
                Query(connection, "SELECT cell_key, name, layer, matrix_type, out_features, in_features, rank, ratio, theoretical_loss, measured_loss, note FROM matrix_stats ORDER BY cell_key, layer, matrix_type, name",
                    r => new MatrixStatRow(r.GetString(0), r.GetString(1), r.GetInt64(2), r.GetString(3), r.GetInt64(4), r.GetInt64(5), r.GetInt64(6),
                        r.GetDouble(7), NullableDouble(r, 8), NullableDouble(r, 9), NullableString(r, 10))),
                Query(connection, "SELECT cell_key, stage, seconds, run_id FROM timings ORDER BY cell_key, stage",
                    r => new TimingRow(r.GetString(0), r.GetString(1), r.GetDouble(2), r.GetInt64(3))),
                // Training curves arrived with schema v4.
                version >= 4
                    ? Query(connection, "SELECT cell_key, stage, step, loss FROM training_curves ORDER BY cell_key, stage, step",
                        r => new TrainingCurveRow(r.GetString(0), r.GetString(1), r.GetInt64(2), r.GetDouble(3)))
                    : []);
        }
        catch (SqliteException e)
        {
            throw new ReportException($"cannot read results database '{dbPath}': {e.Message}", e);
        }
    }

    private static object? Scalar(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return command.ExecuteScalar();
    }

    private static List<T> Query<T>(SqliteConnection connection, string sql, Func<SqliteDataReader, T> map)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        using var reader = command.ExecuteReader();
        var rows = new List<T>();
        while (reader.Read())
            rows.Add(map(reader));
        return rows;
    }

    private static string? NullableString(SqliteDataReader r, int i) => r.IsDBNull(i) ? null : r.GetString(i);

    private static double? NullableDouble(SqliteDataReader r, int i) => r.IsDBNull(i) ? null : r.GetDouble(i);

    private static long? NullableLong(SqliteDataReader r, int i) => r.IsDBNull(i) ? null : r.GetInt64(i);
}
