using SvdLlm.Compression.Calibration;

namespace SvdLlm.Compression.Tests;

/// <summary>Calibration windows drawn (seeded) from a random 2000-token stream over a tiny vocabulary.</summary>
internal static class RandomWindows
{
    public static int[] Sample(int vocab, int samples, int seqLen, int seed)
    {
        var r = new Random(seed);
        var stream = Enumerable.Range(0, 2000).Select(_ => r.Next(vocab)).ToArray();
        return Calibrator.SampleWindows(stream, samples, seqLen, seed);
    }
}
