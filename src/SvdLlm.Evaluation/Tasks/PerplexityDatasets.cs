using System.Text.Json;
using SvdLlm.Models.Tokenizers;

namespace SvdLlm.Evaluation.Tasks;

/// <summary>
/// The perplexity datasets read from their release files, each turned into the one text SVD-LLM's evaluator
/// tokenizes (SVD-LLM's evaluation protocol; docs/ARCHITECTURE.md, SvdLlm.Evaluation): the dataset's rows joined with "\n\n".
/// </summary>
public static class PerplexityDatasets
{
    public const string Separator = "\n\n";

    /// <summary>SVD-LLM's C4 rule: the first 2000 documents of SparseGPT's c4-validation shard.</summary>
    public const int C4Documents = 2000;

    /// <summary>GPTQ's C4 rule: 256 windows of seq_len tokens drawn with Python's <c>random.seed(0)</c>.</summary>
    public const int GptqWindows = 256;

    /// <summary>
    /// WikiText-2 test text. From <c>wiki.test.raw</c>: the rows the Hugging Face <c>wikitext-2-raw-v1</c> loader makes
    /// (each line with its "\n" when it has non-blank content, "" for a blank line), joined by "\n\n". From a JSON-lines
    /// or JSON-array export: the <c>text</c> fields joined by "\n\n" (the export already holds those rows).
    /// </summary>
    public static string WikiText2(string path)
    {
        if (IsJson(path)) return string.Join(Separator, Field(path, "text"));
        string raw = TaskFiles.ReadText(path);
        return string.Join(Separator, RawRows(raw));
    }

    /// <summary>
    /// PTB test text. From <c>ptb.test.txt</c>: every line stripped (as the <c>ptb_text_only</c> loader does), joined by
    /// "\n\n"; from a JSON export: the <c>sentence</c> fields joined by "\n\n".
    /// </summary>
    public static string Ptb(string path)
    {
        if (IsJson(path)) return string.Join(Separator, Field(path, "sentence"));
        string raw = TaskFiles.ReadText(path);
        var lines = raw.Split('\n');
        // A final newline ends the last line; it does not start an empty row.
        int n = lines.Length > 0 && lines[^1].Length == 0 ? lines.Length - 1 : lines.Length;
        return string.Join(Separator, lines.Take(n).Select(l => l.Trim()));
    }

    /// <summary>The <c>text</c> of every document of a C4 JSON-lines file (SparseGPT's <c>c4-validation.00000-of-00008.json[.gz]</c>).</summary>
    public static IReadOnlyList<string> C4(string path) => Field(path, "text");

    /// <summary>SVD-LLM's C4 text: the first 2000 documents joined by "\n\n" (fewer if the file has fewer).</summary>
    public static string C4SvdLlm(IReadOnlyList<string> documents) => string.Join(Separator, documents.Take(C4Documents));

    /// <summary>
    /// GPTQ's C4 sample (<c>datautils.get_c4</c>, validation part): with Python's <c>random.seed(0)</c>, 256 times draw
    /// a document index with <c>randint(0, n − 1)</c> until the document has at least seq_len tokens (tokenized alone,
    /// with the tokenizer's special tokens), then a start with <c>randint(0, len − seq_len − 1)</c>, and keep that window
    /// of seq_len tokens. Returns the 256 windows concatenated, ready for non-overlapping chunks of seq_len.
    /// </summary>
    public static int[] C4GptqWindows(IReadOnlyList<string> documents, HfTokenizer tokenizer, int seqLen, int windows = GptqWindows)
    {
        var cache = new Dictionary<int, int[]>();
        int[] Tokens(int i)
        {
            if (!cache.TryGetValue(i, out var t)) cache[i] = t = tokenizer.Encode(documents[i], addSpecialTokens: true);
            return t;
        }
        var rng = new PythonRandom(0);
        var result = new int[checked(windows * seqLen)];
        int tries = 0;
        for (int w = 0; w < windows; w++)
        {
            int[] doc;
            while (true)
            {
                doc = Tokens(rng.RandInt(0, documents.Count - 1));
                if (doc.Length >= seqLen) break;
                // GPTQ loops until it finds a long enough document; a file with none would loop forever.
                if (++tries > 100_000)
                    throw new ArgumentException($"C4 (GPTQ protocol): found no document with at least {seqLen} tokens in 100000 draws among {documents.Count} documents");
            }
            if (doc.Length == seqLen)
                throw new ArgumentException($"C4 (GPTQ protocol): a document has exactly seq_len = {seqLen} tokens, where GPTQ's randint(0, len - seq_len - 1) fails; use another seq_len");
            int start = rng.RandInt(0, doc.Length - seqLen - 1);
            Array.Copy(doc, start, result, w * seqLen, seqLen);
        }
        return result;
    }

