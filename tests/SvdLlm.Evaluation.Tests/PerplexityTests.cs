using SvdLlm.Evaluation.Perplexity;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Tests;
using SvdLlm.Models.Tests.Reference;

namespace SvdLlm.Evaluation.Tests;

public class PerplexityTests
{
    private static int[] RandomTokens(int seed, int count, int vocab)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => rng.Next(vocab)).ToArray();
    }

    [Theory]
    [InlineData(TinyArch.Llama3)]
    [InlineData(TinyArch.Opt)]
    [InlineData(TinyArch.Mistral)]
    public void Perplexity_matches_reference_nll(TinyArch arch)
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), arch, seed: 5);
        using var model = ModelLoader.Load(ckpt.Directory);
        int seqLen = 8;
        var ids = RandomTokens(11, 3 * seqLen + 5, model.VocabSize); // 3 chunks, 5 tokens dropped
        var result = PerplexityEvaluator.Evaluate(model, ids, seqLen, batchSize: 2);

        double sum = 0;
        int count = 0;
        for (int c = 0; c < 3; c++)
        {
            foreach (double v in NaiveTransformer.TokenNll(ckpt, ids[(c * seqLen)..((c + 1) * seqLen)])) { sum += v; count++; }
        }
        Assert.Equal(3, result.Chunks);
        Assert.Equal(3 * (seqLen - 1), result.Tokens);
        Assert.Equal(5, result.DroppedTokens);
        Assert.Equal(count, result.Tokens);
        double expectedPpl = Math.Exp(sum / count);
        Assert.True(Math.Abs(result.Ppl / expectedPpl - 1) < 1e-4, $"ppl {result.Ppl} vs reference {expectedPpl}");
    }

    [Fact]
    public void Result_does_not_depend_on_batch_size_beyond_float32_rounding()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Llama2, seed: 3);
        using var model = ModelLoader.Load(ckpt.Directory);
        var ids = RandomTokens(2, 40, model.VocabSize);
        var one = PerplexityEvaluator.Evaluate(model, ids, 8, batchSize: 1);
        var three = PerplexityEvaluator.Evaluate(model, ids, 8, batchSize: 3);
        // Batching changes GEMM row counts and so OpenBLAS's blocking, which moves float32 rounding
        // (~1e-7 relative per logit); it must not move the result beyond that.
        Assert.True(Math.Abs(one.MeanNll / three.MeanNll - 1) < 1e-6, $"{one.MeanNll} vs {three.MeanNll}");
        Assert.Equal(one.Tokens, three.Tokens);
        var limited = PerplexityEvaluator.Evaluate(model, ids, 8, maxChunks: 2);
        Assert.Equal(2, limited.Chunks);
        Assert.Equal(2 * 7, limited.Tokens);
    }

    [Fact]
    public void Too_short_stream_and_bad_seq_len_are_errors()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Llama2, seed: 3);
        using var model = ModelLoader.Load(ckpt.Directory);
        Assert.Contains("fewer than one chunk", Assert.Throws<ArgumentException>(() => PerplexityEvaluator.Evaluate(model, [1, 2, 3], 8)).Message);
        Assert.Throws<ArgumentException>(() => PerplexityEvaluator.Evaluate(model, [1, 2, 3], 1));
    }
}
