using System.Buffers;
using System.Runtime.InteropServices;

namespace SvdLlm.Models.Tokenizers;

/// <summary>
/// A Hugging Face tokenizer (tokenizer.json, a SentencePiece tokenizer.model, or GPT-2's vocab.json + merges.txt) that encodes and
/// decodes exactly as the HF <c>tokenizers</c> library: the same ids for the same text, so that
/// perplexity and zero-shot numbers are comparable with published ones.
/// </summary>
/// <remarks>
/// <para>Pipeline, as HF's <c>Tokenizer::encode</c>: (1) added/special tokens are cut out of the raw
/// text (<see cref="AddedVocabulary"/>); (2) each remaining stretch is normalized
/// (<see cref="Normalizer"/>); (3) pre-tokenized into words (<see cref="PreTokenizerPipeline"/>);
/// (4) each word is merged by the BPE model (<see cref="BpeModel"/>); (5) the post-processor adds
/// BOS/EOS when asked (<see cref="PostProcessor"/>).</para>
/// <para>Special tokens: <c>tokenizer.json</c>'s <c>post_processor</c> alone decides what
/// <see cref="Encode"/> adds, as in HF fast tokenizers (<c>PreTrainedTokenizerFast</c>). The
/// <c>add_bos_token</c>/<c>add_eos_token</c> flags of tokenizer_config.json are not applied; when
/// they disagree with the post-processor this is reported in <see cref="LoadWarnings"/>.</para>
/// <para>Invalid UTF-16: a lone surrogate cannot reach HF's Rust code (Python's bridge rejects it),
/// so there is no HF behaviour to copy. We replace each lone surrogate by U+FFFD before
/// tokenizing; the result is exactly the encoding of the repaired string.</para>
/// <para>Round trip: byte-level tokenizers (GPT-2, Llama-3, Qwen) give back
/// <c>Decode(Encode(x)) == normalize(x)</c> for every string (the identity without a normalizer;
/// NFC(x) for Qwen), special tokens included. SentencePiece-style tokenizers (LLaMA-2, Mistral)
/// prepend "▁" to every stretch between added tokens and strip one leading space when decoding, so
/// the round trip is exact for text without added tokens; after an added token the text gains
/// one leading space (HF does the same).</para>
/// <para>Known differences from HF, all outside what real tokenizer files and ordinary text hit:
/// regexes run on .NET's engine after translation (<see cref="OnigurumaSyntax"/>), so Oniguruma's
/// Unicode case folding in <c>(?i:..)</c> is not reproduced for characters such as U+017F 'ſ';
/// Unicode tables are those of .NET 10 (categories) and of Unicode 15.0 (normalization), so
/// characters assigned later may be classified differently.</para>
/// <para>Thread safety: after loading, all members may be called concurrently.</para>
/// </remarks>
public sealed class HfTokenizer
{
    private readonly AddedVocabulary _added;
    private readonly Normalizer? _normalizer;
    private readonly PreTokenizerPipeline _preTokenizer;
    private readonly TokenModel _model;
    private readonly PostProcessor? _postProcessor;
    private readonly Decoder? _decoder;

    internal HfTokenizer(
        string source,
        AddedVocabulary added,
        Normalizer? normalizer,
        PreTokenizerPipeline preTokenizer,
        TokenModel model,
        PostProcessor? postProcessor,
        Decoder? decoder,
        int? bosTokenId,
        int? eosTokenId,
        IReadOnlyList<string> warnings)
    {
        Source = source;
        _added = added;
        _normalizer = normalizer;
        _preTokenizer = preTokenizer;
        _model = model;
        _postProcessor = postProcessor;
        _decoder = decoder;
        BosTokenId = bosTokenId;
        EosTokenId = eosTokenId;
        LoadWarnings = warnings;
        int maxAdded = added.Tokens.Select(t => t.Id).DefaultIfEmpty(-1).Max();
        VocabSize = Math.Max(model.MaxId, maxAdded) + 1;
    }

    /// <summary>
    /// Loads a tokenizer from a tokenizer.json or SentencePiece tokenizer.model file, or from a directory
    /// holding tokenizer.json (or, failing that, tokenizer.model, then GPT-2's vocab.json/encoder.json +
    /// merges.txt/vocab.bpe). tokenizer_config.json and special_tokens_map.json next to it are read for
    /// the BOS/EOS tokens (and, for tokenizer.model, legacy/add_bos_token/add_eos_token).
    /// </summary>
    /// <exception cref="TokenizerFormatException">A file is missing, malformed, or uses an unsupported component; the message names the file and field.</exception>
    public static HfTokenizer Load(string path) => TokenizerLoader.Load(path);

    /// <summary>The file (or directory) this tokenizer was loaded from.</summary>
    public string Source { get; }

    /// <summary>One more than the largest id (model vocabulary and added tokens): HF's <c>len(tokenizer)</c> when ids are contiguous.</summary>
    public int VocabSize { get; }

    /// <summary>
    /// The BOS token declared by special_tokens_map.json / tokenizer_config.json (or, when neither
    /// declares one, the token the post-processor puts first). Whether <see cref="Encode"/> adds it is
    /// the post-processor's decision: see <see cref="SpecialPrefix"/>.
    /// </summary>
    public int? BosTokenId { get; }

    /// <summary>The EOS token, found as <see cref="BosTokenId"/>.</summary>
    public int? EosTokenId { get; }

    /// <summary>The ids <see cref="Encode"/> puts before the text when <c>addSpecialTokens</c> is true.</summary>
    public IReadOnlyList<int> SpecialPrefix => _postProcessor?.SpecialTokens.Prefix ?? [];

