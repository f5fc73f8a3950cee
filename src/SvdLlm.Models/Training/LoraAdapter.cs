using SvdLlm.Numerics;

namespace SvdLlm.Models.Training;

/// <summary>Which factor of a low-rank linear y = U(Vx) a LoRA adapter sits on: SVD-LLM's recovery adapts every U, merges, then every V.</summary>
public enum LoraTarget { U, V }

/// <summary>
/// A LoRA adapter (Hu et al. 2021) on a frozen matrix W₀ [out, in]: y = x W₀ᵀ + s · (x Aᵀ) Bᵀ with A [r, in], B [out, r] and
/// s = α / r, B starting at zero so the adapted map starts as W₀. SVD-LLM's recovery trains one on each W_u, merges it
/// (W_u ← W_u + s·B A), then one on each W_v. A and B are entries of an adapter arena (so AdamW and the gradient clip see
/// them as one block, apart from the frozen model's arena); forward and backward side by side, h = x Aᵀ [N, r] kept from
/// the forward for the backward.
/// </summary>
public sealed class LoraAdapter
{
    public int In { get; }
    public int Out { get; }
    public int Rank { get; }
    public float Scale { get; }

    /// <summary>A [r, in] and B [out, r], row-major, in the adapter arena.</summary>
    public ParameterArena.Entry A { get; }
    public ParameterArena.Entry B { get; }

    private float[] _h = [];
    private float[] _dh = [];
    private int _rows = -1;

    /// <param name="name">the adapted tensor's module name; the entries are "{name}.lora_A" and "{name}.lora_B" (PEFT's names)</param>
    /// <param name="alpha">LoRA's α; the update is scaled by α / rank</param>
    public LoraAdapter(ParameterArena arena, string name, int inFeatures, int outFeatures, int rank, float alpha)
    {
        if (rank < 1 || rank > Math.Min(inFeatures, outFeatures)) throw new ArgumentOutOfRangeException(nameof(rank), $"LoRA rank {rank} outside [1, {Math.Min(inFeatures, outFeatures)}] for {name}");
        In = inFeatures;
        Out = outFeatures;
        Rank = rank;
        Scale = alpha / rank;
        A = arena.Add(name + ".lora_A", rank, inFeatures);
        B = arena.Add(name + ".lora_B", outFeatures, rank);
    }

    /// <summary>A uniform in ±1/√in (Kaiming-uniform with a = √5, as the reference LoRA), B = 0: the adapted map starts as W₀.</summary>
    public void Initialize(Tensor<float> p, Random rng)
    {
        var a = ParameterArena.View(p, A);
        float bound = 1f / MathF.Sqrt(In);
        for (int i = 0; i < a.Length; i++) a[i] = (float)(rng.NextDouble() * 2 - 1) * bound;
        ParameterArena.View(p, B).Clear();
    }

    /// <summary>y [N, out] += s · (x Aᵀ) Bᵀ, x [N, in]; the frozen W₀'s own product is the caller's.</summary>
    public void Forward(Tensor<float> p, ReadOnlySpan<float> x, int rows, Span<float> y)
    {
        if (_h.Length < rows * Rank) _h = new float[rows * Rank];
        _rows = rows;
        Blas.Sgemm(Transpose.No, Transpose.Yes, rows, Rank, In, 1f, x, In, ParameterArena.View(p, A), In, 0f, _h, Rank);
        Blas.Sgemm(Transpose.No, Transpose.Yes, rows, Out, Rank, Scale, _h, Rank, ParameterArena.View(p, B), Rank, 1f, y, Out);
    }

    /// <summary>dB += s · dyᵀ h; dh = s · dy B; dA += dhᵀ x; dx [N, in] += dh A (the frozen W₀'s part of dx is the caller's).</summary>
    public void Backward(Tensor<float> p, Tensor<float> g, ReadOnlySpan<float> x, ReadOnlySpan<float> dy, int rows, Span<float> dx)
    {
        if (rows != _rows) throw new InvalidOperationException($"backward over {rows} rows after a forward over {_rows}");
        if (_dh.Length < rows * Rank) _dh = new float[rows * Rank];
        var dh = _dh.AsSpan(0, rows * Rank);
        Blas.Sgemm(Transpose.Yes, Transpose.No, Out, Rank, rows, Scale, dy, Out, _h, Rank, 1f, ParameterArena.View(g, B), Rank);
        Blas.Sgemm(Transpose.No, Transpose.No, rows, Rank, Out, Scale, dy, Out, ParameterArena.View(p, B), Rank, 0f, dh, Rank);
        Blas.Sgemm(Transpose.Yes, Transpose.No, Rank, In, rows, 1f, dh, Rank, x, In, 1f, ParameterArena.View(g, A), In);
        Blas.Sgemm(Transpose.No, Transpose.No, rows, In, Rank, 1f, dh, Rank, ParameterArena.View(p, A), In, 1f, dx, In);
    }

    /// <summary>W₀ [out, in] += s · B A: the adapted map as one matrix (then the adapter is spent).</summary>
    public void MergeInto(Tensor<float> p, Span<float> w0)
        => Blas.Sgemm(Transpose.No, Transpose.No, Out, In, Rank, Scale, ParameterArena.View(p, B), Rank, ParameterArena.View(p, A), In, 1f, w0, In);
}
