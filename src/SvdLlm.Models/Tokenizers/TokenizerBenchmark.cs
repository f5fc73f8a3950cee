using System.Diagnostics;
using System.Text;

namespace SvdLlm.Models.Tokenizers;

/// <summary>The result of one measured encoding run.</summary>
/// <param name="Megabytes">Size of the text as UTF-8, in MB (10^6 bytes).</param>
/// <param name="Tokens">Number of ids produced.</param>
/// <param name="ColdSeconds">First encode, with the word cache empty for this text's words.</param>
/// <param name="WarmSeconds">Best of the following runs (cache filled).</param>
public sealed record TokenizerBenchmarkResult(double Megabytes, int Tokens, double ColdSeconds, double WarmSeconds)
{
    /// <summary>Throughput of the first (cold) run, MB/s.</summary>
    public double ColdMegabytesPerSecond => Megabytes / ColdSeconds;

    /// <summary>Throughput of the best warm run, MB/s.</summary>
    public double WarmMegabytesPerSecond => Megabytes / WarmSeconds;
}

/// <summary>A small measured run of <see cref="HfTokenizer.Encode"/>, for the Bench target.</summary>
public static class TokenizerBenchmark
{
    /// <summary>
    /// Encodes <paramref name="text"/> once cold and <paramref name="warmRuns"/> more times, and
    /// reports MB/s (UTF-8 size of the text over wall time, single thread). Every run must produce
    /// the same ids; a mismatch throws, since it would mean the cache changed a result.
    /// </summary>
    public static TokenizerBenchmarkResult Run(HfTokenizer tokenizer, string text, int warmRuns = 3)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(text);
        ArgumentOutOfRangeException.ThrowIfLessThan(warmRuns, 1);
        double megabytes = Encoding.UTF8.GetByteCount(text) / 1e6;

        var clock = Stopwatch.StartNew();
        int[] first = tokenizer.Encode(text, addSpecialTokens: false);
        double cold = clock.Elapsed.TotalSeconds;

        double warm = double.MaxValue;
        for (int i = 0; i < warmRuns; i++)
        {
            clock.Restart();
            int[] again = tokenizer.Encode(text, addSpecialTokens: false);
            warm = Math.Min(warm, clock.Elapsed.TotalSeconds);
            if (!again.AsSpan().SequenceEqual(first)) throw new InvalidOperationException("repeated encodes of the same text gave different ids");
        }
        return new TokenizerBenchmarkResult(megabytes, first.Length, cold, warm);
    }
}
