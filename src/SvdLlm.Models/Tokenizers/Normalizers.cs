using SvdLlm.Models.Tokenizers.Unicode;

namespace SvdLlm.Models.Tokenizers;

/// <summary>
/// A tokenizer.json <c>normalizer</c>: rewrites each stretch of text between added tokens before
/// pre-tokenization. We only need the rewritten text (no offset alignments), so normalizers are
/// plain string functions.
/// </summary>
internal abstract class Normalizer
{
    public abstract string Normalize(string text);
}

/// <summary><c>NFC</c> / <c>NFD</c>: Unicode canonical normalization (our own tables, see <see cref="CanonicalNormalization"/>).</summary>
internal sealed class UnicodeNormalizer(bool compose) : Normalizer
{
    public override string Normalize(string text) =>
        compose ? CanonicalNormalization.ToNfc(text) : CanonicalNormalization.ToNfd(text);
}

/// <summary><c>Prepend</c>: puts a prefix in front of non-empty text (LLaMA/Mistral put "▁" there).</summary>
internal sealed class PrependNormalizer(string prefix) : Normalizer
{
    public override string Normalize(string text) => text.Length == 0 ? text : prefix + text;
}

/// <summary><c>Replace</c>: replaces every match of a literal or regex pattern, left to right.</summary>
internal sealed class ReplaceNormalizer(SplitPattern pattern, string content) : Normalizer
{
    public override string Normalize(string text)
    {
        if (pattern is LiteralSplitPattern literal) return literal.ReplaceAll(text, content);
        var spans = new List<PatternSpan>();
        pattern.FindMatches(text, spans);
        var sb = new System.Text.StringBuilder(text.Length);
        foreach (PatternSpan span in spans)
        {
            if (span.IsMatch) sb.Append(content);
            else sb.Append(text, span.Start, span.End - span.Start);
        }
        return sb.ToString();
    }
}

/// <summary><c>Strip</c>: removes leading and/or trailing white space (Unicode White_Space, as Rust's <c>char::is_whitespace</c>).</summary>
internal sealed class StripNormalizer(bool left, bool right) : Normalizer
{
    public override string Normalize(string text)
    {
        int start = 0, end = text.Length;
        if (left) while (start < end && char.IsWhiteSpace(text[start])) start++;
        if (right) while (end > start && char.IsWhiteSpace(text[end - 1])) end--;
        return start == 0 && end == text.Length ? text : text[start..end];
    }
}

/// <summary><c>Sequence</c>: applies each normalizer in order.</summary>
internal sealed class SequenceNormalizer(IReadOnlyList<Normalizer> normalizers) : Normalizer
{
    public override string Normalize(string text)
    {
        foreach (Normalizer n in normalizers) text = n.Normalize(text);
        return text;
    }
}
