using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Text;

namespace SvdLlm.Models.Tokenizers;

/// <summary>The settings of a tokenizer.json <c>model</c> of type BPE.</summary>
internal sealed record BpeOptions(
    string? UnkToken = null,
    bool FuseUnk = false,
    bool ByteFallback = false,
    bool IgnoreMerges = false,
    string? ContinuingSubwordPrefix = null,
    string? EndOfWordSuffix = null);

/// <summary>
/// The BPE model: turns one pre-tokenized word into ids exactly as HF <c>tokenizers</c>' <c>BPE</c>
/// (models/bpe/model.rs and word.rs).
/// </summary>
/// <remarks>
/// <para>Merging uses HF's algorithm, not the textbook loop: the word is a linked list of symbols and
/// a min-heap holds candidate merges ordered by (rank, position). The lowest-ranked pair is merged
/// first, ties going to the leftmost; entries made stale by an earlier merge are skipped when
/// popped. This is O(n log n) per word and does no allocation per merge (buffers are per thread).
/// On a well-formed merge list it gives the same result as "merge the lowest-ranked pair everywhere,
/// repeat", which the tests check with a deliberately naive implementation.</para>
/// <para>Results are cached per word (HF caches too; caching changes no result). The cache is
/// bounded: once full, new words are no longer added.</para>
/// </remarks>
internal sealed class BpeModel : TokenModel
{
    private const int CacheCapacity = 200_000;
    private const int MaxCachedWordLength = 256;
    private const int MaxRetainedScratch = 1 << 16;
    private const char Metaspace = '\u2581';

    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _vocabBySpan;
    private readonly Dictionary<int, string> _idToToken;
    private readonly Dictionary<long, Merge> _merges;
    private readonly BpeOptions _options;
    private readonly int[] _byteFallbackIds;   // <0xNN> token id per byte, -1 when absent
    private readonly bool _cutBeforeMetaspace;
    private readonly ConcurrentDictionary<string, int[]> _cache = new();
    private int _cacheCount;
    private readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _cacheBySpan;

    [ThreadStatic] private static MergeScratch? t_scratch;

    /// <summary>Builds the model. <paramref name="merges"/> are (left, right) token strings in rank order.</summary>
    /// <exception cref="ArgumentException">A merge names a token that is not in the vocabulary (message says which).</exception>
    public BpeModel(Dictionary<string, int> vocab, IReadOnlyList<(string Left, string Right)> merges, BpeOptions options)
    {
        _vocab = vocab;
        _vocabBySpan = vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        _options = options;
        _idToToken = new Dictionary<int, string>(vocab.Count);
        foreach (var (token, id) in vocab) _idToToken.TryAdd(id, token);
        MaxId = vocab.Count == 0 ? -1 : vocab.Values.Max();

        // As HF: the merged token drops the right part's continuing-subword prefix; a pair listed
        // twice keeps the later rank (HF collects into a hash map).
        int prefixLength = options.ContinuingSubwordPrefix?.Length ?? 0;
        _merges = new Dictionary<long, Merge>(merges.Count, PairKeyComparer.Instance);
        for (int rank = 0; rank < merges.Count; rank++)
        {
            var (left, right) = merges[rank];
            if (!vocab.TryGetValue(left, out int a)) throw new ArgumentException($"merge {rank} ('{left} {right}'): '{left}' is not in the vocabulary");
            if (!vocab.TryGetValue(right, out int b)) throw new ArgumentException($"merge {rank} ('{left} {right}'): '{right}' is not in the vocabulary");
            string merged = left + (prefixLength > 0 && right.Length >= prefixLength ? right[prefixLength..] : right);
            if (!vocab.TryGetValue(merged, out int newId)) throw new ArgumentException($"merge {rank} ('{left} {right}'): the merged token '{merged}' is not in the vocabulary");
            _merges[PairKey(a, b)] = new Merge(rank, newId);
        }

        _byteFallbackIds = new int[256];
        for (int b = 0; b < 256; b++) _byteFallbackIds[b] = vocab.TryGetValue($"<0x{b:X2}>", out int id) ? id : -1;

        UnkId = options.UnkToken is not null && vocab.TryGetValue(options.UnkToken, out int unk) ? unk : -1;
        _cacheBySpan = _cache.GetAlternateLookup<ReadOnlySpan<char>>();
        _cutBeforeMetaspace = CanCutBeforeMetaspace(vocab, options);
    }

