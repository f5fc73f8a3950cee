using Microsoft.Data.Sqlite;
using SvdLlm.Experiments.Store;
using SvdLlm.Models.Tests;

namespace SvdLlm.Cli.Tests;

/// <summary><c>svdllm report</c> as users call it: exit codes and the one-line messages.</summary>
public class ReportCommandTests
{
    private static (int Exit, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    [Fact]
    public void Missing_database_is_one_clear_error()
    {
        using var dir = new TempDirectory();
        var (exit, _, err) = Run("report", "--db", dir.File("absent.db"), "--out", dir.Sub("out"));
        Assert.Equal(1, exit);
        Assert.StartsWith("error: results database '", err);
        Assert.Contains("absent.db' not found", err);
        Assert.False(File.Exists(Path.Combine(dir.Path, "out", "report.html")));
    }

    [Fact]
    public void Empty_database_writes_a_report_saying_there_are_no_results()
    {
        using var dir = new TempDirectory();
        string db = dir.File("results.db");
        using (var c = new SqliteConnection($"Data Source={db};Pooling=False"))
        {
            c.Open();
            foreach (string sql in Schema.Migrations.Append($"PRAGMA user_version = {Schema.Migrations.Count}"))
            {
                using var cmd = c.CreateCommand();
                cmd.CommandText = sql;
                cmd.ExecuteNonQuery();
            }
        }
        var (exit, output, err) = Run("report", "--db", db, "--out", dir.Sub("out"));
        Assert.True(exit == 0, err);
        Assert.Contains("no results yet", output);
        Assert.Contains("No results yet", File.ReadAllText(Path.Combine(dir.Path, "out", "report.html")));
    }
}
