using SvdLlm.Build.Support;

namespace SvdLlm.Build.Tasks;

[TaskName("Test")]
[TaskDescription("Runs every test project (--filter=EXPR); ends with \"N passed, N failed, N skipped\"")]
[IsDependentOn(typeof(BuildTask))]
public sealed class TestTask : FrostingTask
{
    public override void Run(BuildContext context)
    {
        // Emptied first so the counts cover this run only.
        string resultsDirectory = context.FromRoot("artifacts", "test-results");
        if (Directory.Exists(resultsDirectory))
            Directory.Delete(resultsDirectory, recursive: true);
        Directory.CreateDirectory(resultsDirectory);

        List<string> arguments =
        [
            "test", context.SolutionPath, "-c", context.Configuration, "--no-build",
            "--logger", "trx;LogFilePrefix=tr", "--results-directory", resultsDirectory,
            .. context.DotnetVerbosity,
        ];
        string? filter = context.Option("filter");
        if (filter is not null)
            arguments.AddRange(["--filter", filter]);

        // A failing test makes dotnet test exit non-zero; the results are still wanted, so read them first.
        int exitCode = context.RunAllowingFailure("dotnet", arguments);
        var results = TestResults.ReadDirectory(resultsDirectory);
        context.PrintLast(results.ToString());

        if (results.Failed > 0)
            throw new BuildFailedException($"{results.Failed} test(s) failed: {Names(results.FailedTests)}");
        if (exitCode != 0)
            throw new BuildFailedException($"Command exited with code {exitCode}: {ProcessRunner.Format("dotnet", arguments)}");
        if (results.Total == 0)
            throw new BuildFailedException(filter is null ? "No tests ran." : $"No tests ran (--filter={filter}).");
    }

    private static string Names(IReadOnlyList<string> tests) =>
        tests.Count <= 10 ? string.Join(", ", tests) : $"{string.Join(", ", tests.Take(10))} and {tests.Count - 10} more";
}