    /// <summary>Largest id in the model vocabulary, -1 when empty.</summary>
    public override int MaxId { get; }

    /// <summary>Id of <c>unk_token</c>, or -1.</summary>
    public int UnkId { get; }

    public override int? TokenToId(string token) => _vocab.TryGetValue(token, out int id) ? id : null;

    public override string? IdToToken(int id) => _idToToken.GetValueOrDefault(id);

    /// <summary>Appends the ids of one word (already in the model's alphabet) to <paramref name="output"/>.</summary>
    public override void Tokenize(ReadOnlySpan<char> word, List<int> output)
    {
        if (word.IsEmpty) return;
        if (!_cutBeforeMetaspace || word.Length <= 1)
        {
            TokenizeWord(word, output);
            return;
        }
        // See CanCutBeforeMetaspace: the pieces merge exactly as the whole word would.
        int start = 0;
        for (int k = 1; k < word.Length; k++)
        {
            if (word[k] == Metaspace && word[k - 1] != Metaspace)
            {
                TokenizeWord(word[start..k], output);
                start = k;
            }
        }
        TokenizeWord(word[start..], output);
    }

    /// <summary>
    /// SentencePiece-style tokenizers (LLaMA-1/2, Mistral) have no pre-tokenizer: the normalizer turns
    /// a whole stretch of text into one "word", e.g. "▁Call▁me▁Ishmael." — for a book, a million
    /// symbols, merged as one word and never cached. When no vocabulary token contains "x▁" with x
    /// other than "▁", no merge can ever join the symbol before such a "▁" with the one starting at
    /// it, so cutting the word at every such point changes no merge, and no merge order within a
    /// piece (the heap orders by rank, then position, and pieces never interact). Neither can unk
    /// fusing cross the cut, since "▁" itself is a known token. So we cut there, which makes the
    /// pieces short and cacheable. Only enabled when these conditions are verified on the vocabulary,
    /// and never with ignore_merges or subword prefixes/suffixes (which depend on word boundaries).
    /// </summary>
    private static bool CanCutBeforeMetaspace(Dictionary<string, int> vocab, BpeOptions options)
    {
        if (options.IgnoreMerges || !string.IsNullOrEmpty(options.ContinuingSubwordPrefix) || !string.IsNullOrEmpty(options.EndOfWordSuffix))
            return false;
        if (!vocab.ContainsKey(Metaspace.ToString())) return false;
        foreach (string token in vocab.Keys)
        {
            for (int i = 1; i < token.Length; i++)
            {
                if (token[i] == Metaspace && token[i - 1] != Metaspace) return false;
            }
        }
        return true;
    }

    private void TokenizeWord(ReadOnlySpan<char> word, List<int> output)
    {
        // Llama-3 sets ignore_merges: a word that is itself a token is emitted whole, without merging.
        if (_options.IgnoreMerges && _vocabBySpan.TryGetValue(word, out int whole))
        {
            output.Add(whole);
            return;
        }
        if (_cacheBySpan.TryGetValue(word, out int[]? cached))
        {
            output.AddRange(cached);
            return;
        }
        int start = output.Count;
        MergeWord(word, output);
        // (ConcurrentDictionary.Count takes every lock, so the size is tracked separately.)
        if (word.Length <= MaxCachedWordLength && Volatile.Read(ref _cacheCount) < CacheCapacity
            && _cache.TryAdd(word.ToString(), CollectionsMarshal.AsSpan(output)[start..].ToArray()))
        {
            Interlocked.Increment(ref _cacheCount);
        }
    }

