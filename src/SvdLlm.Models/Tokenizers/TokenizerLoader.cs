using System.Text.Json;
using System.Text.RegularExpressions;

namespace SvdLlm.Models.Tokenizers;

/// <summary>
/// Reads tokenizer.json (and its tokenizer_config.json / special_tokens_map.json companions), a
/// SentencePiece tokenizer.model (<see cref="SentencePieceTokenizerLoader"/>) or GPT-2's
/// vocab.json + merges.txt, and builds an <see cref="HfTokenizer"/>. In a directory, tokenizer.json
/// wins over tokenizer.model, which wins over the GPT-2 pair. Every problem is a
/// <see cref="TokenizerFormatException"/> naming the file and the JSON field.
/// </summary>
internal static class TokenizerLoader
{
    private const string TokenizerJson = "tokenizer.json";

    public static HfTokenizer Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string full = Path.GetFullPath(path);
        if (File.Exists(full))
        {
            return full.EndsWith(".model", StringComparison.OrdinalIgnoreCase) ? SentencePieceTokenizerLoader.Load(full) : LoadTokenizerJson(full);
        }
        if (!Directory.Exists(full)) throw new TokenizerFormatException(full, null, "no such file or directory");

        string json = Path.Combine(full, TokenizerJson);
        if (File.Exists(json)) return LoadTokenizerJson(json);
        string spm = Path.Combine(full, SentencePieceTokenizerLoader.FileName);
        if (File.Exists(spm)) return SentencePieceTokenizerLoader.Load(spm);
        string? vocab = FirstExisting(full, "vocab.json", "encoder.json");
        string? merges = FirstExisting(full, "merges.txt", "vocab.bpe");
        if (vocab is not null && merges is not null) return LoadGpt2Files(full, vocab, merges);
        throw new TokenizerFormatException(full, null,
            "found neither tokenizer.json, tokenizer.model nor a GPT-2 vocabulary pair (vocab.json or encoder.json, with merges.txt or vocab.bpe)");
    }

    // ---- tokenizer.json ------------------------------------------------------------------------

    private static HfTokenizer LoadTokenizerJson(string file)
    {
        using JsonDocument doc = ParseJson(file);
        var r = new Reader(file);
        JsonElement root = doc.RootElement;
        r.RequireObject(root, "(root)");

        if (root.TryGetProperty("model", out JsonElement modelElement) is false)
            throw r.Error("model", "missing: every tokenizer.json has a model");
        BpeModel model = ReadModel(r, modelElement);

        Normalizer? normalizer = ReadNormalizer(r, Optional(root, "normalizer"), "normalizer");
        var steps = new List<PreTokenizer>();
        ReadPreTokenizer(r, Optional(root, "pre_tokenizer"), "pre_tokenizer", steps);
        var warnings = new List<string>();

        var addedTokens = new List<AddedToken>();
        if (Optional(root, "added_tokens") is { } addedArray)
        {
            r.RequireArray(addedArray, "added_tokens");
            int i = 0;
            foreach (JsonElement t in addedArray.EnumerateArray())
            {
                string at = $"added_tokens[{i++}]";
                r.RequireObject(t, at);
                string content = r.String(t, "content", at);
                int declared = r.Int(t, "id", at);
                // HF re-derives the id: a token already in the model vocabulary keeps its model id.
                int id = model.TokenToId(content) ?? declared;
                if (id != declared)
                    warnings.Add($"{file}: {at} '{content}' declares id {declared} but the model vocabulary has it at {id}; using {id} as HF does");
                addedTokens.Add(new AddedToken(
                    id, content,
                    Special: r.Bool(t, "special", at, false),
                    SingleWord: r.Bool(t, "single_word", at, false),
                    LStrip: r.Bool(t, "lstrip", at, false),
                    RStrip: r.Bool(t, "rstrip", at, false),
                    Normalized: r.Bool(t, "normalized", at, true)));
            }
        }
        var added = new AddedVocabulary(addedTokens, normalizer);

        var tokenIds = new Func<string, int?>(content => added.ByContent(content)?.Id ?? model.TokenToId(content));
        PostProcessor? post = ReadPostProcessor(r, Optional(root, "post_processor"), "post_processor", tokenIds);
        Decoder? decoder = ReadDecoder(r, Optional(root, "decoder"), "decoder");

        if (Optional(root, "truncation") is not null)
            warnings.Add($"{file}: 'truncation' is set and ignored (transformers also overrides it per call); Encode never truncates");

        var (bos, eos) = ReadBosEos(Path.GetDirectoryName(file)!, tokenIds, post, warnings, defaultBos: null, defaultEos: null);
        return new HfTokenizer(file, added, normalizer, new PreTokenizerPipeline(steps), model, post, decoder, bos, eos, warnings);
    }

    private static BpeModel ReadModel(Reader r, JsonElement m)
    {
        const string at = "model";
        r.RequireObject(m, at);
        string? type = Optional(m, "type") is { ValueKind: JsonValueKind.String } t ? t.GetString() : null;
        // Old files omit the type; a model with merges is BPE.
        if (type is null && m.TryGetProperty("merges", out _)) type = "BPE";
        if (type != "BPE")
            throw r.Error("model.type", $"model type '{type ?? "(none)"}' is not supported: only BPE is (WordPiece, Unigram and WordLevel are not)");
        if (Optional(m, "dropout") is { ValueKind: JsonValueKind.Number } dropout && dropout.GetDouble() > 0)
            throw r.Error("model.dropout", $"BPE dropout {dropout.GetDouble()} makes tokenization random; only null or 0 is supported");

        JsonElement vocabElement = r.Required(m, "vocab", at);
        r.RequireObject(vocabElement, "model.vocab");
        var vocab = new Dictionary<string, int>(vocabElement.GetPropertyCount(), StringComparer.Ordinal);
        foreach (JsonProperty p in vocabElement.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetInt32(out int id) || id < 0)
                throw r.Error($"model.vocab[\"{p.Name}\"]", $"expected a non-negative integer id, found {p.Value.GetRawText()}");
            vocab[p.Name] = id;
        }

        JsonElement mergesElement = r.Required(m, "merges", at);
        r.RequireArray(mergesElement, "model.merges");
        var merges = new List<(string, string)>(mergesElement.GetArrayLength());
        int index = 0;
        foreach (JsonElement e in mergesElement.EnumerateArray())
        {
            string field = $"model.merges[{index++}]";
            merges.Add(ReadMerge(r, e, field));
        }

        var options = new BpeOptions(
            UnkToken: r.OptionalString(m, "unk_token", at),
            FuseUnk: r.Bool(m, "fuse_unk", at, false),
            ByteFallback: r.Bool(m, "byte_fallback", at, false),
            IgnoreMerges: r.Bool(m, "ignore_merges", at, false),
            ContinuingSubwordPrefix: r.OptionalString(m, "continuing_subword_prefix", at),
            EndOfWordSuffix: r.OptionalString(m, "end_of_word_suffix", at));
        try
        {
            return new BpeModel(vocab, merges, options);
        }
        catch (ArgumentException e)
        {
            throw r.Error("model.merges", e.Message);
        }
    }

    /// <summary>A merge is "a b" (legacy: exactly one space) or ["a", "b"] (tokenizers ≥ 0.20).</summary>
    private static (string, string) ReadMerge(Reader r, JsonElement e, string field)
    {
        if (e.ValueKind == JsonValueKind.String)
        {
            string s = e.GetString()!;
            string[] parts = s.Split(' ');
            if (parts.Length != 2) throw r.Error(field, $"expected \"left right\" with exactly one space, found \"{s}\"");
            return (parts[0], parts[1]);
        }
        if (e.ValueKind == JsonValueKind.Array && e.GetArrayLength() == 2
            && e[0].ValueKind == JsonValueKind.String && e[1].ValueKind == JsonValueKind.String)
        {
            return (e[0].GetString()!, e[1].GetString()!);
        }
        throw r.Error(field, $"expected a string \"left right\" or a pair [\"left\", \"right\"], found {e.GetRawText()}");
    }

    private static Normalizer? ReadNormalizer(Reader r, JsonElement? element, string at)
    {
        if (element is not { } n) return null;
        string type = r.Type(n, at);
        switch (type)
        {
            case "NFC": return new UnicodeNormalizer(compose: true);
            case "NFD": return new UnicodeNormalizer(compose: false);
            case "Prepend": return new PrependNormalizer(r.String(n, "prepend", at));
            case "Replace": return new ReplaceNormalizer(ReadPattern(r, r.Required(n, "pattern", at), $"{at}.pattern"), r.String(n, "content", at));
            case "Strip": return new StripNormalizer(r.Bool(n, "strip_left", at, true), r.Bool(n, "strip_right", at, true));
            case "Sequence":
            {
                JsonElement list = r.Required(n, "normalizers", at);
                r.RequireArray(list, $"{at}.normalizers");
                var items = new List<Normalizer>();
                int i = 0;
                foreach (JsonElement child in list.EnumerateArray())
                {
                    if (ReadNormalizer(r, child.ValueKind == JsonValueKind.Null ? null : child, $"{at}.normalizers[{i++}]") is { } c) items.Add(c);
                }
                return new SequenceNormalizer(items);
            }
            default:
                throw r.Error($"{at}.type", $"normalizer type '{type}' is not supported (supported: NFC, NFD, Prepend, Replace, Strip, Sequence)");
        }
    }

    private static void ReadPreTokenizer(Reader r, JsonElement? element, string at, List<PreTokenizer> steps)
    {
        if (element is not { } p) return;
        string type = r.Type(p, at);
        switch (type)
        {
            case "Sequence":
            {
                JsonElement list = r.Required(p, "pretokenizers", at);
                r.RequireArray(list, $"{at}.pretokenizers");
                int i = 0;
                foreach (JsonElement child in list.EnumerateArray())
                    ReadPreTokenizer(r, child.ValueKind == JsonValueKind.Null ? null : child, $"{at}.pretokenizers[{i++}]", steps);
                return;
            }
            case "Split":
            {
                SplitPattern pattern = ReadPattern(r, r.Required(p, "pattern", at), $"{at}.pattern");
                string behavior = r.String(p, "behavior", at);
                if (!Enum.TryParse(behavior, ignoreCase: false, out SplitBehavior b) || !Enum.IsDefined(b))
                    throw r.Error($"{at}.behavior", $"unknown split behavior '{behavior}' (expected Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous)");
                steps.Add(new SplitPreTokenizer(pattern, b, r.Bool(p, "invert", at, false)));
                return;
            }
            case "ByteLevel":
            {
                bool useRegex = r.Bool(p, "use_regex", at, true);
                steps.Add(new ByteLevelPreTokenizer(
                    addPrefixSpace: r.Bool(p, "add_prefix_space", at, true),
                    useRegex: useRegex,
                    gpt2Pattern: useRegex ? Gpt2Regex.Value : null));
                return;
            }
            case "Metaspace":
            {
                string replacement = ReadSingleCodePoint(r, p, "replacement", at);
                PrependScheme scheme = ReadPrependScheme(r, p, at);
                steps.Add(new MetaspacePreTokenizer(replacement, scheme, r.Bool(p, "split", at, true)));
                return;
            }
            case "Digits":
                steps.Add(new DigitsPreTokenizer(r.Bool(p, "individual_digits", at, false)));
                return;
            default:
                throw r.Error($"{at}.type", $"pre-tokenizer type '{type}' is not supported (supported: Split, ByteLevel, Metaspace, Digits, Sequence)");
        }
    }

    /// <summary>
    /// <c>prepend_scheme</c> (always/first/never), or the older <c>add_prefix_space</c>; as HF, a
    /// false <c>add_prefix_space</c> means never and contradicting the scheme is an error.
    /// </summary>
    private static PrependScheme ReadPrependScheme(Reader r, JsonElement p, string at)
    {
        PrependScheme scheme = PrependScheme.Always;
        if (r.OptionalString(p, "prepend_scheme", at) is { } s)
        {
            scheme = s switch
            {
                "always" => PrependScheme.Always,
                "first" => PrependScheme.First,
                "never" => PrependScheme.Never,
                _ => throw r.Error($"{at}.prepend_scheme", $"unknown prepend_scheme '{s}' (expected always, first or never)"),
            };
        }
        if (Optional(p, "add_prefix_space") is { ValueKind: JsonValueKind.False })
        {
            if (scheme != PrependScheme.Never && p.TryGetProperty("prepend_scheme", out _))
                throw r.Error($"{at}.add_prefix_space", "add_prefix_space false contradicts the declared prepend_scheme");
            scheme = PrependScheme.Never;
        }
        return scheme;
    }

    private static PostProcessor? ReadPostProcessor(Reader r, JsonElement? element, string at, Func<string, int?> tokenIds)
    {
        if (element is not { } p) return null;
        string type = r.Type(p, at);
        switch (type)
        {
            case "ByteLevel":
                return new ByteLevelPostProcessor();
            case "Sequence":
            {
                JsonElement list = r.Required(p, "processors", at);
                r.RequireArray(list, $"{at}.processors");
                var items = new List<PostProcessor>();
                int i = 0;
                foreach (JsonElement child in list.EnumerateArray())
                {
                    if (ReadPostProcessor(r, child.ValueKind == JsonValueKind.Null ? null : child, $"{at}.processors[{i++}]", tokenIds) is { } c) items.Add(c);
                }
                return new SequencePostProcessor(items);
            }
            case "TemplateProcessing":
                return ReadTemplate(r, p, at);
            case "RobertaProcessing" or "BertProcessing":
            {
                // [CLS] $A [SEP] for a single sequence; each is given as [token, id].
                int cls = ReadTokenIdPair(r, r.Required(p, "cls", at), $"{at}.cls");
                int sep = ReadTokenIdPair(r, r.Required(p, "sep", at), $"{at}.sep");
                return new TemplatePostProcessor([cls], [sep]);
            }
            default:
                throw r.Error($"{at}.type", $"post-processor type '{type}' is not supported (supported: TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence)");
        }
    }

    private static int ReadTokenIdPair(Reader r, JsonElement e, string at)
    {
        if (e.ValueKind != JsonValueKind.Array || e.GetArrayLength() != 2 || !e[1].TryGetInt32(out int id))
            throw r.Error(at, $"expected [token, id], found {e.GetRawText()}");
        return id;
    }

    /// <summary><c>TemplateProcessing</c>'s <c>single</c> template: pieces before and after <c>$A</c>.</summary>
    private static PostProcessor ReadTemplate(Reader r, JsonElement p, string at)
    {
        var specials = new Dictionary<string, int[]>(StringComparer.Ordinal);
        if (Optional(p, "special_tokens") is { } map)
        {
            r.RequireObject(map, $"{at}.special_tokens");
            foreach (JsonProperty entry in map.EnumerateObject())
            {
                string field = $"{at}.special_tokens[\"{entry.Name}\"]";
                JsonElement ids = r.Required(entry.Value, "ids", field);
                r.RequireArray(ids, $"{field}.ids");
                specials[entry.Name] = ids.EnumerateArray().Select(x => x.TryGetInt32(out int v) ? v
                    : throw r.Error($"{field}.ids", $"expected integer ids, found {x.GetRawText()}")).ToArray();
            }
        }
        JsonElement single = r.Required(p, "single", at);
        var pieces = new List<(bool IsSequence, string Id)>();
        if (single.ValueKind == JsonValueKind.String)
        {
            // The string form "<s> $A" (accepted by HF's Template deserializer too).
            foreach (string token in single.GetString()!.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            {
                string name = token.Contains(':') ? token[..token.LastIndexOf(':')] : token;
                pieces.Add(name.StartsWith('$') ? (true, name) : (false, name));
            }
        }
        else
        {
            r.RequireArray(single, $"{at}.single");
            int i = 0;
            foreach (JsonElement piece in single.EnumerateArray())
            {
                string field = $"{at}.single[{i++}]";
                if (Optional(piece, "Sequence") is { } seq) pieces.Add((true, r.String(seq, "id", $"{field}.Sequence")));
                else if (Optional(piece, "SpecialToken") is { } sp) pieces.Add((false, r.String(sp, "id", $"{field}.SpecialToken")));
                else throw r.Error(field, $"expected {{\"Sequence\": ..}} or {{\"SpecialToken\": ..}}, found {piece.GetRawText()}");
            }
        }
        var prefix = new List<int>();
        var suffix = new List<int>();
        bool seenSequence = false;
        foreach (var (isSequence, id) in pieces)
        {
            if (isSequence)
            {
                if (id is not ("A" or "$A" or "$" or "$0")) throw r.Error($"{at}.single", $"the single template may only use sequence A, found '{id}'");
                if (seenSequence) throw r.Error($"{at}.single", "sequence A appears twice in the single template");
                seenSequence = true;
                continue;
            }
            if (!specials.TryGetValue(id, out int[]? ids))
                throw r.Error($"{at}.special_tokens", $"the single template uses '{id}', which special_tokens does not define");
            (seenSequence ? suffix : prefix).AddRange(ids);
        }
        if (!seenSequence) throw r.Error($"{at}.single", "the single template has no $A");
        return new TemplatePostProcessor(prefix.ToArray(), suffix.ToArray());
    }

    private static Decoder? ReadDecoder(Reader r, JsonElement? element, string at)
    {
        if (element is not { } d) return null;
        string type = r.Type(d, at);
        switch (type)
        {
            case "ByteLevel": return new ByteLevelDecoder();
            case "Metaspace": return new MetaspaceDecoder(ReadSingleCodePoint(r, d, "replacement", at), ReadPrependScheme(r, d, at));
            case "Replace": return new ReplaceDecoder(ReadPattern(r, r.Required(d, "pattern", at), $"{at}.pattern"), r.String(d, "content", at));
            case "ByteFallback": return new ByteFallbackDecoder();
            case "Fuse": return new FuseDecoder();
            case "Strip": return new StripDecoder(ReadSingleCodePoint(r, d, "content", at), r.Int(d, "start", at), r.Int(d, "stop", at));
            case "Sequence":
            {
                JsonElement list = r.Required(d, "decoders", at);
                r.RequireArray(list, $"{at}.decoders");
                var items = new List<Decoder>();
                int i = 0;
                foreach (JsonElement child in list.EnumerateArray())
                {
                    if (ReadDecoder(r, child.ValueKind == JsonValueKind.Null ? null : child, $"{at}.decoders[{i++}]") is { } c) items.Add(c);
                }
                return new SequenceDecoder(items);
            }
            default:
                throw r.Error($"{at}.type", $"decoder type '{type}' is not supported (supported: ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence)");
        }
    }

    /// <summary>A pattern: <c>{"String": "..."}</c> (a literal) or <c>{"Regex": "..."}</c> (Oniguruma syntax).</summary>
    private static SplitPattern ReadPattern(Reader r, JsonElement e, string at)
    {
        r.RequireObject(e, at);
        if (Optional(e, "String") is { } s) return new LiteralSplitPattern(r.StringValue(s, $"{at}.String"));
        if (Optional(e, "Regex") is { } re) return new RegexSplitPattern(CompileRegex(r, r.StringValue(re, $"{at}.Regex"), $"{at}.Regex"));
        throw r.Error(at, $"expected {{\"String\": ..}} or {{\"Regex\": ..}}, found {e.GetRawText()}");
    }

    private static Regex CompileRegex(Reader r, string pattern, string at)
    {
        try
        {
            return new Regex(OnigurumaSyntax.ToDotNet(pattern), RegexOptions.Compiled | RegexOptions.CultureInvariant);
        }
        catch (ArgumentException e)
        {
            throw r.Error(at, $"the regex \"{pattern}\" cannot be run on .NET's engine: {e.Message}");
        }
    }

    private static readonly Lazy<RegexSplitPattern> Gpt2Regex = new(() =>
        new RegexSplitPattern(new Regex(ByteLevelPreTokenizer.Gpt2Pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant)));

    private static string ReadSingleCodePoint(Reader r, JsonElement e, string name, string at)
    {
        string s = r.String(e, name, at);
        if (s.EnumerateRunes().Count() != 1) throw r.Error($"{at}.{name}", $"expected exactly one character, found \"{s}\"");
        return s;
    }

    // ---- GPT-2 vocab.json + merges.txt ---------------------------------------------------------

    /// <summary>
    /// The original GPT-2 files: what transformers' GPT2TokenizerFast builds from them — no
    /// normalizer, ByteLevel(add_prefix_space=false) with GPT-2's regex, BPE, ByteLevel decoder,
    /// no BOS/EOS added; &lt;|endoftext|&gt; is a special added token and GPT-2's BOS and EOS.
    /// </summary>
    private static HfTokenizer LoadGpt2Files(string directory, string vocabFile, string mergesFile)
    {
        var vr = new Reader(vocabFile);
        Dictionary<string, int> vocab;
        using (JsonDocument doc = ParseJson(vocabFile))
        {
            vr.RequireObject(doc.RootElement, "(root)");
            vocab = new Dictionary<string, int>(doc.RootElement.GetPropertyCount(), StringComparer.Ordinal);
            foreach (JsonProperty p in doc.RootElement.EnumerateObject())
            {
                if (!p.Value.TryGetInt32(out int id) || id < 0)
                    throw vr.Error($"[\"{p.Name}\"]", $"expected a non-negative integer id, found {p.Value.GetRawText()}");
                vocab[p.Name] = id;
            }
        }

        var merges = new List<(string, string)>();
        int lineNumber = 0;
        foreach (string line in File.ReadLines(mergesFile))
        {
            lineNumber++;
            if (line.StartsWith("#version", StringComparison.Ordinal) || line.Length == 0) continue;
            string[] parts = line.Split(' ');
            if (parts.Length != 2) throw new TokenizerFormatException(mergesFile, $"line {lineNumber}", $"expected \"left right\" with exactly one space, found \"{line}\"");
            merges.Add((parts[0], parts[1]));
        }

        BpeModel model;
        try
        {
            model = new BpeModel(vocab, merges, new BpeOptions());
        }
        catch (ArgumentException e)
        {
            throw new TokenizerFormatException(mergesFile, null, e.Message);
        }

        const string EndOfText = "<|endoftext|>";
        var addedTokens = new List<AddedToken>();
        if (model.TokenToId(EndOfText) is { } eot) addedTokens.Add(new AddedToken(eot, EndOfText, Special: true));
        var added = new AddedVocabulary(addedTokens, normalizer: null);
        var pre = new PreTokenizerPipeline([new ByteLevelPreTokenizer(addPrefixSpace: false, useRegex: true, Gpt2Regex.Value)]);
        var tokenIds = new Func<string, int?>(content => added.ByContent(content)?.Id ?? model.TokenToId(content));
        var warnings = new List<string>();
        int? endOfText = model.TokenToId(EndOfText);
        var (bos, eos) = ReadBosEos(directory, tokenIds, post: null, warnings, defaultBos: endOfText, defaultEos: endOfText);
        return new HfTokenizer(directory, added, normalizer: null, pre, model, postProcessor: null, new ByteLevelDecoder(), bos, eos, warnings);
    }

    // ---- BOS / EOS -----------------------------------------------------------------------------

    /// <summary>
    /// BOS/EOS as transformers resolves them: tokenizer_config.json, overridden by
    /// special_tokens_map.json; when neither names one, the defaults (GPT-2) or the tokens the
    /// post-processor puts before/after the text. Also notes add_bos_token/add_eos_token flags that
    /// disagree with the post-processor (which we follow, as HF fast tokenizers do).
    /// </summary>
    internal static (int? Bos, int? Eos) ReadBosEos(
        string directory, Func<string, int?> tokenIds, PostProcessor? post, List<string> warnings, int? defaultBos, int? defaultEos)
    {
        var declared = new Dictionary<string, string?>();
        bool? addBos = null, addEos = null;
        foreach (string name in new[] { "tokenizer_config.json", "special_tokens_map.json" })
        {
            string file = Path.Combine(directory, name);
            if (!File.Exists(file)) continue;
            using JsonDocument doc = ParseJson(file);
            var r = new Reader(file);
            r.RequireObject(doc.RootElement, "(root)");
            foreach (string key in new[] { "bos_token", "eos_token" })
            {
                if (!doc.RootElement.TryGetProperty(key, out JsonElement v)) continue;
                declared[key] = v.ValueKind switch
                {
                    JsonValueKind.Null => null,
                    JsonValueKind.String => v.GetString(),
                    JsonValueKind.Object => r.String(v, "content", key),
                    _ => throw r.Error(key, $"expected a string, null or {{\"content\": ..}}, found {v.GetRawText()}"),
                };
                if (declared[key] is { } content && tokenIds(content) is null)
                    throw r.Error(key, $"'{content}' is neither an added token nor in the vocabulary");
            }
            if (doc.RootElement.TryGetProperty("add_bos_token", out JsonElement ab) && ab.ValueKind is JsonValueKind.True or JsonValueKind.False) addBos = ab.GetBoolean();
            if (doc.RootElement.TryGetProperty("add_eos_token", out JsonElement ae) && ae.ValueKind is JsonValueKind.True or JsonValueKind.False) addEos = ae.GetBoolean();
        }

        var (prefix, suffix) = post?.SpecialTokens ?? ([], []);
        int? bos = declared.TryGetValue("bos_token", out string? b) ? (b is null ? null : tokenIds(b))
            : defaultBos ?? (prefix.Count > 0 ? prefix[0] : null);
        int? eos = declared.TryGetValue("eos_token", out string? e) ? (e is null ? null : tokenIds(e))
            : defaultEos ?? (suffix.Count > 0 ? suffix[^1] : null);

        bool addsBos = bos is { } bosId && prefix.Contains(bosId);
        bool addsEos = eos is { } eosId && suffix.Contains(eosId);
        if (addBos is { } wantBos && wantBos != addsBos)
            warnings.Add($"{directory}: tokenizer_config.json says add_bos_token={wantBos.ToString().ToLowerInvariant()} but tokenizer.json's post_processor {(addsBos ? "adds" : "does not add")} BOS; following the post_processor, as HF fast tokenizers do");
        if (addEos is { } wantEos && wantEos != addsEos)
            warnings.Add($"{directory}: tokenizer_config.json says add_eos_token={wantEos.ToString().ToLowerInvariant()} but tokenizer.json's post_processor {(addsEos ? "adds" : "does not add")} EOS; following the post_processor, as HF fast tokenizers do");
        return (bos, eos);
    }

    // ---- JSON helpers --------------------------------------------------------------------------

    internal static JsonDocument ParseJson(string file)
    {
        try
        {
            using FileStream stream = File.OpenRead(file);
            return JsonDocument.Parse(stream, new JsonDocumentOptions { MaxDepth = 256 });
        }
        catch (JsonException e)
        {
            throw new TokenizerFormatException(file, null, $"not valid JSON (line {e.LineNumber + 1}, byte {e.BytePositionInLine}): {e.Message}", e);
        }
        catch (IOException e)
        {
            throw new TokenizerFormatException(file, null, $"cannot be read: {e.Message}", e);
        }
    }

    private static string? FirstExisting(string directory, params string[] names) =>
        names.Select(n => Path.Combine(directory, n)).FirstOrDefault(File.Exists);

    /// <summary>The property's value, or null when absent or JSON null.</summary>
    private static JsonElement? Optional(JsonElement obj, string name) =>
        obj.ValueKind == JsonValueKind.Object && obj.TryGetProperty(name, out JsonElement v) && v.ValueKind != JsonValueKind.Null ? v : null;

    /// <summary>Typed reads that name the file and field on failure.</summary>
    private sealed class Reader(string file)
    {
        public TokenizerFormatException Error(string field, string problem) => new(file, field, problem);

        public void RequireObject(JsonElement e, string at)
        {
            if (e.ValueKind != JsonValueKind.Object) throw Error(at, $"expected an object, found {Kind(e)}");
        }

        public void RequireArray(JsonElement e, string at)
        {
            if (e.ValueKind != JsonValueKind.Array) throw Error(at, $"expected an array, found {Kind(e)}");
        }

        public JsonElement Required(JsonElement obj, string name, string at)
        {
            RequireObject(obj, at);
            if (!obj.TryGetProperty(name, out JsonElement v) || v.ValueKind == JsonValueKind.Null) throw Error($"{at}.{name}", "missing");
            return v;
        }

        public string Type(JsonElement obj, string at)
        {
            RequireObject(obj, at);
            if (!obj.TryGetProperty("type", out JsonElement t) || t.ValueKind != JsonValueKind.String) throw Error($"{at}.type", "missing");
            return t.GetString()!;
        }

        public string String(JsonElement obj, string name, string at) => StringValue(Required(obj, name, at), $"{at}.{name}");

        public string StringValue(JsonElement v, string at) =>
            v.ValueKind == JsonValueKind.String ? v.GetString()! : throw Error(at, $"expected a string, found {Kind(v)}");

        public string? OptionalString(JsonElement obj, string name, string at) =>
            Optional(obj, name) is { } v ? StringValue(v, $"{at}.{name}") : null;

        public int Int(JsonElement obj, string name, string at)
        {
            JsonElement v = Required(obj, name, at);
            return v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i) ? i : throw Error($"{at}.{name}", $"expected an integer, found {v.GetRawText()}");
        }

        public bool Bool(JsonElement obj, string name, string at, bool defaultValue) => Optional(obj, name) switch
        {
            null => defaultValue,
            { ValueKind: JsonValueKind.True } => true,
            { ValueKind: JsonValueKind.False } => false,
            { } v => throw Error($"{at}.{name}", $"expected true or false, found {v.GetRawText()}"),
        };

        private static string Kind(JsonElement e) => e.ValueKind.ToString().ToLowerInvariant();
    }
}
