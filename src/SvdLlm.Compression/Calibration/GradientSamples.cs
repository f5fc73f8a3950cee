using SvdLlm.Models.Architectures;
using SvdLlm.Models.Training;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Calibration;

/// <summary>
/// GFWSVD's gradient samples (Chekalina et al. 2025): for each linear, K matrices G_k [out, in], each the mean weight
/// gradient over one mini-batch of <c>batchWindows</c> consecutive calibration windows (a window's gradient is that of
/// its mean next-token loss). The reference's "per-sample" gradients are such mini-batch means (K ≈ 16–32 over
/// 128–256 sequences each); here K and the batch are explicit: K = windows / batchWindows. The empirical Fisher the
/// Kronecker factors approximate is F = (1/K) Σ vec(G_k) vec(G_k)ᵀ.
/// <para>
/// Memory: K float64 matrices per selected linear, on top of the training model (<see cref="FisherCollector.EstimateBytes"/>);
/// <see cref="EstimateBytes"/> gives the samples' part. This is for models whose training model fits (the default
/// model, small LLaMAs); a 7B needs the streamed power iteration (one gradient pass per iterate) instead.
/// </para>
/// </summary>
public static class GradientSamples
{
    /// <summary>K mean gradients per linear whose name <paramref name="select"/> accepts (all by default), in window order.</summary>
    public static Dictionary<string, List<Tensor<double>>> Collect(CausalLanguageModel model, int[] windows, int seqLen, int batchWindows,
        Func<string, bool>? select = null, Action<int, int>? progress = null, bool force = false)
    {
        int samples = windows.Length / seqLen;
        if (batchWindows < 1 || samples % batchWindows != 0)
            throw new ArgumentException($"{samples} calibration windows do not split into mini-batches of {batchWindows}: K = windows / batch must be a whole number");
        var linears = model.Linears.Where(l => select?.Invoke(l.Name) ?? true).ToDictionary(l => l.Name);
        var observer = new MeanGradientObserver(linears, batchWindows);
        try
        {
            FisherCollector.Backward(model, windows, seqLen, observer, (done, total) =>
            {
                observer.WindowDone();
                progress?.Invoke(done, total);
            }, force);
            return observer.Samples;
        }
        catch
        {
            foreach (var list in observer.Samples.Values) foreach (var g in list) g.Dispose();
            throw;
        }
    }

    /// <summary>Bytes of the samples: K float64 matrices per selected linear.</summary>
    public static long EstimateBytes(IEnumerable<Linear> linears, int k) => linears.Sum(l => 8L * k * l.OutFeatures * l.InFeatures);

    private sealed class MeanGradientObserver(Dictionary<string, Linear> linears, int batchWindows) : IGradientObserver
    {
        private int _window;

        public Dictionary<string, List<Tensor<double>>> Samples { get; } = [];

        public void WindowDone() => _window++;

        public void OnLinearBackward(string name, ReadOnlySpan<float> x, ReadOnlySpan<float> dy, int rows)
        {
            if (!linears.TryGetValue(name, out var l)) return;
            if (!Samples.TryGetValue(name, out var list)) Samples[name] = list = [];
            int k = _window / batchWindows;
            if (list.Count == k) list.Add(Tensor<double>.Zeros(l.OutFeatures, l.InFeatures));
            // This window's dW = dyᵀ·x [out, in], in float32 as the backward computes it, added as float64 / batch.
            using var g = Tensor<float>.Uninitialized(l.OutFeatures, l.InFeatures);
            Blas.Sgemm(Transpose.Yes, Transpose.No, l.OutFeatures, l.InFeatures, rows, 1f, dy, l.OutFeatures, x, l.InFeatures, 0f, g.Span, l.InFeatures);
            var sum = list[k].Span;
            var gs = g.Span;
            double scale = 1.0 / batchWindows;
            for (int i = 0; i < sum.Length; i++) sum[i] += scale * gs[i];
        }
    }
}
