using System.Runtime.InteropServices;

namespace SvdLlm.Numerics;

/// <summary>
/// A dense, row-major tensor of float32 or float64 over 64-byte aligned native memory.
/// One owner per block: dispose it (or let the finalizer free it) — there is no reference counting.
/// Only what the pipeline needs: shape, contiguous storage, row views, spans.
/// </summary>
public sealed unsafe class Tensor<T> : IDisposable where T : unmanaged
{
    /// <summary>Alignment of every allocation: one cache line, and enough for AVX-512 loads.</summary>
    public const int Alignment = 64;

    private T* _data;

    public int[] Shape { get; }
    public long Length { get; }

    /// <summary>Product of all dimensions but the last (1 for a vector).</summary>
    public int Rows { get; }

    /// <summary>Size of the last dimension.</summary>
    public int Cols { get; }

    private Tensor(int[] shape, bool clear)
    {
        if (shape.Length == 0) throw new ArgumentException("A tensor needs at least one dimension.", nameof(shape));
        long length = 1;
        foreach (int d in shape)
        {
            if (d < 0) throw new ArgumentException($"Negative dimension in shape [{string.Join(", ", shape)}].", nameof(shape));
            length = checked(length * d);
        }
        if (length > Array.MaxLength)
            throw new ArgumentException($"Tensor of shape [{string.Join(", ", shape)}] has {length} elements; spans are limited to {Array.MaxLength}.");
        Shape = (int[])shape.Clone();
        Length = length;
        Cols = shape[^1];
        Rows = Cols == 0 ? 0 : (int)(length / Cols);
        nuint bytes = (nuint)Math.Max(1, length * sizeof(T));
        _data = (T*)NativeBufferPool.Rent(bytes);
        if (clear) NativeMemory.Clear(_data, bytes);
    }

    /// <summary>A new tensor filled with zeros.</summary>
    public static Tensor<T> Zeros(params int[] shape) => new(shape, clear: true);

    /// <summary>A new tensor whose contents are undefined; use when every element is written next.</summary>
    public static Tensor<T> Uninitialized(params int[] shape) => new(shape, clear: false);

    /// <summary>A new tensor holding a copy of <paramref name="values"/>.</summary>
    public static Tensor<T> From(ReadOnlySpan<T> values, params int[] shape)
    {
        var t = new Tensor<T>(shape, clear: false);
        if (values.Length != t.Length)
            throw new ArgumentException($"{values.Length} values cannot fill shape [{string.Join(", ", shape)}] ({t.Length} elements).");
        values.CopyTo(t.Span);
        return t;
    }

    public T* Pointer
    {
        get
        {
            ObjectDisposedException.ThrowIf(_data == null, this);
            return _data;
        }
    }

    public Span<T> Span => new(Pointer, (int)Length);

    /// <summary>Row <paramref name="i"/> of the tensor seen as a [Rows, Cols] matrix.</summary>
    public Span<T> Row(int i)
    {
        if ((uint)i >= (uint)Rows) throw new ArgumentOutOfRangeException(nameof(i), $"row {i} of {Rows}");
        return new Span<T>(Pointer + (long)i * Cols, Cols);
    }

    /// <summary>Rows [start, start+count) as one contiguous span.</summary>
    public Span<T> RowRange(int start, int count)
    {
        if (start < 0 || count < 0 || start + count > Rows)
            throw new ArgumentOutOfRangeException(nameof(start), $"rows [{start}, {start + count}) of {Rows}");
        return new Span<T>(Pointer + (long)start * Cols, count * Cols);
    }

    public ref T this[int row, int col]
    {
        get
        {
            if ((uint)row >= (uint)Rows || (uint)col >= (uint)Cols)
                throw new IndexOutOfRangeException($"[{row}, {col}] outside [{Rows}, {Cols}]");
            return ref Pointer[(long)row * Cols + col];
        }
    }

    public Tensor<T> Clone() => From(Span, Shape);

    public string ShapeString => "[" + string.Join(", ", Shape) + "]";

    public void Dispose()
    {
        if (_data != null)
        {
            NativeBufferPool.Return(_data, ByteLength);
            _data = null;
        }
        GC.SuppressFinalize(this);
    }

    private nuint ByteLength => (nuint)Math.Max(1, Length * sizeof(T));

    // A leaked tensor's memory goes straight back to the system: the finalizer thread does not touch the pool.
    ~Tensor()
    {
        if (_data != null) NativeMemory.AlignedFree(_data);
    }
}
