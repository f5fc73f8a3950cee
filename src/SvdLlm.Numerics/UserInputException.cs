namespace SvdLlm;

/// <summary>
/// The base of every error a user causes and can fix: a malformed or missing file, a bad setting, a model this build
/// does not support, a machine too small for the job. Its message is one line that names the file, the field and what
/// was expected; the command line prints it and exits with 1. Any other exception is a bug in this program: it is
/// printed with its stack trace and exit code 70 (EX_SOFTWARE).
/// </summary>
public abstract class UserInputException(string message, Exception? innerException = null) : Exception(message, innerException);
