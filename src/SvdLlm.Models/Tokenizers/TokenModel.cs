namespace SvdLlm.Models.Tokenizers;

/// <summary>
/// The model stage of <see cref="HfTokenizer"/>: turns one pre-tokenized word into ids and maps ids
/// to token strings. <see cref="BpeModel"/> is tokenizer.json's rank-ordered BPE;
/// <see cref="SentencePieceBpeModel"/> is a tokenizer.model's score-ordered BPE.
/// </summary>
internal abstract class TokenModel
{
    /// <summary>Largest id in the model vocabulary, -1 when empty.</summary>
    public abstract int MaxId { get; }

    public abstract int? TokenToId(string token);

    public abstract string? IdToToken(int id);

    /// <summary>Appends the ids of one word (already in the model's alphabet) to <paramref name="output"/>.</summary>
    public abstract void Tokenize(ReadOnlySpan<char> word, List<int> output);
}
