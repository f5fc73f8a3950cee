namespace SvdLlm.Experiments.Cache;

/// <summary>
/// An exclusive lock on one artifact across processes (two shards, or two runs sharing a cache), so that only
/// one computes it and the other waits, then finds it done. The lock is the open file <c>&lt;artifact&gt;.lock</c>:
/// .NET takes an advisory lock for FileShare.None (flock on Unix), which the kernel releases when the holder
/// dies, kill -9 included, so a crashed run never leaves a stale lock behind.
/// </summary>
public sealed class ArtifactLock : IDisposable
{
    private readonly FileStream _file;

    private ArtifactLock(FileStream file) => _file = file;

    /// <param name="onWait">called once if another process holds the lock</param>
    public static ArtifactLock Acquire(string artifactPath, CancellationToken cancellation, Action? onWait = null)
    {
        string path = artifactPath.TrimEnd('/', '\\') + ".lock";
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        bool waited = false;
        while (true)
        {
            try
            {
                return new ArtifactLock(new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None));
            }
            catch (IOException)
            {
                cancellation.ThrowIfCancellationRequested();
                if (!waited) onWait?.Invoke();
                waited = true;
                cancellation.WaitHandle.WaitOne(TimeSpan.FromMilliseconds(500));
            }
        }
    }

    public void Dispose() => _file.Dispose();
}
