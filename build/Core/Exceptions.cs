namespace SvdLlm.Build;

/// <summary>
/// A failure the user can act on from its message alone: reported as one line, without a stack trace,
/// and the run exits with code 1.
/// </summary>
public sealed class BuildFailedException(string message) : Exception(message);

/// <summary>A command line the host cannot act on; reported before any task runs, exit code 2.</summary>
public sealed class UsageException(string message) : Exception(message);
