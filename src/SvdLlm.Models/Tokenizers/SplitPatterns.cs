using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace SvdLlm.Models.Tokenizers;

/// <summary>One piece of a pattern search: a match or the gap between two matches.</summary>
internal readonly record struct PatternSpan(int Start, int End, bool IsMatch);

/// <summary>
/// A pattern that cuts text into matches and gaps, as <c>tokenizers</c>' <c>Pattern::find_matches</c>:
/// the spans cover the whole input in order; an empty input gives one empty gap.
/// </summary>
internal abstract class SplitPattern
{
    /// <summary>Appends the spans of <paramref name="text"/> to <paramref name="output"/> (indices are UTF-16 offsets).</summary>
    public abstract void FindMatches(ReadOnlySpan<char> text, List<PatternSpan> output);
}

/// <summary>A literal string; non-overlapping occurrences, left to right (HF escapes it into a regex).</summary>
internal sealed class LiteralSplitPattern(string literal) : SplitPattern
{
    /// <summary>Replaces every occurrence, left to right (what HF's <c>Replace</c> does with a String pattern).</summary>
    public string ReplaceAll(string text, string replacement) =>
        literal.Length == 0 ? text : text.Replace(literal, replacement, StringComparison.Ordinal);

    public override void FindMatches(ReadOnlySpan<char> text, List<PatternSpan> output)
    {
        if (literal.Length == 0 || text.IsEmpty)
        {
            output.Add(new PatternSpan(0, text.Length, false));
            return;
        }
        int previous = 0;
        while (previous < text.Length)
        {
            int found = text[previous..].IndexOf(literal.AsSpan(), StringComparison.Ordinal);
            if (found < 0) break;
            int start = previous + found;
            if (start != previous) output.Add(new PatternSpan(previous, start, false));
            output.Add(new PatternSpan(start, start + literal.Length, true));
            previous = start + literal.Length;
        }
        if (previous != text.Length) output.Add(new PatternSpan(previous, text.Length, false));
    }
}

/// <summary>
/// A regular expression written for Oniguruma (the engine HF <c>tokenizers</c> uses), run on .NET's
/// engine. Two differences matter for tokenizer patterns and are handled here:
/// <list type="bullet">
/// <item>.NET matches UTF-16 code units, so <c>\p{L}</c> never matches a letter outside the BMP
/// (e.g. U+1D400 𝐀) and <c>.</c> or a negated class can split a surrogate pair. When the text holds
/// surrogate pairs we run the regex on a projection in which every supplementary code point is
/// replaced by one BMP character of the same Unicode general category, then map offsets back.
/// Character classes used by tokenizer patterns (<c>\p{..}</c>, <c>\s</c>, <c>\w</c>, negations)
/// depend only on the general category, so matching the projection matches Oniguruma on code points.</item>
/// <item>Syntax: see <see cref="OnigurumaSyntax.ToDotNet"/>.</item>
/// </list>
/// </summary>
internal sealed class RegexSplitPattern : SplitPattern
{
    private static readonly char[] StandIns = BuildStandIns();
    private readonly Regex _regex;

    public RegexSplitPattern(Regex regex) => _regex = regex;

    public string Pattern => _regex.ToString();

    public override void FindMatches(ReadOnlySpan<char> text, List<PatternSpan> output)
    {
        if (text.IsEmpty)
        {
            output.Add(new PatternSpan(0, 0, false));
            return;
        }
        int surrogate = text.IndexOfAnyInRange('\uD800', '\uDFFF');
        if (surrogate < 0)
        {
            Collect(text, output, map: null);
            return;
        }
        // Projection: one char per code point, and a map from projected index to original index.
        char[] projected = ArrayPool<char>.Shared.Rent(text.Length);
        int[] map = ArrayPool<int>.Shared.Rent(text.Length + 1);
        try
        {
            int n = 0;
            for (int i = 0; i < text.Length; i++)
            {
                map[n] = i;
                char c = text[i];
                if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
                {
                    var rune = new Rune(c, text[i + 1]);
                    projected[n++] = StandIns[(int)Rune.GetUnicodeCategory(rune)];
                    i++;
                }
                else
                {
                    projected[n++] = c;
                }
            }
            map[n] = text.Length;
            Collect(projected.AsSpan(0, n), output, map);
        }
        finally
        {
            ArrayPool<char>.Shared.Return(projected);
            ArrayPool<int>.Shared.Return(map);
        }
    }

