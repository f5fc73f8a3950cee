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
/// Replaces a linear's output in the forward and maps the gradient back in the backward (Dobi-SVD's differentiable
/// truncation of the output activations): y [rows, out] holds rows / seqLen windows of seqLen rows each.
/// </summary>
public interface IActivationTransform
{
    /// <summary>y ← the transformed output of linear <paramref name="name"/> (in place), keeping what the backward needs.</summary>
    void Forward(string name, Span<float> y, int rows, int seqLen);

    /// <summary>dy ← dL/dy from dL/d(transformed y), in place; accumulates the gradients of what the transform trains.</summary>
    void Backward(string name, Span<float> dy, int rows, int seqLen);
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

    /// <summary>
    /// Low-rank only: a LoRA adapter on U (y = U t + s·B A t) or on V (t = V x + s·B A x), its parameters in
    /// <see cref="AdapterParameters"/> and gradients in <see cref="AdapterGradients"/> (the adapter arena's blocks).
    /// </summary>
    public LoraAdapter? Adapter { get; private set; }
    public LoraTarget AdapterTarget { get; private set; }
    public Tensor<float>? AdapterParameters { get; private set; }
    public Tensor<float>? AdapterGradients { get; private set; }

    /// <summary>Declares a rank-<paramref name="rank"/> adapter on U or V in <paramref name="arena"/> (named after that factor).</summary>
    public LoraAdapter DeclareAdapter(ParameterArena arena, LoraTarget target, int rank, float alpha)
    {
        if (Rank is not int k) throw new InvalidOperationException($"{Name} is dense; LoRA recovery adapts the factors of low-rank linears");
        Adapter = target == LoraTarget.U
            ? new LoraAdapter(arena, Linear.UName(Name), k, Out, Math.Min(rank, Math.Min(k, Out)), alpha)
            : new LoraAdapter(arena, Linear.VName(Name), In, k, Math.Min(rank, Math.Min(In, k)), alpha);
        AdapterTarget = target;
        return Adapter;
    }

    /// <summary>Points the adapter at the allocated adapter arena's parameter and gradient blocks.</summary>
    public void BindAdapter(Tensor<float> parameters, Tensor<float> gradients) => (AdapterParameters, AdapterGradients) = (parameters, gradients);

    /// <summary>Folds the adapter into its factor (U or V += s·B A) and removes it.</summary>
    public void MergeAdapter(Tensor<float> p)
    {
        if (Adapter is null) return;
        Adapter.MergeInto(AdapterParameters!, ParameterArena.View(p, AdapterTarget == LoraTarget.U ? U! : V!));
        (Adapter, AdapterParameters, AdapterGradients) = (null, null, null);
    }

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
            if (Adapter is not null && AdapterTarget == LoraTarget.V) Adapter.Forward(AdapterParameters!, x, rows, _t.Span);
            be.Sgemm(Transpose.No, Transpose.Yes, rows, Out, k, 1f, _t.Span, k, ParameterArena.View(p, U!), k, 0f, y, Out);
            if (Adapter is not null && AdapterTarget == LoraTarget.U) Adapter.Forward(AdapterParameters!, _t.Span, rows, y);
        }
        else
        {
            be.Sgemm(Transpose.No, Transpose.Yes, rows, Out, In, 1f, x, In, ParameterArena.View(p, W!), In, 0f, y, Out);
        }
        if (B is not null) be.AddBias(ParameterArena.View(p, B), y[..(rows * Out)], rows);
    }

    /// <summary>
    /// dx [N, in] += dy·W; dW += dyᵀ·x; db += Σ_rows dy (low-rank: through t = x·Vᵀ, and the adapter's gradients when one
    /// is attached). With <paramref name="weightGradients"/> false the frozen weights' gradients are skipped (only dx and
    /// the adapter's), which is most of LoRA recovery's backward saved.
    /// </summary>
    public void Backward(IComputeBackend be, Tensor<float> p, Tensor<float>? g, ReadOnlySpan<float> x, ReadOnlySpan<float> dy, int rows,
        Span<float> dx, IGradientObserver? observer, bool weightGradients = true)
    {
        observer?.OnLinearBackward(Name, x[..(rows * In)], dy[..(rows * Out)], rows);
        if (weightGradients && g is null) throw new ArgumentNullException(nameof(g), "weight gradients need a gradient block");
        if (B is not null && weightGradients)
        {
            var db = ParameterArena.View(g!, B);
            for (int r = 0; r < rows; r++)
                System.Numerics.Tensors.TensorPrimitives.Add(db, dy.Slice(r * Out, Out), db);
        }
        if (Rank is int k)
        {
            using var dt = Tensor<float>.Uninitialized(rows, k);
            // dU [out, k] += dyᵀ·t ; dt [N, k] = dy·U (+ the U adapter's part) ; dV [k, in] += dtᵀ·x ; dx += dt·V (+ the V adapter's part)
            if (weightGradients) be.Sgemm(Transpose.Yes, Transpose.No, Out, k, rows, 1f, dy, Out, _t!.Span, k, 1f, ParameterArena.View(g!, U!), k);
            be.Sgemm(Transpose.No, Transpose.No, rows, k, Out, 1f, dy, Out, ParameterArena.View(p, U!), k, 0f, dt.Span, k);
            if (Adapter is not null && AdapterTarget == LoraTarget.U) Adapter.Backward(AdapterParameters!, AdapterGradients!, _t!.Span, dy, rows, dt.Span);
            if (weightGradients) be.Sgemm(Transpose.Yes, Transpose.No, k, In, rows, 1f, dt.Span, k, x, In, 1f, ParameterArena.View(g!, V!), In);
            be.Sgemm(Transpose.No, Transpose.No, rows, In, k, 1f, dt.Span, k, ParameterArena.View(p, V!), In, 1f, dx, In);
            if (Adapter is not null && AdapterTarget == LoraTarget.V) Adapter.Backward(AdapterParameters!, AdapterGradients!, x, dt.Span, rows, dx);
        }
        else
        {
            if (weightGradients) be.Sgemm(Transpose.Yes, Transpose.No, Out, In, rows, 1f, dy, Out, x, In, 1f, ParameterArena.View(g!, W!), In);
            be.Sgemm(Transpose.No, Transpose.No, rows, In, Out, 1f, dy, Out, ParameterArena.View(p, W!), In, 1f, dx, In);
        }
    }

    public void Dispose() => _t?.Dispose();
}
