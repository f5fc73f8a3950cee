using System.Runtime.InteropServices;

namespace SvdLlm.Numerics.Interop;

/// <summary>
/// Raw entry points of <c>libopenblas.so.0</c> (Debian package libopenblas0-pthread, OpenBLAS 0.3.21).
/// BLAS goes through the CBLAS interface (row-major aware); LAPACK through the Fortran symbols,
/// which take every argument by pointer and, for each CHARACTER argument, a hidden length appended
/// at the end (gfortran ABI). Nothing here validates anything: use <see cref="Blas"/> and <see cref="Lapack"/>.
/// </summary>
internal static unsafe class OpenBlasNative
{
    public const string Library = "libopenblas.so.0";

    public const int RowMajor = 101;
    public const int NoTrans = 111, Trans = 112;
    public const int Upper = 121, Lower = 122;
    public const int NonUnit = 131, Unit = 132;
    public const int Left = 141, Right = 142;

    [DllImport(Library)] public static extern void openblas_set_num_threads(int n);
    [DllImport(Library)] public static extern int openblas_get_num_threads();
    [DllImport(Library)] public static extern IntPtr openblas_get_config();
    [DllImport(Library)] public static extern IntPtr openblas_get_corename();

    [DllImport(Library)]
    public static extern void cblas_sgemm(int order, int transA, int transB, int m, int n, int k,
        float alpha, float* a, int lda, float* b, int ldb, float beta, float* c, int ldc);

    [DllImport(Library)]
    public static extern void cblas_dgemm(int order, int transA, int transB, int m, int n, int k,
        double alpha, double* a, int lda, double* b, int ldb, double beta, double* c, int ldc);

    [DllImport(Library)]
    public static extern void cblas_ssyrk(int order, int uplo, int trans, int n, int k,
        float alpha, float* a, int lda, float beta, float* c, int ldc);

    [DllImport(Library)]
    public static extern void cblas_dsyrk(int order, int uplo, int trans, int n, int k,
        double alpha, double* a, int lda, double beta, double* c, int ldc);

    [DllImport(Library)]
    public static extern void cblas_strsm(int order, int side, int uplo, int transA, int diag, int m, int n,
        float alpha, float* a, int lda, float* b, int ldb);

    [DllImport(Library)]
    public static extern void cblas_dtrsm(int order, int side, int uplo, int transA, int diag, int m, int n,
        double alpha, double* a, int lda, double* b, int ldb);

    [DllImport(Library)]
    public static extern void cblas_dtrmm(int order, int side, int uplo, int transA, int diag, int m, int n,
        double alpha, double* a, int lda, double* b, int ldb);

    [DllImport(Library)]
    public static extern void sgesdd_(byte* jobz, int* m, int* n, float* a, int* lda, float* s, float* u, int* ldu,
        float* vt, int* ldvt, float* work, int* lwork, int* iwork, int* info, nint jobzLen);

    [DllImport(Library)]
    public static extern void dgesdd_(byte* jobz, int* m, int* n, double* a, int* lda, double* s, double* u, int* ldu,
        double* vt, int* ldvt, double* work, int* lwork, int* iwork, int* info, nint jobzLen);

    [DllImport(Library)]
    public static extern void ssyevd_(byte* jobz, byte* uplo, int* n, float* a, int* lda, float* w,
        float* work, int* lwork, int* iwork, int* liwork, int* info, nint jobzLen, nint uploLen);

    [DllImport(Library)]
    public static extern void dsyevd_(byte* jobz, byte* uplo, int* n, double* a, int* lda, double* w,
        double* work, int* lwork, int* iwork, int* liwork, int* info, nint jobzLen, nint uploLen);

    [DllImport(Library)]
    public static extern void spotrf_(byte* uplo, int* n, float* a, int* lda, int* info, nint uploLen);

    [DllImport(Library)]
    public static extern void dpotrf_(byte* uplo, int* n, double* a, int* lda, int* info, nint uploLen);

    [DllImport(Library)]
    public static extern void dtrtri_(byte* uplo, byte* diag, int* n, double* a, int* lda, int* info, nint uploLen, nint diagLen);

    [DllImport(Library)]
    public static extern void dgesv_(int* n, int* nrhs, double* a, int* lda, int* ipiv, double* b, int* ldb, int* info);

    [DllImport(Library)]
    public static extern void sgesv_(int* n, int* nrhs, float* a, int* lda, int* ipiv, float* b, int* ldb, int* info);

    [DllImport(Library)]
    public static extern void dsytrd_(byte* uplo, int* n, double* a, int* lda, double* d, double* e, double* tau,
        double* work, int* lwork, int* info, nint uploLen);

    [DllImport(Library)]
    public static extern void dsterf_(int* n, double* d, double* e, int* info);

    [DllImport(Library)]
    public static extern void dstemr_(byte* jobz, byte* range, int* n, double* d, double* e, double* vl, double* vu, int* il, int* iu,
        int* m, double* w, double* z, int* ldz, int* nzc, int* isuppz, int* tryrac, double* work, int* lwork, int* iwork, int* liwork,
        int* info, nint jobzLen, nint rangeLen);

    [DllImport(Library)]
    public static extern void dormtr_(byte* side, byte* uplo, byte* trans, int* m, int* n, double* a, int* lda, double* tau,
        double* c, int* ldc, double* work, int* lwork, int* info, nint sideLen, nint uploLen, nint transLen);
}
