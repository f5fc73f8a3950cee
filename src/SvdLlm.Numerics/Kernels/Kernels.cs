namespace SvdLlm.Numerics.Kernels;

/// <summary>
/// Element-wise and row-wise kernels of the transformer forward pass, one operation per file
/// (as System.Numerics.Tensors' TensorPrimitives is organised): span signatures, inputs first,
/// destination last, lengths checked up front. Row-wise kernels run rows in parallel when the work
/// is large enough to pay for it; rows are independent, so results do not depend on the thread count.
/// </summary>
public static partial class Kernels
{
    /// <summary>Below this many elements a kernel runs on the calling thread.</summary>
    private const long ParallelThreshold = 1 << 15;

    /// <summary>Runs <paramref name="body"/> for each row in [0, rows), in parallel when rows·cols is large.</summary>
    internal static void ForRows(int rows, int cols, Action<int> body)
    {
        if (rows <= 1 || (long)rows * cols < ParallelThreshold || NumericsRuntime.Threads == 1)
        {
            for (int r = 0; r < rows; r++) body(r);
            return;
        }
        Parallel.For(0, rows, NumericsRuntime.ParallelOptions, body);
    }

    internal static void CheckLength(string kernel, string name, int actual, long expected)
    {
        if (actual != expected)
            throw new ArgumentException($"{kernel}: {name} has {actual} elements, expected {expected}");
    }

    internal static void CheckAtLeast(string kernel, string name, int actual, long expected)
    {
        if (actual < expected)
            throw new ArgumentException($"{kernel}: {name} has {actual} elements, needs at least {expected}");
    }
}
