using System.Runtime.InteropServices;
using SvdLlm.Numerics.Interop;

namespace SvdLlm.Numerics;

/// <summary>
/// A symmetric float64 matrix A reduced to tridiagonal form, Qᵀ A Q = T (Householder reduction, dsytrd), with Q kept as
/// its reflectors. This is the first half of every dense symmetric eigensolver; keeping it lets a caller take all
/// eigenvalues now (<see cref="Eigenvalues"/>: dsterf, O(n²)) and only the top k eigenvectors later
/// (<see cref="TopEigenvectors"/>: MRRR on T by dstemr, O(n·k), then Q applied to them by dormtr, 2n²k flops), where
/// dsyevd computes and back-transforms all n (its O(n³) eigenvector stage costs about as much again as the reduction).
/// The eigenvalues of both halves are those of T, accurate to about n·u·‖A‖ absolutely like dsyevd's.
/// </summary>
public sealed unsafe class SymmetricTridiagonal : IDisposable
{
    private static readonly string[] SytrdArgs = ["UPLO", "N", "A", "LDA", "D", "E", "TAU", "WORK", "LWORK", "INFO"];
    private static readonly string[] StemrArgs = ["JOBZ", "RANGE", "N", "D", "E", "VL", "VU", "IL", "IU", "M", "W", "Z", "LDZ", "NZC", "ISUPPZ", "TRYRAC", "WORK", "LWORK", "IWORK", "LIWORK", "INFO"];
    private static readonly string[] OrmtrArgs = ["SIDE", "UPLO", "TRANS", "M", "N", "A", "LDA", "TAU", "C", "LDC", "WORK", "LWORK", "INFO"];

    /// <summary>The n×n buffer as dsytrd left it: the reflectors in the row-major strictly lower triangle (LAPACK's "U").</summary>
    private readonly Tensor<double> _reflectors;

    private SymmetricTridiagonal(Tensor<double> reflectors, double[] d, double[] e, double[] tau)
    {
        _reflectors = reflectors;
        Diagonal = d;
        OffDiagonal = e;
        Tau = tau;
    }

    public int N => Diagonal.Length;

    /// <summary>T's diagonal [n].</summary>
    public double[] Diagonal { get; }

    /// <summary>T's off-diagonal [max(n − 1, 0)].</summary>
    public double[] OffDiagonal { get; }

    /// <summary>The reflectors' scalars [max(n − 1, 0)].</summary>
    public double[] Tau { get; }

    /// <summary>Reduces a copy of <paramref name="a"/> (only its lower triangle is read).</summary>
    public static SymmetricTridiagonal Reduce(Tensor<double> a) => ReduceOwned(a.Clone());

    /// <summary>Reduces <paramref name="a"/> in place and takes ownership of it (no n² copy; the caller must not use or dispose it).</summary>
    public static SymmetricTridiagonal ReduceOwned(Tensor<double> a)
    {
        try
        {
            if (a.Shape.Length != 2 || a.Rows != a.Cols) throw new ArgumentException($"dsytrd: matrix must be square, got {a.ShapeString}");
            for (int i = 0; i < a.Span.Length; i++)
                if (!double.IsFinite(a.Span[i])) throw new ArgumentException($"dsytrd: input element {i} is {a.Span[i]}; LAPACK needs finite input");
            int n = a.Rows;
            var d = new double[n];
            var e = new double[Math.Max(n - 1, 0)];
            var tau = new double[Math.Max(n - 1, 0)];
            if (n > 0)
            {
                // Row-major lower = column-major upper: ask for "U", as Lapack.SymmetricEigen does.
                byte uplo = (byte)'U';
                int nn = n, lda = n, info = 0, lwork = -1;
                double query = 0;
                var eb = new double[Math.Max(n - 1, 1)];
                var tb = new double[Math.Max(n - 1, 1)];
                fixed (double* pd = d) fixed (double* pe = eb) fixed (double* pt = tb)
                {
                    OpenBlasNative.dsytrd_(&uplo, &nn, a.Pointer, &lda, pd, pe, pt, &query, &lwork, &info, 1);
                    Lapack.Check("dsytrd", info, SytrdArgs, "workspace query");
                    lwork = Lapack.RoundUpWorkspace(query);
                    var work = new double[lwork];
                    fixed (double* pw = work)
                        OpenBlasNative.dsytrd_(&uplo, &nn, a.Pointer, &lda, pd, pe, pt, pw, &lwork, &info, 1);
                }
                Lapack.Check("dsytrd", info, SytrdArgs, $"{n}×{n} matrix");
                Array.Copy(eb, e, e.Length);
                Array.Copy(tb, tau, tau.Length);
                CheckFinite("dsytrd", d);
                CheckFinite("dsytrd", e);
            }
            return new SymmetricTridiagonal(a, d, e, tau);
        }
        catch
        {
            a.Dispose();
            throw;
        }
    }

