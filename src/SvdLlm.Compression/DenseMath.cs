using SvdLlm.Numerics;

namespace SvdLlm.Compression;

/// <summary>Small float64 matrix helpers on row-major tensors, all through BLAS.</summary>
internal static class DenseMath
{
    /// <summary>op(A)·op(B) as a new [m, n] matrix.</summary>
    public static Tensor<double> MatMul(Tensor<double> a, bool transA, Tensor<double> b, bool transB)
    {
        int m = transA ? a.Cols : a.Rows, k = transA ? a.Rows : a.Cols;
        int kb = transB ? b.Cols : b.Rows, n = transB ? b.Rows : b.Cols;
        if (k != kb) throw new ArgumentException($"inner dimensions differ: {a.ShapeString}{(transA ? "ᵀ" : "")} · {b.ShapeString}{(transB ? "ᵀ" : "")}");
        var c = Tensor<double>.Uninitialized(m, n);
        Blas.Dgemm(transA ? Transpose.Yes : Transpose.No, transB ? Transpose.Yes : Transpose.No, m, n, k, 1.0, a.Span, a.Cols, b.Span, b.Cols, 0.0, c.Span, n);
        return c;
    }

    public static Tensor<double> ToDouble(ReadOnlySpan<float> values, int rows, int cols)
    {
        var t = Tensor<double>.Uninitialized(rows, cols);
        var s = t.Span;
        for (int i = 0; i < s.Length; i++) s[i] = values[i];
        return t;
    }

    public static Tensor<float> ToFloat(Tensor<double> t)
    {
        var f = Tensor<float>.Uninitialized(t.Shape);
        var s = t.Span;
        var d = f.Span;
        for (int i = 0; i < s.Length; i++) d[i] = (float)s[i];
        return f;
    }

    public static Tensor<double> Transposed(Tensor<double> a)
    {
        var t = Tensor<double>.Uninitialized(a.Cols, a.Rows);
        for (int i = 0; i < a.Rows; i++)
            for (int j = 0; j < a.Cols; j++) t[j, i] = a[i, j];
        return t;
    }

    /// <summary>Columns [0, k) of a [rows, cols] matrix.</summary>
    public static Tensor<double> LeadingColumns(Tensor<double> a, int k)
    {
        var r = Tensor<double>.Uninitialized(a.Rows, k);
        for (int i = 0; i < a.Rows; i++) a.Row(i)[..k].CopyTo(r.Row(i));
        return r;
    }

    /// <summary>Rows [0, k) of a [rows, cols] matrix.</summary>
    public static Tensor<double> LeadingRows(Tensor<double> a, int k) => Tensor<double>.From(a.Span[..(k * a.Cols)], k, a.Cols);

    /// <summary>Multiplies column j of a by s[j], in place.</summary>
    public static void ScaleColumns(Tensor<double> a, ReadOnlySpan<double> s)
    {
        for (int i = 0; i < a.Rows; i++)
        {
            var row = a.Row(i);
            for (int j = 0; j < row.Length; j++) row[j] *= s[j];
        }
    }

    /// <summary>Multiplies row i of a by s[i], in place.</summary>
    public static void ScaleRows(Tensor<double> a, ReadOnlySpan<double> s)
    {
        for (int i = 0; i < a.Rows; i++)
        {
            var row = a.Row(i);
            double f = s[i];
            for (int j = 0; j < row.Length; j++) row[j] *= f;
        }
    }

    /// <summary>sqrt(tr(E·C·Eᵀ)) with E = W − W': the output error ‖(W − W')X‖_F measured on the calibration Gram C = X Xᵀ.</summary>
    public static double MeasuredLoss(Tensor<double> w, Tensor<double> wApprox, Tensor<double> c)
    {
        using var e = w.Clone();
        var es = e.Span;
        var a = wApprox.Span;
        for (int i = 0; i < es.Length; i++) es[i] -= a[i];
        using var ec = MatMul(e, false, c, false);
        double s = 0;
        var ecs = ec.Span;
        for (int i = 0; i < es.Length; i++) s += ecs[i] * es[i];
        return Math.Sqrt(Math.Max(0, s));
    }

    /// <summary>sqrt(Σ_{i≥k} σ_i²): the Frobenius norm of what a rank-k truncation drops.</summary>
    public static double TailNorm(ReadOnlySpan<double> sigma, int k)
    {
        double s = 0;
        for (int i = k; i < sigma.Length; i++) s += sigma[i] * sigma[i];
        return Math.Sqrt(s);
    }
}
