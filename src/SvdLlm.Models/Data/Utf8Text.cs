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
