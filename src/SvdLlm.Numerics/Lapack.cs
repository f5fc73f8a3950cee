using SvdLlm.Numerics.Interop;

namespace SvdLlm.Numerics;

/// <summary>Thin SVD A = U·diag(S)·Vt of a row-major m×n matrix, k = min(m, n), S descending.</summary>
public sealed record SvdResult<T>(Tensor<T> U, T[] S, Tensor<T> Vt) : IDisposable where T : unmanaged
{
    public void Dispose()
    {
        U.Dispose();
        Vt.Dispose();
    }
}

/// <summary>Symmetric eigen-decomposition C = V·diag(Values)·Vᵀ; Values ascending, column j of V pairs with Values[j].</summary>
public sealed record EigenResult<T>(T[] Values, Tensor<T> Vectors) : IDisposable where T : unmanaged
{
    public void Dispose() => Vectors.Dispose();
}

/// <summary>
/// LAPACK on row-major tensors. LAPACK is column-major; a row-major buffer is the column-major
/// transpose, and each routine below says how it uses that identity. Workspace queries (lwork = −1)
/// return sizes as floating point: they are rounded up (a truncated 4096 query makes the next call
/// fail with "parameter 12 had an illegal value"). Every <c>info</c> is checked.
/// Inputs are never modified: routines that destroy their input work on a copy.
/// </summary>
public static unsafe class Lapack
{
    private static readonly string[] GesddArgs = ["JOBZ", "M", "N", "A", "LDA", "S", "U", "LDU", "VT", "LDVT", "WORK", "LWORK", "IWORK", "INFO"];
    private static readonly string[] SyevdArgs = ["JOBZ", "UPLO", "N", "A", "LDA", "W", "WORK", "LWORK", "IWORK", "LIWORK", "INFO"];
    private static readonly string[] PotrfArgs = ["UPLO", "N", "A", "LDA", "INFO"];
    private static readonly string[] GesvArgs = ["N", "NRHS", "A", "LDA", "IPIV", "B", "LDB", "INFO"];

    /// <summary>
    /// Thin SVD of a row-major m×n float64 matrix (divide and conquer, dgesdd).
    /// The row-major buffer is the column-major n×m matrix B = Aᵀ; gesdd(B) = U_B Σ V_Bᵀ
    /// gives A = V_B Σ U_Bᵀ, and the column-major V_Bᵀ buffer (k×m) is A's row-major U (m×k) while the
    /// column-major U_B buffer (n×k) is A's row-major Vt (k×n). So no transposes are needed.
    /// </summary>
    public static SvdResult<double> Svd(Tensor<double> a)
    {
        (int m, int n) = Matrix(a, "dgesdd");
        CheckFiniteInput("dgesdd", a.Span);
        int k = Math.Min(m, n);
        using var work = a.Clone();
        var u = Tensor<double>.Zeros(m, Math.Max(k, 1));
        var vt = Tensor<double>.Zeros(Math.Max(k, 1), n);
        var s = new double[k];
        if (k == 0) return new SvdResult<double>(u, s, vt);
        try
        {
            byte jobz = (byte)'S';
            int bm = n, bn = m, lda = n, ldu = n, ldvt = k, info = 0, lwork = -1;
            var iwork = new int[8 * k];
            double query = 0;
            fixed (double* ps = s) fixed (int* piw = iwork)
            {
                OpenBlasNative.dgesdd_(&jobz, &bm, &bn, work.Pointer, &lda, ps, vt.Pointer, &ldu, u.Pointer, &ldvt, &query, &lwork, piw, &info, 1);
                Check("dgesdd", info, GesddArgs, "workspace query");
                lwork = RoundUpWorkspace(query);
                var buffer = new double[lwork];
                fixed (double* pw = buffer)
                    OpenBlasNative.dgesdd_(&jobz, &bm, &bn, work.Pointer, &lda, ps, vt.Pointer, &ldu, u.Pointer, &ldvt, pw, &lwork, piw, &info, 1);
            }
            Check("dgesdd", info, GesddArgs, $"{m}×{n} matrix");
            CheckFinite("dgesdd", s);
            return new SvdResult<double>(u, s, vt);
        }
        catch
        {
            u.Dispose();
            vt.Dispose();
            throw;
        }
    }

