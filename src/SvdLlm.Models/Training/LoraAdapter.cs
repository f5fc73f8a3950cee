using SvdLlm.Numerics;

namespace SvdLlm.Models.Training;

/// <summary>
/// A LoRA adapter (Hu et al. 2021) on a frozen matrix W₀ [out, in]: y = x W₀ᵀ + s · (x Aᵀ) Bᵀ with A [r, in], B [out, r] and
/// s = α / r, B starting at zero so the adapted map starts as W₀. SVD-LLM's recovery trains one on each W_u, merges it
/// (W_u ← W_u + s·B A), then one on each W_v. Forward and backward side by side; h = x Aᵀ [N, r] is kept from the
/// forward for the backward. Parameters and gradients are float32, as the training model's.
/// </summary>
public sealed class LoraAdapter
{
    public int In { get; }
    public int Out { get; }
    public int Rank { get; }
    public float Scale { get; }

    /// <summary>A [r, in], row-major.</summary>
    public float[] A { get; }

    /// <summary>B [out, r], row-major.</summary>
    public float[] B { get; }

    public float[] GradA { get; }
    public float[] GradB { get; }

    private float[] _h = [];
    private float[] _dh = [];
    private int _rows;

    /// <param name="alpha">LoRA's α; the update is scaled by α / rank</param>
    /// <param name="seed">A's initialisation: uniform in ±1/√in (Kaiming-uniform with a = √5, as the reference LoRA); B = 0</param>
    public LoraAdapter(int inFeatures, int outFeatures, int rank, float alpha, int seed)
    {
        if (rank < 1 || rank > Math.Min(inFeatures, outFeatures)) throw new ArgumentOutOfRangeException(nameof(rank), $"LoRA rank {rank} outside [1, {Math.Min(inFeatures, outFeatures)}]");
        In = inFeatures;
        Out = outFeatures;
        Rank = rank;
        Scale = alpha / rank;
        A = new float[rank * inFeatures];
        B = new float[outFeatures * rank];
        GradA = new float[A.Length];
        GradB = new float[B.Length];
        var rng = new Random(seed);
        float bound = 1f / MathF.Sqrt(inFeatures);
        for (int i = 0; i < A.Length; i++) A[i] = (float)(rng.NextDouble() * 2 - 1) * bound;
    }

    /// <summary>y [N, out] += s · (x Aᵀ) Bᵀ, x [N, in]; the frozen W₀'s own product is the caller's.</summary>
    public void Forward(ReadOnlySpan<float> x, int rows, Span<float> y)
    {
        if (_h.Length < rows * Rank) _h = new float[rows * Rank];
        _rows = rows;
        Blas.Sgemm(Transpose.No, Transpose.Yes, rows, Rank, In, 1f, x, In, A, In, 0f, _h, Rank);
        Blas.Sgemm(Transpose.No, Transpose.Yes, rows, Out, Rank, Scale, _h, Rank, B, Rank, 1f, y, Out);
    }

    /// <summary>dB += s · dyᵀ h; dh = s · dy B; dA += dhᵀ x; dx [N, in] += dh A (the frozen W₀'s part of dx is the caller's).</summary>
    public void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, int rows, Span<float> dx)
    {
        if (rows != _rows) throw new InvalidOperationException($"backward over {rows} rows after a forward over {_rows}");
        if (_dh.Length < rows * Rank) _dh = new float[rows * Rank];
        var dh = _dh.AsSpan(0, rows * Rank);
        Blas.Sgemm(Transpose.Yes, Transpose.No, Out, Rank, rows, Scale, dy, Out, _h, Rank, 1f, GradB, Rank);
        Blas.Sgemm(Transpose.No, Transpose.No, rows, Rank, Out, Scale, dy, Out, B, Rank, 0f, dh, Rank);
        Blas.Sgemm(Transpose.Yes, Transpose.No, Rank, In, rows, 1f, dh, Rank, x, In, 1f, GradA, In);
        Blas.Sgemm(Transpose.No, Transpose.No, rows, In, Rank, 1f, dh, Rank, A, In, 1f, dx, In);
    }

    /// <summary>W₀ [out, in] += s · B A: the adapted map as one matrix (then the adapter is spent).</summary>
    public void MergeInto(Span<float> w0) => Blas.Sgemm(Transpose.No, Transpose.No, Out, In, Rank, Scale, B, Rank, A, In, 1f, w0, In);

    public void ZeroGrad()
    {
        Array.Clear(GradA);
        Array.Clear(GradB);
    }
}