    /// <summary>The ids <see cref="Encode"/> puts after the text when <c>addSpecialTokens</c> is true.</summary>
    public IReadOnlyList<int> SpecialSuffix => _postProcessor?.SpecialTokens.Suffix ?? [];

    /// <summary>Things found while loading that did not stop the load but that a user may want to know.</summary>
    public IReadOnlyList<string> LoadWarnings { get; }

    /// <summary>Encodes <paramref name="text"/> into token ids, with BOS/EOS as the post-processor says when <paramref name="addSpecialTokens"/> is true.</summary>
    public int[] Encode(string text, bool addSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        text = Utf16.ReplaceLoneSurrogates(text);
        var ids = new List<int>(text.Length / 3 + 4);
        var state = new EncodeState();
        var rawSegments = new List<AddedSegment>();
        _added.SplitRaw(text, rawSegments);
        foreach (AddedSegment segment in rawSegments)
        {
            if (segment.TokenId >= 0)
            {
                ids.Add(segment.TokenId);
                continue;
            }
            if (segment.End == segment.Start) continue;
            string stretch = segment.Start == 0 && segment.End == text.Length ? text : text[segment.Start..segment.End];
            if (_normalizer is not null) stretch = _normalizer.Normalize(stretch);
            bool atTextStart = segment.Start == 0;
            if (!_added.HasNormalizedTokens)
            {
                EncodeStretch(stretch, 0, stretch.Length, atTextStart, ids, state);
                continue;
            }
            var normalizedSegments = new List<AddedSegment>();
            _added.SplitNormalized(stretch, normalizedSegments);
            foreach (AddedSegment inner in normalizedSegments)
            {
                if (inner.TokenId >= 0) ids.Add(inner.TokenId);
                else EncodeStretch(stretch, inner.Start, inner.End - inner.Start, atTextStart && inner.Start == 0, ids, state);
            }
        }
        _postProcessor?.Process(ids, addSpecialTokens);
        return ids.ToArray();
    }

    /// <summary>
    /// Decodes ids to text as HF's <c>Tokenizer::decode</c>: ids are mapped to token strings (added
    /// tokens first), special tokens are dropped when <paramref name="skipSpecialTokens"/> is true,
    /// ids that name no token are dropped (as HF does: models often have more embedding rows than
    /// tokens), and the decoder turns the strings into text. This is the <c>tokenizers</c> result;
    /// transformers' optional <c>clean_up_tokenization_spaces</c> post-edit is not applied.
    /// </summary>
    public string Decode(IReadOnlyList<int> ids, bool skipSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var tokens = new List<string>(ids.Count);
        foreach (int id in ids)
        {
            AddedToken? added = _added.ById(id);
            string? token = added?.Content ?? _model.IdToToken(id);
            if (token is null) continue;
            if (skipSpecialTokens && (added ?? _added.ByContent(token)) is { Special: true }) continue;
            tokens.Add(token);
        }
        return _decoder is null ? string.Join(' ', tokens) : string.Concat(_decoder.DecodeChain(tokens));
    }

    /// <summary>The token string of an id (added tokens first, then the model vocabulary).</summary>
    /// <exception cref="ArgumentOutOfRangeException">No token has this id.</exception>
    public string IdToToken(int id) =>
        _added.ById(id)?.Content ?? _model.IdToToken(id)
        ?? throw new ArgumentOutOfRangeException(nameof(id), id, $"no token has id {id} in {Source}");

    /// <summary>The id of a token string (added tokens first, then the model vocabulary), or null.</summary>
    public int? TokenToId(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        return _added.ByContent(token)?.Id ?? _model.TokenToId(token);
    }

    /// <summary>Pre-tokenizes one normalized stretch and runs the model on every word.</summary>
    private void EncodeStretch(string text, int start, int length, bool atTextStart, List<int> ids, EncodeState state)
    {
        if (length == 0) return;
        List<Piece> pieces = state.Pieces;
        pieces.Clear();
        pieces.Add(new Piece(text, start, length, atTextStart));
        _preTokenizer.Run(pieces, state.Spare, state.Spans);
        bool mapBytes = _preTokenizer.DefersByteMapping;
        Span<char> buffer = stackalloc char[512];
        foreach (Piece piece in CollectionsMarshal.AsSpan(pieces))
        {
            if (!mapBytes)
            {
                _model.Tokenize(piece.Span, ids);
                continue;
            }
            int needed = piece.Length * 3;
            if (needed <= buffer.Length)
            {
                int n = ByteLevelAlphabet.Map(piece.Span, buffer);
                _model.Tokenize(buffer[..n], ids);
            }
            else
            {
                char[] rented = ArrayPool<char>.Shared.Rent(needed);
                int n = ByteLevelAlphabet.Map(piece.Span, rented);
                _model.Tokenize(rented.AsSpan(0, n), ids);
                ArrayPool<char>.Shared.Return(rented);
            }
        }
    }

    /// <summary>Buffers reused across the stretches of one <see cref="Encode"/> call.</summary>
    private sealed class EncodeState
    {
        public readonly List<Piece> Pieces = new();
        public readonly List<Piece> Spare = new();
        public readonly List<PatternSpan> Spans = new();
    }
}

/// <summary>UTF-16 repairs applied before tokenizing.</summary>
internal static class Utf16
{
    /// <summary>Replaces each unpaired surrogate by U+FFFD; returns the same instance when there is none.</summary>
    public static string ReplaceLoneSurrogates(string text)
    {
        int first = text.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF');
        if (first < 0) return text;
        char[]? copy = null;
        for (int i = first; i < text.Length; i++)
        {
            char c = text[i];
            if (!char.IsSurrogate(c)) continue;
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                i++;
                continue;
            }
            copy ??= text.ToCharArray();
            copy[i] = '\uFFFD';
        }
        return copy is null ? text : new string(copy);
    }
}
