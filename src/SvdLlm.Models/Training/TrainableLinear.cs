using SvdLlm.Models.Architectures;
using SvdLlm.Numerics;
using SvdLlm.Numerics.Backends;

namespace SvdLlm.Models.Training;

/// <summary>Sees each linear's input and output gradient during backward (Fisher statistics for FWSVD).</summary>
public interface IGradientObserver
{
    /// <summary>x [rows, in] is the linear's forward input, dy [rows, out] the loss gradient w.r.t. its output; the weight gradient of this micro-batch is dyᵀ·x.</summary>
    void OnLinearBackward(string name, ReadOnlySpan<float> x, ReadOnlySpan<float> dy, int rows);
}

/// <summary>
/// A linear layer over arena views: dense W [out, in], or low-rank U [out, k]·V [k, in], with an optional bias.
/// Forward and backward side by side; backward accumulates dW (dU, dV, db) and dx.
/// N = rows, "in"/"out" the feature counts, k the rank.
/// </summary>
internal sealed class TrainableLinear
{
    public required string Name { get; init; }
    public required int In { get; init; }
    public required int Out { get; init; }
    public int? Rank { get; init; }
    public bool HasBias { get; init; }

    // Arena entries: W, or U and V; bias.
    public ParameterArena.Entry? W { get; set; }
    public ParameterArena.Entry? U { get; set; }
    public ParameterArena.Entry? V { get; set; }
    public ParameterArena.Entry? B { get; set; }

    /// <summary>Low-rank only: t = x·Vᵀ [N, k] kept from the forward for the backward.</summary>
    private Tensor<float>? _t;

    public void Declare(ParameterArena arena)
    {
        if (Rank is int k)
        {
            U = arena.Add(Linear.UName(Name) + ".weight", Out, k);
            V = arena.Add(Linear.VName(Name) + ".weight", k, In);
        }
        else
        {
            W = arena.Add(Name + ".weight", Out, In);
        }
        if (HasBias) B = arena.Add((Rank is null ? Name : Linear.UName(Name)) + ".bias", Out);
    }

    /// <summary>y [N, out] = x [N, in]·Wᵀ + b (overwrites y).</summary>
    public void Forward(IComputeBackend be, Tensor<float> p, ReadOnlySpan<float> x, int rows, Span<float> y)
    {
        if (Rank is int k)
        {
            if (_t is null || _t.Rows != rows) { _t?.Dispose(); _t = Tensor<float>.Uninitialized(rows, k); }
            be.Sgemm(Transpose.No, Transpose.Yes, rows, k, In, 1f, x, In, ParameterArena.View(p, V!), In, 0f, _t.Span, k);
            be.Sgemm(Transpose.No, Transpose.Yes, rows, Out, k, 1f, _t.Span, k, ParameterArena.View(p, U!), k, 0f, y, Out);
        }
        else
        {
            be.Sgemm(Transpose.No, Transpose.Yes, rows, Out, In, 1f, x, In, ParameterArena.View(p, W!), In, 0f, y, Out);
        }
        if (B is not null) be.AddBias(ParameterArena.View(p, B), y[..(rows * Out)], rows);
    }

    /// <summary>dx [N, in] += dy·W; dW += dyᵀ·x; db += Σ_rows dy (low-rank: through t = x·Vᵀ).</summary>
    public void Backward(IComputeBackend be, Tensor<float> p, Tensor<float> g, ReadOnlySpan<float> x, ReadOnlySpan<float> dy, int rows,
        Span<float> dx, IGradientObserver? observer)
    {
        observer?.OnLinearBackward(Name, x[..(rows * In)], dy[..(rows * Out)], rows);
        if (B is not null)
        {
            var db = ParameterArena.View(g, B);
            for (int r = 0; r < rows; r++)
                System.Numerics.Tensors.TensorPrimitives.Add(db, dy.Slice(r * Out, Out), db);
        }
        if (Rank is int k)
        {
            using var dt = Tensor<float>.Uninitialized(rows, k);
            // dU [out, k] += dyᵀ·t ; dt [N, k] = dy·U ; dV [k, in] += dtᵀ·x ; dx += dt·V
            be.Sgemm(Transpose.Yes, Transpose.No, Out, k, rows, 1f, dy, Out, _t!.Span, k, 1f, ParameterArena.View(g, U!), k);
            be.Sgemm(Transpose.No, Transpose.No, rows, k, Out, 1f, dy, Out, ParameterArena.View(p, U!), k, 0f, dt.Span, k);
            be.Sgemm(Transpose.Yes, Transpose.No, k, In, rows, 1f, dt.Span, k, x, In, 1f, ParameterArena.View(g, V!), In);
            be.Sgemm(Transpose.No, Transpose.No, rows, In, k, 1f, dt.Span, k, ParameterArena.View(p, V!), In, 1f, dx, In);
        }
        else
        {
            be.Sgemm(Transpose.Yes, Transpose.No, Out, In, rows, 1f, dy, Out, x, In, 1f, ParameterArena.View(g, W!), In);
            be.Sgemm(Transpose.No, Transpose.No, rows, In, Out, 1f, dy, Out, ParameterArena.View(p, W!), In, 1f, dx, In);
        }
    }

    public void Dispose() => _t?.Dispose();
}
