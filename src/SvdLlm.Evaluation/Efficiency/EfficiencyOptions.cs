using SvdLlm.Models.Architectures;

namespace SvdLlm.Evaluation.Efficiency;

/// <summary>
/// Settings of one efficiency measurement. The defaults are small enough for a 2-core CPU; the
/// papers' setting is batch 4, prompt 1024, generation 256 on an A100.
/// </summary>
/// <param name="Batch">sequences processed together</param>
/// <param name="PromptLen">prompt tokens per sequence (prefill)</param>
/// <param name="GenLen">decode steps per sequence, one token each, through the KV cache</param>
/// <param name="Repeats">timed repetitions; throughputs use the median time</param>
/// <param name="Threads">BLAS/kernel threads to set before measuring, or null to keep the process's setting</param>
/// <param name="Seed">seed of the synthetic prompt's token ids</param>
/// <param name="WarmupSeconds">untimed full runs are repeated (at least one) until this long has passed, so that the
/// JIT's tiered recompilation is over before timing; without it the first model measured in a process runs slower
/// than the second, which biases every compressed/original ratio</param>
public sealed record EfficiencyOptions(int Batch = 1, int PromptLen = 128, int GenLen = 32, int Repeats = 3, int? Threads = null, int Seed = 0,
    double WarmupSeconds = 1.0)
{
    /// <summary>Warm-up longer than this is a typo, not a warm-up (1e9 s ran forever).</summary>
    public const double MaxWarmupSeconds = 600;

    public const int MaxRepeats = 1000;

    public void Validate()
    {
        if (Batch <= 0) throw new ArgumentException($"efficiency: batch {Batch} must be positive");
        if (PromptLen <= 0) throw new ArgumentException($"efficiency: prompt length {PromptLen} must be positive");
        if (GenLen <= 0) throw new ArgumentException($"efficiency: generation length {GenLen} must be positive");
        if (Repeats <= 0) throw new ArgumentException($"efficiency: repeats {Repeats} must be positive");
        if (Threads is <= 0) throw new ArgumentException($"efficiency: threads {Threads} must be positive");
        if (!(WarmupSeconds >= 0 && WarmupSeconds <= MaxWarmupSeconds))
            throw new ArgumentException($"efficiency: warm-up {WarmupSeconds} s must be in [0, {MaxWarmupSeconds}] (JIT tiering and page faults settle within seconds)");
        if (Threads > SvdLlm.Numerics.NumericsRuntime.MaxThreads) throw new ArgumentException($"efficiency: threads {Threads} exceeds {SvdLlm.Numerics.NumericsRuntime.MaxThreads}");
        // Checked in long: prompt + generation beyond int wrapped (gen 1e9 threw OverflowException with a trace).
        long length = (long)PromptLen + GenLen;
        if (length > CausalLanguageModel.MaxSequenceLength)
            throw new ArgumentException($"efficiency: prompt {PromptLen} + generation {GenLen} = {length} tokens exceeds the longest sequence a model runs ({CausalLanguageModel.MaxSequenceLength})");
        if (Repeats > MaxRepeats) throw new ArgumentException($"efficiency: repeats {Repeats} exceeds {MaxRepeats} (the median of a few runs is the figure)");
    }
}
