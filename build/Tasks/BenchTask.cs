namespace SvdLlm.Build.Tasks;

[TaskName("Bench")]
[TaskDescription("Measured forward-pass throughput beside sgemm (--threads=T; more arguments after --)")]
[IsDependentOn(typeof(BuildTask))]
public sealed class BenchTask : FrostingTask
{
    public override void Run(BuildContext context)
    {
        List<string> arguments =
        [
            "run", "--project", Path.Combine("tests", "SvdLlm.Benchmarks"), "-c", context.Configuration, "--no-build", "--",
        ];
        if (context.Option("threads") is { } threads)
            arguments.AddRange(["--threads", threads]);
        arguments.AddRange(context.PassThroughArguments);
        context.Run("dotnet", arguments);
    }
}
