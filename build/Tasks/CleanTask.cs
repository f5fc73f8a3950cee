namespace SvdLlm.Build.Tasks;

[TaskName("Clean")]
[TaskDescription("Deletes artifacts/ and every bin/ and obj/ under src/ and tests/")]
public sealed class CleanTask : FrostingTask
{
    public override void Run(BuildContext context)
    {
        // build/bin is left alone: it holds the host that is running this.
        Delete(context, context.FromRoot("artifacts"));
        foreach (string top in new[] { "src", "tests" }.Select(d => context.FromRoot(d)).Where(Directory.Exists))
            DeleteOutputs(context, top);
    }

    private static void DeleteOutputs(BuildContext context, string directory)
    {
        foreach (var child in new DirectoryInfo(directory).GetDirectories())
        {
            if (child.Name is "bin" or "obj")
                Delete(context, child.FullName);
            else if (child.LinkTarget is null)
                DeleteOutputs(context, child.FullName);
        }
    }

    private static void Delete(BuildContext context, string path)
    {
        if (!Directory.Exists(path))
            return;
        Directory.Delete(path, recursive: true);
        context.Info($"deleted {Path.GetRelativePath(context.RootDirectory, path)}");
    }
}
