using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;

namespace SvdLlm.Models.Data;

/// <summary>
/// Temporary files and directories that name the process writing them, so that what a killed process left behind
/// (kill -9 runs no cleanup) can be told from what a live one is still writing: <c>NAME.tmp-PID-HEX</c>. A sweep
/// removes the entries whose process is gone. A recycled pid only delays a removal; a live writer's file is never
/// touched.
/// </summary>
public static class Leftovers
{
    public const string TempMarker = ".tmp-";

    /// <summary><paramref name="path"/> + <c>.tmp-PID-HEX</c>: a temporary name owned by this process.</summary>
    public static string TempPath(string path) =>
        $"{path}{TempMarker}{Environment.ProcessId.ToString(CultureInfo.InvariantCulture)}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4))}";

    /// <summary>
    /// Removes the files and directories in <paramref name="directory"/> (not below) whose name starts with
    /// <paramref name="prefix"/> and holds <paramref name="marker"/> followed by the pid of a process that no longer
    /// runs; returns their paths. The prefix keeps a sweep of a shared directory (the system temp) to our own names.
    /// </summary>
    public static List<string> Sweep(string directory, string prefix, string marker = TempMarker)
    {
        var removed = new List<string>();
        if (!Directory.Exists(directory)) return removed;
        foreach (string path in Directory.EnumerateFileSystemEntries(directory))
        {
            string name = Path.GetFileName(path);
            if (!name.StartsWith(prefix, StringComparison.Ordinal) || OwnerPid(name, marker) is not int pid || ProcessAlive(pid)) continue;
            try
            {
                if (Directory.Exists(path)) Directory.Delete(path, recursive: true);
                else File.Delete(path);
                removed.Add(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Another sweeper got there first, or the entry is not ours to remove: leave it.
            }
        }
        return removed;
    }

    /// <summary>The pid written after the last <paramref name="marker"/> in <paramref name="name"/>, or null.</summary>
    public static int? OwnerPid(string name, string marker = TempMarker)
    {
        int at = name.LastIndexOf(marker, StringComparison.Ordinal);
        if (at <= 0) return null;
        var digits = name.AsSpan(at + marker.Length);
        int end = 0;
        while (end < digits.Length && char.IsAsciiDigit(digits[end])) end++;
        if (end < digits.Length && digits[end] != '-') return null;
        return int.TryParse(digits[..end], NumberStyles.None, CultureInfo.InvariantCulture, out int pid) && pid > 0 ? pid : null;
    }

    public static bool ProcessAlive(int pid)
    {
        if (pid == Environment.ProcessId) return true;
        try
        {
            using var p = Process.GetProcessById(pid);
            return !p.HasExited;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            return false; // no such process, or it exited between the lookup and the question
        }
    }
}
