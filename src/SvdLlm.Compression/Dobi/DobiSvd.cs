using System.Diagnostics;
using SvdLlm.Compression.Calibration;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Checkpoints;
using SvdLlm.Models.Training;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Dobi;

/// <summary>
/// Dobi-SVD's settings (Wang, Ke et al., ICLR 2025; SEED-METHODS §3b). The reference trains γ for 20 epochs of 256
/// windows × 2048 tokens with Adam at lr 5 (cosine to 4 within every epoch) in units of activation rank; L here is the
/// calibration window's length, so the rates default to 5·L/2048 and 4·L/2048, the same step relative to the range
/// [0, L] γ lives in. λ = 200 is the argparse default.
/// </summary>
public sealed record DobiOptions
{
    public int Epochs { get; init; } = 5;
    public int BatchSize { get; init; } = 8;
    public double Lambda { get; init; } = 200;
    public double Beta { get; init; } = DobiMask.DefaultBeta;

    /// <summary>Adam's rate on γ; null: 5·L/2048 (the reference's 5 at L = 2048).</summary>
    public double? LearningRate { get; init; }

    /// <summary>
    /// Store the factors remapped (Checkpoints/RemapLayout: 8-bit codes for the first min(m, n) entries of every singular
    /// vector, float16 for the long vector's rest) and spend the same bytes the plain factors would on larger ranks.
    /// </summary>
    public bool Remap { get; init; }

    public void Check()
    {
        if (Epochs < 1) throw new ArgumentException($"epochs {Epochs} must be at least 1");
        if (BatchSize < 1) throw new ArgumentException($"batch {BatchSize} must be at least 1");
        if (!(Lambda >= 0) || !double.IsFinite(Lambda)) throw new ArgumentException($"lambda {Lambda} must be a non-negative number");
        if (!(Beta > 0) || !double.IsFinite(Beta)) throw new ArgumentException($"beta {Beta} must be a positive number");
        if (LearningRate is double lr && (!(lr > 0) || !double.IsFinite(lr))) throw new ArgumentException($"lr {lr} must be a positive number");
    }
}

/// <summary>Stage 1's result: the trained activation rank γ of every linear and the objective after every step.</summary>
public sealed record DobiGammas(IReadOnlyDictionary<string, double> Gamma, int SeqLen, double[] Loss, double[] Perplexity, double FinalRatio);

