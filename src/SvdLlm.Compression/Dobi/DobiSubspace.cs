using SvdLlm.Numerics;

namespace SvdLlm.Compression.Dobi;

/// <summary>
/// Dobi-SVD's stage 2 subspace for one linear W [m, n] (out × in). Each calibration sample contributes the right
/// singular vectors V_f [m, q] of its (truncated) activation A = X Wᵀ; the weight is then projected onto the top-k
/// principal directions V_k [m, k] of all of them, W' = V_k V_kᵀ W, so that X W'ᵀ = A V_k V_kᵀ.
///
/// <para><b>Centering (ambiguity 3).</b> The paper's derivation is uncentered: V_k is the top-k eigenvectors of
/// M = Σ_samples V_f V_fᵀ [m, m], and for a single sample with q = k this is span(V_f), making X W'ᵀ the
/// Eckart–Young-optimal rank-k approximation of A. The reference code instead feeds the columns of V_f as rows to an
/// incremental PCA (scikit-learn semantics), which subtracts the mean row first. The columns are singular vectors with
/// arbitrary signs, so the mean depends on sign conventions of the SVD and the centered subspace has no such
/// optimality. This type computes the uncentered form by default (<c>centered: false</c>) and the centered
/// covariance Σ (r − μ)(r − μ)ᵀ = M − N μμᵀ over the N rows fed behind the flag.</para>
///
/// <para>The Gram is accumulated exactly in float64 (m² values, ≈ 970 MB at m = 11008), so chunked accumulation equals
/// the batch computation on the concatenation. Scikit-learn's incremental PCA keeps only n_components directions after
/// every partial fit, so it agrees with this batch result only when the rows seen span at most that many
/// directions.</para>
/// </summary>
public sealed class DobiSubspace : IDisposable
{
    private readonly Tensor<double> _gram;
    private readonly double[] _sum;

    /// <summary>m, the length of each fed vector (the linear's output size).</summary>
    public int Dimension { get; }

    public bool Centered { get; }

    /// <summary>N, the number of vectors fed (columns of all V_f added so far).</summary>
    public long Count { get; private set; }

    public DobiSubspace(int dimension, bool centered = false)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(dimension, 1);
        Dimension = dimension;
        Centered = centered;
        _gram = Tensor<double>.Zeros(dimension, dimension);
        _sum = new double[dimension];
    }

    /// <summary>Adds one sample's V_f [m, q]: each of its q columns is one vector (one row of the reference's PCA input).</summary>
    public void Add(Tensor<double> vf)
    {
        ArgumentNullException.ThrowIfNull(vf);
        if (vf.Rows != Dimension) throw new ArgumentException($"V_f {vf.ShapeString} must have {Dimension} rows");
        int q = vf.Cols;
        if (q == 0) return;
        Blas.Dgemm(Transpose.No, Transpose.Yes, Dimension, Dimension, q, 1.0, vf.Span, q, vf.Span, q, 1.0, _gram.Span, Dimension);
        for (int r = 0; r < Dimension; r++)
        {
            double s = 0;
            foreach (double x in vf.Row(r)) s += x;
            _sum[r] += s;
        }
        Count += q;
    }

    /// <summary>M = Σ V_f V_fᵀ, or with <see cref="Centered"/> M − s sᵀ/N (s the sum of the fed vectors); a new [m, m] tensor.</summary>
    public Tensor<double> Scatter()
    {
        var c = _gram.Clone();
        if (Centered && Count > 0)
            for (int i = 0; i < Dimension; i++)
                for (int j = 0; j < Dimension; j++) c[i, j] -= _sum[i] * _sum[j] / Count;
        return c;
    }

    /// <summary>
    /// V_k [m, k]: eigenvectors of <see cref="Scatter"/> for its k largest eigenvalues, descending (returned in
    /// <paramref name="eigenvalues"/>). Each vector's sign is fixed so that its largest-magnitude entry is positive;
    /// only the subspace matters to <see cref="UpdateWeight"/>, the sign just makes the result reproducible. Unique
    /// only when the k-th and (k+1)-th eigenvalues differ.
    /// </summary>
    public Tensor<double> Top(int k, out double[] eigenvalues)
    {
        if (k < 1 || k > Dimension) throw new ArgumentOutOfRangeException(nameof(k), $"k = {k} outside [1, {Dimension}]");
        if (Count == 0) throw new InvalidOperationException("no vectors were added");
        using var scatter = Scatter();
        using var eig = Lapack.SymmetricEigen(scatter);
        var vk = Tensor<double>.Uninitialized(Dimension, k);
        eigenvalues = new double[k];
        for (int c = 0; c < k; c++)
        {
            int src = Dimension - 1 - c; // ascending → descending
            eigenvalues[c] = eig.Values[src];
            int argmax = 0;
            for (int r = 1; r < Dimension; r++)
                if (Math.Abs(eig.Vectors[r, src]) > Math.Abs(eig.Vectors[argmax, src])) argmax = r;
            double sign = eig.Vectors[argmax, src] < 0 ? -1 : 1;
            for (int r = 0; r < Dimension; r++) vk[r, c] = sign * eig.Vectors[r, src];
        }
        return vk;
    }

    /// <summary>
    /// W' = V_k diag(mask) V_kᵀ W [m, n] (new tensor). With no mask this is the paper's projection V_k V_kᵀ W; the
    /// reference also multiplies by T_i at real_gamma = ρ·γ on i = 1…k, which the caller can pass as
    /// <paramref name="mask"/> (k values).
    /// </summary>
    public static Tensor<double> UpdateWeight(Tensor<double> w, Tensor<double> vk, ReadOnlySpan<double> mask = default)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(vk);
        if (vk.Rows != w.Rows) throw new ArgumentException($"V_k {vk.ShapeString} and W {w.ShapeString} differ in m");
        if (mask.Length != 0 && mask.Length != vk.Cols) throw new ArgumentException($"mask has {mask.Length} values, expected {vk.Cols}");
        using var coefficients = DenseMath.MatMul(vk, true, w, false); // V_kᵀ W [k, n]
        if (mask.Length != 0) DenseMath.ScaleRows(coefficients, mask);
        return DenseMath.MatMul(vk, false, coefficients, false);
    }

    public void Dispose() => _gram.Dispose();
}
