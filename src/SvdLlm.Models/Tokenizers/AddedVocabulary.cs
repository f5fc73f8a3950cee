using System.Buffers;
using System.Globalization;
using System.Text;

namespace SvdLlm.Models.Tokenizers;

/// <summary>One entry of tokenizer.json's <c>added_tokens</c>.</summary>
internal sealed record AddedToken(
    int Id, string Content, bool Special, bool SingleWord = false, bool LStrip = false, bool RStrip = false, bool Normalized = false);

/// <summary>A stretch of the input: either plain text or one added token (<see cref="TokenId"/> ≥ 0).</summary>
internal readonly record struct AddedSegment(int Start, int End, int TokenId);

/// <summary>
/// The added vocabulary (special tokens such as <c>&lt;|begin_of_text|&gt;</c> and other added tokens),
/// as HF's <c>AddedVocabulary</c>: these are cut out of the text before normalization and
/// pre-tokenization, so "&lt;/s&gt;" in the text is one token and never the BPE of "&lt;", "/s", "&gt;".
/// </summary>
/// <remarks>
/// Matching is leftmost-longest over all token contents (HF builds an Aho-Corasick automaton with
/// <c>MatchKind::LeftmostLongest</c>): at the first position where some token matches, the
/// longest token starting there wins. Tokens with <c>normalized: false</c> are matched on the raw
/// text; tokens with <c>normalized: true</c> are matched (in their normalized spelling) on each
/// normalized stretch between the former. <c>single_word</c>, <c>lstrip</c> and <c>rstrip</c>
/// follow <c>AddedVocabulary::find_matches</c>.
/// </remarks>
internal sealed class AddedVocabulary
{
    private readonly Dictionary<int, AddedToken> _byId = new();
    private readonly Dictionary<string, AddedToken> _byContent = new(StringComparer.Ordinal);
    private readonly Trie _raw;
    private readonly Trie _normalized;

    public AddedVocabulary(IReadOnlyList<AddedToken> tokens, Normalizer? normalizer)
    {
        // Later entries with the same content replace earlier ones (HF keeps the last flags).
        foreach (AddedToken t in tokens)
        {
            if (t.Content.Length == 0) continue;
            if (_byContent.TryGetValue(t.Content, out AddedToken? old)) _byId.Remove(old.Id);
            _byContent[t.Content] = t;
            _byId[t.Id] = t;
        }
        // HF orders special tokens before the others in its automaton; with leftmost-longest and
        // distinct contents the order cannot change a match.
        _raw = new Trie(_byContent.Values.Where(t => !t.Normalized).Select(t => (t.Content, t)));
        _normalized = new Trie(_byContent.Values.Where(t => t.Normalized)
            .Select(t => (normalizer?.Normalize(t.Content) ?? t.Content, t)));
    }

    public IEnumerable<AddedToken> Tokens => _byId.Values;

    public bool HasNormalizedTokens => !_normalized.IsEmpty;

    public AddedToken? ById(int id) => _byId.GetValueOrDefault(id);

    public AddedToken? ByContent(string content) => _byContent.GetValueOrDefault(content);

    /// <summary>Splits raw text on the tokens with <c>normalized: false</c>.</summary>
    public void SplitRaw(string text, List<AddedSegment> output) => FindMatches(text, _raw, output);

    /// <summary>Splits normalized text on the tokens with <c>normalized: true</c>.</summary>
    public void SplitNormalized(string text, List<AddedSegment> output) => FindMatches(text, _normalized, output);

