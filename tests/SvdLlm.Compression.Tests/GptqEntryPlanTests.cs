using SvdLlm.Compression.Quantization;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Tests;

/// <summary>
/// GPTQ with an entry plan (ImPart-Qt's masked, mixed-precision GPTQ) against independent computations: the plain
/// algorithm when the plan asks for nothing, the naive column-by-column quantizer with the mask and widths written into
/// it, GPTQ's row independence (a row at width b is the plain run at b), and the loss identity on the masked problem.
/// </summary>
public class GptqEntryPlanTests
{
    private static bool[] RandomMask(int seed, int m, int n, double keep)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, m * n).Select(_ => r.NextDouble() < keep).ToArray();
    }

    [Theory]
    [InlineData(4, -1, false, false)]
    [InlineData(3, 5, false, false)]
    [InlineData(3, 5, true, false)]
    [InlineData(2, 4, true, true)]
    public void AnAllTrueMaskIsPlainGptqBitForBit(int bits, int groupSize, bool actOrder, bool staticGroups)
    {
        var (w, h) = GptqTests.Problem(11, 6, 14);
        using (w)
        using (h)
        {
            var options = new GptqOptions { Bits = bits, GroupSize = groupSize, ActOrder = actOrder, StaticGroups = staticGroups, BlockSize = 4 };
            var plain = Gptq.Quantize(w, h, options);
            var planned = Gptq.Quantize(w, h, options, new GptqEntryPlan(Keep: Enumerable.Repeat(true, 6 * 14).ToArray()));
            Assert.Equal(plain.Matrix.Codes, planned.Matrix.Codes);
            Assert.Equal(plain.Matrix.Scales, planned.Matrix.Scales);
            Assert.Equal(plain.Matrix.Zeros, planned.Matrix.Zeros);
            Assert.Equal(plain.Matrix.GroupIndex, planned.Matrix.GroupIndex);
            Assert.Equal(plain.Loss, planned.Loss);
        }
    }

    [Theory]
    [InlineData(3, -1)]
    [InlineData(2, 4)]
    public void UniformColumnWidthsAreDynamicGroupsOfThatWidth(int bits, int groupSize)
    {
        // One run of one width is one run of groups of g (or one group per row), fitted as each starts.
        var (w, h) = GptqTests.Problem(12, 5, 13);
        using (w)
        using (h)
        {
            var options = new GptqOptions { Bits = 8, GroupSize = groupSize, BlockSize = 3 };
            var planned = Gptq.Quantize(w, h, options, new GptqEntryPlan(ColumnBits: Enumerable.Repeat(bits, 13).ToArray()));
            var (q, loss) = GptqTests.NaiveObq(w, h, bits, groupSize, GptqTests.Damping(h, 0.01));
            AssertValues(q, planned.Matrix);
            Assert.Equal(loss, planned.Loss, loss * 1e-10);
        }
    }

    [Theory]
    [InlineData(-1, 0.6)]
    [InlineData(4, 0.5)]
    [InlineData(3, 0.9)]
    public void MaskedMixedWidthsMatchTheNaiveQuantizer(int groupSize, double keepFraction)
    {
        var (w, h) = GptqTests.Problem(13, 6, 15);
        using (w)
        using (h)
        {
            var keep = RandomMask(5, 6, 15, keepFraction);
            double lambda = GptqTests.Damping(h, 0.01);
            // Per column (U's layout: one column per singular vector): 8 bits for 2, 3 for 5, 2 for the rest.
            var columnBits = Enumerable.Range(0, 15).Select(j => j < 2 ? 8 : j < 7 ? 3 : 2).ToArray();
            var byColumn = Gptq.Quantize(w, h, new GptqOptions { GroupSize = groupSize, BlockSize = 4 }, new GptqEntryPlan(keep, ColumnBits: columnBits));
            var (qc, lc) = GptqTests.NaiveObq(w, h, 4, groupSize, lambda, keep, columnBits: columnBits);
            AssertValues(qc, byColumn.Matrix);
            Assert.Equal(lc, byColumn.Loss, lc * 1e-10);
            Assert.Equal(8, byColumn.Matrix.Bits);
            // Per row (V's layout: one row per singular vector).
            var rowBits = new[] { 8, 8, 3, 3, 2, 2 };
            var byRow = Gptq.Quantize(w, h, new GptqOptions { GroupSize = groupSize, BlockSize = 4 }, new GptqEntryPlan(keep, RowBits: rowBits));
            var (qr, lr) = GptqTests.NaiveObq(w, h, 4, groupSize, lambda, keep, rowBits: rowBits);
            AssertValues(qr, byRow.Matrix);
            Assert.Equal(lr, byRow.Loss, lr * 1e-10);
        }
    }

    [Fact]
    public void MaskedEntriesAreExactlyZeroAndTheLossIdentityHolds()
    {
        // E = Err·U holds whatever the quantizer does with a column, so ½ tr(E H_d Eᵀ) is still the reported loss.
        var (w, h) = GptqTests.Problem(14, 7, 17);
        using (w)
        using (h)
        {
            var keep = RandomMask(6, 7, 17, 0.4);
            var result = Gptq.Quantize(w, h, new GptqOptions { Bits = 3, GroupSize = 5, BlockSize = 6 }, new GptqEntryPlan(keep));
            for (int i = 0; i < 7; i++)
                for (int j = 0; j < 17; j++)
                    if (!keep[i * 17 + j]) Assert.Equal(0.0, result.Matrix.Value(i, j));
                    else Assert.NotEqual(0.0, w[i, j]);
            double direct = GptqTests.Objective(w, result.Matrix, h, result.Damping);
            Assert.Equal(direct, result.Loss, direct * 1e-9);
        }
    }

    [Fact]
    public void ARowAtItsOwnWidthIsThePlainRunAtThatWidth()
    {
        // GPTQ's rows share H but never each other's errors: row i of a mixed run equals row i of the plain run at its width.
        var (w, h) = GptqTests.Problem(15, 5, 16);
        using (w)
        using (h)
        {
            var rowBits = new[] { 2, 3, 4, 8, 3 };
            var mixed = Gptq.Quantize(w, h, new GptqOptions { GroupSize = 6, ActOrder = true }, new GptqEntryPlan(RowBits: rowBits));
            for (int i = 0; i < 5; i++)
            {
                var plain = Gptq.Quantize(w, h, new GptqOptions { Bits = rowBits[i], GroupSize = 6, ActOrder = true });
                for (int j = 0; j < 16; j++) Assert.Equal(plain.Matrix.Value(i, j), mixed.Matrix.Value(i, j));
                Assert.True(mixed.Matrix.Codes.Skip(i * 16).Take(16).All(c => c < 1 << rowBits[i]));
            }
        }
    }

    [Fact]
    public void ABadPlanIsRefusedWithWhatWasExpected()
    {
        var (w, h) = GptqTests.Problem(16, 3, 5);
        using (w)
        using (h)
        {
            var o = new GptqOptions();
            Assert.Contains("mask has 4 entries", Assert.Throws<ArgumentException>(() => Gptq.Quantize(w, h, o, new GptqEntryPlan(new bool[4]))).Message);
            Assert.Contains("2 row bit widths for 3 rows", Assert.Throws<ArgumentException>(() => Gptq.Quantize(w, h, o, new GptqEntryPlan(RowBits: [2, 2]))).Message);
            Assert.Contains("act-order", Assert.Throws<ArgumentException>(() => Gptq.Quantize(w, h, o with { ActOrder = true }, new GptqEntryPlan(ColumnBits: [2, 2, 2, 2, 2]))).Message);
            Assert.Throws<ArgumentOutOfRangeException>(() => Gptq.Quantize(w, h, o, new GptqEntryPlan(RowBits: [2, 9, 2])));
        }
    }

    private static void AssertValues(double[,] expected, QuantizedMatrix actual)
    {
        for (int i = 0; i < actual.Rows; i++)
            for (int j = 0; j < actual.Cols; j++)
                Assert.True(Math.Abs(actual.Value(i, j) - expected[i, j]) <= 1e-12, $"Q[{i},{j}] {actual.Value(i, j)} vs naive {expected[i, j]}");
    }
}
