namespace SvdLlm.Build.Tasks;

[TaskName("Stress")]
[TaskDescription("Concurrent run-matrix processes on one database and cache, with and without CPU load (--trials=N --processes=P); ends with \"stress: N trials, F failed\"")]
[IsDependentOn(typeof(BuildTask))]
public sealed class StressTask : FrostingTask
{
    public override void Run(BuildContext context)
    {
        List<string> arguments =
        [
            "run", "--project", Path.Combine("tests", "SvdLlm.Benchmarks"), "-c", context.Configuration, "--no-build", "--", "--stress",
        ];
        if (context.Option("trials") is { } trials) arguments.AddRange(["--trials", trials]);
        if (context.Option("processes") is { } processes) arguments.AddRange(["--processes", processes]);
        arguments.AddRange(context.PassThroughArguments);
        context.Run("dotnet", arguments);
    }
}
