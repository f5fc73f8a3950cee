namespace SvdLlm.Models.Tokenizers;

/// <summary>
/// GPT-2's reversible byte ↔ character map (<c>bytes_to_unicode</c> in openai/gpt-2's encoder.py):
/// printable Latin-1 bytes stand for themselves, the other 68 bytes are shifted to U+0100…U+0143,
/// so every byte string becomes a string of visible characters (space is 'Ġ' U+0120).
/// </summary>
internal static class ByteLevelAlphabet
{
    /// <summary>byte → character.</summary>
    public static readonly char[] ByteToChar = BuildByteToChar();

    /// <summary>character → byte, for characters below U+0144; -1 where the character is not in the alphabet.</summary>
    private static readonly short[] CharToByte = BuildCharToByte();

    /// <summary>The byte a character stands for, or -1 when it is not one of the 256 alphabet characters.</summary>
    public static int ToByte(char c) => c < CharToByte.Length ? CharToByte[c] : -1;

    /// <summary>
    /// Writes the alphabet characters for the UTF-8 bytes of <paramref name="text"/> into
    /// <paramref name="destination"/> (which must hold <c>3 * text.Length</c> chars) and returns their count.
    /// The text must be valid UTF-16 (we replace lone surrogates before tokenizing).
    /// </summary>
    public static int Map(ReadOnlySpan<char> text, Span<char> destination)
    {
        int n = 0;
        for (int i = 0; i < text.Length; i++)
        {
            int cp = text[i];
            if (cp < 0x80)
            {
                destination[n++] = ByteToChar[cp];
            }
            else if (cp < 0x800)
            {
                destination[n++] = ByteToChar[0xC0 | (cp >> 6)];
                destination[n++] = ByteToChar[0x80 | (cp & 0x3F)];
            }
            else if (char.IsHighSurrogate((char)cp) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                cp = char.ConvertToUtf32((char)cp, text[++i]);
                destination[n++] = ByteToChar[0xF0 | (cp >> 18)];
                destination[n++] = ByteToChar[0x80 | ((cp >> 12) & 0x3F)];
                destination[n++] = ByteToChar[0x80 | ((cp >> 6) & 0x3F)];
                destination[n++] = ByteToChar[0x80 | (cp & 0x3F)];
            }
            else
            {
                destination[n++] = ByteToChar[0xE0 | (cp >> 12)];
                destination[n++] = ByteToChar[0x80 | ((cp >> 6) & 0x3F)];
                destination[n++] = ByteToChar[0x80 | (cp & 0x3F)];
            }
        }
        return n;
    }

    /// <summary>Maps a string eagerly (used when a byte-level step is followed by further pre-tokenizers).</summary>
    public static string Map(string text)
    {
        char[] buffer = new char[text.Length * 3];
        int n = Map(text, buffer);
        return new string(buffer, 0, n);
    }

    private static char[] BuildByteToChar()
    {
        var map = new char[256];
        int shifted = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            map[b] = printable ? (char)b : (char)(256 + shifted++);
        }
        return map;
    }

    private static short[] BuildCharToByte()
    {
        var map = new short[0x144];
        Array.Fill(map, (short)-1);
        for (int b = 0; b < 256; b++) map[ByteToChar[b]] = (short)b;
        return map;
    }
}
