using System.Text.Json;

namespace SvdLlm.Models.Tokenizers;

/// <summary>
/// Builds an <see cref="HfTokenizer"/> from a SentencePiece tokenizer.model (LLaMA-1/2, Vicuna,
/// Mistral), encoding as Hugging Face's slow <c>LlamaTokenizer</c> does with it.
/// </summary>
/// <remarks>
/// <para>The slow tokenizer cuts the text at its special tokens (the unknown piece and the BOS and
/// EOS control pieces, matched literally in the raw text) and gives every other stretch to
/// SentencePiece: SentencePiece's normalization (<see cref="SentencePieceNormalizer"/>), then its
/// BPE (<see cref="SentencePieceBpeModel"/>). With <c>legacy</c> true (transformers' default when
/// tokenizer_config.json does not say) every stretch gets the dummy prefix "▁"; with
/// <c>legacy: false</c> only the stretch at the start of the text does. BOS is put first when
/// tokenizer_config.json's <c>add_bos_token</c> is true (the default) and EOS last when
/// <c>add_eos_token</c> is (default false).</para>
/// <para>Decoding is that of HF's converted (fast) LLaMA tokenizer: "▁" becomes a space, byte pieces
/// are reassembled into UTF-8, and one leading space is removed.</para>
/// <para>Supported: model_type BPE with the identity normalization (no precompiled character map),
/// as every LLaMA-family tokenizer.model has. Unigram models (T5, ...), NFKC character maps and
/// treat_whitespace_as_suffix are refused with a message naming the field.</para>
/// </remarks>
internal static class SentencePieceTokenizerLoader
{
    public const string FileName = "tokenizer.model";

    public static HfTokenizer Load(string file)
    {
        SentencePieceModelFile proto = SentencePieceModelFile.Read(file);
        if (proto.ModelType != SentencePieceModelFile.Bpe)
        {
            string name = proto.ModelType switch { 1 => "UNIGRAM", 3 => "WORD", 4 => "CHAR", _ => proto.ModelType.ToString() };
            throw new TokenizerFormatException(file, "trainer_spec.model_type",
                $"model type {name} is not supported: only BPE (2) is, as in LLaMA-family tokenizer.model files; convert the tokenizer to tokenizer.json instead");
        }
        if (proto.PrecompiledCharsmapLength > 0)
            throw new TokenizerFormatException(file, "normalizer_spec.precompiled_charsmap",
                $"a character map ({proto.PrecompiledCharsmapLength} bytes, rule '{proto.NormalizerName}') is not supported: only the identity normalization is");
        if (proto.TreatWhitespaceAsSuffix)
            throw new TokenizerFormatException(file, "trainer_spec.treat_whitespace_as_suffix", "true is not supported (the space marker would go after words)");

        var model = new SentencePieceBpeModel(proto);
        string directory = Path.GetDirectoryName(file)!;
        var warnings = new List<string>();
        var flags = ReadConfigFlags(directory, warnings);

        // The slow tokenizer's special tokens: unk, bos and eos (those ids that name a piece).
        var specials = new List<AddedToken> { new(model.UnkId, model.IdToToken(model.UnkId)!, Special: true) };
        foreach (int id in new[] { proto.BosId, proto.EosId })
        {
            if (id >= 0 && id <= model.MaxId && model.TypeOf(id) == SentencePieceType.Control)
                specials.Add(new AddedToken(id, model.IdToToken(id)!, Special: true));
        }
        var added = new AddedVocabulary(specials, normalizer: null);

        int? bosPiece = proto.BosId >= 0 && proto.BosId <= model.MaxId ? proto.BosId : null;
        int? eosPiece = proto.EosId >= 0 && proto.EosId <= model.MaxId ? proto.EosId : null;
        if (flags.AddBos && bosPiece is null) throw new TokenizerFormatException(file, "trainer_spec.bos_id", $"add_bos_token is true but bos_id {proto.BosId} names no piece");
        if (flags.AddEos && eosPiece is null) throw new TokenizerFormatException(file, "trainer_spec.eos_id", $"add_eos_token is true but eos_id {proto.EosId} names no piece");
        var post = new TemplatePostProcessor(
            flags.AddBos ? [bosPiece!.Value] : [],
            flags.AddEos ? [eosPiece!.Value] : []);

        var normalizer = new SentencePieceNormalizer(
            proto.AddDummyPrefix, proto.RemoveExtraWhitespaces, proto.EscapeWhitespaces, prefixEveryStretch: flags.Legacy);
        var decoder = new SequenceDecoder([
            new ReplaceDecoder(new LiteralSplitPattern("\u2581"), " "),
            new ByteFallbackDecoder(),
            new FuseDecoder(),
            new StripDecoder(" ", proto.AddDummyPrefix ? 1 : 0, 0),
        ]);
        var tokenIds = new Func<string, int?>(content => added.ByContent(content)?.Id ?? model.TokenToId(content));
        var (bos, eos) = TokenizerLoader.ReadBosEos(directory, tokenIds, post, warnings, defaultBos: bosPiece, defaultEos: eosPiece);
        return new HfTokenizer(file, added, normalizer: null, new PreTokenizerPipeline([normalizer]), model, post, decoder, bos, eos, warnings);
    }

