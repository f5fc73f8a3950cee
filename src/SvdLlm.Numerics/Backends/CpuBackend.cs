using K = SvdLlm.Numerics.Kernels.Kernels;

namespace SvdLlm.Numerics.Backends;

/// <summary>OpenBLAS/LAPACK for the dense algebra, TensorPrimitives-based kernels for the rest.</summary>
public sealed class CpuBackend : IComputeBackend
{
    /// <summary>The shared instance; stateless apart from <see cref="NumericsRuntime"/>'s thread count.</summary>
    public static CpuBackend Instance { get; } = new();

    public string Name => $"cpu ({NumericsRuntime.Describe()})";

    public void Sgemm(Transpose transA, Transpose transB, int m, int n, int k, float alpha, ReadOnlySpan<float> a, int lda,
        ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc)
        => Blas.Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);

    public void Dgemm(Transpose transA, Transpose transB, int m, int n, int k, double alpha, ReadOnlySpan<double> a, int lda,
        ReadOnlySpan<double> b, int ldb, double beta, Span<double> c, int ldc)
        => Blas.Dgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);

    public void Dsyrk(bool lower, Transpose trans, int n, int k, double alpha, ReadOnlySpan<double> a, int lda, double beta, Span<double> c, int ldc)
        => Blas.Dsyrk(lower, trans, n, k, alpha, a, lda, beta, c, ldc);

    public void Dtrsm(bool left, bool lower, Transpose transA, bool unitDiagonal, int m, int n, double alpha,
        ReadOnlySpan<double> a, int lda, Span<double> b, int ldb)
        => Blas.Dtrsm(left, lower, transA, unitDiagonal, m, n, alpha, a, lda, b, ldb);

    public SvdResult<double> Svd(Tensor<double> a) => Lapack.Svd(a);
    public SvdResult<float> Svd(Tensor<float> a) => Lapack.Svd(a);
    public EigenResult<double> SymmetricEigen(Tensor<double> c) => Lapack.SymmetricEigen(c);
    public Tensor<double> Cholesky(Tensor<double> c) => Lapack.Cholesky(c);
    public Tensor<double> Solve(Tensor<double> a, Tensor<double> b) => Lapack.Solve(a, b);

    public void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> y, int rows) => K.RmsNorm(x, weight, eps, y, rows);
    public void LayerNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, float eps, Span<float> y, int rows)
        => K.LayerNorm(x, weight, bias, eps, y, rows);
    public void SoftmaxInPlace(Span<float> x) => K.SoftmaxInPlace(x);
    public void CausalSoftmax(Span<float> scores, int tokens, int? window) => K.CausalSoftmax(scores, tokens, window);
    public double LogSumExp(ReadOnlySpan<float> x) => K.LogSumExp(x);
    public void SiluMul(ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> y, int rows) => K.SiluMul(gate, up, y, rows);
    public void Relu(ReadOnlySpan<float> x, Span<float> y) => K.Relu(x, y);
    public void Add(ReadOnlySpan<float> x, ReadOnlySpan<float> r, Span<float> y) => K.Add(x, r, y);
    public void AddBias(ReadOnlySpan<float> bias, Span<float> y, int rows) => K.AddBias(bias, y, rows);
    public void ApplyRope(Span<float> x, int tokens, int heads, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin, ReadOnlySpan<int> positions)
        => K.ApplyRope(x, tokens, heads, headDim, cos, sin, positions);
    public void ApplyRopeKeptPairs(Span<float> x, int tokens, int heads, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin, int tableHalf,
        ReadOnlySpan<int> pairs, int pairHeads, ReadOnlySpan<int> positions)
        => K.ApplyRopeKeptPairs(x, tokens, heads, headDim, cos, sin, tableHalf, pairs, pairHeads, positions);
}
