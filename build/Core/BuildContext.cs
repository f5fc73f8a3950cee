namespace SvdLlm.Build;

/// <summary>What every target sees: the repository, the chosen configuration, the command line, and helpers.</summary>
public sealed class BuildContext
{
    private readonly CommandLine _commandLine;
    private readonly ProcessRunner _processes;
    private readonly List<string> _closingLines = [];

    public BuildContext(string rootDirectory, CommandLine commandLine)
    {
        RootDirectory = rootDirectory;
        _commandLine = commandLine;
        Configuration = commandLine.Get("configuration") ?? "Release";
        Quiet = commandLine.Get("verbosity") == "quiet";
        _processes = new ProcessRunner(rootDirectory, echo: !Quiet);
    }

    public string RootDirectory { get; }

    public string SolutionPath => RepositoryRoot.SolutionFile;

    /// <summary>Release or Debug.</summary>
    public string Configuration { get; }

    public bool Quiet { get; }

    /// <summary>The arguments after a bare <c>--</c>, for the program a target runs.</summary>
    public IReadOnlyList<string> PassThroughArguments => _commandLine.PassThrough;

    /// <summary>Verbosity arguments for dotnet restore/build/test, following --verbosity.</summary>
    public IReadOnlyList<string> DotnetVerbosity => Quiet ? ["-v", "q"] : [];

    /// <summary>Lines printed after everything else, the summary table included.</summary>
    public IReadOnlyList<string> ClosingLines => _closingLines;

    /// <summary>A command-line option's value; the name must be registered in <see cref="KnownOptions"/>.</summary>
    public string? Option(string name) => _commandLine.Get(name);

    public bool HasFlag(string name) => _commandLine.Flag(name);

    public string FromRoot(params string[] relative) => Path.Combine([RootDirectory, .. relative]);

    /// <summary>The built svdllm command-line tool (run as `dotnet CliDll ...`).</summary>
    public string CliDll => FromRoot("src", "SvdLlm.Cli", "bin", Configuration, "net10.0", "svdllm.dll");

    /// <summary>Runs a program in the repository root; a non-zero exit fails the task with the command line.</summary>
    public void Run(string fileName, params IReadOnlyList<string> arguments) => Run(fileName, arguments, null);

    /// <summary>Run, with variables added to the child's environment.</summary>
    public void Run(string fileName, IReadOnlyList<string> arguments, IReadOnlyDictionary<string, string>? environment)
    {
        int exitCode = RunAllowingFailure(fileName, arguments, environment);
        if (exitCode != 0)
            throw new BuildFailedException($"Command exited with code {exitCode}: {ProcessRunner.Format(fileName, arguments)}");
    }

    /// <summary>Like Run, but returns the exit code, for targets that still have work to do after a failure.</summary>
    public int RunAllowingFailure(string fileName, IReadOnlyList<string> arguments, IReadOnlyDictionary<string, string>? environment = null) =>
        _processes.Execute(fileName, arguments, environment);

    /// <summary>Runs a program for its standard output; a non-zero exit fails the task with the program's standard error.</summary>
    public string Capture(string fileName, params IReadOnlyList<string> arguments) => _processes.CaptureOrFail(fileName, arguments);

    /// <summary>
    /// With --no-build, Restore and Build are skipped: a job on a cluster or a CI runner uses what an earlier
    /// Build left in this checkout (and fails early when there is nothing there).
    /// </summary>
    public bool NoBuild => HasFlag("no-build");

    public void Info(string message)
    {
        if (!Quiet)
            Console.WriteLine(message);
    }

    /// <summary>
    /// Queues a line to print once the run is over, after the summary table, even when the target fails:
    /// Test's "N passed, N failed, N skipped" must be the last line of the whole output.
    /// </summary>
    public void PrintLast(string line) => _closingLines.Add(line);
}
