using SvdLlm.Models.Tests.Reference;
using SvdLlm.Models.Training;

namespace SvdLlm.Cli.Tests;

/// <summary>A tiny checkpoint with a byte-level BPE tokenizer trained on <c>text</c>, for commands that tokenize (calibrate, compress, ppl).</summary>
internal static class TinyModelWithTokenizer
{
    public static string Create(string directory, string text, TinyArch arch = TinyArch.Llama2, int vocabSize = 280, int seed = 1)
    {
        var bpe = ByteLevelBpeTrainer.Train([text], vocabSize);
        var config = TinyConfig.Preset(arch) with { VocabSize = bpe.VocabSize, BosTokenId = bpe.BosId, EosTokenId = bpe.EosId };
        Directory.CreateDirectory(directory);
        TinyCheckpoint.Create(directory, config, seed);
        File.WriteAllText(Path.Combine(directory, "tokenizer.json"), ByteLevelBpeTrainer.ToTokenizerJson(bpe));
        return directory;
    }
}
