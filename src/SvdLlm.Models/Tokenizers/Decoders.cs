using System.Globalization;
using System.Text;

namespace SvdLlm.Models.Tokenizers;

/// <summary>
/// A tokenizer.json <c>decoder</c>. As in HF (<c>Decoder::decode_chain</c>), each decoder maps the
/// list of token strings to a new list; the tokenizer joins the final list with "".
/// </summary>
internal abstract class Decoder
{
    public abstract List<string> DecodeChain(List<string> tokens);
}

/// <summary>
/// <c>ByteLevel</c>: turns the byte-alphabet characters back into bytes and reads them as UTF-8,
/// replacing invalid sequences with U+FFFD (Rust's <c>String::from_utf8_lossy</c>; .NET's UTF-8
/// decoder replaces the same maximal invalid subsequences). A token with a character outside the
/// alphabet (e.g. an added token containing a space) contributes its own UTF-8 bytes.
/// </summary>
internal sealed class ByteLevelDecoder : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        var bytes = new List<byte>();
        foreach (string token in tokens)
        {
            bool allMapped = true;
            foreach (char c in token)
            {
                if (ByteLevelAlphabet.ToByte(c) < 0) { allMapped = false; break; }
            }
            if (allMapped)
            {
                foreach (char c in token) bytes.Add((byte)ByteLevelAlphabet.ToByte(c));
            }
            else
            {
                bytes.AddRange(Encoding.UTF8.GetBytes(token));
            }
        }
        return [Encoding.UTF8.GetString(bytes.ToArray())];
    }
}

/// <summary>
/// <c>Metaspace</c>: the replacement character becomes a space, except that in the first token
/// it is dropped (unless <c>prepend_scheme</c> is <c>never</c>): that space was added by encoding.
/// </summary>
internal sealed class MetaspaceDecoder(string replacement, PrependScheme prependScheme) : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        var output = new List<string>(tokens.Count);
        for (int i = 0; i < tokens.Count; i++)
        {
            string with = i == 0 && prependScheme != PrependScheme.Never ? "" : " ";
            output.Add(tokens[i].Replace(replacement, with, StringComparison.Ordinal));
        }
        return output;
    }
}

/// <summary><c>Replace</c>: per token, replaces every match of the pattern (e.g. "▁" → " ").</summary>
internal sealed class ReplaceDecoder(SplitPattern pattern, string content) : Decoder
{
    private readonly ReplaceNormalizer _replace = new(pattern, content);

    public override List<string> DecodeChain(List<string> tokens) => tokens.ConvertAll(_replace.Normalize);
}

/// <summary>
/// <c>ByteFallback</c>: runs of <c>&lt;0xNN&gt;</c> tokens become the string those bytes spell; a run
/// that is not valid UTF-8 becomes one U+FFFD per byte (HF's rule, unlike from_utf8_lossy).
/// </summary>
internal sealed class ByteFallbackDecoder : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        var output = new List<string>(tokens.Count);
        var pending = new List<byte>();
        foreach (string token in tokens)
        {
            if (TryParseByteToken(token, out byte b))
            {
                pending.Add(b);
                continue;
            }
            Flush(pending, output);
            output.Add(token);
        }
        Flush(pending, output);
        return output;
    }

    private static void Flush(List<byte> pending, List<string> output)
    {
        if (pending.Count == 0) return;
        try
        {
            output.Add(new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(pending.ToArray()));
        }
        catch (DecoderFallbackException)
        {
            for (int i = 0; i < pending.Count; i++) output.Add("\uFFFD");
        }
        pending.Clear();
    }

    /// <summary>"&lt;0xNN&gt;": six characters, two hex digits (HF uses <c>u8::from_str_radix(.., 16)</c>).</summary>
    private static bool TryParseByteToken(string token, out byte value)
    {
        value = 0;
        return token.Length == 6 && token.StartsWith("<0x", StringComparison.Ordinal) && token[5] == '>'
            && byte.TryParse(token.AsSpan(3, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value);
    }
}

/// <summary><c>Fuse</c>: concatenates all tokens into one.</summary>
internal sealed class FuseDecoder : Decoder
{
    public override List<string> DecodeChain(List<string> tokens) => [string.Concat(tokens)];
}

/// <summary><c>Strip</c>: per token, removes up to <c>start</c> leading and <c>stop</c> trailing copies of one character.</summary>
internal sealed class StripDecoder(string content, int start, int stop) : Decoder
{
    public override List<string> DecodeChain(List<string> tokens) => tokens.ConvertAll(Strip);

    private string Strip(string token)
    {
        // Work on code points, as HF (Vec<char>).
        var runes = token.EnumerateRunes().ToList();
        int from = 0;
        for (int i = 0; i < Math.Min(start, runes.Count); i++)
        {
            if (runes[i].ToString() != content) break;
            from = i + 1;
        }
        int to = runes.Count;
        for (int i = 0; i < stop; i++)
        {
            int index = runes.Count - i - 1;
            if (index < 0 || runes[index].ToString() != content) break;
            to = index;
        }
        if (to <= from) return "";
        var sb = new StringBuilder(token.Length);
        for (int i = from; i < to; i++) sb.Append(runes[i].ToString());
        return sb.ToString();
    }
}

/// <summary><c>Sequence</c>: chains decoders.</summary>
internal sealed class SequenceDecoder(IReadOnlyList<Decoder> decoders) : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        foreach (Decoder d in decoders) tokens = d.DecodeChain(tokens);
        return tokens;
    }
}