    /// <summary>HF's <c>merge_word</c> + <c>Word::merge_all</c>.</summary>
    private void MergeWord(ReadOnlySpan<char> word, List<int> output)
    {
        MergeScratch s = t_scratch ??= new MergeScratch();
        s.Reset(word.Length + 4);

        // 1. One symbol per code point (or its byte-fallback tokens, or unk).
        int pendingUnk = -1; // HF keeps at most one pending unk symbol, to fuse consecutive unknowns
        Span<char> lookup = stackalloc char[64];
        string? prefix = _options.ContinuingSubwordPrefix;
        string? suffix = _options.EndOfWordSuffix;
        for (int i = 0; i < word.Length;)
        {
            int length = char.IsHighSurrogate(word[i]) && i + 1 < word.Length && char.IsLowSurrogate(word[i + 1]) ? 2 : 1;
            bool isFirst = i == 0, isLast = i + length == word.Length;
            ReadOnlySpan<char> unit = word.Slice(i, length);
            i += length;

            scoped ReadOnlySpan<char> key = unit;
            bool decorate = (!isFirst && !string.IsNullOrEmpty(prefix)) || (isLast && !string.IsNullOrEmpty(suffix));
            if (decorate)
            {
                int n = 0;
                Span<char> buffer = (prefix?.Length ?? 0) + (suffix?.Length ?? 0) + 2 <= lookup.Length
                    ? lookup
                    : new char[(prefix?.Length ?? 0) + (suffix?.Length ?? 0) + 2];
                if (!isFirst && prefix is not null) { prefix.AsSpan().CopyTo(buffer); n = prefix.Length; }
                unit.CopyTo(buffer[n..]);
                n += unit.Length;
                if (isLast && suffix is not null) { suffix.AsSpan().CopyTo(buffer[n..]); n += suffix.Length; }
                key = buffer[..n];
            }

            if (_vocabBySpan.TryGetValue(key, out int id))
            {
                if (pendingUnk >= 0) { s.Add(pendingUnk); pendingUnk = -1; }
                s.Add(id);
                continue;
            }
            if (_options.ByteFallback && TryAddByteFallback(key, s))
            {
                // HF does not flush a pending unk here; the unk lands after these bytes. Kept as is.
                continue;
            }
            if (_options.UnkToken is not null)
            {
                if (UnkId < 0) throw new InvalidOperationException($"unk_token '{_options.UnkToken}' is not in the vocabulary");
                if (pendingUnk >= 0 && !_options.FuseUnk) s.Add(pendingUnk);
                pendingUnk = UnkId;
            }
            // Without an unk token HF silently drops a character it cannot represent.
        }
        if (pendingUnk >= 0) s.Add(pendingUnk);

        // 2. Merge, lowest rank first, leftmost first among equal ranks.
        int count = s.Count;
        int[] ids = s.Ids, prev = s.Prev, next = s.Next;
        for (int p = 0; p + 1 < count; p++)
        {
            if (_merges.TryGetValue(PairKey(ids[p], ids[p + 1]), out Merge m)) s.Push(m.Rank, p, m.NewId);
        }
        while (s.TryPop(out int pos, out int newId))
        {
            if (s.Removed[pos]) continue;
            int right = next[pos];
            if (right < 0) continue;
            // Skip entries made stale by an earlier merge: the pair at pos must still produce newId.
            if (!_merges.TryGetValue(PairKey(ids[pos], ids[right]), out Merge current) || current.NewId != newId) continue;

            ids[pos] = newId;
            s.Removed[right] = true;
            int after = next[right];
            next[pos] = after;
            if (after >= 0) prev[after] = pos;

            int before = prev[pos];
            if (before >= 0 && _merges.TryGetValue(PairKey(ids[before], newId), out Merge left)) s.Push(left.Rank, before, left.NewId);
            if (after >= 0 && _merges.TryGetValue(PairKey(newId, ids[after]), out Merge rightMerge)) s.Push(rightMerge.Rank, pos, rightMerge.NewId);
        }
        for (int p = 0; p < count; p++)
        {
            if (!s.Removed[p]) output.Add(ids[p]);
        }
        // Do not keep a huge buffer alive per thread after one very long word.
        if (s.Ids.Length > MaxRetainedScratch) t_scratch = null;
    }

