using SvdLlm.Numerics;

namespace SvdLlm.Cli.Commands;

/// <summary>
/// The command line's one error policy. A user's error (<see cref="UserInputException"/>, a missing or unreadable file,
/// a bad argument, a numerical failure of the user's data) is one line and exit code 1. Anything else is a bug in this
/// program: one line saying so, the stack trace for the report, and exit code 70 (EX_SOFTWARE).
/// </summary>
internal static class CliErrors
{
    public const int UserError = 1;
    public const int Bug = 70;

    public static int Run(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (OutOfMemoryException e)
        {
            // The machine (or the process's memory limit) is too small for the job: not a bug, and the trace says nothing.
            Console.Error.WriteLine($"error: out of memory ({e.Message}); this job needs more memory than the process may use: " +
                                    "use a smaller --batch-size, --seq-len or --samples, fewer --threads, or a larger machine or limit");
            return UserError;
        }
        catch (Exception e) when (IsUserError(e))
        {
            Console.Error.WriteLine($"error: {e.Message}");
            // SVDLLM_TRACE=1: the trace of a user error too, for when the one line is not enough to find the cause.
            if (Environment.GetEnvironmentVariable("SVDLLM_TRACE") == "1") Console.Error.WriteLine(e.ToString());
            return UserError;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"error: this is a bug in svdllm, please report it with the trace below: {e.GetType().FullName}: {e.Message}");
            Console.Error.WriteLine(e.ToString());
            return Bug;
        }
    }

    /// <summary>
    /// ArgumentException and KeyNotFoundException carry the messages of this program's own checks of settings and names
    /// (for example an unknown method, or statistics collected on another model); a positive LAPACK info is the user's
    /// data failing a numerical precondition (a negative one is an illegal argument: a bug).
    /// </summary>
    public static bool IsUserError(Exception e) => e is UserInputException or FileNotFoundException or DirectoryNotFoundException
        or UnauthorizedAccessException or ArgumentException or KeyNotFoundException or IOException or LapackException { Info: > 0 };
}