    /// <summary>All eigenvalues of A, ascending (dsterf: root-free QL/QR on copies of T; no eigenvectors).</summary>
    public double[] Eigenvalues()
    {
        int n = N;
        var d = (double[])Diagonal.Clone();
        if (n <= 1) return d;
        var e = (double[])OffDiagonal.Clone();
        int nn = n, info = 0;
        fixed (double* pd = d) fixed (double* pe = e)
            OpenBlasNative.dsterf_(&nn, pd, pe, &info);
        Lapack.Check("dsterf", info, ["N", "D", "E", "INFO"], $"{n}×{n} tridiagonal");
        CheckFinite("dsterf", d);
        return d;
    }

    /// <summary>
    /// The top <paramref name="k"/> eigenpairs of A: values descending [k], vectors as the columns of a [n, k] tensor
    /// (column j pairs with values[j]). MRRR (dstemr, RANGE = 'I') on T, then Q applied (dormtr).
    /// </summary>
    public Tensor<double> TopEigenvectors(int k, out double[] values)
    {
        int n = N;
        if (k < 0 || k > n) throw new ArgumentOutOfRangeException(nameof(k), k, $"must be in [0, {n}]");
        var result = Tensor<double>.Uninitialized(n, k);
        values = new double[k];
        if (k == 0) return result;
        try
        {
            // Column-major Z [n × k]: eigenvector j (ascending within the range) is contiguous, i.e. row j of a row-major [k, n].
            using var z = Tensor<double>.Uninitialized(k, n);
            var w = new double[n];
            var d = (double[])Diagonal.Clone();
            var e = new double[n];
            Array.Copy(OffDiagonal, e, OffDiagonal.Length);
            byte jobz = (byte)'V', range = (byte)'I';
            int nn = n, il = n - k + 1, iu = n, m = 0, ldz = n, nzc = k, tryrac = 1, info = 0, lwork = -1, liwork = -1, iquery = 0;
            double vl = 0, vu = 0, query = 0;
            var isuppz = new int[2 * k];
            fixed (double* pd = d) fixed (double* pe = e) fixed (double* pw = w) fixed (int* ps = isuppz)
            {
                OpenBlasNative.dstemr_(&jobz, &range, &nn, pd, pe, &vl, &vu, &il, &iu, &m, pw, z.Pointer, &ldz, &nzc, ps, &tryrac, &query, &lwork, &iquery, &liwork, &info, 1, 1);
                Lapack.Check("dstemr", info, StemrArgs, "workspace query");
                lwork = Lapack.RoundUpWorkspace(query);
                liwork = Math.Max(1, iquery);
                var work = new double[lwork];
                var iwork = new int[liwork];
                fixed (double* pwork = work) fixed (int* piwork = iwork)
                    OpenBlasNative.dstemr_(&jobz, &range, &nn, pd, pe, &vl, &vu, &il, &iu, &m, pw, z.Pointer, &ldz, &nzc, ps, &tryrac, pwork, &lwork, piwork, &liwork, &info, 1, 1);
            }
            Lapack.Check("dstemr", info, StemrArgs, $"top {k} of a {n}×{n} tridiagonal");
            if (m != k) throw new LapackException("dstemr", 0, $"LAPACK dstemr returned {m} eigenpairs for the index range [{il}, {iu}], expected {k}");
            CheckFinite("dstemr", w.AsSpan(0, k));
            CheckFinite("dstemr", z.Span);

            // Z := Q Z.
            byte side = (byte)'L', uplo = (byte)'U', trans = (byte)'N';
            int rows = n, cols = k, lda = n, ldc = n;
            lwork = -1;
            fixed (double* pt = Tau)
            {
                // dormtr reads TAU(1..n−1); n ≥ 1 here, so a null pointer only reaches it when n = 1 (never read).
                OpenBlasNative.dormtr_(&side, &uplo, &trans, &rows, &cols, _reflectors.Pointer, &lda, pt, z.Pointer, &ldc, &query, &lwork, &info, 1, 1, 1);
                Lapack.Check("dormtr", info, OrmtrArgs, "workspace query");
                lwork = Lapack.RoundUpWorkspace(query);
                var work = new double[lwork];
                fixed (double* pwork = work)
                    OpenBlasNative.dormtr_(&side, &uplo, &trans, &rows, &cols, _reflectors.Pointer, &lda, pt, z.Pointer, &ldc, pwork, &lwork, &info, 1, 1, 1);
            }
            Lapack.Check("dormtr", info, OrmtrArgs, $"{n}×{k} eigenvectors");

            // Descending: column c of the result is row k − 1 − c of z (tiled, so neither side misses cache per element).
            var src = z.Span;
            var dst = result.Span;
            const int tile = 32;
            for (int c0 = 0; c0 < k; c0 += tile)
                for (int i0 = 0; i0 < n; i0 += tile)
                {
                    int cEnd = Math.Min(c0 + tile, k), iEnd = Math.Min(i0 + tile, n);
                    for (int i = i0; i < iEnd; i++)
                        for (int c = c0; c < cEnd; c++) dst[i * k + c] = src[(k - 1 - c) * n + i];
                }
            for (int c = 0; c < k; c++) values[c] = w[k - 1 - c];
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    /// <summary>Bytes <see cref="WriteTo"/> writes for order n: n, T, τ and the n(n − 1)/2 reflector entries, float64.</summary>
    public static long SerializedBytes(long n) => 8 + 8 * (n + 2 * Math.Max(n - 1, 0) + n * (n - 1) / 2);

    /// <summary>Writes T, τ and the reflectors (the strictly lower triangle only: half of the n² buffer), float64, exactly.</summary>
    public void WriteTo(Stream s)
    {
        int n = N;
        s.Write(BitConverter.GetBytes((long)n));
        s.Write(MemoryMarshal.AsBytes(Diagonal.AsSpan()));
        s.Write(MemoryMarshal.AsBytes(OffDiagonal.AsSpan()));
        s.Write(MemoryMarshal.AsBytes(Tau.AsSpan()));
        var a = _reflectors.Span;
        for (int r = 1; r < n; r++) s.Write(MemoryMarshal.AsBytes(a.Slice(r * n, r)));
    }

    /// <summary>Reads what <see cref="WriteTo"/> wrote; <paramref name="what"/> names the source in errors.</summary>
    public static SymmetricTridiagonal ReadFrom(Stream s, string what)
    {
        Span<byte> head = stackalloc byte[8];
        s.ReadExactly(head);
        long n64 = BitConverter.ToInt64(head);
        if (n64 < 0 || n64 > 1 << 17) throw new InvalidDataException($"{what}: tridiagonal order {n64} is not a plausible matrix size");
        int n = (int)n64;
        var d = new double[n];
        var e = new double[Math.Max(n - 1, 0)];
        var tau = new double[Math.Max(n - 1, 0)];
        s.ReadExactly(MemoryMarshal.AsBytes(d.AsSpan()));
        s.ReadExactly(MemoryMarshal.AsBytes(e.AsSpan()));
        s.ReadExactly(MemoryMarshal.AsBytes(tau.AsSpan()));
        var a = Tensor<double>.Zeros(n, n);
        try
        {
            var span = a.Span;
            for (int r = 1; r < n; r++) s.ReadExactly(MemoryMarshal.AsBytes(span.Slice(r * n, r)));
            return new SymmetricTridiagonal(a, d, e, tau);
        }
        catch
        {
            a.Dispose();
            throw;
        }
    }

    private static void CheckFinite(string routine, ReadOnlySpan<double> values)
    {
        foreach (double v in values)
            if (!double.IsFinite(v)) throw new LapackException(routine, 0, $"LAPACK {routine} returned a non-finite value ({v})");
    }

    public void Dispose() => _reflectors.Dispose();
}
