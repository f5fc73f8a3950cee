using SvdLlm.Models.Architectures;
using SvdLlm.Models.Tests.Reference;

namespace SvdLlm.Models.Tests.Architectures;

/// <summary>
/// The production forward pass (float32, BLAS, SIMD) against the naive float64 reference in
/// Reference/ (scalar loops written from the Hugging Face modeling files) on tiny random checkpoints.
/// Tolerance: logits are O(1); float32 rounding through two layers of O(100)-term dot products
/// stays below ~1e-5, while any semantic slip (rope convention, mask, GQA mapping, a bias, an eps)
/// moves logits by ≥ 1e-2. 2e-4 separates the two with margin.
/// </summary>
public class ForwardParityTests
{
    private const double LogitTolerance = 2e-4;

    public static TheoryData<TinyArch, string> Cases => new()
    {
        { TinyArch.Llama2, "F32" }, { TinyArch.Llama3, "F32" }, { TinyArch.Mistral, "F32" }, { TinyArch.Qwen2, "F32" }, { TinyArch.Opt, "F32" },
        { TinyArch.Llama3, "BF16" }, { TinyArch.Qwen2, "F16" },
    };

    internal static int[] RandomTokens(int seed, int count, int vocab)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => rng.Next(vocab)).ToArray();
    }

    [Theory, MemberData(nameof(Cases))]
    public void Logits_match_the_naive_reference(TinyArch arch, string dtype)
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), arch, seed: 17, dtype);
        using var model = ModelLoader.Load(ckpt.Directory);
        var tokens = RandomTokens(3, 12, model.VocabSize); // 12 > Mistral's window of 5: the window is exercised
        using var logits = model.Logits(tokens, 1, tokens.Length);
        var expected = NaiveTransformer.Logits(ckpt, tokens);
        double maxDiff = 0;
        for (int t = 0; t < tokens.Length; t++)
            for (int v = 0; v < model.VocabSize; v++)
                maxDiff = Math.Max(maxDiff, Math.Abs(logits[t, v] - expected[t, v]));
        Assert.True(maxDiff < LogitTolerance, $"{arch}/{dtype}: max |Δlogit| = {maxDiff:E3}");
    }

    [Fact]
    public void Batched_forward_equals_sequences_run_alone()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Qwen2, seed: 2);
        using var model = ModelLoader.Load(ckpt.Directory);
        var a = RandomTokens(1, 9, model.VocabSize);
        var b = RandomTokens(2, 9, model.VocabSize);
        using var both = model.Logits([.. a, .. b], 2, 9);
        using var la = model.Logits(a, 1, 9);
        using var lb = model.Logits(b, 1, 9);
        for (int t = 0; t < 9; t++)
            for (int v = 0; v < model.VocabSize; v++)
            {
                Assert.Equal(la[t, v], both[t, v], 1e-5f);
                Assert.Equal(lb[t, v], both[9 + t, v], 1e-5f);
            }
    }

    [Theory]
    [InlineData(TinyArch.Llama3)]
    [InlineData(TinyArch.Opt)]
    [InlineData(TinyArch.Mistral)]
    public void Changing_a_later_token_never_changes_earlier_logits(TinyArch arch)
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), arch, seed: 8);
        using var model = ModelLoader.Load(ckpt.Directory);
        var tokens = RandomTokens(4, 10, model.VocabSize);
        using var before = model.Logits(tokens, 1, 10);
        tokens[7] = (tokens[7] + 1) % model.VocabSize;
        using var after = model.Logits(tokens, 1, 10);
        for (int t = 0; t < 7; t++)
            for (int v = 0; v < model.VocabSize; v++)
                Assert.Equal(before[t, v], after[t, v]); // bit-identical: masked positions contribute exact zeros
        double moved = 0;
        for (int v = 0; v < model.VocabSize; v++) moved = Math.Max(moved, Math.Abs(before[7, v] - after[7, v]));
        Assert.True(moved > 1e-3, "the changed position's own logits must change");
    }

    [Fact]
    public void Streaming_weights_layer_by_layer_gives_identical_logits()
    {
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Llama3, seed: 9);
        var tokens = RandomTokens(5, 7, 99);
        using var resident = ModelLoader.Load(ckpt.Directory);
        resident.LoadAll();
        using var streamed = ModelLoader.Load(ckpt.Directory);
        streamed.StreamWeights = true;
        using var a = resident.Logits(tokens, 1, 7);
        using var b = streamed.Logits(tokens, 1, 7);
        Assert.Equal(a.Span.ToArray(), b.Span.ToArray());
        Assert.All(streamed.Linears, l => Assert.False(l.IsLoaded));
    }
}
