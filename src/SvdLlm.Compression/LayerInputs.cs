using System.Runtime.InteropServices;
using SvdLlm.Compression.Calibration;
using SvdLlm.Compression.Truncation;
using SvdLlm.Models.Architectures;
using SvdLlm.Numerics;

namespace SvdLlm.Compression;

/// <summary>
/// The weightings of one decoder layer's linears for one truncation kind, built once per input key and shared by the
/// linears that read it (q/k/v, gate/up): the Gram, SVD-LLM's jittered Gram and whitening, V2's whitening for the
/// route that needs one. Disposing releases the layer's statistics from the source.
/// </summary>
/// <param name="decomposes">false when the caller truncates from stored bases: whitenings (Cholesky, eigen-support) are then skipped</param>
internal sealed class LayerInputs(IStatisticsSource stats, TruncationKind kind, bool release = true, bool decomposes = true) : IDisposable
{
    private readonly Dictionary<string, Weighting> _byKey = new(StringComparer.Ordinal);
    private readonly List<IDisposable> _owned = [];
    private readonly HashSet<string> _loaded = new(StringComparer.Ordinal);
    private readonly HashSet<string> _eigenWhitened = new(StringComparer.Ordinal);

    /// <summary>ASVD's exponent α on mean |x|.</summary>
    public const double AsvdAlpha = 0.5;

    /// <summary>The raw calibration Gram C of the linear's input.</summary>
    public Tensor<double> Gram(Linear l) => Input(l).Gram;

    public Weighting For(Linear l)
    {
        if (kind == TruncationKind.Fwsvd) return Fisher(l);
        string key = l.InputKey;
        if (_byKey.TryGetValue(key, out var cached))
        {
            if (decomposes && l.OutFeatures > l.InFeatures && kind is TruncationKind.EigenWhitening && cached.SharedWhitening is not { IsCholesky: true } && !_eigenWhitened.Contains(key))
            {
                _byKey[key] = cached = WithWhitening(cached);
                _eigenWhitened.Add(key);
            }
            return cached;
        }
        var s = Input(l);
        Weighting w = kind switch
        {
            TruncationKind.Svd => new Weighting { Objective = "‖W−W'‖_F" },
            TruncationKind.Asvd => new Weighting
            {
                Diagonal = s.MeanAbs().Select(x => Math.Pow(Math.Pow(x, AsvdAlpha) + 1e-6, 2)).ToArray(),
                Objective = "‖(W−W')S₀‖_F",
            },
            TruncationKind.CholeskyWhitening => Cholesky(s.Gram),
            TruncationKind.EigenWhitening => new Weighting { Gram = s.Gram, Objective = "‖(W−W')X‖_F" },
            _ => throw new InvalidOperationException($"no weighting for {kind}"),
        };
        if (decomposes && kind is TruncationKind.EigenWhitening)
        {
            if (l.OutFeatures > l.InFeatures)
            {
                w = WithWhitening(w);
                _eigenWhitened.Add(key);
            }
            else if (l.OutFeatures == l.InFeatures && Whitening.TryCholesky(s.Gram) is { } chol)
            {
                // Square linears (q/k/v/o) form G through the shared Cholesky factor when C is positive definite;
                // a wide one (down_proj, n = 11008) would pay more for the factorisation than it saves.
                _owned.Add(chol);
                w = new Weighting { Gram = w.Gram, Objective = w.Objective, SharedWhitening = chol };
            }
        }
        _byKey[key] = w;
        return w;
    }

    private InputStatistics Input(Linear l)
    {
        try
        {
            var s = stats.Input(l.InputKey);
            _loaded.Add(l.InputKey);
            if (s.Features != l.InFeatures) throw new ArgumentException($"the statistics of input '{l.InputKey}' have {s.Features} features; {l.Name} reads {l.InFeatures}");
            return s;
        }
        catch (KeyNotFoundException)
        {
            throw new ArgumentException($"no calibration statistics for the input of {l.Name} (key '{l.InputKey}'); were they collected on this model?");
        }
    }

    private Weighting WithWhitening(Weighting w)
    {
        var wh = Whitening.Of(w.Gram!);
        _owned.Add(wh);
        return new Weighting { Gram = w.Gram, Objective = w.Objective, Note = w.Note, SharedWhitening = wh };
    }

    /// <summary>SVD-LLM: C as is when Cholesky succeeds, else C + (−λ_min + 1e-6)·I as the reference does (recorded).</summary>
    private Weighting Cholesky(Tensor<double> c)
    {
        try
        {
            var s = Lapack.Cholesky(c);
            var wh = new Whitening(s, "chol(C)");
            _owned.Add(wh);
            return new Weighting { Gram = c, Objective = "‖(W−W')X‖_F", SharedWhitening = wh };
        }
        catch (LapackException e) when (e.Info > 0)
        {
            using var eig = Lapack.SymmetricEigen(c);
            double shift = -eig.Values[0] + 1e-6;
            var jittered = c.Clone();
            _owned.Add(jittered);
            for (int i = 0; i < c.Rows; i++) jittered[i, i] += shift;
            var wh = new Whitening(Lapack.Cholesky(jittered), "chol(C+δI)");
            _owned.Add(wh);
            return new Weighting
            {
                Gram = jittered, Objective = "‖(W−W')X‖_F", SharedWhitening = wh,
                Note = $"C not positive definite (λ_min = {eig.Values[0]:E3}); added {shift:E3}·I before Cholesky",
            };
        }
    }

