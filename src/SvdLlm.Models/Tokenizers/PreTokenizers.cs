using System.Text;

namespace SvdLlm.Models.Tokenizers;

/// <summary>
/// A stretch of (normalized) text on its way to the model: <c>Text[Start..Start+Length]</c>.
/// <see cref="AtTextStart"/> says whether it begins where the caller's text begins, which is what
/// HF's <c>offsets_original().0 == 0</c> test means for Metaspace's <c>prepend_scheme: first</c>.
/// </summary>
internal readonly record struct Piece(string Text, int Start, int Length, bool AtTextStart)
{
    public ReadOnlySpan<char> Span => Text.AsSpan(Start, Length);

    public static Piece Of(string text, bool atTextStart) => new(text, 0, text.Length, atTextStart);
}

/// <summary>How a <c>Split</c> treats the pattern matches (HF's <c>SplitDelimiterBehavior</c>).</summary>
internal enum SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous }

/// <summary>
/// A tokenizer.json <c>pre_tokenizer</c> step: cuts a piece into smaller pieces (and may rewrite it).
/// As in HF's <c>PreTokenizedString::split</c>, empty pieces are dropped.
/// </summary>
internal abstract class PreTokenizer
{
    /// <summary>Appends the pieces <paramref name="piece"/> splits into. <paramref name="scratch"/> is a reusable buffer.</summary>
    public abstract void Split(in Piece piece, List<Piece> output, List<PatternSpan> scratch);

    /// <summary>
    /// Cuts <paramref name="piece"/> at the spans of <paramref name="pattern"/> with the given behavior;
    /// the same decision table as HF's <c>NormalizedString::split</c>.
    /// </summary>
    protected static void SplitByPattern(
        in Piece piece, SplitPattern pattern, SplitBehavior behavior, bool invert, List<Piece> output, List<PatternSpan> spans)
    {
        spans.Clear();
        pattern.FindMatches(piece.Span, spans);
        if (invert)
        {
            for (int i = 0; i < spans.Count; i++) spans[i] = spans[i] with { IsMatch = !spans[i].IsMatch };
        }
        switch (behavior)
        {
            case SplitBehavior.Isolated:
                foreach (PatternSpan s in spans) Emit(piece, s.Start, s.End, output);
                break;
            case SplitBehavior.Removed:
                foreach (PatternSpan s in spans)
                {
                    if (!s.IsMatch) Emit(piece, s.Start, s.End, output);
                }
                break;
            case SplitBehavior.Contiguous:
            {
                // Consecutive spans with the same flag fuse (matches with matches, gaps with gaps).
                int start = -1, end = -1;
                bool previous = false;
                foreach (PatternSpan s in spans)
                {
                    if (start >= 0 && s.IsMatch == previous) end = s.End;
                    else
                    {
                        if (start >= 0) Emit(piece, start, end, output);
                        (start, end) = (s.Start, s.End);
                    }
                    previous = s.IsMatch;
                }
                if (start >= 0) Emit(piece, start, end, output);
                break;
            }
            case SplitBehavior.MergedWithPrevious:
            {
                // A match that follows a gap joins that gap.
                int start = -1, end = -1;
                bool previous = false;
                foreach (PatternSpan s in spans)
                {
                    if (start >= 0 && s.IsMatch && !previous) end = s.End;
                    else
                    {
                        if (start >= 0) Emit(piece, start, end, output);
                        (start, end) = (s.Start, s.End);
                    }
                    previous = s.IsMatch;
                }
                if (start >= 0) Emit(piece, start, end, output);
                break;
            }
            case SplitBehavior.MergedWithNext:
            {
                // Same, scanning right to left: a match that precedes a gap joins that gap.
                var merged = new List<(int Start, int End)>();
                bool previous = false;
                for (int i = spans.Count - 1; i >= 0; i--)
                {
                    PatternSpan s = spans[i];
                    if (merged.Count > 0 && s.IsMatch && !previous) merged[^1] = (s.Start, merged[^1].End);
                    else merged.Add((s.Start, s.End));
                    previous = s.IsMatch;
                }
                for (int i = merged.Count - 1; i >= 0; i--) Emit(piece, merged[i].Start, merged[i].End, output);
                break;
            }
        }
    }

    private static void Emit(in Piece piece, int start, int end, List<Piece> output)
    {
        if (end > start) output.Add(new Piece(piece.Text, piece.Start + start, end - start, piece.AtTextStart && start == 0));
    }
}

/// <summary><c>Split</c>: cuts at a literal or regex pattern with one of the five behaviors, optionally inverted.</summary>
internal sealed class SplitPreTokenizer(SplitPattern pattern, SplitBehavior behavior, bool invert) : PreTokenizer
{
    public override void Split(in Piece piece, List<Piece> output, List<PatternSpan> scratch) =>
        SplitByPattern(piece, pattern, behavior, invert, output, scratch);
}

