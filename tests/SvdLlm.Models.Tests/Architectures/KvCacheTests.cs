using SvdLlm.Models.Architectures;
using SvdLlm.Models.Tests.Reference;
using SvdLlm.Numerics;

namespace SvdLlm.Models.Tests.Architectures;

/// <summary>
/// Incremental decoding against the full-sequence forward: prefill of a prompt into a KV cache, then
/// one token per step, must give at every position the logits <see cref="CausalLanguageModel.Logits"/>
/// gives for the whole sequence at once. The two paths do the same float32 arithmetic except for the
/// order of summation (GEMM blocking over different matrix sizes, a softmax over the visible keys
/// instead of a masked full row), which moves O(1) logits by a few float32 ulps per operation (measured:
/// ≤ 6e-6 after two layers). A semantic slip (a wrong absolute position, a key missing from the cache, the
/// sliding window ignored, the wrong kv head for a query head) moves them by ≥ 1e-2; 1e-4 separates the two.
/// </summary>
public class KvCacheTests
{
    private const float Tolerance = 1e-4f;
    private const int SeqLen = 12; // > Mistral's window of 5, so decode steps attend over a truncated window

    public static TheoryData<string, int> Cases => new()
    {
        { "llama3-gqa", 1 }, { "llama3-gqa", 5 },
        { "qwen2-bias", 4 },
        { "qwen2-window-upper-layers", 2 },
        { "mistral-window", 1 }, { "mistral-window", 7 },
        { "opt", 1 }, { "opt", 6 },
        { "low-rank", 3 },
    };

    /// <summary>Writes the named tiny checkpoint: the presets, and a low-rank one with every decoder linear stored as U·V.</summary>
    internal static string WriteCheckpoint(TempDirectory dir, string name)
    {
        return name switch
        {
            "llama3-gqa" => TinyCheckpoint.Create(dir.Sub(name), TinyArch.Llama3, seed: 31).Directory,
            "qwen2-bias" => TinyCheckpoint.Create(dir.Sub(name), TinyArch.Qwen2, seed: 32).Directory,
            // Qwen2 with use_sliding_window: a window of 4 on layers ≥ 1 only (max_window_layers = 1).
            "qwen2-window-upper-layers" => TinyCheckpoint.Create(dir.Sub(name),
                TinyConfig.Preset(TinyArch.Qwen2) with { UseSlidingWindow = true, SlidingWindow = 4, MaxWindowLayers = 1 }, seed: 37).Directory,
            "mistral-window" => TinyCheckpoint.Create(dir.Sub(name), TinyArch.Mistral, seed: 33).Directory,
            "opt" => TinyCheckpoint.Create(dir.Sub(name), TinyArch.Opt, seed: 34).Directory,
            "low-rank" => WriteLowRank(dir, TinyCheckpoint.Create(dir.Sub("dense"), TinyArch.Qwen2, seed: 35), rank: 3, seed: 36),
            _ => throw new ArgumentOutOfRangeException(nameof(name)),
        };
    }

