using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Text;

namespace SvdLlm.Models.Tokenizers;

/// <summary>
/// The BPE model of a SentencePiece tokenizer.model (model_type BPE), encoding one normalized
/// stretch as SentencePiece's <c>bpe::Model::Encode</c> followed by the processor's byte fallback.
/// </summary>
/// <remarks>
/// <para>Symbols start as single characters, except that user-defined pieces are matched greedily
/// (longest first) and never merged further. Adjacent symbols whose concatenation is a piece of
/// type NORMAL, USER_DEFINED or UNUSED may merge; the pair whose merged piece has the highest
/// score merges first, ties going to the leftmost pair. Control, unknown and byte pieces are never
/// merge targets, so "&lt;s&gt;" or "&lt;0x41&gt;" in text stay characters. A remaining UNUSED
/// piece is split back into the two symbols it was merged from.</para>
/// <para>A remaining symbol that is no piece is unknown: with byte_fallback each of its UTF-8
/// bytes becomes its &lt;0xXX&gt; piece; without, a run of unknown symbols becomes one unk id (as
/// SentencePiece merges consecutive unknown pieces).</para>
/// <para>This is SentencePiece's priority (the merged piece's score), not tokenizer.json's (a rank
/// per pair): HF's converter turns scores into ranks, which agree except when two different pairs
/// make the same piece in one word.</para>
/// </remarks>
internal sealed class SentencePieceBpeModel : TokenModel
{
    private const int CacheCapacity = 200_000;
    private const int MaxCachedWordLength = 256;
    private const char Metaspace = '\u2581';

    private readonly string[] _pieces;
    private readonly float[] _scores;
    private readonly SentencePieceType[] _types;
    private readonly Dictionary<string, int> _mergeable;   // NORMAL, USER_DEFINED, UNUSED
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _mergeableBySpan;
    private readonly Dictionary<string, int> _reserved;    // CONTROL, UNKNOWN, BYTE
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _reservedBySpan;
    private readonly Dictionary<char, string[]> _userDefinedByFirstChar;   // longest first
    private readonly int[] _byteIds = new int[256];
    private readonly int _unkId;
    private readonly bool _byteFallback;
    private readonly bool _cutBeforeMetaspace;
    private readonly ConcurrentDictionary<string, int[]> _cache = new();
    private readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _cacheBySpan;
    private int _cacheCount;

