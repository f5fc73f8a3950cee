namespace SvdLlm.Experiments.Cache;

/// <summary>
/// A lock on one artifact across processes (two shards, or two runs sharing a cache): exclusive so that only one
/// computes (or deletes) it and the other waits, then finds it done; shared while a process reads it. The lock is the open file <c>&lt;artifact&gt;.lock</c>:
/// .NET takes an advisory lock for FileShare.None (flock on Unix), which the kernel releases when the holder
/// dies, kill -9 included, so a crashed run never leaves a stale lock behind.
/// </summary>
public sealed class ArtifactLock : IDisposable
{
    private readonly FileStream _file;

    private ArtifactLock(FileStream file) => _file = file;

    /// <summary>Waits for the exclusive lock: to create, replace or delete the artifact.</summary>
    /// <param name="onWait">called once if another process holds the lock</param>
    public static ArtifactLock Acquire(string artifactPath, CancellationToken cancellation, Action? onWait = null) =>
        Wait(artifactPath, exclusive: true, cancellation, onWait);

    /// <summary>
    /// Waits for a shared lock: to read the artifact. Any number of readers hold it at once; while one does, nobody
    /// gets the exclusive lock, so the artifact cannot be deleted under a reader.
    /// </summary>
    public static ArtifactLock AcquireShared(string artifactPath, CancellationToken cancellation, Action? onWait = null) =>
        Wait(artifactPath, exclusive: false, cancellation, onWait);

    /// <summary>The exclusive lock if nobody holds any lock on the artifact now, else null (no waiting).</summary>
    public static ArtifactLock? TryAcquire(string artifactPath)
    {
        string path = LockPath(artifactPath);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        return TryOpen(path, exclusive: true);
    }

    private static string LockPath(string artifactPath) => artifactPath.TrimEnd('/', '\\') + ".lock";

    private static ArtifactLock Wait(string artifactPath, bool exclusive, CancellationToken cancellation, Action? onWait)
    {
        string path = LockPath(artifactPath);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        bool waited = false;
        while (true)
        {
            if (TryOpen(path, exclusive) is { } held) return held;
            cancellation.ThrowIfCancellationRequested();
            if (!waited) onWait?.Invoke();
            waited = true;
            cancellation.WaitHandle.WaitOne(TimeSpan.FromMilliseconds(200));
        }
    }

    // .NET on Unix takes flock(LOCK_EX) for FileShare.None and flock(LOCK_SH) for a read-only open that shares
    // reading; both non-blocking, an IOException when the other kind is held.
    private static ArtifactLock? TryOpen(string path, bool exclusive)
    {
        try
        {
            return new ArtifactLock(exclusive
                ? new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None)
                : new FileStream(path, FileMode.OpenOrCreate, FileAccess.Read, FileShare.Read));
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>
    /// Releases the lock and removes its file. Only for a lock whose artifact says it is finished elsewhere (a run's row
    /// ended): a process that opened the file before the removal may still lock the removed file, so this is safe
    /// only when such a holder then checks that record and does nothing.
    /// </summary>
    public void ReleaseAndRemove()
    {
        string path = _file.Name;
        _file.Dispose();
        File.Delete(path);
    }

    public void Dispose() => _file.Dispose();
}