    private void Collect(ReadOnlySpan<char> text, List<PatternSpan> output, int[]? map)
    {
        int previous = 0;
        foreach (ValueMatch m in _regex.EnumerateMatches(text))
        {
            int start = m.Index, end = m.Index + m.Length;
            if (map is not null) { start = map[start]; end = map[end]; }
            if (start != previous) output.Add(new PatternSpan(previous, start, false));
            output.Add(new PatternSpan(start, end, true));
            previous = end;
        }
        int length = map is null ? text.Length : map[text.Length];
        if (previous != length) output.Add(new PatternSpan(previous, length, false));
    }

    /// <summary>
    /// For each general category, a BMP character of that category that is not white space and has
    /// no ASCII case partner (so case-insensitive groups such as <c>(?i:'s)</c> cannot match it).
    /// </summary>
    private static char[] BuildStandIns()
    {
        var standIns = new char[32];
        for (int category = 0; category < standIns.Length; category++)
        {
            standIns[category] = '\uFFFD';
            for (int c = 0x370; c < 0x10000; c++)
            {
                if (c is >= 0xD800 and <= 0xDFFF) continue;
                char ch = (char)c;
                if ((int)CharUnicodeInfo.GetUnicodeCategory(ch) != category || char.IsWhiteSpace(ch)) continue;
                if (char.ToUpperInvariant(ch) < 0x80 || char.ToLowerInvariant(ch) < 0x80) continue;
                standIns[category] = ch;
                break;
            }
        }
        return standIns;
    }
}

/// <summary>Every occurrence of one code point is its own match (HF's <c>impl Pattern for char</c>).</summary>
internal sealed class CodePointSplitPattern(string codePoint) : SplitPattern
{
    public override void FindMatches(ReadOnlySpan<char> text, List<PatternSpan> output)
    {
        if (text.IsEmpty)
        {
            output.Add(new PatternSpan(0, 0, false));
            return;
        }
        int previous = 0;
        int i = 0;
        while (i < text.Length)
        {
            int found = text[i..].IndexOf(codePoint.AsSpan(), StringComparison.Ordinal);
            if (found < 0) break;
            int start = i + found;
            if (start != previous) output.Add(new PatternSpan(previous, start, false));
            output.Add(new PatternSpan(start, start + codePoint.Length, true));
            previous = i = start + codePoint.Length;
        }
        if (previous != text.Length) output.Add(new PatternSpan(previous, text.Length, false));
    }
}

