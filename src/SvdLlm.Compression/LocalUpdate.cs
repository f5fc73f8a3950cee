using SvdLlm.Compression.Calibration;
using SvdLlm.Models.Architectures;
using SvdLlm.Numerics;

namespace SvdLlm.Compression;

/// <summary>
/// SVD-LLM's optional "local update": with W_v = B [k, n] fixed, re-fit W_u to the inputs X_in that the
/// already compressed preceding layers produce: U* = argmin ‖X_inᵀBᵀUᵀ − X_inᵀWᵀ‖_F, whose normal
/// equations give U* = W C_in Bᵀ (B C_in Bᵀ)⁻¹ with C_in = Σ x xᵀ over those inputs. Layers are updated in
/// order, so layer i sees the inputs of the compressed-and-updated layers 0…i−1. Within a layer, every
/// linear's C_in is collected in one forward pass of the compressed layer before any of its linears is updated.
/// </summary>
internal static class LocalUpdate
{
    public static void Apply(CausalLanguageModel model, CalibrationWindows windows, CompressionReport report)
    {
        int samples = windows.Count, seqLen = windows.SeqLen;
        using var hidden = model.Embed(windows.Tokens, samples, seqLen);
        var previous = model.Observer;
        try
        {
            for (int layer = 0; layer < model.NumLayers; layer++)
            {
                var prefix = $".layers.{layer}.";
                using var stats = new CalibrationStatistics();
                var observer = new LayerGramObserver(stats, prefix);
                model.Observer = observer;
                ForEachBatch(hidden, samples, seqLen, part => model.ForwardLayer(layer, part, part.Rows / seqLen, seqLen), writeBack: false);
                model.Observer = previous;
                foreach (var s in stats.Inputs.Values) Blas.SymmetrizeFromLower(s.Gram.Span, s.Features);

                foreach (var l in model.Linears.Where(l => l.Name.Contains(prefix) && l.IsLowRank))
                {
                    using var w = Compressor.Weight(model, l);
                    var c = stats.Inputs[l.InputKey].Gram;
                    using var b = DenseMath.ToDouble(l.V.Span, l.Rank!.Value, l.InFeatures);
                    using var cb = DenseMath.MatMul(c, false, b, true);         // C Bᵀ [n, k]
                    using var g = DenseMath.MatMul(b, false, cb, false);        // B C Bᵀ [k, k]
                    using var h = DenseMath.MatMul(w, false, cb, false);        // W C Bᵀ [m, k]
                    using var ht = DenseMath.Transposed(h);                      // Hᵀ [k, m]
                    Tensor<double> ut;
                    try
                    {
                        ut = Lapack.Solve(g, ht);                              // G Uᵀ = Hᵀ
                    }
                    catch (LapackException e)
                    {
                        report.Notes.Add($"{l.Name}: local update skipped ({e.Message})");
                        continue;
                    }
                    using (ut)
                    {
                        var u = Tensor<float>.Uninitialized(l.OutFeatures, l.Rank.Value);
                        for (int i = 0; i < l.OutFeatures; i++)
                            for (int j = 0; j < l.Rank.Value; j++) u[i, j] = (float)ut[j, i];
                        l.SetLowRank(u, l.V.Clone(), l.Bias?.Clone());
                    }
                }
                // Propagate through the updated layer.
                ForEachBatch(hidden, samples, seqLen, part => model.ForwardLayer(layer, part, part.Rows / seqLen, seqLen), writeBack: true);
            }
        }
        finally
        {
            model.Observer = previous;
        }
    }

    /// <summary>Runs <paramref name="body"/> on copies of a few windows at a time (bounded activation memory), optionally writing results back.</summary>
    internal static void ForEachBatch(Tensor<float> hidden, int samples, int seqLen, Action<Tensor<float>> body, bool writeBack, int batchSize = 4)
    {
        for (int s0 = 0; s0 < samples; s0 += batchSize)
        {
            int b = Math.Min(batchSize, samples - s0);
            var rows = hidden.RowRange(s0 * seqLen, b * seqLen);
            using var part = Tensor<float>.From(rows, b * seqLen, hidden.Cols);
            body(part);
            if (writeBack) part.Span.CopyTo(rows);
        }
    }

    /// <summary>Gram of every distinct linear input inside one layer.</summary>
    private sealed class LayerGramObserver(CalibrationStatistics stats, string prefix) : ILinearObserver
    {
        private string? _lastKey;

        public void OnInput(Linear linear, ReadOnlySpan<float> x, int rows)
        {
            // Linears sharing an input are called back to back with the same x: count it once.
            if (!linear.Name.Contains(prefix) || linear.InputKey == _lastKey) return;
            _lastKey = linear.InputKey;
            int n = linear.InFeatures;
            var s = stats.GetOrAdd(linear.InputKey, n);
            var d = new double[x.Length];
            for (int i = 0; i < d.Length; i++) d[i] = x[i];
            Blas.Dsyrk(lower: true, Transpose.Yes, n, rows, 1.0, d, n, 1.0, s.Gram.Span, n);
            s.Tokens += rows;
        }
    }
}
