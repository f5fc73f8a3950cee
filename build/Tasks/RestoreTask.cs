namespace SvdLlm.Build.Tasks;

[TaskName("Restore")]
[TaskDescription("Restores the solution's NuGet packages (versions pinned in Directory.Packages.props)")]
[IsDependentOn(typeof(SetupTask))]
public sealed class RestoreTask : FrostingTask
{
    public override void Run(BuildContext context) =>
        context.Run("dotnet", ["restore", context.SolutionPath, .. context.DotnetVerbosity]);
}