    /// <exception cref="TokenizerFormatException">A piece is defined twice, there is no unknown piece, or a byte piece is malformed.</exception>
    public SentencePieceBpeModel(SentencePieceModelFile file)
    {
        int n = file.Pieces.Count;
        _pieces = new string[n];
        _scores = new float[n];
        _types = new SentencePieceType[n];
        _mergeable = new Dictionary<string, int>(n, StringComparer.Ordinal);
        _reserved = new Dictionary<string, int>(StringComparer.Ordinal);
        var userDefined = new List<string>();
        _unkId = -1;
        Array.Fill(_byteIds, -1);
        for (int id = 0; id < n; id++)
        {
            var (piece, score, type) = file.Pieces[id];
            _pieces[id] = piece;
            _scores[id] = score;
            _types[id] = type;
            bool mergeable = type is SentencePieceType.Normal or SentencePieceType.UserDefined or SentencePieceType.Unused;
            if (!(mergeable ? _mergeable : _reserved).TryAdd(piece, id))
                throw new TokenizerFormatException(file.Path, $"pieces[{id}].piece", $"'{piece}' is already defined (as piece {(mergeable ? _mergeable : _reserved)[piece]})");
            if (type == SentencePieceType.UserDefined) userDefined.Add(piece);
            if (type == SentencePieceType.Unknown)
            {
                if (_unkId >= 0) throw new TokenizerFormatException(file.Path, $"pieces[{id}].type", $"a second UNKNOWN piece (the first is {_unkId})");
                _unkId = id;
            }
            if (type == SentencePieceType.Byte)
            {
                if (!file.ByteFallback)
                    throw new TokenizerFormatException(file.Path, $"pieces[{id}].type", "a BYTE piece in a model without trainer_spec.byte_fallback");
                if (piece.Length != 6 || !piece.StartsWith("<0x", StringComparison.Ordinal) || piece[5] != '>'
                    || !byte.TryParse(piece.AsSpan(3, 2), System.Globalization.NumberStyles.AllowHexSpecifier, null, out byte b))
                    throw new TokenizerFormatException(file.Path, $"pieces[{id}].piece", $"a BYTE piece must be <0xXX>, found '{piece}'");
                _byteIds[b] = id;
            }
        }
        if (_unkId < 0) throw new TokenizerFormatException(file.Path, "pieces", "no piece of type UNKNOWN: SentencePiece requires one");
        _byteFallback = file.ByteFallback;
        _mergeableBySpan = _mergeable.GetAlternateLookup<ReadOnlySpan<char>>();
        _reservedBySpan = _reserved.GetAlternateLookup<ReadOnlySpan<char>>();
        _userDefinedByFirstChar = userDefined
            .GroupBy(u => u[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(u => u.Length).ToArray());
        _cacheBySpan = _cache.GetAlternateLookup<ReadOnlySpan<char>>();
        _cutBeforeMetaspace = CanCutBeforeMetaspace();
        MaxId = n - 1;
    }

    public override int MaxId { get; }

    public int UnkId => _unkId;

    public SentencePieceType TypeOf(int id) => _types[id];

    public override int? TokenToId(string token) =>
        _reserved.TryGetValue(token, out int r) ? r : _mergeable.TryGetValue(token, out int m) ? m : null;

    public override string? IdToToken(int id) => (uint)id < (uint)_pieces.Length ? _pieces[id] : null;

    public override void Tokenize(ReadOnlySpan<char> word, List<int> output)
    {
        if (word.IsEmpty) return;
        if (!_cutBeforeMetaspace)
        {
            TokenizeCached(word, output);
            return;
        }
        // As BpeModel.CanCutBeforeMetaspace: no mergeable piece contains "x▁" with x other than "▁",
        // so no merge (nor user-defined match) crosses such a point and the parts encode independently.
        // A run of unknown symbols cannot cross it either: "▁" is a piece (checked).
        int start = 0;
        for (int k = 1; k < word.Length; k++)
        {
            if (word[k] == Metaspace && word[k - 1] != Metaspace)
            {
                TokenizeCached(word[start..k], output);
                start = k;
            }
        }
        TokenizeCached(word[start..], output);
    }

    private bool CanCutBeforeMetaspace()
    {
        if (!_mergeable.ContainsKey(Metaspace.ToString())) return false;
        foreach (string piece in _mergeable.Keys)
        {
            for (int i = 1; i < piece.Length; i++)
            {
                if (piece[i] == Metaspace && piece[i - 1] != Metaspace) return false;
            }
        }
        return true;
    }

    private void TokenizeCached(ReadOnlySpan<char> word, List<int> output)
    {
        if (_cacheBySpan.TryGetValue(word, out int[]? cached))
        {
            output.AddRange(cached);
            return;
        }
        int start = output.Count;
        Encode(word, output);
        if (word.Length <= MaxCachedWordLength && Volatile.Read(ref _cacheCount) < CacheCapacity
            && _cache.TryAdd(word.ToString(), CollectionsMarshal.AsSpan(output)[start..].ToArray()))
        {
            Interlocked.Increment(ref _cacheCount);
        }
    }

    private readonly record struct Symbol(int Start, int Length, int Prev, int Next, bool Frozen);

    private readonly record struct Candidate(int Left, int Right, int Length);

    /// <summary>Orders by score, highest first, then by left position, leftmost first.</summary>
    private sealed class CandidateOrder : IComparer<(float Score, int Left)>
    {
        public static readonly CandidateOrder Instance = new();

        public int Compare((float Score, int Left) a, (float Score, int Left) b)
        {
            int byScore = b.Score.CompareTo(a.Score);
            return byScore != 0 ? byScore : a.Left.CompareTo(b.Left);
        }
    }

    private void Encode(ReadOnlySpan<char> word, List<int> output)
    {
        // 1. Symbols: user-defined pieces (longest match) or single characters.
        var symbols = new List<Symbol>(word.Length);
        for (int i = 0; i < word.Length;)
        {
            int length = char.IsHighSurrogate(word[i]) && i + 1 < word.Length && char.IsLowSurrogate(word[i + 1]) ? 2 : 1;
            bool frozen = false;
            if (_userDefinedByFirstChar.TryGetValue(word[i], out string[]? candidates))
            {
                foreach (string u in candidates)
                {
                    if (word[i..].StartsWith(u, StringComparison.Ordinal))
                    {
                        length = u.Length;
                        frozen = true;
                        break;
                    }
                }
            }
            int index = symbols.Count;
            symbols.Add(new Symbol(i, length, index - 1, i + length < word.Length ? index + 1 : -1, frozen));
            i += length;
        }

        // 2. Merge, highest-scoring merged piece first, leftmost among equals.
        var agenda = new PriorityQueue<Candidate, (float, int)>(CandidateOrder.Instance);
        Dictionary<int, (int Left, int Right)>? unusedSplits = null;   // UNUSED piece id -> indexes of its two parts in spans
        List<(int Start, int Length)>? spans = null;
        Span<Symbol> s = CollectionsMarshal.AsSpan(symbols);

        void Consider(Span<Symbol> s, int left, int right, ReadOnlySpan<char> word)
        {
            if (left < 0 || right < 0 || s[left].Frozen || s[right].Frozen) return;
            int length = s[left].Length + s[right].Length;
            if (!_mergeableBySpan.TryGetValue(word.Slice(s[left].Start, length), out int id)) return;
            agenda.Enqueue(new Candidate(left, right, length), (_scores[id], left));
            if (_types[id] == SentencePieceType.Unused)
            {
                unusedSplits ??= new Dictionary<int, (int, int)>();
                spans ??= new List<(int, int)>();
                // As SentencePiece: the latest pair that formed the piece is the one it is split back into.
                spans.Add((s[left].Start, s[left].Length));
                spans.Add((s[right].Start, s[right].Length));
                unusedSplits[id] = (spans.Count - 2, spans.Count - 1);
            }
        }

        for (int i = 1; i < s.Length; i++) Consider(s, i - 1, i, word);
        while (agenda.TryDequeue(out Candidate top, out _))
        {
            ref Symbol left = ref s[top.Left];
            ref Symbol right = ref s[top.Right];
            if (left.Length == 0 || right.Length == 0 || left.Length + right.Length != top.Length) continue;
            int next = right.Next;
            left = left with { Length = top.Length, Next = next };
            if (next >= 0) s[next] = s[next] with { Prev = top.Left };
            right = right with { Length = 0 };
            Consider(s, left.Prev, top.Left, word);
            Consider(s, top.Left, next, word);
        }

        // 3. Ids, with UNUSED pieces split back and unknown symbols sent to bytes or unk.
        bool previousUnknown = false;
        for (int i = 0; i >= 0 && i < s.Length; i = s[i].Next)
        {
            if (s[i].Length == 0) continue;
            Emit(word.Slice(s[i].Start, s[i].Length), word, output, ref previousUnknown, unusedSplits, spans);
        }
    }

    private void Emit(
        ReadOnlySpan<char> piece, ReadOnlySpan<char> word, List<int> output, ref bool previousUnknown,
        Dictionary<int, (int Left, int Right)>? unusedSplits, List<(int Start, int Length)>? spans)
    {
        int id = PieceToId(piece);
        if (id != _unkId && _types[id] == SentencePieceType.Unused && unusedSplits is not null && unusedSplits.TryGetValue(id, out var parts))
        {
            var (ls, ll) = spans![parts.Left];
            var (rs, rl) = spans[parts.Right];
            Emit(word.Slice(ls, ll), word, output, ref previousUnknown, unusedSplits, spans);
            Emit(word.Slice(rs, rl), word, output, ref previousUnknown, unusedSplits, spans);
            return;
        }
        if (id == _unkId && _byteFallback)
        {
            Span<byte> bytes = stackalloc byte[piece.Length * 3 + 4];
            int count = Encoding.UTF8.GetBytes(piece, bytes);
            for (int k = 0; k < count; k++) output.Add(_byteIds[bytes[k]] >= 0 ? _byteIds[bytes[k]] : _unkId);
            previousUnknown = false;
            return;
        }
        bool unknown = id == _unkId;
        if (!(unknown && previousUnknown)) output.Add(id);
        previousUnknown = unknown;
    }

    /// <summary>SentencePiece's <c>PieceToId</c>: reserved pieces first, then the others, else unk.</summary>
    private int PieceToId(ReadOnlySpan<char> piece) =>
        _reservedBySpan.TryGetValue(piece, out int r) ? r : _mergeableBySpan.TryGetValue(piece, out int m) ? m : _unkId;
}
