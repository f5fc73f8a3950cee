using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using SvdLlm.Models.Tokenizers;

namespace SvdLlm.Models.Training;

/// <summary>
/// Trains a byte-level BPE tokenizer (the GPT-2 scheme) and writes it as a standard Hugging Face
/// tokenizer.json: ByteLevel pre-tokenizer (GPT-2 regex) and decoder, a BPE model whose vocabulary is
/// the 256 byte symbols followed by the learned merges, and two special tokens at the end —
/// &lt;|begin_of_text|&gt; (added at the start of every sequence by the TemplateProcessing post-processor)
/// and &lt;|end_of_text|&gt;.
/// Algorithm: count pre-tokenized words; repeatedly merge the most frequent adjacent pair
/// (ties: the pair whose merged string sorts first, ordinal), updating pair counts incrementally
/// only in the words that contain the merged pair. Deterministic for a given text and size.
/// </summary>
public static class ByteLevelBpeTrainer
{
    public const string BosToken = "<|begin_of_text|>";
    public const string EosToken = "<|end_of_text|>";

    /// <summary>GPT-2's pre-tokenization pattern, the one the ByteLevel pre-tokenizer applies when use_regex is true.</summary>
    private static readonly Regex Gpt2Pattern = new(@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+", RegexOptions.Compiled);

    public sealed record Result(IReadOnlyList<string> Vocabulary, IReadOnlyList<(string Left, string Right)> Merges, int BosId, int EosId)
    {
        public int VocabSize => Vocabulary.Count + 2;
    }

    /// <param name="vocabSize">total size including the 256 byte symbols and the 2 special tokens</param>
    /// <param name="minFrequency">a pair seen fewer times than this is never merged</param>
    public static Result Train(IEnumerable<string> documents, int vocabSize, int minFrequency = 2, Action<int, int>? progress = null)
    {
        if (vocabSize < 258) throw new ArgumentException($"vocab_size {vocabSize} must be at least 258 (256 bytes + 2 special tokens)");

        // 1. Word frequencies, words as byte-level strings.
        var wordCounts = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (string doc in documents)
            foreach (Match m in Gpt2Pattern.Matches(doc))
            {
                string w = ByteLevelAlphabet.Map(m.Value);
                wordCounts[w] = wordCounts.GetValueOrDefault(w) + 1;
            }

        var vocab = new List<string>(vocabSize);
        var idOf = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int b = 0; b < 256; b++)
        {
            string s = ByteLevelAlphabet.ByteToChar[b].ToString();
            idOf[s] = vocab.Count;
            vocab.Add(s);
        }

        // Sorted for determinism: dictionary order is not specified.
        var words = wordCounts.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToArray();
        var symbols = new List<int>[words.Length];
        var freq = new long[words.Length];
        var pairCounts = new Dictionary<(int, int), long>();
        var pairWords = new Dictionary<(int, int), HashSet<int>>();
        for (int w = 0; w < words.Length; w++)
        {
            freq[w] = words[w].Value;
            symbols[w] = words[w].Key.Select(ch => idOf[ch.ToString()]).ToList();
            AddPairs(w, +1);
        }

        void AddPairs(int w, int sign)
        {
            var s = symbols[w];
            for (int i = 0; i + 1 < s.Count; i++)
            {
                var p = (s[i], s[i + 1]);
                pairCounts[p] = pairCounts.GetValueOrDefault(p) + sign * freq[w];
                if (sign > 0)
                {
                    if (!pairWords.TryGetValue(p, out var set)) pairWords[p] = set = [];
                    set.Add(w);
                }
            }
        }

        var merges = new List<(string, string)>();
        int target = vocabSize - 2;
        while (vocab.Count < target)
        {
            (int, int) best = default;
            long bestCount = 0;
            string? bestString = null;
            var dead = new List<(int, int)>();
            foreach (var (p, c) in pairCounts)
            {
                if (c <= 0) { dead.Add(p); continue; }
                if (c < minFrequency || c < bestCount) continue;
                if (c > bestCount)
                {
                    (best, bestCount, bestString) = (p, c, vocab[p.Item1] + vocab[p.Item2]);
                    continue;
                }
                string merged = vocab[p.Item1] + vocab[p.Item2];
                if (string.CompareOrdinal(merged, bestString) < 0) (best, bestString) = (p, merged);
            }
            foreach (var p in dead) { pairCounts.Remove(p); pairWords.Remove(p); }
            if (bestString is null) break; // nothing frequent enough left to merge
            int newId = vocab.Count;
            vocab.Add(bestString);
            idOf[bestString] = newId;
            merges.Add((vocab[best.Item1], vocab[best.Item2]));

            foreach (int w in pairWords[best].OrderBy(x => x))
            {
                AddPairs(w, -1);
                var s = symbols[w];
                var merged = new List<int>(s.Count);
                for (int i = 0; i < s.Count; i++)
                {
                    if (i + 1 < s.Count && s[i] == best.Item1 && s[i + 1] == best.Item2)
                    {
                        merged.Add(newId);
                        i++;
                    }
                    else merged.Add(s[i]);
                }
                symbols[w] = merged;
                AddPairs(w, +1);
            }
            pairCounts.Remove(best);
            pairWords.Remove(best);
            progress?.Invoke(vocab.Count, target);
        }
        return new Result(vocab, merges, vocab.Count, vocab.Count + 1);
    }