    /// <summary>The rows of the Hugging Face wikitext loader: a line with content keeps its "\n", a blank line is "".</summary>
    internal static IEnumerable<string> RawRows(string raw)
    {
        int i = 0;
        while (i < raw.Length)
        {
            int nl = raw.IndexOf('\n', i);
            string row = nl < 0 ? raw[i..] : raw[i..(nl + 1)];
            i = nl < 0 ? raw.Length : nl + 1;
            yield return row.Trim().Length == 0 ? "" : row;
        }
    }

    private static bool IsJson(string path)
    {
        string p = path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? path[..^3] : path;
        return p.EndsWith(".json", StringComparison.OrdinalIgnoreCase) || p.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase);
    }

    private static List<string> Field(string path, string field)
    {
        var list = new List<string>();
        foreach (var r in TaskFiles.ReadRecords(path))
        {
            var v = r.Field(field);
            if (v.ValueKind != JsonValueKind.String) throw r.Error($"field '{field}' is {JsonRecord.Kind(v)}, expected a string");
            list.Add(v.GetString()!);
        }
        return list;
    }
}

/// <summary>
/// CPython's <c>random.Random</c> for integer seeds (MT19937 seeded by <c>init_by_array</c> with the seed's 32-bit
/// words, <c>randint</c> by rejection on <c>getrandbits</c>), enough to reproduce GPTQ's seeded sampling.
/// </summary>
public sealed class PythonRandom
{
    private const int N = 624;
    private const int M = 397;
    private readonly uint[] _mt = new uint[N];
    private int _mti;

    public PythonRandom(uint seed)
    {
        // CPython seeds with the absolute value's 32-bit words, least significant first; 0 gives the key [0].
        InitByArray([seed]);
    }

    private void InitGenrand(uint s)
    {
        _mt[0] = s;
        for (_mti = 1; _mti < N; _mti++)
            _mt[_mti] = 1812433253u * (_mt[_mti - 1] ^ (_mt[_mti - 1] >> 30)) + (uint)_mti;
    }

    private void InitByArray(uint[] key)
    {
        InitGenrand(19650218u);
        int i = 1, j = 0;
        for (int k = Math.Max(N, key.Length); k > 0; k--)
        {
            _mt[i] = (_mt[i] ^ ((_mt[i - 1] ^ (_mt[i - 1] >> 30)) * 1664525u)) + key[j] + (uint)j;
            i++; j++;
            if (i >= N) { _mt[0] = _mt[N - 1]; i = 1; }
            if (j >= key.Length) j = 0;
        }
        for (int k = N - 1; k > 0; k--)
        {
            _mt[i] = (_mt[i] ^ ((_mt[i - 1] ^ (_mt[i - 1] >> 30)) * 1566083941u)) - (uint)i;
            i++;
            if (i >= N) { _mt[0] = _mt[N - 1]; i = 1; }
        }
        _mt[0] = 0x80000000u;
    }

    public uint NextUInt32()
    {
        if (_mti >= N)
        {
            for (int k = 0; k < N; k++)
            {
                uint y = (_mt[k] & 0x80000000u) | (_mt[(k + 1) % N] & 0x7fffffffu);
                _mt[k] = _mt[(k + M) % N] ^ (y >> 1) ^ ((y & 1) != 0 ? 0x9908b0dfu : 0u);
            }
            _mti = 0;
        }
        uint x = _mt[_mti++];
        x ^= x >> 11;
        x ^= (x << 7) & 0x9d2c5680u;
        x ^= (x << 15) & 0xefc60000u;
        x ^= x >> 18;
        return x;
    }

    /// <summary><c>random.getrandbits(k)</c> for 1 ≤ k ≤ 32.</summary>
    public uint GetRandBits(int k)
    {
        if (k is < 1 or > 32) throw new ArgumentOutOfRangeException(nameof(k));
        return NextUInt32() >> (32 - k);
    }

    /// <summary><c>random.randint(a, b)</c>: uniform on [a, b] by CPython's <c>_randbelow_with_getrandbits</c>.</summary>
    public int RandInt(int a, int b)
    {
        if (b < a) throw new ArgumentException($"randint({a}, {b}): empty range");
        uint n = (uint)(b - a + 1);
        int k = 32 - System.Numerics.BitOperations.LeadingZeroCount(n);
        uint r = GetRandBits(k);
        while (r >= n) r = GetRandBits(k);
        return a + (int)r;
    }
}
