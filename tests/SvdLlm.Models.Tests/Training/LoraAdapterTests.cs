using SvdLlm.Models.Training;
using SvdLlm.Numerics;

namespace SvdLlm.Models.Tests.Training;

/// <summary>LoRA's adapter: the merged matrix gives the unmerged forward, a fresh adapter changes nothing, and the backward matches finite differences.</summary>
public class LoraAdapterTests
{
    private const int In = 9, Out = 7, Rows = 5, Rank = 3;

    /// <summary>One adapter in its own arena, its parameters and gradients copied in and out as arrays.</summary>
    private sealed class Fixture : IDisposable
    {
        private readonly ParameterArena _arena = new();
        public LoraAdapter Lora { get; }
        public Tensor<float> Grad { get; }

        public Fixture(float alpha, int seed)
        {
            Lora = new LoraAdapter(_arena, "m", In, Out, Rank, alpha);
            _arena.Allocate();
            Grad = _arena.NewBlock();
            Lora.Initialize(_arena.Data, new Random(seed));
        }

        public Tensor<float> P => _arena.Data;
        public Span<float> A => _arena.View(Lora.A);
        public Span<float> B => _arena.View(Lora.B);
        public Span<float> GradA => ParameterArena.View(Grad, Lora.A);
        public Span<float> GradB => ParameterArena.View(Grad, Lora.B);

        public void Dispose()
        {
            _arena.Dispose();
            Grad.Dispose();
        }
    }

    private static float[] Random(Random r, int n, double scale = 1) => Enumerable.Range(0, n).Select(_ => (float)((r.NextDouble() * 2 - 1) * scale)).ToArray();

    /// <summary>y = x W₀ᵀ (naive loop) plus the adapter's forward.</summary>
    private static float[] Forward(Fixture lora, float[] w0, float[] x)
    {
        var y = new float[Rows * Out];
        for (int n = 0; n < Rows; n++)
            for (int o = 0; o < Out; o++)
            {
                double s = 0;
                for (int i = 0; i < In; i++) s += (double)x[n * In + i] * w0[o * In + i];
                y[n * Out + o] = (float)s;
            }
        lora.Lora.Forward(lora.P, x, Rows, y);
        return y;
    }

    [Fact]
    public void A_fresh_adapter_adds_nothing_and_the_merged_matrix_gives_the_unmerged_forward()
    {
        var r = new Random(3);
        var w0 = Random(r, Out * In);
        var x = Random(r, Rows * In);
        using var lora = new Fixture(alpha: 6, seed: 1);
        using var zero = new Fixture(alpha: 6, seed: 1);
        // B starts at zero: exactly W₀'s map (the naive product, with nothing added).
        var plain = Forward(zero, w0, x);
        for (int n = 0; n < Rows; n++)
            for (int o = 0; o < Out; o++)
            {
                double s = 0;
                for (int i = 0; i < In; i++) s += (double)x[n * In + i] * w0[o * In + i];
                Assert.Equal((float)s, plain[n * Out + o]);
            }
        Assert.All(zero.B.ToArray(), b => Assert.Equal(0f, b));
        Assert.Contains(zero.A.ToArray(), a => a != 0);

        Random(r, lora.B.Length).CopyTo(lora.B);
        var unmerged = Forward(lora, w0, x);
        var merged = (float[])w0.Clone();
        lora.Lora.MergeInto(lora.P, merged);
        // Independent: W₀ + (α/r) B A by naive loops, then the forward without an adapter (B = 0).
        for (int o = 0; o < Out; o++)
            for (int i = 0; i < In; i++)
            {
                double s = 0;
                for (int j = 0; j < Rank; j++) s += (double)lora.B[o * Rank + j] * lora.A[j * In + i];
                double expected = w0[o * In + i] + 2.0 * s;
                Assert.True(Math.Abs(expected - merged[o * In + i]) <= 1e-6 * (1 + Math.Abs(expected)), $"merged[{o},{i}]: {merged[o * In + i]} vs {expected}");
            }
        using var fresh = new Fixture(6, 99);
        var viaMerged = Forward(fresh, merged, x);
        // float32 sums of In + Rank products of O(1) terms: a few ulps of O(10).
        for (int i = 0; i < unmerged.Length; i++)
            Assert.True(Math.Abs(unmerged[i] - viaMerged[i]) <= 1e-5 * (1 + Math.Abs(unmerged[i])), $"y[{i}]: {viaMerged[i]} vs {unmerged[i]}");
    }

    /// <summary>
    /// L = Σ c ⊙ y is linear in A for fixed B, in B for fixed A and in x, so a central difference has no truncation error:
    /// the backward must match it to float32 rounding.
    /// </summary>
    [Fact]
    public void The_backward_matches_central_differences_of_a_linear_loss()
    {
        var r = new Random(5);
        var w0 = Random(r, Out * In);
        var x = Random(r, Rows * In);
        var c = Random(r, Rows * Out);
        using var lora = new Fixture(alpha: 4, seed: 2);
        Random(r, lora.B.Length).CopyTo(lora.B);
        double Loss(float[] xs) => Forward(lora, w0, xs).Zip(c, (y, w) => (double)y * w).Sum();

        Forward(lora, w0, x);
        var dx = new float[Rows * In];
        lora.Lora.Backward(lora.P, lora.Grad, x, c, Rows, dx);
        // dx here is the adapter's part only; the frozen W₀'s part, c W₀, is added to compare with the whole loss.
        for (int n = 0; n < Rows; n++)
            for (int i = 0; i < In; i++)
                for (int o = 0; o < Out; o++) dx[n * In + i] += c[n * Out + o] * w0[o * In + i];

        void Check(Func<float[]> get, Action<float[]> set, float[] grad, Func<double> loss, string what)
        {
            var p = get();
            for (int i = 0; i < p.Length; i++)
            {
                float v = p[i];
                const float h = 0.25f;
                p[i] = v + h;
                set(p);
                double up = loss();
                p[i] = v - h;
                set(p);
                double down = loss();
                p[i] = v;
                set(p);
                double fd = (up - down) / (2 * h);
                Assert.True(Math.Abs(fd - grad[i]) <= 1e-4 * (1 + Math.Abs(fd)), $"{what}[{i}]: {grad[i]} vs {fd}");
            }
        }
        var gradA = lora.GradA.ToArray();
        var gradB = lora.GradB.ToArray();
        Check(() => lora.A.ToArray(), v => v.CopyTo(lora.A), gradA, () => Loss(x), "dA");
        Check(() => lora.B.ToArray(), v => v.CopyTo(lora.B), gradB, () => Loss(x), "dB");
        Check(() => x, v => v.CopyTo(x, 0), dx, () => Loss(x), "dx");
        Assert.Throws<InvalidOperationException>(() => lora.Lora.Backward(lora.P, lora.Grad, x, c, Rows - 1, dx));
    }
}
