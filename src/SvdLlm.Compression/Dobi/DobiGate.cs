using SvdLlm.Models.Training;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Dobi;

/// <summary>
/// Dobi-SVD's activation truncation inside the training model: the output A [L, m] of every linear with a γ, window by
/// window, becomes Â = U diag(σ ⊙ T(γ)) Vᵀ (<see cref="DobiTruncation"/>, float64). In training mode the factors are
/// kept for the backward, which maps dL/dÂ to dL/dA and adds dL/dγ into <see cref="Gradient"/>. In collecting mode
/// (stage 2) each window's leading ⌈γ⌉ right singular vectors V_f go to the linear's <see cref="DobiSubspace"/>.
/// </summary>
public sealed class DobiGate : IActivationTransform, IDisposable
{
    private readonly IReadOnlyDictionary<string, double> _gamma;
    private readonly Dictionary<string, List<DobiTruncation>> _kept = new(StringComparer.Ordinal);

    public DobiGate(IReadOnlyDictionary<string, double> gamma, double beta, bool train)
    {
        _gamma = gamma;
        Beta = beta;
        Train = train;
        Gradient = gamma.Keys.ToDictionary(k => k, _ => 0.0, StringComparer.Ordinal);
    }

    public double Beta { get; }

    /// <summary>Keep the factors for the backward (stage 1); otherwise forward only.</summary>
    public bool Train { get; }

    /// <summary>dL/dγ per linear, accumulated by every backward since the last <see cref="ZeroGrad"/>.</summary>
    public Dictionary<string, double> Gradient { get; }

    /// <summary>Which linears are truncated (all with a γ when null): stage 2 truncates only up to the layer it collects.</summary>
    public Func<string, bool>? Active { get; set; }

    /// <summary>Stage 2: the subspaces to feed, by linear name.</summary>
    public IReadOnlyDictionary<string, DobiSubspace>? Subspaces { get; set; }

    public void ZeroGrad()
    {
        foreach (string k in Gradient.Keys) Gradient[k] = 0;
    }

    public void Forward(string name, Span<float> y, int rows, int seqLen)
    {
        if (!_gamma.TryGetValue(name, out double gamma) || Active?.Invoke(name) == false) return;
        int m = y.Length / rows, windows = rows / seqLen;
        var kept = Train ? new List<DobiTruncation>(windows) : null;
        for (int w = 0; w < windows; w++)
        {
            var window = y.Slice(w * seqLen * m, seqLen * m);
            using var a = DenseMath.ToDouble(window, seqLen, m);
            var t = DobiTruncation.Forward(a, gamma, Beta);
            try
            {
                var o = t.Output.Span;
                for (int i = 0; i < o.Length; i++)
                {
                    if (!double.IsFinite(o[i])) throw new ArithmeticException($"Dobi-SVD: the truncated activation of {name} (window {w}) is not finite");
                    window[i] = (float)o[i];
                }
                if (Subspaces?.TryGetValue(name, out var subspace) == true)
                {
                    using var vf = DenseMath.LeadingColumns(t.V, Math.Clamp((int)Math.Ceiling(gamma), 1, t.V.Cols));
                    subspace.Add(vf);
                }
            }
            catch
            {
                t.Dispose();
                throw;
            }
            if (kept is not null) kept.Add(t);
            else t.Dispose();
        }
        if (kept is not null)
        {
            if (_kept.Remove(name, out var stale)) foreach (var t in stale) t.Dispose();
            _kept[name] = kept;
        }
    }

    public void Backward(string name, Span<float> dy, int rows, int seqLen)
    {
        if (!_kept.Remove(name, out var kept)) return;
        int m = dy.Length / rows;
        try
        {
            for (int w = 0; w < kept.Count; w++)
            {
                var window = dy.Slice(w * seqLen * m, seqLen * m);
                using var g = DenseMath.ToDouble(window, seqLen, m);
                var (dGamma, dA) = kept[w].Backward(g);
                using (dA)
                {
                    Gradient[name] += dGamma;
                    var d = dA.Span;
                    for (int i = 0; i < d.Length; i++) window[i] = (float)d[i];
                }
            }
        }
        finally
        {
            foreach (var t in kept) t.Dispose();
        }
    }

    public void Dispose()
    {
        foreach (var list in _kept.Values) foreach (var t in list) t.Dispose();
        _kept.Clear();
    }
}
