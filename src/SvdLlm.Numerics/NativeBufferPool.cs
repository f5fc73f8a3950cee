using System.Runtime.InteropServices;

namespace SvdLlm.Numerics;

/// <summary>
/// Keeps large freed tensor buffers for the next tensor of the same byte size. The layer-streamed stages allocate
/// the same shapes layer after layer (a layer's weights, its Gram matrices, a matrix's decomposition workspace), and
/// glibc returns every block above 32 MB to the kernel on free, so each layer paid the first touch of all its memory
/// again: on this VM that is about 0.3 GB/s (1.37 GB of a 7B layer's Grams took 4–5 s), a fixed cost per layer
/// larger than the arithmetic at small calibration sizes. A pooled block is already mapped; reusing it costs nothing
/// (or one memset for <see cref="Tensor{T}.Zeros"/>).
/// </summary>
/// <remarks>
/// Bounded: at most <see cref="CapacityBytes"/> are held idle (the oldest go first), so the pool adds at most that to
/// the peak resident set when freed shapes are not asked for again; <see cref="Trim"/> releases everything (the stages
/// call it when they end). Only blocks of at least <see cref="MinimumBytes"/> are pooled; smaller ones are glibc's.
/// </remarks>
public static unsafe class NativeBufferPool
{
    public const long MinimumBytes = 32L << 20;

    private static readonly object Gate = new();
    private static readonly LinkedList<(nuint Bytes, nint Pointer)> Idle = new();
    private static long _idleBytes;

    /// <summary>Idle bytes the pool may hold: 2 GiB, or the environment's SVDLLM_POOL_BYTES (0 disables pooling).</summary>
    public static long CapacityBytes { get; set; } =
        long.TryParse(Environment.GetEnvironmentVariable("SVDLLM_POOL_BYTES"), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long b)
            ? b : 2L << 30;

    /// <summary>Bytes held idle now.</summary>
    public static long IdleBytes
    {
        get { lock (Gate) return _idleBytes; }
    }

    internal static void* Rent(nuint bytes)
    {
        if ((long)bytes >= MinimumBytes)
        {
            lock (Gate)
            {
                // Newest first: it was touched last, so its pages are the likeliest to be resident.
                for (var node = Idle.Last; node is not null; node = node.Previous)
                {
                    if (node.Value.Bytes != bytes) continue;
                    Idle.Remove(node);
                    _idleBytes -= (long)bytes;
                    return (void*)node.Value.Pointer;
                }
            }
        }
        return NativeMemory.AlignedAlloc(bytes, (nuint)Tensor<float>.Alignment);
    }

    internal static void Return(void* pointer, nuint bytes)
    {
        if ((long)bytes >= MinimumBytes && (long)bytes <= CapacityBytes)
        {
            var evicted = new List<nint>();
            lock (Gate)
            {
                while (_idleBytes + (long)bytes > CapacityBytes && Idle.First is { } oldest)
                {
                    Idle.RemoveFirst();
                    _idleBytes -= (long)oldest.Value.Bytes;
                    evicted.Add(oldest.Value.Pointer);
                }
                Idle.AddLast((bytes, (nint)pointer));
                _idleBytes += (long)bytes;
            }
            foreach (nint p in evicted) NativeMemory.AlignedFree((void*)p);
            return;
        }
        NativeMemory.AlignedFree(pointer);
    }

    /// <summary>Frees every idle block (end of a stage, so the next one starts from its own peak).</summary>
    public static void Trim()
    {
        List<nint> all;
        lock (Gate)
        {
            all = Idle.Select(x => x.Pointer).ToList();
            Idle.Clear();
            _idleBytes = 0;
        }
        foreach (nint p in all) NativeMemory.AlignedFree((void*)p);
    }
}
