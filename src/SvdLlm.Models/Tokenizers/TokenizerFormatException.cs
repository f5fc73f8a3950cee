namespace SvdLlm.Models.Tokenizers;

/// <summary>
/// A tokenizer file is malformed or asks for something we do not implement. The message always
/// names the file and, where relevant, the JSON field (as a path such as <c>model.merges[17]</c>),
/// so the user can tell a broken file from an unsupported one.
/// </summary>
public sealed class TokenizerFormatException : UserInputException
{
    /// <summary>Builds "&lt;file&gt;: field '&lt;field&gt;': &lt;problem&gt;".</summary>
    public TokenizerFormatException(string filePath, string? field, string problem, Exception? innerException = null)
        : base(field is null ? $"{filePath}: {problem}" : $"{filePath}: field '{field}': {problem}", innerException)
    {
        FilePath = filePath;
        Field = field;
    }

    /// <summary>The offending file (or directory, when a required file is missing).</summary>
    public string FilePath { get; }

    /// <summary>The JSON field path, or null for file-level problems.</summary>
    public string? Field { get; }
}
