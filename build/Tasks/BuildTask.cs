namespace SvdLlm.Build.Tasks;

[TaskName("Build")]
[TaskDescription("Builds the solution (--configuration, default Release)")]
[IsDependentOn(typeof(RestoreTask))]
public sealed class BuildTask : FrostingTask
{
    public override void Run(BuildContext context) =>
        context.Run("dotnet", ["build", context.SolutionPath, "-c", context.Configuration, "--no-restore", .. context.DotnetVerbosity]);
}
