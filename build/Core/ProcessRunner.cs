using System.ComponentModel;
using System.Diagnostics;

namespace SvdLlm.Build;

/// <summary>Starts external programs in the repository root with the environment every child gets.</summary>
public sealed class ProcessRunner(string workingDirectory, bool echo)
{
    private static readonly Dictionary<string, string> CommonEnvironment = new()
    {
        ["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1",
        ["DOTNET_NOLOGO"] = "1",
    };

    /// <summary>
    /// Runs a program whose output goes straight to our console (not through a pipe), so progress
    /// streams as it happens and tools that colour their output still do. Returns the exit code.
    /// </summary>
    public int Execute(string fileName, IReadOnlyList<string> arguments, IReadOnlyDictionary<string, string>? environment = null)
    {
        if (echo)
            Console.WriteLine($"$ {Format(fileName, arguments)}");
        using var process = Start(Describe(fileName, arguments, environment), fileName, arguments);
        process.WaitForExit();
        return process.ExitCode;
    }

    /// <summary>
    /// Runs a program for its standard output (echoed like Execute); a failure throws with its exit code and
    /// standard error, so the message says what the program said.
    /// </summary>
    public string CaptureOrFail(string fileName, IReadOnlyList<string> arguments)
    {
        if (echo)
            Console.WriteLine($"$ {Format(fileName, arguments)}");
        var info = Describe(fileName, arguments, null);
        info.RedirectStandardOutput = true;
        info.RedirectStandardError = true;
        using var process = Start(info, fileName, arguments);
        var stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        string error = stderr.Result.Trim();
        if (process.ExitCode != 0)
            throw new BuildFailedException($"Command exited with code {process.ExitCode}: {Format(fileName, arguments)}{(error.Length > 0 ? Environment.NewLine + error : "")}");
        return stdout;
    }

    /// <summary>Runs a program for its standard output; null when it cannot be started or fails.</summary>
    public static string? Capture(string fileName, params string[] arguments)
    {
        var info = Describe(fileName, arguments, null);
        info.RedirectStandardOutput = true;
        info.RedirectStandardError = true;
        try
        {
            using var process = Process.Start(info);
            if (process is null)
                return null;
            // Drain stderr concurrently: a child blocked on a full stderr pipe would never finish stdout.
            var stderr = process.StandardError.ReadToEndAsync();
            string stdout = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            stderr.Wait();
            return process.ExitCode == 0 ? stdout : null;
        }
        catch (Win32Exception)
        {
            return null;
        }
    }

    /// <summary>The command as one would type it in a shell, for logs and error messages.</summary>
    public static string Format(string fileName, IEnumerable<string> arguments) =>
        string.Join(' ', new[] { fileName }.Concat(arguments).Select(Quote));

    private static ProcessStartInfo Describe(string fileName, IEnumerable<string> arguments, IReadOnlyDictionary<string, string>? environment)
    {
        var info = new ProcessStartInfo(fileName) { UseShellExecute = false };
        foreach (string argument in arguments)
            info.ArgumentList.Add(argument);
        foreach (var (key, value) in CommonEnvironment.Concat(environment ?? new Dictionary<string, string>()))
            info.Environment[key] = value;
        return info;
    }

    private Process Start(ProcessStartInfo info, string fileName, IReadOnlyList<string> arguments)
    {
        info.WorkingDirectory = workingDirectory;
        try
        {
            return Process.Start(info) ?? throw new BuildFailedException($"Could not start: {Format(fileName, arguments)}");
        }
        catch (Win32Exception e)
        {
            throw new BuildFailedException($"Could not start '{fileName}' ({e.Message}): {Format(fileName, arguments)}");
        }
    }

    /// <summary>A word as a POSIX shell reads it back unchanged: as it is when that is safe, else in single quotes.</summary>
    public static string Quote(string s) =>
        s.Length > 0 && s.All(c => char.IsLetterOrDigit(c) || "-_./=:,+@%".Contains(c)) ? s : "'" + s.Replace("'", "'\\''") + "'";
}
