using SvdLlm.Models.Architectures;
using SvdLlm.Models.Training;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Calibration;

/// <summary>
/// FWSVD's Fisher information Î_ij = Σ_windows (∂L/∂W_ij)², L the next-token loss of one calibration window,
/// from backward passes of the training model (LLaMA family, dense checkpoints, no sliding window).
/// Each window is its own batch, so Î is the empirical Fisher over the calibration set.
/// </summary>
public static class FisherCollector
{
    public static void Collect(CausalLanguageModel model, int[] windows, int seqLen, CalibrationStatistics stats, Action<int, int>? progress = null)
    {
        if (model is not LlamaForCausalLM llama)
            throw new NotSupportedException($"Fisher statistics need the backward pass, which exists for the LLaMA family only (this model is {model.Architecture})");
        using var train = new LlamaTrainingModel(llama.Config);
        train.LoadFrom(model.Reader);
        var observer = new SquaredGradientObserver(stats, model.Linears.ToDictionary(l => l.Name));
        train.GradientObserver = observer;
        int samples = windows.Length / seqLen;
        for (int s = 0; s < samples; s++)
        {
            var w = windows.AsSpan(s * seqLen, seqLen);
            train.ZeroGrad();
            train.Forward(w[..^1], w[1..], 1, seqLen - 1);
            train.Backward();
            progress?.Invoke(s + 1, samples);
        }
    }

    private sealed class SquaredGradientObserver(CalibrationStatistics stats, Dictionary<string, Linear> linears) : IGradientObserver
    {
        public void OnLinearBackward(string name, ReadOnlySpan<float> x, ReadOnlySpan<float> dy, int rows)
        {
            var l = linears[name];
            if (!stats.Fisher.TryGetValue(name, out var rows_)) stats.Fisher[name] = rows_ = new double[l.OutFeatures];
            // This window's weight gradient dW = dyᵀ·x [out, in]; only its squared row sums are kept (FWSVD's I_i).
            using var g = Tensor<float>.Uninitialized(l.OutFeatures, l.InFeatures);
            Blas.Sgemm(Transpose.Yes, Transpose.No, l.OutFeatures, l.InFeatures, rows, 1f, dy, l.OutFeatures, x, l.InFeatures, 0f, g.Span, l.InFeatures);
            for (int i = 0; i < l.OutFeatures; i++)
            {
                double sum = 0;
                foreach (float v in g.Row(i)) sum += (double)v * v;
                rows_[i] += sum;
            }
        }
    }
}
