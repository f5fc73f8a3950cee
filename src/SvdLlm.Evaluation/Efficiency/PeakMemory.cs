using System.Globalization;

namespace SvdLlm.Evaluation.Efficiency;

/// <summary>
/// Peak resident memory of the whole process (Linux /proc/self/status VmHWM), not of one model: the
/// .NET runtime, every tensor alive and the mapped checkpoint pages that were touched all count.
/// </summary>
public static class PeakMemory
{
    private const string StatusPath = "/proc/self/status";

    /// <summary>Peak resident set size in bytes (VmHWM), or null where /proc is not available.</summary>
    public static long? PeakResidentBytes() => ReadStatusKilobytes("VmHWM:") * 1024;

    /// <summary>Current resident set size in bytes (VmRSS), or null where /proc is not available.</summary>
    public static long? ResidentBytes() => ReadStatusKilobytes("VmRSS:") * 1024;

    /// <summary>
    /// Lowers the peak to the current resident size (writing "5" to /proc/self/clear_refs, Linux ≥ 4.0),
    /// so that a measurement's peak is not an earlier one's. Returns false when the kernel refuses; the
    /// peak then covers the process's whole life so far.
    /// </summary>
    public static bool TryResetPeak()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            return false;
        }
    }

    /// <summary>The value of a "Key:   123 kB" line of /proc/self/status.</summary>
    internal static long? ReadStatusKilobytes(string key)
    {
        string[] lines;
        try
        {
            lines = File.ReadAllLines(StatusPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
        return ParseStatusKilobytes(lines, key);
    }

    /// <summary>Parses the "Key:   123 kB" line of /proc/self/status lines; null when the key is absent.</summary>
    public static long? ParseStatusKilobytes(IEnumerable<string> lines, string key)
    {
        foreach (string line in lines)
        {
            if (!line.StartsWith(key, StringComparison.Ordinal)) continue;
            var parts = line[key.Length..].Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries); // tab or spaces
            if (parts.Length == 2 && parts[1] == "kB" && long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out long kb))
                return kb;
            throw new FormatException($"{StatusPath}: line '{line}' is not '{key} <n> kB'");
        }
        return null;
    }
}
