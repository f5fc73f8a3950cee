using System.Runtime.InteropServices;
using SvdLlm.Numerics.Interop;

namespace SvdLlm.Numerics;

/// <summary>Whether a BLAS operand is used as stored or transposed.</summary>
public enum Transpose { No, Yes }

/// <summary>
/// Row-major BLAS level-3 on spans. Every call checks that each operand's span is long enough for
/// its dimensions and leading dimension before it reaches native code, so a shape bug is an
/// exception here rather than a read past the end of a buffer inside OpenBLAS.
/// Strided use (a head's columns inside [T, heads·head_dim]) is expressed with the leading dimension.
/// </summary>
public static unsafe class Blas
{
    /// <summary>C[m,n] = alpha·op(A)·op(B) + beta·C, with op(A) m×k and op(B) k×n, all row-major.</summary>
    public static void Sgemm(Transpose transA, Transpose transB, int m, int n, int k,
        float alpha, ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb,
        float beta, Span<float> c, int ldc)
    {
        CheckGemm(transA, transB, m, n, k, a.Length, lda, b.Length, ldb, c.Length, ldc, "sgemm");
        if (m == 0 || n == 0) return;
        fixed (float* pa = a) fixed (float* pb = b) fixed (float* pc = c)
        {
            OpenBlasNative.cblas_sgemm(OpenBlasNative.RowMajor, Op(transA), Op(transB), m, n, k,
                alpha, pa, lda, pb, ldb, beta, pc, ldc);
        }
    }

    /// <summary>Float64 counterpart of <see cref="Sgemm"/>.</summary>
    public static void Dgemm(Transpose transA, Transpose transB, int m, int n, int k,
        double alpha, ReadOnlySpan<double> a, int lda, ReadOnlySpan<double> b, int ldb,
        double beta, Span<double> c, int ldc)
    {
        CheckGemm(transA, transB, m, n, k, a.Length, lda, b.Length, ldb, c.Length, ldc, "dgemm");
        if (m == 0 || n == 0) return;
        fixed (double* pa = a) fixed (double* pb = b) fixed (double* pc = c)
        {
            OpenBlasNative.cblas_dgemm(OpenBlasNative.RowMajor, Op(transA), Op(transB), m, n, k,
                alpha, pa, lda, pb, ldb, beta, pc, ldc);
        }
    }

    /// <summary>
    /// A batch of independent sgemms whose operands sit at fixed strides from the span starts
    /// (OpenBLAS 0.3.21 has no batched gemm, so this loops; each call still runs multi-threaded).
    /// </summary>
    public static void SgemmStridedBatched(Transpose transA, Transpose transB, int m, int n, int k,
        float alpha, ReadOnlySpan<float> a, int lda, long strideA, ReadOnlySpan<float> b, int ldb, long strideB,
        float beta, Span<float> c, int ldc, long strideC, int batchCount)
    {
        for (int i = 0; i < batchCount; i++)
        {
            Sgemm(transA, transB, m, n, k, alpha, a[(int)(i * strideA)..], lda, b[(int)(i * strideB)..], ldb,
                beta, c[(int)(i * strideC)..], ldc);
        }
    }

    /// <summary>
    /// Symmetric rank-k update C[n,n] = alpha·A·Aᵀ + beta·C (trans = No, A is n×k) or alpha·Aᵀ·A + beta·C
    /// (trans = Yes, A is k×n). Only the <paramref name="lower"/> (or upper) triangle of C is written;
    /// call <see cref="SymmetrizeFromLower"/> when the full matrix is needed.
    /// </summary>
    public static void Dsyrk(bool lower, Transpose trans, int n, int k, double alpha, ReadOnlySpan<double> a, int lda,
        double beta, Span<double> c, int ldc)
    {
        int aRows = trans == Transpose.No ? n : k, aCols = trans == Transpose.No ? k : n;
        CheckOperand("dsyrk", "A", aRows, aCols, a.Length, lda);
        CheckOperand("dsyrk", "C", n, n, c.Length, ldc);
        if (n == 0) return;
        fixed (double* pa = a) fixed (double* pc = c)
        {
            OpenBlasNative.cblas_dsyrk(OpenBlasNative.RowMajor, lower ? OpenBlasNative.Lower : OpenBlasNative.Upper,
                Op(trans), n, k, alpha, pa, lda, beta, pc, ldc);
        }
    }

    /// <summary>Float32 counterpart of <see cref="Dsyrk"/>.</summary>
    public static void Ssyrk(bool lower, Transpose trans, int n, int k, float alpha, ReadOnlySpan<float> a, int lda,
        float beta, Span<float> c, int ldc)
    {
        int aRows = trans == Transpose.No ? n : k, aCols = trans == Transpose.No ? k : n;
        CheckOperand("ssyrk", "A", aRows, aCols, a.Length, lda);
        CheckOperand("ssyrk", "C", n, n, c.Length, ldc);
        if (n == 0) return;
        fixed (float* pa = a) fixed (float* pc = c)
        {
            OpenBlasNative.cblas_ssyrk(OpenBlasNative.RowMajor, lower ? OpenBlasNative.Lower : OpenBlasNative.Upper,
                Op(trans), n, k, alpha, pa, lda, beta, pc, ldc);
        }
    }