    /// <summary>Replaces every decoder linear by random factors U [out, k], V [k, in] (a bias moves to U, as compressed checkpoints store it).</summary>
    internal static string WriteLowRank(TempDirectory dir, TinyCheckpoint ckpt, int rank, int seed)
    {
        var rng = new Random(seed);
        float Normal(double scale) => (float)(scale * Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()));
        var tensors = new List<(string, long[], float[])>();
        foreach (var t in CheckpointVariants.Tensors(ckpt))
        {
            bool layerLinear = t.Name.StartsWith("model.layers.") && (t.Name.EndsWith("_proj.weight") || t.Name.EndsWith("_proj.bias"));
            if (!layerLinear) { tensors.Add(t); continue; }
            string linear = t.Name[..t.Name.LastIndexOf('.')];
            if (t.Name.EndsWith(".bias")) { tensors.Add((Linear.UName(linear) + ".bias", t.Shape, t.Data)); continue; }
            int m = (int)t.Shape[0], n = (int)t.Shape[1];
            // Entries of U·V have variance k · (1/k) · (1/n) = 1/n, the scale of the dense weights.
            tensors.Add((Linear.UName(linear) + ".weight", [m, rank], Enumerable.Range(0, m * rank).Select(_ => Normal(1 / Math.Sqrt(rank))).ToArray()));
            tensors.Add((Linear.VName(linear) + ".weight", [rank, n], Enumerable.Range(0, rank * n).Select(_ => Normal(1 / Math.Sqrt(n))).ToArray()));
        }
        return CheckpointVariants.Write(dir.Sub("low-rank"), CheckpointVariants.Config(ckpt), tensors);
    }

    [Theory, MemberData(nameof(Cases))]
    public void Prefill_then_decode_steps_reproduce_the_full_forward_at_every_position(string checkpoint, int promptLen)
    {
        using var dir = new TempDirectory();
        using var model = ModelLoader.Load(WriteCheckpoint(dir, checkpoint));
        if (checkpoint == "low-rank") Assert.All(model.Linears, l => Assert.True(l.IsLowRank, l.Name));
        const int batch = 2;
        var tokens = ForwardParityTests.RandomTokens(promptLen, batch * SeqLen, model.VocabSize);
        using var full = model.Logits(tokens, batch, SeqLen);

        using var cache = model.CreateKvCache(batch, SeqLen);
        var prompt = new int[batch * promptLen];
        for (int b = 0; b < batch; b++) Array.Copy(tokens, b * SeqLen, prompt, b * promptLen, promptLen);
        double maxDiff = 0;
        using (var prefill = model.Prefill(prompt, batch, promptLen, cache, allPositions: true))
        {
            for (int b = 0; b < batch; b++)
                for (int t = 0; t < promptLen; t++)
                    maxDiff = Math.Max(maxDiff, MaxAbsDiff(prefill.Row(b * promptLen + t), full.Row(b * SeqLen + t)));
        }
        Assert.Equal(promptLen, cache.Length);

        var step = new int[batch];
        using var logits = Tensor<float>.Uninitialized(batch, model.VocabSize);
        for (int t = promptLen; t < SeqLen; t++)
        {
            for (int b = 0; b < batch; b++) step[b] = tokens[b * SeqLen + t];
            model.DecodeStep(step, cache, logits);
            Assert.Equal(t + 1, cache.Length);
            for (int b = 0; b < batch; b++) maxDiff = Math.Max(maxDiff, MaxAbsDiff(logits.Row(b), full.Row(b * SeqLen + t)));
        }
        Assert.True(maxDiff < Tolerance, $"{checkpoint}, prompt {promptLen}: max |Δlogit| = {maxDiff:E3}");
    }

    [Fact]
    public void Prefill_returns_the_last_prompt_position_and_a_reset_cache_repeats_bit_identically()
    {
        using var dir = new TempDirectory();
        using var model = ModelLoader.Load(WriteCheckpoint(dir, "llama3-gqa"));
        var tokens = ForwardParityTests.RandomTokens(9, 2 * 6, model.VocabSize);
        using var full = model.Logits(tokens, 2, 6);
        using var cache = model.CreateKvCache(2, 8);
        float[] first;
        using (var last = model.Prefill(tokens, 2, 6, cache))
        {
            Assert.Equal([2, model.VocabSize], last.Shape);
            Assert.True(MaxAbsDiff(last.Row(0), full.Row(5)) < Tolerance);
            Assert.True(MaxAbsDiff(last.Row(1), full.Row(11)) < Tolerance);
            using var next = model.DecodeStep([3, 4], cache);
            first = next.Span.ToArray();
        }
        cache.Reset();
        model.Prefill(tokens, 2, 6, cache).Dispose();
        using var again = model.DecodeStep([3, 4], cache);
        Assert.Equal(first, again.Span.ToArray());
    }

    [Fact]
    public void The_sliding_window_changes_the_logits_the_decode_steps_reproduce()
    {
        // The window must matter for the decode test to check it: without it, positions ≥ 5 change.
        using var dir = new TempDirectory();
        var ckpt = TinyCheckpoint.Create(dir.Sub("m"), TinyArch.Mistral, seed: 33);
        var config = CheckpointVariants.Config(ckpt);
        config["sliding_window"] = null;
        string unwindowed = CheckpointVariants.Write(dir.Sub("full"), config, CheckpointVariants.Tensors(ckpt));
        var tokens = ForwardParityTests.RandomTokens(1, SeqLen, 99);
        using var a = ModelLoader.Load(ckpt.Directory);
        using var b = ModelLoader.Load(unwindowed);
        using var la = a.Logits(tokens, 1, SeqLen);
        using var lb = b.Logits(tokens, 1, SeqLen);
        Assert.True(MaxAbsDiff(la.Row(4), lb.Row(4)) < 1e-5, "inside the window both see the same keys");
        Assert.True(MaxAbsDiff(la.Row(SeqLen - 1), lb.Row(SeqLen - 1)) > 1e-2, "the window must change the last position");
    }

    [Fact]
    public void Cache_misuse_is_refused_with_a_clear_error()
    {
        using var dir = new TempDirectory();
        using var model = ModelLoader.Load(WriteCheckpoint(dir, "opt"));
        using var other = ModelLoader.Load(WriteCheckpoint(dir, "qwen2-bias"));
        var e = Assert.Throws<ArgumentException>(() => model.CreateKvCache(1, 65));
        Assert.Contains("64", e.Message); // OPT's learned positions end at max_position_embeddings
        using var cache = model.CreateKvCache(1, 3);
        Assert.Throws<ArgumentException>(() => other.Prefill([1, 2], 1, 2, cache)); // made for another model
        Assert.Throws<ArgumentException>(() => model.Prefill([1, 2, 3, 4], 2, 2, cache)); // batch 2 into a batch-1 cache
        Assert.Throws<ArgumentException>(() => model.Prefill([1, 2, 3, 4], 1, 4, cache)); // longer than the cache
        model.Prefill([1, 2], 1, 2, cache).Dispose();
        Assert.Throws<InvalidOperationException>(() => model.Prefill([1, 2], 1, 2, cache)); // not empty
        model.DecodeStep([5], cache).Dispose();
        Assert.Throws<InvalidOperationException>(() => model.DecodeStep([6], cache)); // full
        Assert.Equal(3, cache.Length);
        Assert.Equal(2L * 2 * 1 * 3 * 32 * sizeof(float), cache.Bytes); // K and V × layers × batch × positions × width
    }

    private static double MaxAbsDiff(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        Assert.Equal(a.Length, b.Length);
        double max = 0;
        for (int i = 0; i < a.Length; i++) max = Math.Max(max, Math.Abs(a[i] - b[i]));
        return max;
    }
}
