using System.Diagnostics;

namespace SvdLlm.Models.Checkpoints;

/// <summary>
/// A checkpoint file or directory is malformed or unusable. The message always names the file (or
/// directory), and where relevant the tensor and header field, and says what was expected vs found,
/// so the user can fix the checkpoint without a debugger.
/// </summary>
public sealed class CheckpointFormatException : UserInputException
{
    /// <summary>
    /// Builds the message "&lt;file&gt;: tensor 'x', field 'shape': &lt;problem&gt;" from its parts.
    /// </summary>
    /// <param name="filePath">The offending file, or the model directory for directory-level problems.</param>
    /// <param name="problem">What was expected and what was found.</param>
    /// <param name="tensorName">The tensor involved, if any.</param>
    /// <param name="field">The header field involved (dtype, shape, data_offsets, ...), if any.</param>
    public CheckpointFormatException(
        string filePath, string problem, string? tensorName = null, string? field = null, Exception? innerException = null)
        : base(Compose(filePath, problem, tensorName, field), innerException)
    {
        FilePath = filePath;
        TensorName = tensorName;
        Field = field;
    }

    // Distinct signature (trailing bool) so it cannot clash with the public constructor.
    private CheckpointFormatException(string message, string filePath, string? tensorName, Exception? innerException, bool verbatim)
        : base(message, innerException)
    {
        Debug.Assert(verbatim && message.Contains(filePath, StringComparison.Ordinal), "The message must name the file.");
        FilePath = filePath;
        TensorName = tensorName;
    }

    /// <summary>The file (or directory) that is malformed.</summary>
    public string FilePath { get; }

    /// <summary>The tensor the problem concerns, or null for file-level problems.</summary>
    public string? TensorName { get; }

    /// <summary>The header field the problem concerns, or null.</summary>
    public string? Field { get; }

    /// <summary>For messages that read better as one sentence; the caller guarantees the message names the file.</summary>
    internal static CheckpointFormatException WithMessage(string filePath, string? tensorName, string message, Exception? innerException = null) =>
        new(message, filePath, tensorName, innerException, verbatim: true);

    private static string Compose(string filePath, string problem, string? tensorName, string? field)
    {
        string location = filePath;
        if (tensorName is not null) location += $": tensor '{tensorName}'";
        if (field is not null) location += $"{(tensorName is null ? ":" : ",")} field '{field}'";
        return $"{location}: {problem}";
    }
}
