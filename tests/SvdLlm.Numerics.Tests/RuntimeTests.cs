namespace SvdLlm.Numerics.Tests;

public class RuntimeTests
{
    [Fact]
    public void Thread_count_is_set_and_reported_by_OpenBLAS()
    {
        int before = NumericsRuntime.Threads;
        try
        {
            NumericsRuntime.SetThreads(1);
            Assert.Equal(1, NumericsRuntime.Threads);
            Assert.Equal(1, NumericsRuntime.BlasThreads);
            Assert.Contains("threads=1", NumericsRuntime.Describe());
            Assert.Contains("OpenBLAS", NumericsRuntime.BlasConfig);
            // More threads than cores: our kernels take the count, OpenBLAS at most one per core (its per-thread buffers).
            int cores = Environment.ProcessorCount;
            NumericsRuntime.SetThreads(cores * 8);
            Assert.Equal(cores * 8, NumericsRuntime.Threads);
            Assert.Equal(cores, NumericsRuntime.BlasThreads);
            Assert.Contains($"threads={cores * 8} blas_threads={cores} ", NumericsRuntime.Describe());
        }
        finally
        {
            NumericsRuntime.SetThreads(before);
        }
    }

    [Fact]
    public unsafe void Tensor_validates_shape_and_indices()
    {
        using var t = Tensor<float>.Zeros(2, 3);
        Assert.Equal(6, t.Length);
        Assert.Equal(2, t.Rows);
        Assert.Equal(3, t.Cols);
        Assert.Equal(0, (long)t.Pointer % Tensor<float>.Alignment);
        t[1, 2] = 5f;
        Assert.Equal(5f, t.Row(1)[2]);
        Assert.Throws<IndexOutOfRangeException>(() => t[2, 0]);
        Assert.Throws<ArgumentException>(() => Tensor<float>.Zeros(2, -1));
        Assert.Throws<ArgumentException>(() => Tensor<float>.From([1f, 2f], 3));
        t.Dispose();
        Assert.Throws<ObjectDisposedException>(() => t.Span.Length);
    }
}
