using SvdLlm.Models.Data;

namespace SvdLlm.Models.Tests;

public class LeftoversTests
{
    [Theory]
    [InlineData("k.svdstats.tmp-4242-0badf00d", ".tmp-", 4242)]
    [InlineData(".v3.tmp-17-0123456789abcdef0123456789abcdef", ".tmp-", 17)]
    [InlineData("0123abcd.deleting-99", ".deleting-", 99)]
    [InlineData("k.svdstats.tmp-1a2b3c4d", ".tmp-", null)]   // the old name without a pid: not ours to judge
    [InlineData("k.svdstats", ".tmp-", null)]
    [InlineData(".tmp-12-ab", ".tmp-", null)]                 // nothing before the marker
    [InlineData("k.tmp--5-ab", ".tmp-", null)]
    public void The_owner_pid_is_read_from_the_name(string name, string marker, int? pid) =>
        Assert.Equal(pid, Leftovers.OwnerPid(name, marker));

    [Fact]
    public void A_sweep_removes_dead_owners_entries_with_the_prefix_and_nothing_else()
    {
        using var dir = new TempDirectory();
        using var gone = System.Diagnostics.Process.Start("true")!;
        gone.WaitForExit();
        string deadFile = dir.File($".ours.tmp-{gone.Id}-00");
        string deadDir = dir.File($".ours-dir.tmp-{gone.Id}-01");
        string liveFile = Leftovers.TempPath(dir.File(".ours"));
        string otherProgram = dir.File($"theirs.tmp-{gone.Id}-02");
        File.WriteAllText(deadFile, "x");
        Directory.CreateDirectory(Path.Combine(deadDir, "inner"));
        File.WriteAllText(liveFile, "x");
        File.WriteAllText(otherProgram, "x");

        var removed = Leftovers.Sweep(dir.Path, ".ours");
        Assert.Equal(new[] { deadDir, deadFile }.Order(), removed.Order());
        Assert.True(File.Exists(liveFile));
        Assert.True(File.Exists(otherProgram));
        Assert.Equal(Environment.ProcessId, Leftovers.OwnerPid(Path.GetFileName(liveFile)));
    }
}