/// <summary>
/// Dobi-SVD's three stages on a LLaMA-family model (SEED-METHODS §3a), with the choices this project made:
/// <list type="bullet">
/// <item>Stage 1 (<see cref="Learn"/>): γ per linear, every weight frozen; loss PPL(batch) + λ|ratio(γ) − target| +
/// Σ relu(−γ)² + relu(γ − L)², the reference's, with ∂PPL/∂γ = PPL·∂CE/∂γ through the training model's backward and
/// <see cref="DobiGate"/>. Exact LAPACK SVDs instead of randomized ones; the final γ is used (the reference picks the
/// checkpoint with the lowest training-batch loss, which favours whichever batch was easiest).</item>
/// <item>Ranks (<see cref="Ranks"/>): the weight rank ρ·γ scaled by one common factor so the factors never hold more
/// parameters than the uniform ranks of the same ratio: Dobi and the other methods compare at equal parameters
/// (the penalty only keeps the ratio near its target).</item>
/// <item>Stage 2 (<see cref="OutputSubspacesOfLayer"/>): the uncentered subspace M = Σ V_f V_fᵀ of one layer's linears
/// from a forward pass over the windows with every earlier layer truncated at its γ; the layer's truncation is then
/// W' = V_k V_kᵀ W (<see cref="Truncation.ActivationSubspaceTruncation"/>).</item>
/// </list>
/// Not built: the 8-bit remapping's storage (DobiRemap exists; no checkpoint layout reads it yet).
/// </summary>
public static class DobiSvd
{
    /// <summary>Stage 1: trains γ for every target linear on the windows; <paramref name="ratio"/> is the fraction removed.</summary>
    public static DobiGammas Learn(CausalLanguageModel model, CalibrationWindows windows, IReadOnlyList<MatrixTarget> targets, double ratio,
        DobiOptions o, Action<string> log)
    {
        o.Check();
        var llama = model as LlamaForCausalLM ?? throw new NotSupportedException($"Dobi-SVD trains through the backward pass, which exists for the LLaMA family only (this model is {model.Architecture})");
        int seq = windows.SeqLen, L = seq - 1, count = windows.Count;
        if (L < 2) throw new ArgumentException($"Dobi-SVD needs windows of at least 3 tokens (got {seq})");
        double target = 1 - ratio;
        var shapes = targets.Select(t => (t.M, t.N)).ToList();
        var gamma = targets.Select(t => Math.Clamp(DobiRatio.InitialGamma(t.M, t.N, L, target, remap: false), 1, L)).ToArray();
        var gammaByName = new Dictionary<string, double>(StringComparer.Ordinal);
        void Publish() { for (int i = 0; i < targets.Count; i++) gammaByName[targets[i].Name] = gamma[i]; }
        Publish();

        using var train = new LlamaTrainingModel(llama.Config);
        train.LoadFrom(model.Reader);
        train.FreezeWeights = true;
        using var gate = new DobiGate(gammaByName, o.Beta, train: true);
        train.ActivationTransform = gate;

        double lr0 = o.LearningRate ?? 5.0 * L / 2048, lrMin = lr0 * 0.8;
        int perEpoch = (count + o.BatchSize - 1) / o.BatchSize, steps = perEpoch * o.Epochs;
        var m1 = new double[gamma.Length];
        var m2 = new double[gamma.Length];
        var losses = new double[steps];
        var ppls = new double[steps];
        var ratioGradient = new double[gamma.Length];
        var clock = Stopwatch.StartNew();
        log($"Dobi-SVD stage 1: γ of {targets.Count} linears, {steps} steps ({o.Epochs} epochs of {count} windows × {seq} tokens, batch {o.BatchSize}), "
            + $"lr {lr0:G3} → {lrMin:G3} (cosine per epoch), λ {o.Lambda:G3}, β {o.Beta:G3}");
        int step = 0;
        for (int epoch = 0; epoch < o.Epochs; epoch++)
        {
            var order = Enumerable.Range(0, count).ToArray();
            new Random(unchecked(1_000_003 * 7 + epoch)).Shuffle(order);
            for (int first = 0; first < count; first += o.BatchSize, step++)
            {
                int b = Math.Min(o.BatchSize, count - first);
                var inputs = new int[b * L];
                var outputs = new int[b * L];
                for (int s = 0; s < b; s++)
                {
                    var w = windows.Tokens.AsSpan(order[first + s] * seq, seq);
                    w[..L].CopyTo(inputs.AsSpan(s * L, L));
                    w[1..].CopyTo(outputs.AsSpan(s * L, L));
                }
                gate.ZeroGrad();
                double ce = train.Forward(inputs, outputs, b, L);
                train.Backward();
                double ppl = Math.Exp(ce);
                double r = DobiRatio.Ratio(shapes, gamma, L, remap: false, ratioGradient);
                double loss = ppl + o.Lambda * Math.Abs(r - target);
                double sign = Math.Sign(r - target);
                double lr = lrMin + (lr0 - lrMin) * (1 + Math.Cos(Math.PI * (step % perEpoch) / perEpoch)) / 2;
                for (int i = 0; i < gamma.Length; i++)
                {
                    double below = Math.Max(0, -gamma[i]), above = Math.Max(0, gamma[i] - L);
                    loss += below * below + above * above;
                    double g = ppl * gate.Gradient[targets[i].Name] + o.Lambda * sign * ratioGradient[i] - 2 * below + 2 * above;
                    if (!double.IsFinite(g)) throw new ArithmeticException($"Dobi-SVD: dL/dγ of {targets[i].Name} is {g} at step {step + 1}");
                    // Adam (β₁ 0.9, β₂ 0.999, ε 1e-8, bias-corrected), as torch.optim.Adam's defaults.
                    m1[i] = 0.9 * m1[i] + 0.1 * g;
                    m2[i] = 0.999 * m2[i] + 0.001 * g * g;
                    double mh = m1[i] / (1 - Math.Pow(0.9, step + 1)), vh = m2[i] / (1 - Math.Pow(0.999, step + 1));
                    gamma[i] -= lr * mh / (Math.Sqrt(vh) + 1e-8);
                }
                Publish();
                losses[step] = loss;
                ppls[step] = ppl;
                if ((step + 1) % Math.Max(1, steps / 8) == 0 || step + 1 == steps)
                    log($"  step {step + 1}/{steps}: loss {loss:F3} (batch ppl {ppl:F2}, ratio kept {r:F4} for {target:F4}) ({clock.Elapsed.TotalSeconds:F1} s)");
            }
        }
        return new DobiGammas(new Dictionary<string, double>(gammaByName), L, losses, ppls, DobiRatio.Ratio(shapes, gamma, L, remap: false));
    }

