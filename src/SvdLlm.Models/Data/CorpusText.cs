using System.Text;
using SvdLlm.Models.Tokenizers.Unicode;

namespace SvdLlm.Models.Data;

/// <summary>The text clean-up shared by every corpus.</summary>
public static class CorpusText
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>
    /// Normalizes one document:
    /// <list type="number">
    /// <item>a leading byte-order mark is dropped;</item>
    /// <item><c>\r\n</c> and lone <c>\r</c> become <c>\n</c>;</item>
    /// <item>control characters other than <c>\n</c> and <c>\t</c> are removed (the 1890 State of the Union
    /// file carries a stray U+0002 where a "½" was lost);</item>
    /// <item>Unicode NFC (our own tables: <c>string.Normalize</c> is a no-op under InvariantGlobalization);</item>
    /// <item>trailing whitespace is trimmed from every line;</item>
    /// <item>every run of blank lines becomes exactly one blank line (three or more consecutive <c>\n</c>
    /// become two), and blank lines at the start and end are removed, so the result neither starts nor
    /// ends with a newline.</item>
    /// </list>
    /// Idempotent: <c>Normalize(Normalize(s)) == Normalize(s)</c>.
    /// </summary>
    public static string Normalize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.Length > 0 && text[0] == '\uFEFF')
            text = text[1..];

        var cleaned = new StringBuilder(text.Length);
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (c == '\r')
            {
                cleaned.Append('\n');
                if (i + 1 < text.Length && text[i + 1] == '\n')
                    i++;
            }
            else if (c is '\n' or '\t' || !char.IsControl(c))
            {
                cleaned.Append(c);
            }
        }
        string composed = CanonicalNormalization.ToNfc(cleaned.ToString());

        var result = new StringBuilder(composed.Length);
        bool pendingBlank = false;
        foreach (string rawLine in composed.Split('\n'))
        {
            string line = rawLine.TrimEnd();
            if (line.Length == 0)
            {
                // Only a blank line between two non-blank lines survives, and only one of a run.
                pendingBlank = result.Length > 0;
                continue;
            }
            if (result.Length > 0)
                result.Append(pendingBlank ? "\n\n" : "\n");
            result.Append(line);
            pendingBlank = false;
        }
        return result.ToString();
    }

    /// <summary>
    /// Removes a Project Gutenberg header and footer when present: everything up to and including the
    /// line starting "*** START OF" and everything from the line starting "*** END OF" on (the markers of
    /// Gutenberg's plain-text files since 2006, "*** START OF THE PROJECT GUTENBERG EBOOK …"). Text
    /// without the markers is returned unchanged. The pinned Moby-Dick file has neither (it starts at
    /// "CHAPTER 1. Loomings." and ends with the last paragraph of chapter 135), so this is a guard for
    /// a future version of the package rather than a change to today's text.
    /// </summary>
    public static string StripGutenbergBoilerplate(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string[] lines = text.Split('\n');
        int start = Array.FindIndex(lines, l => l.StartsWith("*** START OF", StringComparison.OrdinalIgnoreCase));
        int end = Array.FindIndex(lines, Math.Max(start, 0), l => l.StartsWith("*** END OF", StringComparison.OrdinalIgnoreCase));
        if (start < 0 && end < 0)
            return text;
        int from = start + 1;
        int to = end < 0 ? lines.Length : end;
        return string.Join('\n', lines[from..to]);
    }

    /// <summary>Decodes UTF-8, rejecting invalid bytes with an error that names the file.</summary>
    public static string DecodeUtf8(byte[] bytes, string source)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        try
        {
            return StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException e)
        {
            throw new InvalidDataException($"{source}: not valid UTF-8 ({e.Message})", e);
        }
    }

    /// <summary>Words as whitespace-separated runs, the figure reported next to character counts.</summary>
    public static long CountWords(string text)
    {
        long words = 0;
        bool inWord = false;
        foreach (char c in text)
        {
            bool space = char.IsWhiteSpace(c);
            if (!space && !inWord)
                words++;
            inWord = !space;
        }
        return words;
    }
}
