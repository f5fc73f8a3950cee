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

    /// <summary>Mean next-token loss of the model in <paramref name="dir"/> over the windows, by the inference forward (independent of the training model).</summary>
    public static double MeanLoss(string dir, CalibrationWindows w)
    {
        using var m = SvdLlm.Models.Architectures.ModelLoader.Load(dir);
        double sum = 0;
        int n = 0;
        for (int s = 0; s < w.Count; s++)
            foreach (double v in m.TokenNll(w.Tokens.AsSpan(s * w.SeqLen, w.SeqLen).ToArray(), 1, w.SeqLen)) { sum += v; n++; }
        return sum / n;
    }
}