    /// <summary>The tokenizer.json text of a trained tokenizer (Hugging Face `tokenizers` format).</summary>
    public static string ToTokenizerJson(Result r)
    {
        JsonObject AddedToken(int id, string content) => new()
        {
            ["id"] = id, ["content"] = content, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
            ["normalized"] = false, ["special"] = true,
        };
        var vocab = new JsonObject();
        for (int i = 0; i < r.Vocabulary.Count; i++) vocab[r.Vocabulary[i]] = i;
        var merges = new JsonArray(r.Merges.Select(m => (JsonNode)JsonValue.Create($"{m.Left} {m.Right}")!).ToArray());
        JsonObject ByteLevel() => new() { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true };
        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = new JsonArray(AddedToken(r.BosId, BosToken), AddedToken(r.EosId, EosToken)),
            ["normalizer"] = null,
            ["pre_tokenizer"] = ByteLevel(),
            ["post_processor"] = new JsonObject
            {
                ["type"] = "TemplateProcessing",
                ["single"] = new JsonArray(
                    new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = BosToken, ["type_id"] = 0 } },
                    new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } }),
                ["pair"] = new JsonArray(
                    new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = BosToken, ["type_id"] = 0 } },
                    new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } },
                    new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = BosToken, ["type_id"] = 1 } },
                    new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "B", ["type_id"] = 1 } }),
                ["special_tokens"] = new JsonObject
                {
                    [BosToken] = new JsonObject { ["id"] = BosToken, ["ids"] = new JsonArray(r.BosId), ["tokens"] = new JsonArray(BosToken) },
                },
            },
            ["decoder"] = ByteLevel(),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = null,
                ["end_of_word_suffix"] = null, ["fuse_unk"] = false, ["byte_fallback"] = false, ["ignore_merges"] = false,
                ["vocab"] = vocab, ["merges"] = merges,
            },
        };
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
    }

    /// <summary>tokenizer_config.json for the trained tokenizer (what transformers' AutoTokenizer reads beside tokenizer.json).</summary>
    public static string ToTokenizerConfigJson(int modelMaxLength) => new JsonObject
    {
        ["tokenizer_class"] = "PreTrainedTokenizerFast",
        ["bos_token"] = BosToken,
        ["eos_token"] = EosToken,
        ["model_max_length"] = modelMaxLength,
        ["clean_up_tokenization_spaces"] = false,
    }.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
}
