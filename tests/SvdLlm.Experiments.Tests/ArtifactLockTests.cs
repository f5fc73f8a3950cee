using SvdLlm.Experiments.Cache;
using SvdLlm.Models.Tests;

namespace SvdLlm.Experiments.Tests;

public sealed class ArtifactLockTests
{
    [Fact]
    public void ASecondHolderWaitsUntilTheFirstReleases()
    {
        using var dir = new TempDirectory();
        string artifact = dir.File("artifact");
        var first = ArtifactLock.Acquire(artifact, CancellationToken.None);
        bool acquired = false, waited = false;
        var t = new Thread(() =>
        {
            using var second = ArtifactLock.Acquire(artifact, CancellationToken.None, () => Volatile.Write(ref waited, true));
            Volatile.Write(ref acquired, true);
        });
        t.Start();
        // Whatever the scheduling, the second cannot hold the lock while the first does.
        Thread.Sleep(300);
        Assert.False(Volatile.Read(ref acquired));
        first.Dispose();
        t.Join();
        Assert.True(acquired);
        Assert.True(waited);
    }

    [Fact]
    public void WaitingStopsOnCancellation()
    {
        using var dir = new TempDirectory();
        using var held = ArtifactLock.Acquire(dir.File("a"), CancellationToken.None);
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.Throws<OperationCanceledException>(() => ArtifactLock.Acquire(dir.File("a"), cts.Token));
    }

    [Fact]
    public void ReadersShareTheLockAndKeepTheExclusiveOneOut()
    {
        using var dir = new TempDirectory();
        string artifact = dir.File("artifact");
        var reader1 = ArtifactLock.AcquireShared(artifact, CancellationToken.None);
        var reader2 = ArtifactLock.AcquireShared(artifact, CancellationToken.None);
        Assert.Null(ArtifactLock.TryAcquire(artifact));
        reader1.Dispose();
        Assert.Null(ArtifactLock.TryAcquire(artifact));
        reader2.Dispose();
        using (var writer = ArtifactLock.TryAcquire(artifact))
        {
            Assert.NotNull(writer);
            // A reader waits for the writer.
            using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
            Assert.Throws<OperationCanceledException>(() => ArtifactLock.AcquireShared(artifact, cts.Token));
        }
        using var reader3 = ArtifactLock.AcquireShared(artifact, CancellationToken.None);
    }
}
