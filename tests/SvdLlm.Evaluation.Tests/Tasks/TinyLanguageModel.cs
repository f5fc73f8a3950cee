using SvdLlm.Models.Tests.Reference;
using SvdLlm.Models.Tokenizers;
using SvdLlm.Models.Training;

namespace SvdLlm.Evaluation.Tests.Tasks;

/// <summary>A tiny random LLaMA checkpoint with a real byte-level BPE tokenizer.json in the same directory, vocabularies matching.</summary>
internal static class TinyLanguageModel
{
    public const string TrainingText =
        "Question: Which gas do plants absorb from the air?\nAnswer: carbon dioxide. The whale swam toward the ship. " +
        "The trophy does not fit into the suitcase because it is too large. Fill the pan with water, then add soap. " +
        "Call me Ishmael. Some years ago, never mind how long precisely, I thought I would sail about a little.";

    public static (TinyCheckpoint Checkpoint, HfTokenizer Tokenizer) Create(string directory, int seed = 7)
    {
        var trained = ByteLevelBpeTrainer.Train([TrainingText, TrainingText], vocabSize: 300);
        var config = TinyConfig.Preset(TinyArch.Llama2) with
        {
            VocabSize = trained.VocabSize,
            MaxPositionEmbeddings = 256,
            BosTokenId = trained.BosId,
            EosTokenId = trained.EosId,
        };
        var ckpt = TinyCheckpoint.Create(directory, config, seed);
        File.WriteAllText(Path.Combine(directory, "tokenizer.json"), ByteLevelBpeTrainer.ToTokenizerJson(trained));
        return (ckpt, HfTokenizer.Load(Path.Combine(directory, "tokenizer.json")));
    }

    /// <summary>Σ log p(continuation tokens | preceding tokens) from the naive float64 reference forward pass.</summary>
    public static double ReferenceLogLikelihood(TinyCheckpoint ckpt, int[] context, int[] continuation)
    {
        int[] all = [.. context, .. continuation];
        double[] nll = NaiveTransformer.TokenNll(ckpt, all);
        double sum = 0;
        for (int p = context.Length; p < all.Length; p++) sum -= nll[p - 1];
        return sum;
    }
}
