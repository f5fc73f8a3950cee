using System.Text;

namespace SvdLlm.Models.Data;

/// <summary>UTF-8 decoding that refuses invalid bytes instead of replacing them with U+FFFD, and says where they are.</summary>
public static class Utf8Text
{
    private static readonly UTF8Encoding Strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>
    /// <paramref name="bytes"/> from <paramref name="start"/> as text; null when they are not UTF-8, with the byte
    /// offset (into the whole array) and the 1-based line of the first invalid sequence.
    /// </summary>
    /// <summary>
    /// The whole file as text; a missing file or invalid UTF-8 is a <see cref="TextFileException"/> naming the file
    /// (and the byte offset and line of the first invalid sequence), never text with U+FFFD in it.
    /// </summary>
    /// <param name="what">what the file is for, for the message ("calibration text")</param>
    public static string ReadFile(string path, string what)
    {
        string full = Path.GetFullPath(path);
        if (!File.Exists(full)) throw new TextFileException($"{what} not found: {full}");
        byte[] bytes = File.ReadAllBytes(full);
        int start = bytes.AsSpan().StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF]) ? 3 : 0;
        return TryDecode(bytes, start, out int offset, out int line)
            ?? throw new TextFileException($"{full}: invalid UTF-8 at byte offset {offset} (line {line}); the {what} must be UTF-8 text");
    }

    public static string? TryDecode(byte[] bytes, int start, out int badOffset, out int badLine)
    {
        badOffset = -1;
        badLine = 0;
        try
        {
            return Strict.GetString(bytes, start, bytes.Length - start);
        }
        catch (DecoderFallbackException e)
        {
            badOffset = Math.Min(bytes.Length, start + Math.Max(0, e.Index));
            badLine = 1 + bytes.AsSpan(0, badOffset).Count((byte)'\n');
            return null;
        }
    }
}

/// <summary>A text file the user named is missing or is not UTF-8.</summary>
public sealed class TextFileException(string message) : UserInputException(message);