    /// <summary>FWSVD: a_i = sqrt(Σ_j Î_ij), floored at 1e-8·max so a⁻¹ stays finite (recorded).</summary>
    private Weighting Fisher(Linear l)
    {
        var rows = stats.FisherRowSums(l.Name) ?? throw new ArgumentException($"FWSVD needs the Fisher row sums of {l.Name}; calibrate with Fisher enabled");
        if (rows.Length != l.OutFeatures) throw new ArgumentException($"Fisher row sums of {l.Name} have {rows.Length} entries, the linear has {l.OutFeatures} rows");
        var a = rows.Select(x => Math.Sqrt(Math.Max(0, x))).ToArray();
        double max = a.Max();
        if (!(max > 0)) throw new ArgumentException($"FWSVD: the Fisher information of {l.Name} is zero for every row (no gradient reached this linear)");
        double floor = 1e-8 * max;
        int floored = a.Count(x => x < floor);
        for (int i = 0; i < a.Length; i++) a[i] = Math.Max(a[i], floor);
        return new Weighting { Rows = a, Objective = "‖I(W−W')‖_F", Note = floored > 0 ? $"{floored} rows with Fisher below 1e-8·max were floored" : null };
    }

    public void Dispose()
    {
        foreach (var d in _owned) d.Dispose();
        if (release)
            foreach (string key in _loaded) stats.Release(key);
    }
}

/// <summary>
/// Scratch files holding each matrix's kept singular vectors between V2's passes (one file per matrix, deleted when
/// read back and with the directory at the end). Float64, or float32 when the checkpoint stores its weights in 16 bits:
/// rounding U to float32 moves W' = U_k U_kᵀ W by at most about 2·u₃₂·sqrt(k)·‖W‖ (≈ 5e-6 relative at k = 2048),
/// three orders below the BF16 rounding (3.9e-3) every factor then gets.
/// </summary>
internal sealed class BasisWorkspace : IDisposable
{
    private readonly string _dir;
    private readonly bool _compact;
    private readonly Dictionary<string, (double[] Lambda, string Route, double Dropped, int Rows, int Cols)> _meta = new(StringComparer.Ordinal);

    internal const string Prefix = "svdllm-workspace";

    public BasisWorkspace(string? parent, bool compact)
    {
        // Several GB at 7B; a killed run's is removed by the next run's sweep (it names its process).
        string root = parent ?? Path.GetTempPath();
        SvdLlm.Models.Data.Leftovers.Sweep(root, Prefix);
        _dir = SvdLlm.Models.Data.Leftovers.TempPath(Path.Combine(root, Prefix));
        Directory.CreateDirectory(_dir);
        _compact = compact;
    }

    public string Path_ => _dir;

    private string File(string name) => Path.Combine(_dir, name + ".basis");

    public void Write(string name, WeightedBasis basis)
    {
        _meta[name] = (basis.Lambda, basis.Route, basis.DroppedSquared, basis.U.Rows, basis.U.Cols);
        using var fs = new FileStream(File(name), FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
        var u = basis.U.Span;
        if (!_compact)
        {
            fs.Write(MemoryMarshal.AsBytes(u));
            return;
        }
        var chunk = new float[1 << 16];
        for (int at = 0; at < u.Length; at += chunk.Length)
        {
            int len = Math.Min(chunk.Length, u.Length - at);
            for (int i = 0; i < len; i++) chunk[i] = (float)u[at + i];
            fs.Write(MemoryMarshal.AsBytes(chunk.AsSpan(0, len)));
        }
    }

    public WeightedBasis Read(string name)
    {
        var (lambda, route, dropped, rows, cols) = _meta[name];
        var u = Tensor<double>.Uninitialized(rows, cols);
        try
        {
            using (var fs = new FileStream(File(name), FileMode.Open, FileAccess.Read, FileShare.None, 1 << 20))
            {
                var span = u.Span;
                if (!_compact) fs.ReadExactly(MemoryMarshal.AsBytes(span));
                else
                {
                    var chunk = new float[1 << 16];
                    for (int at = 0; at < span.Length; at += chunk.Length)
                    {
                        int len = Math.Min(chunk.Length, span.Length - at);
                        fs.ReadExactly(MemoryMarshal.AsBytes(chunk.AsSpan(0, len)));
                        for (int i = 0; i < len; i++) span[at + i] = chunk[i];
                    }
                }
            }
            System.IO.File.Delete(File(name));
            return new WeightedBasis(lambda, u, route + (_compact ? " (workspace float32)" : ""), dropped);
        }
        catch
        {
            u.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        try
        {
            if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
            // Scratch only; a leftover directory holds no result.
        }
    }
}
