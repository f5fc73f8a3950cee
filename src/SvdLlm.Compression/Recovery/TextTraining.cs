using SvdLlm.Compression.Calibration;
using SvdLlm.Models.Training;

namespace SvdLlm.Compression.Recovery;

/// <summary>
/// The step loop that LoRA recovery and fine-tuning share: next-token cross-entropy over batches of windows, each epoch
/// a fresh permutation of the windows seeded by <c>seed + epoch</c> (so a run is fixed by its seed and thread count),
/// the last batch of an epoch shorter when the windows do not divide. The caller's <c>update</c> clips and steps the
/// optimizer of whatever it trains.
/// </summary>
internal static class TextTraining
{
    /// <summary>Runs <paramref name="steps"/> steps and returns each step's training loss (before its update).</summary>
    public static double[] Run(LlamaTrainingModel train, CalibrationWindows windows, int steps, int batchSize, int seed,
        Action<int> update, Action<int, double> report, CancellationToken cancellation)
    {
        int count = windows.Count, seq = windows.SeqLen, t = seq - 1;
        if (seq < 2) throw new ArgumentException($"training windows of {seq} token(s) have no next token to predict");
        int perEpoch = (count + batchSize - 1) / batchSize;
        var loss = new double[steps];
        int[] order = [];
        for (int step = 0; step < steps; step++)
        {
            cancellation.ThrowIfCancellationRequested();
            int epoch = step / perEpoch, first = step % perEpoch * batchSize;
            if (first == 0)
            {
                order = Enumerable.Range(0, count).ToArray();
                new Random(unchecked(seed + epoch)).Shuffle(order);
            }
            int b = Math.Min(batchSize, count - first);
            var inputs = new int[b * t];
            var targets = new int[b * t];
            for (int s = 0; s < b; s++)
            {
                var w = windows.Tokens.AsSpan(order[first + s] * seq, seq);
                w[..t].CopyTo(inputs.AsSpan(s * t, t));
                w[1..].CopyTo(targets.AsSpan(s * t, t));
            }
            train.ZeroGrad();
            loss[step] = train.Forward(inputs, targets, b, t);
            if (!double.IsFinite(loss[step])) throw new ArithmeticException($"training loss is {loss[step]} at step {step + 1}: lower the learning rate");
            train.Backward();
            update(step);
            if ((step + 1) % Math.Max(1, steps / 8) == 0 || step + 1 == steps) report(step, loss[step]);
        }
        return loss;
    }
}
