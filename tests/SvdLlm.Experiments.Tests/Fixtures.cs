using System.Text;
using SvdLlm.Models.Tests;
using SvdLlm.Models.Tests.Reference;
using SvdLlm.Models.Training;

namespace SvdLlm.Experiments.Tests;

/// <summary>A micro model (tiny random LLaMA with a trained byte-level BPE tokenizer) and a text file, in a temp directory.</summary>
internal sealed class MicroWorld : IDisposable
{
    public TempDirectory Temp { get; } = new();
    public string ModelDir { get; }
    public string TextFile { get; }
    public string CacheDir { get; }

    /// <param name="arch">Llama2's micro preset (hidden 32, intermediate 80); Llama3's (64/96) has every dimension a multiple of 32, as quantizers need</param>
    public MicroWorld(int seed = 1, TinyArch arch = TinyArch.Llama2)
    {
        TextFile = Temp.File("text.txt");
        File.WriteAllText(TextFile, Text(seed: 7, words: 2500));
        var bpe = ByteLevelBpeTrainer.Train([File.ReadAllText(TextFile)], vocabSize: 300);
        var config = TinyConfig.Preset(arch) with { VocabSize = bpe.VocabSize, BosTokenId = bpe.BosId, EosTokenId = bpe.EosId };
        ModelDir = Temp.Sub("model");
        TinyCheckpoint.Create(ModelDir, config, seed);
        File.WriteAllText(Path.Combine(ModelDir, "tokenizer.json"), ByteLevelBpeTrainer.ToTokenizerJson(bpe));
        CacheDir = Temp.Sub("cache");
    }

    /// <summary>Pseudo-English from a small word list, seeded: enough structure for BPE merges, no external data.</summary>
    public static string Text(int seed, int words)
    {
        string[] vocabulary = ["the", "whale", "ship", "sea", "captain", "and", "of", "a", "to", "in", "was", "he", "his", "that", "it", "with", "as", "upon", "all", "old"];
        var rng = new Random(seed);
        var sb = new StringBuilder();
        for (int i = 0; i < words; i++)
        {
            sb.Append(vocabulary[rng.Next(vocabulary.Length)]);
            sb.Append(i % 13 == 12 ? ".\n" : " ");
        }
        return sb.ToString();
    }

    /// <summary>Writes a matrix file beside the model; {model}, {text} and {cache} are replaced.</summary>
    public string Matrix(string yaml, string name = "matrix.yaml")
    {
        string path = Temp.File(name);
        File.WriteAllText(path, yaml.Replace("{model}", ModelDir).Replace("{text}", TextFile).Replace("{cache}", CacheDir));
        return path;
    }

    public void Dispose() => Temp.Dispose();
}

/// <summary>One value from a results database, for assertions on what a run stored.</summary>
internal static class ResultsDb
{
    public static double Scalar(string db, string sql)
    {
        using var s = SvdLlm.Experiments.Store.ResultStore.Open(db);
        using var cmd = s.Connection.CreateCommand();
        cmd.CommandText = sql;
        return Convert.ToDouble(cmd.ExecuteScalar());
    }
}