/// <summary>Translates the Oniguruma (Ruby syntax) regexes found in tokenizer.json files to .NET syntax.</summary>
internal static class OnigurumaSyntax
{
    /// <summary>
    /// Rewrites what .NET reads differently: possessive quantifiers (<c>x?+</c>, <c>x*+</c>,
    /// <c>x++</c>, <c>x{n,m}+</c>) become atomic groups, and <c>^</c>/<c>$</c>, which are line
    /// anchors in Ruby syntax, become <c>(?m:^)</c>/<c>(?m:$)</c>. Everything else used by real
    /// tokenizer patterns (<c>\p{L}</c>, <c>\s</c>, <c>(?i:..)</c>, lookahead) means the same in both.
    /// Constructs .NET rejects (e.g. script names such as <c>\p{Han}</c>) fail to compile and are
    /// reported by the caller.
    /// </summary>
    public static string ToDotNet(string pattern)
    {
        var output = new StringBuilder(pattern.Length + 16);
        // Start offset in output of each atom, so that a possessive quantifier can wrap it.
        int lastAtomStart = -1;
        var groupStarts = new Stack<int>();
        int i = 0;
        while (i < pattern.Length)
        {
            char c = pattern[i];
            int atomStart = output.Length;
            switch (c)
            {
                case '\\':
                    i = CopyEscape(pattern, i, output);
                    lastAtomStart = atomStart;
                    continue;
                case '[':
                    i = CopyClass(pattern, i, output);
                    lastAtomStart = atomStart;
                    continue;
                case '(':
                {
                    int end = GroupPrefixEnd(pattern, i);
                    bool inlineOptions = pattern[end - 1] == ')';
                    if (!inlineOptions) groupStarts.Push(output.Length);
                    output.Append(pattern, i, end - i);
                    i = end;
                    lastAtomStart = -1;
                    continue;
                }
                case ')':
                    output.Append(c);
                    i++;
                    lastAtomStart = groupStarts.Count > 0 ? groupStarts.Pop() : -1;
                    continue;
                case '^':
                    output.Append("(?m:^)");
                    i++;
                    lastAtomStart = -1;
                    continue;
                case '$':
                    output.Append("(?m:$)");
                    i++;
                    lastAtomStart = -1;
                    continue;
                case '?' or '*' or '+' or '{':
                {
                    int end = QuantifierEnd(pattern, i);
                    if (end < 0)
                    {
                        // A '{' that is not a quantifier is a literal.
                        output.Append(c);
                        i++;
                        lastAtomStart = atomStart;
                        continue;
                    }
                    string quantifier = pattern[i..end];
                    bool possessive = end < pattern.Length && pattern[end] == '+' && lastAtomStart >= 0;
                    output.Append(quantifier);
                    if (end < pattern.Length && pattern[end] == '?')
                    {
                        output.Append('?'); // lazy
                        end++;
                    }
                    else if (possessive)
                    {
                        output.Insert(lastAtomStart, "(?>");
                        output.Append(')');
                        end++;
                    }
                    i = end;
                    lastAtomStart = -1;
                    continue;
                }
                case '|':
                    output.Append(c);
                    i++;
                    lastAtomStart = -1;
                    continue;
                default:
                    output.Append(c);
                    i++;
                    lastAtomStart = atomStart;
                    continue;
            }
        }
        return output.ToString();
    }

    /// <summary>End of a group opening such as "(", "(?:", "(?i:", "(?&lt;=", "(?&lt;name&gt;" or inline options "(?i)".</summary>
    private static int GroupPrefixEnd(string pattern, int i)
    {
        int j = i + 1;
        if (j >= pattern.Length || pattern[j] != '?') return j;
        j++;
        if (j >= pattern.Length) return j;
        switch (pattern[j])
        {
            case '=' or '!' or '>' or ':':
                return j + 1;
            case '<' when j + 1 < pattern.Length && pattern[j + 1] is '=' or '!':
                return j + 2;
            case '<' or '\'' or 'P':
            {
                int close = pattern.IndexOfAny(['>', '\''], j + 1);
                return close < 0 ? pattern.Length : close + 1;
            }
            default:
                while (j < pattern.Length && (char.IsAsciiLetter(pattern[j]) || pattern[j] == '-')) j++;
                return j < pattern.Length && pattern[j] is ':' or ')' ? j + 1 : j;
        }
    }

    private static int CopyEscape(string pattern, int i, StringBuilder output)
    {
        int end = Math.Min(i + 2, pattern.Length);
        if (end < pattern.Length && (pattern[i + 1] is 'p' or 'P') && pattern[end] == '{')
        {
            int close = pattern.IndexOf('}', end);
            end = close < 0 ? pattern.Length : close + 1;
        }
        output.Append(pattern, i, end - i);
        return end;
    }

    private static int CopyClass(string pattern, int i, StringBuilder output)
    {
        int depth = 0;
        int j = i;
        while (j < pattern.Length)
        {
            char c = pattern[j];
            if (c == '\\') { j += 2; continue; }
            if (c == '[') depth++;
            else if (c == ']' && j > i + 1 && !(j == i + 2 && pattern[i + 1] == '^'))
            {
                depth--;
                if (depth == 0) { j++; break; }
            }
            j++;
        }
        j = Math.Min(j, pattern.Length);
        output.Append(pattern, i, j - i);
        return j;
    }

    private static int QuantifierEnd(string pattern, int i)
    {
        if (pattern[i] != '{') return i + 1;
        int close = pattern.IndexOf('}', i);
        if (close < 0) return -1;
        ReadOnlySpan<char> body = pattern.AsSpan(i + 1, close - i - 1);
        foreach (char c in body)
        {
            if (!char.IsAsciiDigit(c) && c != ',') return -1;
        }
        return body.IsEmpty ? -1 : close + 1;
    }
}
