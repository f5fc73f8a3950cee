namespace SvdLlm.Build.Tasks;

[TaskName("Pack")]
[TaskDescription("Packs the svdllm command as a .NET tool: artifacts/nupkg/SvdLlm.Cli.VERSION.nupkg (--out=DIR; the version is VersionPrefix in src/SvdLlm.Cli/SvdLlm.Cli.csproj); install with dotnet tool install -g SvdLlm.Cli --add-source artifacts/nupkg")]
[IsDependentOn(typeof(BuildTask))]
public sealed class PackTask : FrostingTask
{
    public const string PackageDirectory = "artifacts/nupkg";

    public override void Run(BuildContext context)
    {
        string output = context.FromRoot(context.Option("out") ?? PackageDirectory);
        Directory.CreateDirectory(output);
        // Packed beside the destination and moved in when complete, so a failed or interrupted pack leaves no
        // half-written package where `dotnet tool install --add-source` would find it.
        string staging = Path.Combine(output, $".pack-{Environment.ProcessId}");
        try
        {
            List<string> arguments =
            [
                "pack", context.FromRoot("src", "SvdLlm.Cli", "SvdLlm.Cli.csproj"), "-c", context.Configuration, "--no-build", "-o", staging,
                .. context.DotnetVerbosity,
            ];
            context.Run("dotnet", arguments);
            string[] packages = Directory.GetFiles(staging, "*.nupkg");
            if (packages.Length != 1)
                throw new BuildFailedException($"dotnet pack left {packages.Length} packages in {staging}, expected one.");
            string destination = Path.Combine(output, Path.GetFileName(packages[0]));
            File.Move(packages[0], destination, overwrite: true);
            context.Info($"Pack: {destination}");
            context.Info($"Install: dotnet tool install -g SvdLlm.Cli --add-source {Path.GetRelativePath(context.RootDirectory, output)}   (or --tool-path DIR instead of -g)");
        }
        finally
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
        }
    }
}