/// <summary>
/// <c>ByteLevel</c>: optionally prefixes a space, optionally splits with GPT-2's regex, then spells
/// each piece's UTF-8 bytes with <see cref="ByteLevelAlphabet"/>.
/// </summary>
/// <remarks>
/// When this is the last step (the usual case) the byte spelling is deferred to the model stage
/// (<see cref="MapBytes"/> false), which maps into a reused buffer instead of allocating a string
/// per word. <c>trim_offsets</c> only affects offsets, which we do not produce.
/// </remarks>
internal sealed class ByteLevelPreTokenizer(bool addPrefixSpace, bool useRegex, SplitPattern? gpt2Pattern) : PreTokenizer
{
    /// <summary>GPT-2's pre-tokenization regex (openai/gpt-2 encoder.py; HF byte_level.rs <c>RE</c>).</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// <summary>Whether this step writes the byte spelling itself (false when the tokenizer defers it to the model stage).</summary>
    public bool MapBytes { get; set; } = true;

    public override void Split(in Piece piece, List<Piece> output, List<PatternSpan> scratch)
    {
        Piece p = piece;
        // HF checks for a literal space, not any white space.
        if (addPrefixSpace && p.Span[0] != ' ') p = Piece.Of(" " + p.Span.ToString(), p.AtTextStart);
        int first = output.Count;
        if (useRegex) SplitByPattern(p, gpt2Pattern!, SplitBehavior.Isolated, invert: false, output, scratch);
        else output.Add(p);
        if (!MapBytes) return;
        for (int i = first; i < output.Count; i++)
        {
            Piece q = output[i];
            output[i] = Piece.Of(ByteLevelAlphabet.Map(q.Span.ToString()), q.AtTextStart);
        }
    }
}

/// <summary>When Metaspace prepends the replacement character (HF's <c>PrependScheme</c>).</summary>
internal enum PrependScheme { Always, First, Never }

/// <summary>
/// <c>Metaspace</c> (SentencePiece-style): spaces become the replacement character (usually "▁"),
/// the replacement is prepended per <see cref="PrependScheme"/>, then (if <c>split</c>) the text is
/// cut before every replacement character (<c>MergedWithNext</c>).
/// </summary>
internal sealed class MetaspacePreTokenizer(string replacement, PrependScheme prependScheme, bool split) : PreTokenizer
{
    private readonly CodePointSplitPattern _pattern = new(replacement);

    public override void Split(in Piece piece, List<Piece> output, List<PatternSpan> scratch)
    {
        string text = piece.Span.ToString().Replace(" ", replacement, StringComparison.Ordinal);
        bool prepend = prependScheme switch
        {
            PrependScheme.Always => true,
            PrependScheme.First => piece.AtTextStart,
            _ => false,
        };
        if (prepend && !text.StartsWith(replacement, StringComparison.Ordinal)) text = replacement + text;
        var p = Piece.Of(text, piece.AtTextStart);
        if (split) SplitByPattern(p, _pattern, SplitBehavior.MergedWithNext, invert: false, output, scratch);
        else output.Add(p);
    }
}

/// <summary><c>Digits</c>: isolates numeric characters (Rust's <c>char::is_numeric</c>: Nd, Nl, No), each alone or in runs.</summary>
internal sealed class DigitsPreTokenizer(bool individualDigits) : PreTokenizer
{
    private static readonly NumericPattern Pattern = new();

    public override void Split(in Piece piece, List<Piece> output, List<PatternSpan> scratch) =>
        SplitByPattern(piece, Pattern, individualDigits ? SplitBehavior.Isolated : SplitBehavior.Contiguous, invert: false, output, scratch);

    /// <summary>Every numeric code point is its own match.</summary>
    private sealed class NumericPattern : SplitPattern
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
                Rune.DecodeFromUtf16(text[i..], out Rune rune, out int consumed);
                if (Rune.IsNumber(rune))
                {
                    if (i != previous) output.Add(new PatternSpan(previous, i, false));
                    output.Add(new PatternSpan(i, i + consumed, true));
                    previous = i + consumed;
                }
                i += consumed;
            }
            if (previous != text.Length) output.Add(new PatternSpan(previous, text.Length, false));
        }
    }
}

/// <summary>
/// The pre-tokenizer of a tokenizer: its steps in order (nested <c>Sequence</c>s flattened), each
/// applied to every piece the previous one produced.
/// </summary>
internal sealed class PreTokenizerPipeline
{
    private readonly PreTokenizer[] _steps;

    public PreTokenizerPipeline(IReadOnlyList<PreTokenizer> steps)
    {
        _steps = steps.ToArray();
        // The usual last step is ByteLevel: let the model stage spell the bytes into a reused buffer.
        if (_steps.Length > 0 && _steps[^1] is ByteLevelPreTokenizer last)
        {
            last.MapBytes = false;
            DefersByteMapping = true;
        }
    }

    /// <summary>True when the pieces still need <see cref="ByteLevelAlphabet.Map(ReadOnlySpan{char}, Span{char})"/> before the model.</summary>
    public bool DefersByteMapping { get; }

    /// <summary>Replaces the contents of <paramref name="pieces"/> by their pre-tokenization.</summary>
    public void Run(List<Piece> pieces, List<Piece> spare, List<PatternSpan> scratch)
    {
        foreach (PreTokenizer step in _steps)
        {
            spare.Clear();
            foreach (Piece p in pieces) step.Split(p, spare, scratch);
            pieces.Clear();
            pieces.AddRange(spare);
        }
    }
}