    /// <summary>Float32 counterpart of <see cref="Svd(Tensor{double})"/> (sgesdd).</summary>
    public static SvdResult<float> Svd(Tensor<float> a)
    {
        (int m, int n) = Matrix(a, "sgesdd");
        CheckFiniteInput("sgesdd", a.Span);
        int k = Math.Min(m, n);
        using var work = a.Clone();
        var u = Tensor<float>.Zeros(m, Math.Max(k, 1));
        var vt = Tensor<float>.Zeros(Math.Max(k, 1), n);
        var s = new float[k];
        if (k == 0) return new SvdResult<float>(u, s, vt);
        try
        {
            byte jobz = (byte)'S';
            int bm = n, bn = m, lda = n, ldu = n, ldvt = k, info = 0, lwork = -1;
            var iwork = new int[8 * k];
            float query = 0;
            fixed (float* ps = s) fixed (int* piw = iwork)
            {
                OpenBlasNative.sgesdd_(&jobz, &bm, &bn, work.Pointer, &lda, ps, vt.Pointer, &ldu, u.Pointer, &ldvt, &query, &lwork, piw, &info, 1);
                Check("sgesdd", info, GesddArgs, "workspace query");
                lwork = RoundUpWorkspace(query);
                var buffer = new float[lwork];
                fixed (float* pw = buffer)
                    OpenBlasNative.sgesdd_(&jobz, &bm, &bn, work.Pointer, &lda, ps, vt.Pointer, &ldu, u.Pointer, &ldvt, pw, &lwork, piw, &info, 1);
            }
            Check("sgesdd", info, GesddArgs, $"{m}×{n} matrix");
            CheckFinite("sgesdd", s);
            return new SvdResult<float>(u, s, vt);
        }
        catch
        {
            u.Dispose();
            vt.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Eigen-decomposition of a symmetric float64 matrix (dsyevd; only the lower triangle is read).
    /// A symmetric row-major buffer is its own column-major image; LAPACK returns eigenvectors as
    /// columns of a column-major matrix, i.e. as rows of our buffer, so they are transposed once
    /// to give the conventional C = V·diag(λ)·Vᵀ with eigenvectors in columns.
    /// </summary>
    public static EigenResult<double> SymmetricEigen(Tensor<double> c)
    {
        (int n, int n2) = Matrix(c, "dsyevd");
        if (n != n2) throw new ArgumentException($"dsyevd: matrix must be square, got {c.ShapeString}");
        CheckFiniteInput("dsyevd", c.Span);
        var work = c.Clone();
        var w = new double[n];
        try
        {
            if (n == 0) return new EigenResult<double>(w, work);
            // LAPACK's "L" in column-major is the upper triangle of our row-major view; symmetric input makes this moot,
            // but we ask for "U" so that LAPACK reads the row-major lower triangle, as documented above.
            byte jobz = (byte)'V', uplo = (byte)'U';
            int nn = n, lda = n, info = 0, lwork = -1, liwork = -1, iquery = 0;
            double query = 0;
            fixed (double* pw = w)
            {
                OpenBlasNative.dsyevd_(&jobz, &uplo, &nn, work.Pointer, &lda, pw, &query, &lwork, &iquery, &liwork, &info, 1, 1);
                Check("dsyevd", info, SyevdArgs, "workspace query");
                lwork = RoundUpWorkspace(query);
                liwork = Math.Max(1, iquery);
                var buffer = new double[lwork];
                var ibuffer = new int[liwork];
                fixed (double* pwork = buffer) fixed (int* piwork = ibuffer)
                    OpenBlasNative.dsyevd_(&jobz, &uplo, &nn, work.Pointer, &lda, pw, pwork, &lwork, piwork, &liwork, &info, 1, 1);
            }
            Check("dsyevd", info, SyevdArgs, $"{n}×{n} matrix");
            CheckFinite("dsyevd", w);
            TransposeInPlace(work.Span, n);
            return new EigenResult<double>(w, work);
        }
        catch
        {
            work.Dispose();
            throw;
        }
    }

    /// <summary>Float32 counterpart of <see cref="SymmetricEigen(Tensor{double})"/> (ssyevd).</summary>
    public static EigenResult<float> SymmetricEigen(Tensor<float> c)
    {
        (int n, int n2) = Matrix(c, "ssyevd");
        if (n != n2) throw new ArgumentException($"ssyevd: matrix must be square, got {c.ShapeString}");
        CheckFiniteInput("ssyevd", c.Span);
        var work = c.Clone();
        var w = new float[n];
        try
        {
            if (n == 0) return new EigenResult<float>(w, work);
            byte jobz = (byte)'V', uplo = (byte)'U';
            int nn = n, lda = n, info = 0, lwork = -1, liwork = -1, iquery = 0;
            float query = 0;
            fixed (float* pw = w)
            {
                OpenBlasNative.ssyevd_(&jobz, &uplo, &nn, work.Pointer, &lda, pw, &query, &lwork, &iquery, &liwork, &info, 1, 1);
                Check("ssyevd", info, SyevdArgs, "workspace query");
                lwork = RoundUpWorkspace(query);
                liwork = Math.Max(1, iquery);
                var buffer = new float[lwork];
                var ibuffer = new int[liwork];
                fixed (float* pwork = buffer) fixed (int* piwork = ibuffer)
                    OpenBlasNative.ssyevd_(&jobz, &uplo, &nn, work.Pointer, &lda, pw, pwork, &lwork, piwork, &liwork, &info, 1, 1);
            }
            Check("ssyevd", info, SyevdArgs, $"{n}×{n} matrix");
            CheckFinite("ssyevd", w);
            TransposeInPlace(work.Span, n);
            return new EigenResult<float>(w, work);
        }
        catch
        {
            work.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Lower Cholesky factor L (L·Lᵀ = C) of a symmetric positive-definite float64 matrix (dpotrf).
    /// Column-major "U" on our buffer computes Uᵀ·U = C with U in the column-major upper triangle,
    /// which is the row-major lower triangle holding L = Uᵀ; the other triangle is zeroed.
    /// Throws <see cref="LapackException"/> with Info = order of the failing minor when C is not positive definite.
    /// </summary>
    public static Tensor<double> Cholesky(Tensor<double> c)
    {
        (int n, int n2) = Matrix(c, "dpotrf");
        if (n != n2) throw new ArgumentException($"dpotrf: matrix must be square, got {c.ShapeString}");
        CheckFiniteInput("dpotrf", c.Span);
        var l = c.Clone();
        try
        {
            CholeskyInPlace(l);
            return l;
        }
        catch
        {
            l.Dispose();
            throw;
        }
    }

    /// <summary>
    /// <see cref="Cholesky"/> overwriting <paramref name="c"/> with L (no second n×n buffer: 969 MB at n = 11008). On failure
    /// c holds a partial factorisation and must not be used.
    /// </summary>
    public static void CholeskyInPlace(Tensor<double> c)
    {
        (int n, int n2) = Matrix(c, "dpotrf");
        if (n != n2) throw new ArgumentException($"dpotrf: matrix must be square, got {c.ShapeString}");
        CheckFiniteInput("dpotrf", c.Span);
        if (n == 0) return;
        byte uplo = (byte)'U';
        int nn = n, lda = n, info = 0;
        OpenBlasNative.dpotrf_(&uplo, &nn, c.Pointer, &lda, &info, 1);
        Check("dpotrf", info, PotrfArgs, $"{n}×{n} matrix");
        var span = c.Span;
        for (int i = 0; i < n; i++)
            span.Slice(i * n + i + 1, n - i - 1).Clear();
    }

    private static readonly string[] TrtriArgs = ["UPLO", "DIAG", "N", "A", "LDA", "INFO"];

    /// <summary>
    /// Inverts a triangular float64 matrix in place (dtrtri, n³/3 flops; a triangular solve against I costs n³).
    /// <paramref name="upper"/> names the row-major triangle that holds the matrix (the other is ignored and left as is).
    /// Throws <see cref="LapackException"/> with Info = the index of an exactly zero diagonal entry.
    /// </summary>
    public static void InvertTriangular(Tensor<double> t, bool upper)
    {
        (int n, int n2) = Matrix(t, "dtrtri");
        if (n != n2) throw new ArgumentException($"dtrtri: matrix must be square, got {t.ShapeString}");
        CheckFiniteInput("dtrtri", t.Span);
        if (n == 0) return;
        // Row-major upper is column-major lower.
        byte uplo = upper ? (byte)'L' : (byte)'U', diag = (byte)'N';
        int nn = n, lda = n, info = 0;
        OpenBlasNative.dtrtri_(&uplo, &diag, &nn, t.Pointer, &lda, &info, 1, 1);
        Check("dtrtri", info, TrtriArgs, $"{n}×{n} triangular matrix");
    }

    /// <summary>
    /// Solves A·X = B for square float64 A [n,n] and B [n, nrhs] (LU with partial pivoting, dgesv).
    /// Both are copied into column-major buffers, so the caller's tensors are untouched.
    /// Throws when A is exactly singular (Info = index of the zero pivot).
    /// </summary>
    public static Tensor<double> Solve(Tensor<double> a, Tensor<double> b)
    {
        (int n, int n2) = Matrix(a, "dgesv");
        if (n != n2) throw new ArgumentException($"dgesv: A must be square, got {a.ShapeString}");
        int nrhs = b.Shape.Length == 1 ? 1 : b.Cols;
        if (b.Rows != n && !(b.Shape.Length == 1 && b.Length == n))
            throw new ArgumentException($"dgesv: B has shape {b.ShapeString}, A is {n}×{n}");
        var colA = new double[(long)n * n];
        var colB = new double[(long)n * nrhs];
        var sa = a.Span; var sb = b.Span;
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++) colA[i + (long)j * n] = sa[i * n + j];
            for (int j = 0; j < nrhs; j++) colB[i + (long)j * n] = sb[i * nrhs + j];
        }
        var ipiv = new int[Math.Max(1, n)];
        int nn = n, nr = nrhs, lda = Math.Max(1, n), ldb = Math.Max(1, n), info = 0;
        if (n > 0)
        {
            fixed (double* pa = colA) fixed (double* pb = colB) fixed (int* pi = ipiv)
                OpenBlasNative.dgesv_(&nn, &nr, pa, &lda, pi, pb, &ldb, &info);
        }
        Check("dgesv", info, GesvArgs, $"{n}×{n} system");
        var x = Tensor<double>.Uninitialized(b.Shape);
        var sx = x.Span;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < nrhs; j++) sx[i * nrhs + j] = colB[i + (long)j * n];
        return x;
    }

    /// <summary>
    /// The inverse of a square float32 matrix by LU with partial pivoting in float32 (sgesv against I): what
    /// <c>torch.linalg.inv</c> computes on a float32 CPU tensor. For reproducing float32 reference code only; use float64
    /// (or a triangular solve) everywhere else. Throws when A is exactly singular (Info = index of the zero pivot).
    /// </summary>
    public static Tensor<float> InverseFloat32(Tensor<float> a)
    {
        (int n, int n2) = Matrix(a, "sgesv");
        if (n != n2) throw new ArgumentException($"sgesv: A must be square, got {a.ShapeString}");
        var sa = a.Span;
        for (int i = 0; i < sa.Length; i++)
            if (!float.IsFinite(sa[i])) throw new ArgumentException($"sgesv: A holds {sa[i]} at [{i / n}, {i % n}]");
        var colA = new float[(long)n * n];
        var colB = new float[(long)n * n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++) colA[i + (long)j * n] = sa[i * n + j];
            colB[i + (long)i * n] = 1;
        }
        var ipiv = new int[Math.Max(1, n)];
        int nn = n, nr = n, lda = Math.Max(1, n), ldb = Math.Max(1, n), info = 0;
        if (n > 0)
        {
            fixed (float* pa = colA) fixed (float* pb = colB) fixed (int* pi = ipiv)
                OpenBlasNative.sgesv_(&nn, &nr, pa, &lda, pi, pb, &ldb, &info);
        }
        Check("sgesv", info, GesvArgs, $"{n}×{n} system");
        var x = Tensor<float>.Uninitialized(n, n);
        var sx = x.Span;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) sx[i * n + j] = colB[i + (long)j * n];
        return x;
    }

    /// <summary>Rounds a workspace size returned as floating point up to an int (never below 1).</summary>
    internal static int RoundUpWorkspace(double query)
    {
        // A float query of a large size can be rounded *down* when it is stored; pad by one ulp-ish before ceiling.
        double padded = Math.Ceiling(query * (1 + 1e-6));
        if (!double.IsFinite(padded) || padded > int.MaxValue)
            throw new LapackException("workspace", 0, $"LAPACK workspace query returned {query}, not a usable size");
        return Math.Max(1, (int)padded);
    }

    internal static void Check(string routine, int info, string[] argNames, string what)
    {
        if (info == 0) return;
        if (info < 0)
        {
            int arg = -info;
            string name = arg <= argNames.Length ? argNames[arg - 1] : "?";
            throw new LapackException(routine, info, $"LAPACK {routine} ({what}): argument {arg} ({name}) had an illegal value");
        }
        string reason = routine switch
        {
            "dpotrf" or "spotrf" => $"the leading minor of order {info} is not positive definite",
            "dgesdd" or "sgesdd" => "the bidiagonal SVD (DBDSDC) did not converge",
            "dsyevd" or "ssyevd" => $"the eigen solver failed to converge ({info} off-diagonal elements did not reach zero)",
            "dgesv" => $"U({info},{info}) is exactly zero: the matrix is singular",
            "dtrtri" => $"diagonal entry {info} is exactly zero: the matrix is singular",
            "dsterf" => $"the QL/QR iteration did not converge ({info} off-diagonal elements did not reach zero)",
            "dstemr" => $"MRRR failed (internal error code {info})",
            _ => $"info = {info}",
        };
        throw new LapackException(routine, info, $"LAPACK {routine} ({what}) failed: {reason}");
    }

    private static (int Rows, int Cols) Matrix<T>(Tensor<T> t, string routine) where T : unmanaged
    {
        if (t.Shape.Length != 2) throw new ArgumentException($"{routine}: expected a matrix, got shape {t.ShapeString}");
        return (t.Shape[0], t.Shape[1]);
    }

    /// <summary>LAPACK's behaviour on NaN/Inf input is undefined (OpenBLAS may loop or return garbage): refuse it.</summary>
    private static void CheckFiniteInput(string routine, ReadOnlySpan<double> values)
    {
        int i = FirstNonFinite(values);
        if (i >= 0) throw new ArgumentException($"{routine}: input element {i} is {values[i]}; LAPACK needs finite input");
    }

    private static void CheckFiniteInput(string routine, ReadOnlySpan<float> values)
    {
        int i = FirstNonFinite(values);
        if (i >= 0) throw new ArgumentException($"{routine}: input element {i} is {values[i]}; LAPACK needs finite input");
    }

    private static int FirstNonFinite(ReadOnlySpan<double> values)
    {
        for (int i = 0; i < values.Length; i++) if (!double.IsFinite(values[i])) return i;
        return -1;
    }

    private static int FirstNonFinite(ReadOnlySpan<float> values)
    {
        for (int i = 0; i < values.Length; i++) if (!float.IsFinite(values[i])) return i;
        return -1;
    }

    private static void CheckFinite(string routine, ReadOnlySpan<double> values)
    {
        foreach (double v in values)
            if (!double.IsFinite(v)) throw new LapackException(routine, 0, $"LAPACK {routine} returned a non-finite value ({v}); the input holds NaN or Inf");
    }

    private static void CheckFinite(string routine, ReadOnlySpan<float> values)
    {
        foreach (float v in values)
            if (!float.IsFinite(v)) throw new LapackException(routine, 0, $"LAPACK {routine} returned a non-finite value ({v}); the input holds NaN or Inf");
    }

    /// <summary>In-place transpose in 32×32 tiles (a naive row/column sweep misses cache on every element at n = 4096).</summary>
    private static void TransposeInPlace<T>(Span<T> a, int n)
    {
        const int tile = 32;
        for (int i0 = 0; i0 < n; i0 += tile)
            for (int j0 = i0; j0 < n; j0 += tile)
            {
                int iEnd = Math.Min(i0 + tile, n), jEnd = Math.Min(j0 + tile, n);
                for (int i = i0; i < iEnd; i++)
                    for (int j = Math.Max(j0, i + 1); j < jEnd; j++)
                        (a[i * n + j], a[j * n + i]) = (a[j * n + i], a[i * n + j]);
            }
    }
}