    /// <summary>
    /// Triangular solve with multiple right-hand sides, B[m,n] ← alpha·op(A)⁻¹·B (left) or
    /// alpha·B·op(A)⁻¹ (right), A triangular (lower or upper), row-major.
    /// </summary>
    public static void Dtrsm(bool left, bool lower, Transpose transA, bool unitDiagonal, int m, int n,
        double alpha, ReadOnlySpan<double> a, int lda, Span<double> b, int ldb)
    {
        int order = left ? m : n;
        CheckOperand("dtrsm", "A", order, order, a.Length, lda);
        CheckOperand("dtrsm", "B", m, n, b.Length, ldb);
        if (m == 0 || n == 0) return;
        fixed (double* pa = a) fixed (double* pb = b)
        {
            OpenBlasNative.cblas_dtrsm(OpenBlasNative.RowMajor, left ? OpenBlasNative.Left : OpenBlasNative.Right,
                lower ? OpenBlasNative.Lower : OpenBlasNative.Upper, Op(transA),
                unitDiagonal ? OpenBlasNative.Unit : OpenBlasNative.NonUnit, m, n, alpha, pa, lda, pb, ldb);
        }
    }

    /// <summary>
    /// Triangular multiply, B[m,n] ← alpha·op(A)·B (left) or alpha·B·op(A) (right), A triangular, row-major; half the
    /// flops of a general multiply by the same square matrix.
    /// </summary>
    public static void Dtrmm(bool left, bool lower, Transpose transA, bool unitDiagonal, int m, int n,
        double alpha, ReadOnlySpan<double> a, int lda, Span<double> b, int ldb)
    {
        int order = left ? m : n;
        CheckOperand("dtrmm", "A", order, order, a.Length, lda);
        CheckOperand("dtrmm", "B", m, n, b.Length, ldb);
        if (m == 0 || n == 0) return;
        fixed (double* pa = a) fixed (double* pb = b)
        {
            OpenBlasNative.cblas_dtrmm(OpenBlasNative.RowMajor, left ? OpenBlasNative.Left : OpenBlasNative.Right,
                lower ? OpenBlasNative.Lower : OpenBlasNative.Upper, Op(transA),
                unitDiagonal ? OpenBlasNative.Unit : OpenBlasNative.NonUnit, m, n, alpha, pa, lda, pb, ldb);
        }
    }

    /// <summary>Float32 counterpart of <see cref="Dtrsm"/>.</summary>
    public static void Strsm(bool left, bool lower, Transpose transA, bool unitDiagonal, int m, int n,
        float alpha, ReadOnlySpan<float> a, int lda, Span<float> b, int ldb)
    {
        int order = left ? m : n;
        CheckOperand("strsm", "A", order, order, a.Length, lda);
        CheckOperand("strsm", "B", m, n, b.Length, ldb);
        if (m == 0 || n == 0) return;
        fixed (float* pa = a) fixed (float* pb = b)
        {
            OpenBlasNative.cblas_strsm(OpenBlasNative.RowMajor, left ? OpenBlasNative.Left : OpenBlasNative.Right,
                lower ? OpenBlasNative.Lower : OpenBlasNative.Upper, Op(transA),
                unitDiagonal ? OpenBlasNative.Unit : OpenBlasNative.NonUnit, m, n, alpha, pa, lda, pb, ldb);
        }
    }

    /// <summary>Copies the lower triangle of a row-major n×n matrix onto its upper triangle.</summary>
    public static void SymmetrizeFromLower(Span<double> c, int n)
    {
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++)
                c[i * n + j] = c[j * n + i];
    }

    private static int Op(Transpose t) => t == Transpose.No ? OpenBlasNative.NoTrans : OpenBlasNative.Trans;

    private static void CheckGemm(Transpose transA, Transpose transB, int m, int n, int k,
        int aLength, int lda, int bLength, int ldb, int cLength, int ldc, string routine)
    {
        if (m < 0 || n < 0 || k < 0) throw new ArgumentException($"{routine}: negative dimension m={m} n={n} k={k}");
        (int aRows, int aCols) = transA == Transpose.No ? (m, k) : (k, m);
        (int bRows, int bCols) = transB == Transpose.No ? (k, n) : (n, k);
        CheckOperand(routine, "A", aRows, aCols, aLength, lda);
        CheckOperand(routine, "B", bRows, bCols, bLength, ldb);
        CheckOperand(routine, "C", m, n, cLength, ldc);
    }

    /// <summary>A row-major rows×cols operand with leading dimension ld needs (rows−1)·ld + cols elements.</summary>
    private static void CheckOperand(string routine, string name, int rows, int cols, int length, int ld)
    {
        if (ld < Math.Max(1, cols))
            throw new ArgumentException($"{routine}: leading dimension of {name} is {ld}, needs ≥ {Math.Max(1, cols)} (operand is {rows}×{cols})");
        if (rows == 0 || cols == 0) return;
        long needed = (long)(rows - 1) * ld + cols;
        if (length < needed)
            throw new ArgumentException($"{routine}: operand {name} ({rows}×{cols}, ld {ld}) needs {needed} elements, span has {length}");
    }

    /// <summary>Reads a NUL-terminated C string returned by OpenBLAS.</summary>
    internal static string? CString(IntPtr p) => p == IntPtr.Zero ? null : Marshal.PtrToStringAnsi(p);
}