    private readonly record struct ConfigFlags(bool Legacy, bool AddBos, bool AddEos);

    /// <summary>legacy, add_bos_token and add_eos_token of tokenizer_config.json, with LlamaTokenizer's defaults.</summary>
    private static ConfigFlags ReadConfigFlags(string directory, List<string> warnings)
    {
        bool legacy = true, addBos = true, addEos = false;
        string config = Path.Combine(directory, "tokenizer_config.json");
        if (!File.Exists(config)) return new ConfigFlags(legacy, addBos, addEos);
        using JsonDocument doc = TokenizerLoader.ParseJson(config);
        JsonElement root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object) throw new TokenizerFormatException(config, "(root)", "expected an object");
        legacy = Flag(config, root, "legacy", legacy);
        addBos = Flag(config, root, "add_bos_token", addBos);
        addEos = Flag(config, root, "add_eos_token", addEos);
        if (root.TryGetProperty("tokenizer_class", out JsonElement cls) && cls.ValueKind == JsonValueKind.String
            && cls.GetString() is { } name && !name.StartsWith("Llama", StringComparison.Ordinal))
        {
            warnings.Add($"{config}: tokenizer_class is '{name}'; tokenizer.model is encoded as LlamaTokenizer does");
        }
        if (File.Exists(Path.Combine(directory, "added_tokens.json")))
            warnings.Add($"{directory}: added_tokens.json is not read; only tokenizer.model's unk, bos and eos pieces are special tokens");
        return new ConfigFlags(legacy, addBos, addEos);
    }

    private static bool Flag(string file, JsonElement root, string name, bool defaultValue) =>
        !root.TryGetProperty(name, out JsonElement v) || v.ValueKind == JsonValueKind.Null ? defaultValue
        : v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean()
        : throw new TokenizerFormatException(file, name, $"expected true, false or null, found {v.GetRawText()}");
}

/// <summary>
/// SentencePiece's normalization with the identity rule, run on one stretch of raw text: with
/// remove_extra_whitespaces, leading spaces are dropped and runs of spaces become one; then each
/// space becomes "▁" (escape_whitespaces) and "▁" is put in front (add_dummy_prefix; for every
/// stretch, or, when <c>prefixEveryStretch</c> is false, only at the start of the text); with
/// remove_extra_whitespaces, trailing "▁"s are then removed, the literal ones and the prefix
/// included, as SentencePiece does. Only U+0020 counts as a space. The result is one piece.
/// </summary>
internal sealed class SentencePieceNormalizer(bool addDummyPrefix, bool removeExtraWhitespaces, bool escapeWhitespaces, bool prefixEveryStretch)
    : PreTokenizer
{
    private const char Metaspace = '\u2581';

    public override void Split(in Piece piece, List<Piece> output, List<PatternSpan> scratch)
    {
        ReadOnlySpan<char> text = piece.Span;
        if (removeExtraWhitespaces) text = text.TrimStart(' ');
        if (text.IsEmpty) return;
        char space = escapeWhitespaces ? Metaspace : ' ';
        var sb = new System.Text.StringBuilder(text.Length + 1);
        if (addDummyPrefix && (prefixEveryStretch || piece.AtTextStart)) sb.Append(space);
        bool previousSpace = false;
        foreach (char c in text)
        {
            if (c == ' ')
            {
                if (!(removeExtraWhitespaces && previousSpace)) sb.Append(space);
                previousSpace = true;
                continue;
            }
            sb.Append(c);
            previousSpace = false;
        }
        if (removeExtraWhitespaces)
        {
            int end = sb.Length;
            while (end > 0 && sb[end - 1] == space) end--;
            sb.Length = end;
        }
        if (sb.Length > 0) output.Add(Piece.Of(sb.ToString(), piece.AtTextStart));
    }
}
