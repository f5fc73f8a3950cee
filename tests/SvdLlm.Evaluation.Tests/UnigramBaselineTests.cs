using SvdLlm.Evaluation.Perplexity;

namespace SvdLlm.Evaluation.Tests;

public class UnigramBaselineTests
{
    [Fact]
    public void Perplexity_is_computed_from_add_one_counts_over_predicted_positions()
    {
        // Train counts over vocab 4: token 0 ×3, token 1 ×1 → p = (c+1)/(4+4): p0 = 0.5, p1 = 0.25, p2 = p3 = 0.125.
        var baseline = new UnigramBaseline([0, 0, 0, 1], 4);
        // Two chunks of 3: predicted tokens are positions 1–2 of each chunk: {1, 0} and {2, 0}; the 7th token is dropped.
        int[] ids = [3, 1, 0, 3, 2, 0, 1];
        double expected = Math.Exp(-(Math.Log(0.25) + Math.Log(0.5) + Math.Log(0.125) + Math.Log(0.5)) / 4);
        Assert.Equal(expected, baseline.Perplexity(ids, 3), 12);
        Assert.Throws<ArgumentException>(() => baseline.Perplexity([1, 2], 3));
        Assert.Throws<ArgumentException>(() => new UnigramBaseline([5], 4));
    }
}
