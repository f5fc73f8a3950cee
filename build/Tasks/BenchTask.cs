namespace SvdLlm.Build.Tasks;

[TaskName("Bench")]
[TaskDescription("Measured forward-pass throughput beside sgemm, or with --scale the 7B-shape scale benchmark (--layers=1,3 --methods=…; more arguments after --)")]
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
        if (context.HasFlag("scale"))
        {
            arguments.Add("--scale");
            if (context.Option("layers") is { } layers) arguments.AddRange(["--layers", layers]);
            if (context.Option("methods") is { } methods) arguments.AddRange(["--methods", methods]);
        }
        arguments.AddRange(context.PassThroughArguments);
        context.Run("dotnet", arguments);
    }
}
