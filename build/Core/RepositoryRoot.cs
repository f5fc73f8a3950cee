namespace SvdLlm.Build;

public static class RepositoryRoot
{
    public const string SolutionFile = "SvdLlm.Experiments.sln";

    /// <summary>
    /// The checkout the host was built from comes first, so running another checkout's build.dll from
    /// here cannot build the wrong tree; the current directory is the fallback for a host copied elsewhere.
    /// </summary>
    public static string Find()
    {
        string[] starts = [AppContext.BaseDirectory, Directory.GetCurrentDirectory()];
        foreach (string start in starts)
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, SolutionFile)))
                    return dir.FullName;
            }
        }
        throw new BuildFailedException($"Could not find {SolutionFile} above {string.Join(" or ", starts)}.");
    }
}
