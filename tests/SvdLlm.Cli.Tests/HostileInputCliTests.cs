using SvdLlm.Cli.Commands;
using SvdLlm.Evaluation.Tasks;
using SvdLlm.Models.Tests;
using SvdLlm.Models.Tests.Reference;
using SvdLlm.Models.Training;

namespace SvdLlm.Cli.Tests;

/// <summary>
/// Absurd parameters and malformed files end in one "error:" line and exit code 1, and write nothing; anything that is
/// not the user's doing is reported as a bug (exit 70, with the trace). Each case was a trace, an endless run or a
/// meaningless number before.
/// </summary>
public class HostileInputCliTests
{
    private static void AssertOneLineUserError((int Exit, string Out, string Err) r, params string[] mentions)
    {
        Assert.True(r.Exit == 1, $"exit {r.Exit}: {r.Err}");
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("error: ", lines[^1]);
        Assert.DoesNotContain(lines, l => l.TrimStart().StartsWith("at ", StringComparison.Ordinal));
        foreach (string m in mentions) Assert.Contains(m, lines[^1], StringComparison.Ordinal);
    }

    /// <summary>A tiny LLaMA with a byte-level BPE tokenizer trained on <paramref name="text"/>.</summary>
    private static string ModelWithTokenizer(TempDirectory dir, string text) => TinyModelWithTokenizer.Create(dir.Sub("model"), text);

    [Fact]
    public void A_user_error_is_one_line_and_exit_1_and_a_bug_is_exit_70_with_its_trace()
    {
        var stderr = new StringWriter();
        var old = Console.Error;
        Console.SetError(stderr);
        try
        {
            Assert.Equal(CliErrors.UserError, CliErrors.Run(() => throw new TaskDataException("f.jsonl:3: missing field 'answerKey'")));
            Assert.Equal("error: f.jsonl:3: missing field 'answerKey'", stderr.ToString().Trim());
            stderr.GetStringBuilder().Clear();
            // Out of memory is the machine's size, not a bug: one line with what to change.
            Assert.Equal(CliErrors.UserError, CliErrors.Run(() => throw new OutOfMemoryException()));
            Assert.StartsWith("error: out of memory", stderr.ToString());
            Assert.Single(stderr.ToString().Trim().Split('\n'));
            stderr.GetStringBuilder().Clear();
            Assert.Equal(CliErrors.Bug, CliErrors.Run(() => throw new InvalidOperationException("broken invariant")));
            Assert.Contains("this is a bug", stderr.ToString(), StringComparison.Ordinal);
            Assert.Contains("broken invariant", stderr.ToString(), StringComparison.Ordinal);
            Assert.Contains(nameof(A_user_error_is_one_line_and_exit_1_and_a_bug_is_exit_70_with_its_trace), stderr.ToString(), StringComparison.Ordinal);
        }
        finally
        {
            Console.SetError(old);
        }
    }

    [Fact]
    public void Absurd_lengths_and_durations_are_refused_before_any_work()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Llama2, seed: 1);
        string ids = dir.File("ids.txt");
        File.WriteAllText(ids, string.Join(' ', Enumerable.Range(0, 200).Select(i => i % 50)));
        // 46341² overflowed the attention scratch ("Negative dimension"); past the trained context it measures nothing.
        AssertOneLineUserError(CliRunner.Run("ppl", "--model", ckpt.Directory, "--token-ids", ids, "--seq-len", "46341"), "max_position_embeddings");
        AssertOneLineUserError(CliRunner.Run("bench-efficiency", "--model", ckpt.Directory, "--gen-len", "1000000000"), "exceeds");
        AssertOneLineUserError(CliRunner.Run("bench-efficiency", "--model", ckpt.Directory, "--warmup-seconds", "1e9"), "warm-up");
        AssertOneLineUserError(CliRunner.Run("bench-efficiency", "--model", ckpt.Directory, "--threads", "100000"), "threads");
    }

    [Fact]
    public void Calibration_text_that_is_too_short_or_not_utf8_is_an_error_naming_the_file()
    {
        using var dir = new TempDirectory();
        string model = ModelWithTokenizer(dir, string.Join(' ', Enumerable.Range(0, 400).Select(i => "word" + i % 23)));
        string shortText = dir.File("short.txt");
        File.WriteAllText(shortText, "just a few words");
        AssertOneLineUserError(CliRunner.Run("calibrate", "--model", model, "--text-file", shortText, "--samples", "2", "--seq-len", "32"),
            shortText, "seq_len 32");
        string latin1 = dir.File("latin1.txt");
        File.WriteAllBytes(latin1, [.. "caf"u8, 0xE9, .. " au lait\n"u8]);
        AssertOneLineUserError(CliRunner.Run("calibrate", "--model", model, "--text-file", latin1, "--samples", "2", "--seq-len", "4"),
            latin1, "byte offset 3");
        AssertOneLineUserError(CliRunner.Run("tokenize", "--tokenizer", model, "--text-file", latin1), latin1, "invalid UTF-8");
    }

    [Fact]
    public void A_malformed_task_file_is_refused_before_the_run_with_one_line_naming_it()
    {
        using var dir = new TempDirectory();
        string model = ModelWithTokenizer(dir, string.Join(' ', Enumerable.Range(0, 400).Select(i => "word" + i % 23)));
        string arc = dir.File("arc.jsonl");
        File.WriteAllText(arc, """{"id":"q1","question":{"stem":"Which?","choices":[{"text":"a","label":"A"},{"text":"b","label":"B"}]}}""" + "\n");
        string matrix = dir.File("m.yaml");
        File.WriteAllText(matrix, $$"""
            models: [{{model}}]
            tasks: [{name: arc_easy, data: {{arc}}}]
            run: {threads: 1, cache_dir: {{dir.Sub("cache")}}}
            """);
        AssertOneLineUserError(CliRunner.Run("run-matrix", "--matrix", matrix, "--db", dir.File("r.db"), "--quiet"), arc, "answerKey");
        using var db = SvdLlm.Experiments.Store.ResultStore.Open(dir.File("r.db"));
        using var cmd = db.Connection.CreateCommand();
        cmd.CommandText = "SELECT count(*) FROM runs";
        Assert.Equal(0L, cmd.ExecuteScalar()); // refused before the run was recorded
    }
}
