using SvdLlm.Numerics.Interop;

namespace SvdLlm.Numerics;

/// <summary>
/// Process-wide numeric settings: the thread count used by OpenBLAS and by our own row-parallel
/// kernels. Results are deterministic for a given thread count; record <see cref="Describe"/> with
/// every result.
/// </summary>
public static class NumericsRuntime
{
    private static int _threads = Environment.ProcessorCount;
    private static bool _initialized;
    private static readonly object Gate = new();

    /// <summary>Threads used by BLAS and the element-wise kernels.</summary>
    public static int Threads
    {
        get
        {
            EnsureInitialized();
            return _threads;
        }
    }

    /// <summary>
    /// The most threads any setting may ask for. Far above every core count this project runs on; a larger value is a
    /// typo (threads: 100000 was accepted and ran 4× slower, oversubscribed).
    /// </summary>
    public const int MaxThreads = 512;

    /// <summary>
    /// Sets the thread count for OpenBLAS and our kernels; 0 or less means "all cores". OpenBLAS gets at most one thread
    /// per core: more only oversubscribes, and each of its threads allocates a large buffer at start (128 MB on this
    /// build) and spins in its allocator when that fails, so under an address-space limit --threads 16 on 2 cores
    /// never exited. <see cref="Describe"/> records both counts.
    /// </summary>
    public static void SetThreads(int threads)
    {
        if (threads > MaxThreads)
            throw new ArgumentException($"threads: {threads} is more than {MaxThreads} (this machine has {Environment.ProcessorCount} cores; 0 means all of them)");
        int t = threads <= 0 ? Environment.ProcessorCount : threads;
        lock (Gate)
        {
            OpenBlasNative.openblas_set_num_threads(Math.Min(t, Environment.ProcessorCount));
            _threads = t;
            _initialized = true;
        }
    }

    /// <summary>The thread count OpenBLAS itself reports: <see cref="Threads"/>, at most one per core.</summary>
    public static int BlasThreads
    {
        get
        {
            EnsureInitialized();
            return OpenBlasNative.openblas_get_num_threads();
        }
    }

    /// <summary>OpenBLAS build configuration string, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64".</summary>
    public static string BlasConfig => Blas.CString(OpenBlasNative.openblas_get_config()) ?? "unknown";

    /// <summary>The CPU kernel family OpenBLAS selected (e.g. "Haswell").</summary>
    public static string BlasCore => Blas.CString(OpenBlasNative.openblas_get_corename()) ?? "unknown";

    /// <summary>One line for logs and result rows.</summary>
    public static string Describe() => $"threads={Threads} blas_threads={BlasThreads} blas=\"{BlasConfig}\" core={BlasCore}";

    /// <summary>Options for Parallel.For loops in kernels, bounded by the configured thread count.</summary>
    public static ParallelOptions ParallelOptions => new() { MaxDegreeOfParallelism = Threads };

    private static void EnsureInitialized()
    {
        if (_initialized) return;
        lock (Gate)
        {
            if (_initialized) return;
            // Make OpenBLAS agree with us from the first call, whatever OPENBLAS_NUM_THREADS said.
            OpenBlasNative.openblas_set_num_threads(_threads);
            _initialized = true;
        }
    }
}
