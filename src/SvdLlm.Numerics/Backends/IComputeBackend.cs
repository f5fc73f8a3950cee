namespace SvdLlm.Numerics.Backends;

/// <summary>
/// The seam between the model/compression code and the hardware: every operation the forward pass,
/// calibration and the compression methods need. Model code holds an <see cref="IComputeBackend"/>
/// and never calls OpenBLAS directly, so a CUDA backend (cuBLAS/cuSOLVER through P/Invoke) can be
/// added without touching it. Semantics are those of <see cref="Blas"/>, <see cref="Lapack"/> and
/// <see cref="Kernels.Kernels"/>: row-major, spans checked against their dimensions.
/// </summary>
public interface IComputeBackend
{
    /// <summary>Human-readable description for logs and result rows (library, kernel family, threads).</summary>
    string Name { get; }

    // Level-3 BLAS.
    void Sgemm(Transpose transA, Transpose transB, int m, int n, int k, float alpha, ReadOnlySpan<float> a, int lda,
        ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc);
    void Dgemm(Transpose transA, Transpose transB, int m, int n, int k, double alpha, ReadOnlySpan<double> a, int lda,
        ReadOnlySpan<double> b, int ldb, double beta, Span<double> c, int ldc);
    void Dsyrk(bool lower, Transpose trans, int n, int k, double alpha, ReadOnlySpan<double> a, int lda,
        double beta, Span<double> c, int ldc);
    void Dtrsm(bool left, bool lower, Transpose transA, bool unitDiagonal, int m, int n, double alpha,
        ReadOnlySpan<double> a, int lda, Span<double> b, int ldb);

    // LAPACK.
    SvdResult<double> Svd(Tensor<double> a);
    SvdResult<float> Svd(Tensor<float> a);
    EigenResult<double> SymmetricEigen(Tensor<double> c);
    Tensor<double> Cholesky(Tensor<double> c);
    Tensor<double> Solve(Tensor<double> a, Tensor<double> b);

    // Row-wise kernels.
    void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> y, int rows);
    void LayerNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, float eps, Span<float> y, int rows);
    void SoftmaxInPlace(Span<float> x);
    void CausalSoftmax(Span<float> scores, int tokens, int? window);
    double LogSumExp(ReadOnlySpan<float> x);
    void SiluMul(ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> y, int rows);
    void Relu(ReadOnlySpan<float> x, Span<float> y);
    void Add(ReadOnlySpan<float> x, ReadOnlySpan<float> r, Span<float> y);
    void AddBias(ReadOnlySpan<float> bias, Span<float> y, int rows);
    void ApplyRope(Span<float> x, int tokens, int heads, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin, ReadOnlySpan<int> positions);
    void ApplyRopeKeptPairs(Span<float> x, int tokens, int heads, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin, int tableHalf,
        ReadOnlySpan<int> pairs, int pairHeads, ReadOnlySpan<int> positions);
}
