using SvdLlm.Compression.Delta;
using SvdLlm.Compression.Quantization;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Tests;

/// <summary>
/// ImPart-Qt: the width plan, the bit budget's search against ImPart's own budget at one width, and the quantized
/// factors against ImPart's unquantized ones on the same masks (8 bits is close, 2 bits further, nothing masked comes back).
/// </summary>
public class ImpartQuantizationTests
{
    [Fact]
    public void TheWidthPlanGivesEachSingularVectorItsBits()
    {
        var plan = DeltaBitPlan.Parse("8x2,3x32,2");
        Assert.Equal(DeltaBitPlan.Impart.ToString(), plan.ToString());
        Assert.Equal([8, 8, 3, 3, 2, 2], new[] { 0, 1, 2, 33, 34, 5000 }.Select(plan.BitsOf));
        Assert.Equal(4, DeltaBitPlan.Parse("4").BitsOf(123));
        foreach (string bad in new[] { "", "8x2", "9", "8x0,2", "1", "8x2,,3", "x", "8x2,3x32,2x5" })
            Assert.Contains("--bits", Assert.Throws<ArgumentException>(() => DeltaBitPlan.Parse(bad)).Message);
    }

    [Theory]
    [InlineData(48, 32, 8, 4)]
    [InlineData(48, 32, 16, 2)]
    [InlineData(30, 60, 32, 3)]
    public void AtOneWidthTheBitBudgetIsImpartsBudgetScaledBy16OverTheWidth(int m, int n, double crQt, int bits)
    {
        // CR_qt at b bits per value is the plain CR_qt·b/16: the same number of values fits, up to one vector's entries
        // (the bisection and ImPart's closed-form α round to different sides of a vector boundary).
        var sigma = DeltaCompressionTests.DescendingSpectrum(new Random(m + n), Math.Min(m, n));
        var plan = DeltaBitPlan.Parse(bits.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var qt = ImpartQuantization.RatiosForBudget(sigma, m, n, crQt, 0.5, 1, plan);
        long qtBits = ImpartQuantization.StoredBits(qt, m, n, plan);
        Assert.True(qtBits <= 16.0 * m * n / crQt, $"{qtBits} bits over the budget {16.0 * m * n / crQt}");
        var plain = ImpartSparsity.Compute(sigma, DeltaBudget.Sparsity(m, n, crQt * bits / 16), 0.5, 1);
        long plainValues = ImpartQuantization.StoredBits(plain, m, n, DeltaBitPlan.Parse("2")) / 2;
        Assert.InRange(qtBits / bits - plainValues, -(m + n), m + n);
    }

    [Fact]
    public void DenseFactorsThatFitAreKeptWhole()
    {
        var sigma = DeltaCompressionTests.DescendingSpectrum(new Random(4), 10);
        var r = ImpartQuantization.RatiosForBudget(sigma, 10, 12, 1, 0.8, 0.5, DeltaBitPlan.Parse("8"));
        Assert.Equal(10, r.Rank);
        Assert.All(r.DropProbabilities, p => Assert.Equal(0, p));
    }

    [Fact]
    public void QuantizedFactorsStayCloseToImpartsOnTheSameMasksAndCountTheirBits()
    {
        int m = 40, n = 56;
        var rand = new Random(7);
        var (_, gram) = GptqTests.Problem(8, 1, n);
        using (gram)
        using (var delta = TruncationTests.WithSpectrum(rand, m, n, DeltaCompressionTests.DescendingSpectrum(rand, Math.Min(m, n))))
        using (var svd = Lapack.Svd(delta))
        {
            var ratios = ImpartSparsity.Compute(svd.S, 0.8, 0.5, 1);
            using var f = DeltaCompression.SparseFactors(svd, ratios, 5, foldSingularValues: true);
            using var reference = DeltaCompression.Product(f.Left, f.Right.Span, m, n, ratios.Rank);
            double Distance(Tensor<double> a) => Math.Sqrt(a.Span.ToArray().Zip(reference.Span.ToArray(), (x, y) => (x - y) * (x - y)).Sum());
            double norm = Math.Sqrt(reference.Span.ToArray().Sum(x => x * x));
            var gptq = new GptqOptions { GroupSize = 16 };
            using var eight = ImpartQuantization.Compress(svd, gram, ratios, 5, DeltaBitPlan.Parse("8"), gptq);
            using var two = ImpartQuantization.Compress(svd, gram, ratios, 5, DeltaBitPlan.Parse("2"), gptq);
            // 8-bit codes on groups of 16: per entry at most half a step of 1/255 of the group's range.
            Assert.True(Distance(eight.Delta) < 0.02 * norm, $"8-bit: {Distance(eight.Delta) / norm:G3} of ‖ImPart‖");
            Assert.True(Distance(two.Delta) > 3 * Distance(eight.Delta), $"2-bit {Distance(two.Delta):G3} vs 8-bit {Distance(eight.Delta):G3}");
            Assert.Equal(f.StoredValues, eight.StoredValues);
            Assert.Equal(8 * f.StoredValues, eight.StoredBits);
            Assert.Equal(2 * f.StoredValues, two.StoredBits);
            Assert.Equal(16.0 * m * n / (2 * f.StoredValues), two.AchievedRatio);

            var mixed = DeltaBitPlan.Parse("8x2,3x5,2");
            using var m1 = ImpartQuantization.Compress(svd, gram, ratios, 5, mixed, gptq);
            using var m2 = ImpartQuantization.Compress(svd, gram, ratios, 5, mixed, gptq);
            Assert.Equal(m1.Delta.Span.ToArray(), m2.Delta.Span.ToArray());
            long expectedBits = 0;
            for (int i = 0; i < ratios.Rank; i++)
            {
                long kept = Enumerable.Range(0, n).Count(t => f.KeepRight[i * n + t]) + Enumerable.Range(0, m).Count(a => f.KeepLeft[a * ratios.Rank + i]);
                expectedBits += kept * mixed.BitsOf(i);
            }
            Assert.Equal(expectedBits, m1.StoredBits);
        }
    }

    [Fact]
    public void AGramOfAnotherWidthIsRefused()
    {
        using var delta = TruncationTests.Random(new Random(1), 6, 8);
        using var gram = Tensor<double>.Zeros(6, 6);
        Assert.Contains("does not match", Assert.Throws<ArgumentException>(() =>
            ImpartQuantization.Compress(delta, gram, 8, 0.5, 1, 0, DeltaBitPlan.Impart, new GptqOptions())).Message);
    }
}
