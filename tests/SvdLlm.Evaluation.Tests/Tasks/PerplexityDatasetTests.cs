using System.IO.Compression;
using System.Text;
using SvdLlm.Evaluation.Perplexity;
using SvdLlm.Evaluation.Tasks;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Tests;
using SvdLlm.Models.Tests.Reference;

namespace SvdLlm.Evaluation.Tests.Tasks;

public class PerplexityDatasetTests
{
    [Fact]
    public void WikiText2_raw_rows_are_the_hf_loader_rows_joined_by_blank_lines()
    {
        using var dir = new TempDirectory();
        string raw = dir.File("wiki.test.raw");
        // wiki.test.raw's shape: " = Title = \n", " \n" for blank lines.
        File.WriteAllText(raw, " \n = Robert Boulter = \n \n Robert Boulter is an English actor . \n");
        // HF rows: "", " = Robert Boulter = \n", "", " Robert Boulter is an English actor . \n"
        Assert.Equal("\n\n = Robert Boulter = \n\n\n\n\n Robert Boulter is an English actor . \n", PerplexityDatasets.WikiText2(raw));

        string jsonl = dir.File("wikitext.jsonl");
        File.WriteAllText(jsonl, "{\"text\": \"\"}\n{\"text\": \" = A = \\n\"}\n");
        Assert.Equal("\n\n = A = \n", PerplexityDatasets.WikiText2(jsonl));
        string json = dir.File("wikitext.json");
        File.WriteAllText(json, "[{\"text\": \"a\"},\n {\"text\": \"b\"}]");
        Assert.Equal("a\n\nb", PerplexityDatasets.WikiText2(json));
        File.WriteAllText(json, "[{\"text\": \"a\"},\n {\"txt\": \"b\"}]");
        var e = Assert.Throws<TaskDataException>(() => PerplexityDatasets.WikiText2(json));
        Assert.Contains("wikitext.json:2", e.Message);
        Assert.Contains("'text'", e.Message);
    }

    [Fact]
    public void Ptb_lines_are_stripped_and_joined_by_blank_lines()
    {
        using var dir = new TempDirectory();
        string path = dir.File("ptb.test.txt");
        File.WriteAllText(path, " no it was n't black monday \n but while the new york stock exchange did n't fall apart \n");
        Assert.Equal("no it was n't black monday\n\nbut while the new york stock exchange did n't fall apart", PerplexityDatasets.Ptb(path));
        string jsonl = dir.File("ptb.jsonl");
        File.WriteAllText(jsonl, "{\"sentence\": \" a \"}\n{\"sentence\": \"b\"}\n");
        Assert.Equal(" a \n\nb", PerplexityDatasets.Ptb(jsonl));
    }

    [Fact]
    public void C4_keeps_the_first_2000_documents_and_reads_gzip()
    {
        using var dir = new TempDirectory();
        string path = dir.File("c4-validation.00000-of-00008.json.gz");
        var sb = new StringBuilder();
        for (int i = 0; i < 2003; i++) sb.Append($"{{\"text\": \"doc {i}\", \"timestamp\": \"2019-04-25T12:57:54Z\", \"url\": \"https://x/{i}\"}}\n");
        using (var gz = new GZipStream(File.Create(path), CompressionLevel.Fastest))
            gz.Write(Encoding.UTF8.GetBytes(sb.ToString()));
        var docs = PerplexityDatasets.C4(path);
        Assert.Equal(2003, docs.Count);
        string text = PerplexityDatasets.C4SvdLlm(docs);
        Assert.Equal(string.Join("\n\n", Enumerable.Range(0, 2000).Select(i => $"doc {i}")), text);

        File.WriteAllBytes(dir.File("bad.json.gz"), [1, 2, 3]);
        Assert.Throws<TaskDataException>(() => PerplexityDatasets.C4(dir.File("bad.json.gz")));
    }

    [Fact]
    public void PythonRandom_reproduces_cpython_random_seed_0()
    {
        // CPython 3: random.seed(0); [random.randint(1, 10) for _ in range(5)] == [7, 7, 1, 5, 9], and the next
        // random.randint(0, 45575) == 31845 (run with python3 on this machine, written down here).
        var rng = new PythonRandom(0);
        Assert.Equal(new[] { 7, 7, 1, 5, 9 }, Enumerable.Range(0, 5).Select(_ => rng.RandInt(1, 10)));
        Assert.Equal(31845, rng.RandInt(0, 45575));
        // random.seed(0); random.random() == 0.8444218515250481, from two 32-bit outputs (a >> 5, b >> 6).
        var r2 = new PythonRandom(0);
        double a = r2.NextUInt32() >> 5, b = r2.NextUInt32() >> 6;
        Assert.Equal(0.8444218515250481, (a * 67108864.0 + b) / 9007199254740992.0);
    }

    [Fact]
    public void Gptq_windows_are_slices_of_long_enough_documents()
    {
        using var dir = new TempDirectory();
        var (_, tokenizer) = TinyLanguageModel.Create(dir.Sub("m"));
        var docs = new List<string> { "short", TinyLanguageModel.TrainingText, "tiny", TinyLanguageModel.TrainingText[40..] };
        int seqLen = 16;
        var ids = PerplexityDatasets.C4GptqWindows(docs, tokenizer, seqLen, windows: 8);
        Assert.Equal(8 * seqLen, ids.Length);
        var encoded = docs.Select(d => tokenizer.Encode(d, addSpecialTokens: true)).ToArray();
        for (int w = 0; w < 8; w++)
        {
            var window = ids[(w * seqLen)..((w + 1) * seqLen)];
            Assert.Contains(encoded, doc => doc.Length > seqLen && Enumerable.Range(0, doc.Length - seqLen + 1).Any(s => doc.AsSpan(s, seqLen).SequenceEqual(window)));
        }
        Assert.Equal(ids, PerplexityDatasets.C4GptqWindows(docs, tokenizer, seqLen, windows: 8));
        Assert.Throws<ArgumentException>(() => PerplexityDatasets.C4GptqWindows(["a", "b"], tokenizer, seqLen, windows: 1));
    }

    [Fact]
    public void Wikitext2_task_equals_the_reference_nll_of_the_documented_token_stream()
    {
        using var dir = new TempDirectory();
        var (ckpt, tokenizer) = TinyLanguageModel.Create(dir.Sub("m"));
        string raw = dir.File("wiki.test.raw");
        File.WriteAllText(raw, " = Whale = \n \n " + TinyLanguageModel.TrainingText + " \n");
        using var model = ModelLoader.Load(ckpt.Directory);
        int seqLen = 12;
        var result = TaskRegistry.Run(model, tokenizer, new TaskRequest("wikitext2", raw, Limit: 3, SeqLen: seqLen));

        var ids = tokenizer.Encode(" = Whale = \n\n\n\n\n " + TinyLanguageModel.TrainingText + " \n", addSpecialTokens: true);
        Assert.Equal(tokenizer.BosTokenId, ids[0]);
        double sum = 0;
        for (int c = 0; c < 3; c++) sum += NaiveTransformer.TokenNll(ckpt, ids[(c * seqLen)..((c + 1) * seqLen)]).Sum();
        double nll = sum / (3 * (seqLen - 1));
        Assert.Equal(3 * (seqLen - 1), result.N);
        Assert.True(Math.Abs(result.Get("nll") - nll) < 1e-5, $"nll {result.Get("nll")} vs reference {nll}");
        Assert.True(Math.Abs(result.Get("ppl") / Math.Exp(nll) - 1) < 1e-4);
        Assert.StartsWith(PerplexityEvaluator.ProtocolName, result.Protocol);
    }
}