    private bool TryAddByteFallback(ReadOnlySpan<char> unit, MergeScratch s)
    {
        // All bytes must have a <0xNN> token, or none is used (HF collects into an Option<Vec>).
        Span<byte> bytes = stackalloc byte[unit.Length * 3 + 8];
        int n = Encoding.UTF8.GetBytes(unit, bytes);
        for (int k = 0; k < n; k++)
        {
            if (_byteFallbackIds[bytes[k]] < 0) return false;
        }
        for (int k = 0; k < n; k++) s.Add(_byteFallbackIds[bytes[k]]);
        return true;
    }

    private static long PairKey(int left, int right) => ((long)left << 32) | (uint)right;

    private readonly record struct Merge(int Rank, int NewId);

    /// <summary>
    /// long.GetHashCode is left ^ right, which collides massively for pairs of small ids (most
    /// merge lookups would walk long chains); a multiplicative mix spreads them.
    /// </summary>
    private sealed class PairKeyComparer : IEqualityComparer<long>
    {
        public static readonly PairKeyComparer Instance = new();

        public bool Equals(long x, long y) => x == y;

        public int GetHashCode(long key) => (int)(((ulong)key * 0x9E3779B97F4A7C15UL) >> 32);
    }

    /// <summary>Per-thread symbol arrays (a doubly linked list over positions) and the merge heap.</summary>
    private sealed class MergeScratch
    {
        public int[] Ids = new int[64];
        public int[] Prev = new int[64];
        public int[] Next = new int[64];
        public bool[] Removed = new bool[64];
        public int Count;
        private long[] _heapKeys = new long[64];   // rank << 32 | position: orders by rank, then position
        private int[] _heapIds = new int[64];
        private int _heapCount;

        public void Reset(int capacity)
        {
            if (Ids.Length < capacity)
            {
                int size = Math.Max(capacity, Ids.Length * 2);
                Ids = new int[size];
                Prev = new int[size];
                Next = new int[size];
                Removed = new bool[size];
            }
            Count = 0;
            _heapCount = 0;
        }

        public void Add(int id)
        {
            if (Count == Ids.Length)
            {
                int size = Ids.Length * 2;
                Array.Resize(ref Ids, size);
                Array.Resize(ref Prev, size);
                Array.Resize(ref Next, size);
                Array.Resize(ref Removed, size);
            }
            Ids[Count] = id;
            Prev[Count] = Count - 1;
            Next[Count] = -1;
            if (Count > 0) Next[Count - 1] = Count;
            Removed[Count] = false;
            Count++;
        }

        public void Push(int rank, int position, int newId)
        {
            if (_heapCount == _heapKeys.Length)
            {
                Array.Resize(ref _heapKeys, _heapCount * 2);
                Array.Resize(ref _heapIds, _heapCount * 2);
            }
            long key = ((long)rank << 32) | (uint)position;
            int i = _heapCount++;
            while (i > 0)
            {
                int parent = (i - 1) >> 1;
                if (_heapKeys[parent] <= key) break;
                _heapKeys[i] = _heapKeys[parent];
                _heapIds[i] = _heapIds[parent];
                i = parent;
            }
            _heapKeys[i] = key;
            _heapIds[i] = newId;
        }

        /// <summary>Removes the entry with the lowest (rank, position).</summary>
        public bool TryPop(out int position, out int newId)
        {
            if (_heapCount == 0)
            {
                position = newId = 0;
                return false;
            }
            long top = _heapKeys[0];
            newId = _heapIds[0];
            position = (int)(uint)top;
            long key = _heapKeys[--_heapCount];
            int id = _heapIds[_heapCount];
            int i = 0;
            while (true)
            {
                int child = 2 * i + 1;
                if (child >= _heapCount) break;
                if (child + 1 < _heapCount && _heapKeys[child + 1] < _heapKeys[child]) child++;
                if (_heapKeys[child] >= key) break;
                _heapKeys[i] = _heapKeys[child];
                _heapIds[i] = _heapIds[child];
                i = child;
            }
            _heapKeys[i] = key;
            _heapIds[i] = id;
            return true;
        }
    }
}