    /// <summary>HF's <c>find_matches</c>: segments covering the whole text (empty text → one empty segment).</summary>
    private static void FindMatches(string text, Trie trie, List<AddedSegment> output)
    {
        output.Clear();
        if (trie.IsEmpty || text.Length == 0)
        {
            output.Add(new AddedSegment(0, text.Length, -1));
            return;
        }
        int startOffset = 0;
        int searchFrom = 0;
        while (searchFrom < text.Length)
        {
            if (!trie.FindLeftmostLongest(text, searchFrom, out int matchStart, out int matchEnd, out AddedToken? token)) break;
            searchFrom = matchEnd; // the automaton's matches do not overlap
            int start = matchStart, stop = matchEnd;
            if (token.SingleWord)
            {
                bool startSpace = start == 0 || !EndsWithWordChar(text, start);
                bool stopSpace = stop == text.Length || !StartsWithWordChar(text, stop);
                if (!startSpace || !stopSpace) continue;
            }
            if (token.LStrip)
            {
                // Take the white space before the token, but not what an earlier token already took.
                int newStart = start;
                while (newStart > 0 && char.IsWhiteSpace(text[newStart - 1])) newStart--;
                start = Math.Max(newStart, startOffset);
            }
            if (token.RStrip)
            {
                while (stop < text.Length && char.IsWhiteSpace(text[stop])) stop++;
            }
            // Defensive: after an rstrip a later match may begin inside the stripped space; HF would
            // emit overlapping pieces there. Such a match is dropped instead.
            if (start < startOffset) continue;
            if (startOffset < start) output.Add(new AddedSegment(startOffset, start, -1));
            output.Add(new AddedSegment(start, stop, token.Id));
            startOffset = stop;
            searchFrom = Math.Max(searchFrom, stop);
        }
        if (startOffset != text.Length) output.Add(new AddedSegment(startOffset, text.Length, -1));
    }

    // Rust regex \w (Unicode): alphabetic, marks, decimal digits, connector punctuation, join controls.
    private static bool IsWordRune(Rune r)
    {
        switch (Rune.GetUnicodeCategory(r))
        {
            case UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter or UnicodeCategory.LetterNumber
                or UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark
                or UnicodeCategory.DecimalDigitNumber or UnicodeCategory.ConnectorPunctuation:
                return true;
            default:
                return r.Value is 0x200C or 0x200D;
        }
    }

    private static bool EndsWithWordChar(string text, int end) =>
        Rune.DecodeLastFromUtf16(text.AsSpan(0, end), out Rune r, out _) == OperationStatus.Done && IsWordRune(r);

    private static bool StartsWithWordChar(string text, int start) =>
        Rune.DecodeFromUtf16(text.AsSpan(start), out Rune r, out _) == OperationStatus.Done && IsWordRune(r);

    /// <summary>A character trie over token contents, with a fast scan for possible first characters.</summary>
    private sealed class Trie
    {
        private readonly Node _root = new();
        private readonly SearchValues<char> _firstChars;

        public Trie(IEnumerable<(string Key, AddedToken Token)> entries)
        {
            var first = new HashSet<char>();
            foreach (var (key, token) in entries)
            {
                if (key.Length == 0) continue;
                Node node = _root;
                foreach (char c in key)
                {
                    node.Children ??= new Dictionary<char, Node>();
                    if (!node.Children.TryGetValue(c, out Node? child)) node.Children[c] = child = new Node();
                    node = child;
                }
                node.Token = token;
                first.Add(key[0]);
            }
            IsEmpty = first.Count == 0;
            _firstChars = SearchValues.Create(first.ToArray());
        }

        public bool IsEmpty { get; }

        public bool FindLeftmostLongest(string text, int from, out int start, out int end, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out AddedToken? token)
        {
            int i = from;
            while (i < text.Length)
            {
                int skip = text.AsSpan(i).IndexOfAny(_firstChars);
                if (skip < 0) break;
                i += skip;
                Node? node = _root;
                AddedToken? best = null;
                int bestEnd = -1;
                for (int j = i; j < text.Length && node.Children is not null && node.Children.TryGetValue(text[j], out node); j++)
                {
                    if (node.Token is not null) { best = node.Token; bestEnd = j + 1; }
                }
                if (best is not null)
                {
                    (start, end, token) = (i, bestEnd, best);
                    return true;
                }
                i++;
            }
            (start, end, token) = (-1, -1, null);
            return false;
        }

        private sealed class Node
        {
            public Dictionary<char, Node>? Children;
            public AddedToken? Token;
        }
    }
}