    /// <summary>
    /// Weight ranks from the trained γ: k = ⌊c·ρ·γ⌋ with the largest c whose factors take no more bytes than the uniform
    /// ranks at <paramref name="ratio"/> in the checkpoint's dtype (<paramref name="elementBytes"/> per value), found by
    /// bisection on c. Plain factors cost (m + n) values a rank, capped at ⌊mn/(m + n)⌋; remapped ones 2·max(m, n) + 4
    /// bytes a rank (8-bit codes, float16 rest and scales), capped at min(m, n).
    /// </summary>
    public static List<RankAllocation> Ranks(IReadOnlyList<MatrixTarget> targets, DobiGammas learned, double ratio, bool remap = false, int elementBytes = 4)
    {
        long budget = targets.Sum(t => (long)SvdLlm.Compression.Ranks.ForRemovedRatio(t.M, t.N, ratio) * (t.M + t.N)) * elementBytes;
        long PerRank(MatrixTarget t) => remap ? 2L * Math.Max(t.M, t.N) + 4 : (long)(t.M + t.N) * elementBytes;
        int Cap(MatrixTarget t) => remap ? Math.Min(t.M, t.N) : Math.Max(1, (int)((long)t.M * t.N / (t.M + t.N)));
        int[] At(double c) => targets.Select(t => Math.Clamp((int)Math.Floor(c * DobiRatio.WeightRank(t.M, t.N, learned.Gamma[t.Name], learned.SeqLen)),
            1, Cap(t))).ToArray();
        long Cost(int[] k) => targets.Select((t, i) => k[i] * PerRank(t)).Sum();
        double lo = 0, hi = 1;
        while (Cost(At(hi)) <= budget && hi < 1e6) hi *= 2;
        for (int it = 0; it < 100; it++)
        {
            double mid = (lo + hi) / 2;
            if (Cost(At(mid)) <= budget) lo = mid; else hi = mid;
        }
        var ranks = At(lo);
        return targets.Select((t, i) => new RankAllocation(t.Name, t.Group, 1 - (double)ranks[i] * (t.M + t.N) / ((double)t.M * t.N), ranks[i],
            Note: null)).ToList();
    }

    /// <summary>
    /// Stage 2 for one layer: a forward pass of the original model over every window with the linears of this and every
    /// earlier layer truncated at their γ (later layers are not needed, so left alone), feeding each of this layer's
    /// linears' V_f to its subspace. One layer's m×m float64 subspaces at a time.
    /// </summary>
    public static Dictionary<string, DobiSubspace> OutputSubspacesOfLayer(CausalLanguageModel model, CalibrationWindows windows, DobiGammas learned,
        IReadOnlyList<Linear> linears, int layer, double beta, int batch)
    {
        var llama = (LlamaForCausalLM)model;
        var subspaces = linears.ToDictionary(l => l.Name, l => new DobiSubspace(l.OutFeatures), StringComparer.Ordinal);
        try
        {
            using var train = new LlamaTrainingModel(llama.Config);
            train.LoadFrom(model.Reader);
            using var gate = new DobiGate(learned.Gamma, beta, train: false)
            {
                Active = name => CompressedCheckpoint.Writer.LayerIndex(name + ".") is int l && l <= layer,
                Subspaces = subspaces,
            };
            train.ActivationTransform = gate;
            int seq = windows.SeqLen, L = seq - 1;
            for (int first = 0; first < windows.Count; first += batch)
            {
                int b = Math.Min(batch, windows.Count - first);
                var inputs = new int[b * L];
                var outputs = new int[b * L];
                for (int s = 0; s < b; s++)
                {
                    var w = windows.Tokens.AsSpan((first + s) * seq, seq);
                    w[..L].CopyTo(inputs.AsSpan(s * L, L));
                    w[1..].CopyTo(outputs.AsSpan(s * L, L));
                }
                train.Forward(inputs, outputs, b, L);
            }
            return subspaces;
        }
        catch
        {
            foreach (var s in subspaces.Values) s.Dispose();
            throw;
        }
    }
}
