namespace SvdLlm.Numerics.Tests;

/// <summary>The pool hands a freed large block to the next tensor of the same size, never holds more than its capacity, and empties on Trim.</summary>
[Collection("process-wide numerics settings")]
public unsafe class NativeBufferPoolTests
{
    private const int Big = (int)(NativeBufferPool.MinimumBytes / sizeof(float)); // one pooled block of floats

    /// <summary>Runs <paramref name="body"/> on an empty pool of the given capacity, then restores the process's setting.</summary>
    private static void WithPool(long capacity, Action body)
    {
        long before = NativeBufferPool.CapacityBytes;
        try
        {
            NativeBufferPool.Trim();
            NativeBufferPool.CapacityBytes = capacity;
            body();
        }
        finally
        {
            NativeBufferPool.CapacityBytes = before;
            NativeBufferPool.Trim();
        }
    }

    [Fact]
    public void A_freed_large_block_is_reused_for_the_same_size_and_small_ones_are_not_pooled() => WithPool(4 * NativeBufferPool.MinimumBytes, () =>
    {
            var a = Tensor<float>.Uninitialized(Big);
            a.Span[123] = 42f;
            float* p = a.Pointer;
            a.Dispose();
            Assert.Equal(NativeBufferPool.MinimumBytes, NativeBufferPool.IdleBytes);
            using (var b = Tensor<float>.Zeros(Big))
            {
                Assert.True(p == b.Pointer, "the same-size tensor did not get the pooled block");
                Assert.Equal(0f, b.Span[123]); // Zeros clears a reused block
            }
            using (var other = Tensor<float>.Uninitialized(Big + 16))
                Assert.True(p != other.Pointer, "a block of another size was handed out");
            Tensor<float>.Uninitialized(1000).Dispose();
            Assert.Equal(NativeBufferPool.MinimumBytes + (Big + 16) * 4L, NativeBufferPool.IdleBytes);
    });

    [Fact]
    public void The_pool_never_holds_more_than_its_capacity_and_Trim_empties_it() => WithPool(2 * NativeBufferPool.MinimumBytes, () =>
    {
            var tensors = Enumerable.Range(0, 3).Select(_ => Tensor<float>.Uninitialized(Big)).ToList();
            float* newest = tensors[2].Pointer;
            foreach (var t in tensors) t.Dispose();
            Assert.Equal(2 * NativeBufferPool.MinimumBytes, NativeBufferPool.IdleBytes); // the oldest went back to the system
            using (var again = Tensor<float>.Uninitialized(Big)) Assert.True(newest == again.Pointer, "the newest block is handed out first");
            NativeBufferPool.Trim();
            Assert.Equal(0, NativeBufferPool.IdleBytes);
            NativeBufferPool.CapacityBytes = 0;
            Tensor<float>.Uninitialized(Big).Dispose();
            Assert.Equal(0, NativeBufferPool.IdleBytes);
    });
}
