using SvdLlm.Compression;

namespace SvdLlm.Compression.Tests;

/// <summary>ASVD's sensitivity search against a brute-force scan of every threshold, on synthetic probe tables.</summary>
public class SensitivityAllocationTests
{
    private static readonly double[] Kept = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

    private static List<MatrixTarget> Targets() =>
    [
        new("l0.q", 64, 64, "q"), new("l0.k", 32, 64, "k"), new("l0.up", 160, 64, "up"),
        new("l1.q", 64, 64, "q"), new("l1.k", 32, 64, "k"), new("l1.up", 160, 64, "up"),
    ];

    private static int RankAt(MatrixTarget t, double kept) => (int)Math.Floor((double)t.M * t.N * kept / (t.M + t.N) + 1e-9);

    [Theory]
    [InlineData(0.2, 1)]
    [InlineData(0.4, 2)]
    [InlineData(0.6, 3)]
    [InlineData(0.8, 4)]
    public void Chooses_the_smallest_threshold_that_meets_the_budget(double ratio, int seed)
    {
        var targets = Targets();
        var rng = new Random(seed);
        // Arbitrary (not necessarily monotone) perplexities per (matrix, rank).
        var ppl = new Dictionary<(string, int), double>();
        foreach (var t in targets)
            foreach (double k in Kept) ppl[(t.Name, RankAt(t, k))] = 10 + 50 * rng.NextDouble();

        var alloc = SensitivityAllocation.Allocate(targets, ratio, (t, ks) => ks.Select(k => ppl[(t.Name, k)]).ToList(), out var probes);
        Assert.Equal(targets.Count * Kept.Length, probes.Count);

        // Brute force: every probe perplexity as threshold; each matrix takes the smallest kept ratio under it.
        double budget = (1 - ratio) * targets.Sum(t => (double)t.M * t.N);
        double? best = null;
        int[]? bestRanks = null;
        foreach (double tau in ppl.Values.OrderBy(v => v))
        {
            var ranks = targets.Select(t =>
            {
                foreach (double k in Kept)
                    if (ppl[(t.Name, RankAt(t, k))] <= tau) return RankAt(t, k);
                return RankAt(t, 0.9);
            }).ToArray();
            double kept = targets.Select((t, i) => (double)ranks[i] * (t.M + t.N)).Sum();
            if (kept <= budget) { best = tau; bestRanks = ranks; break; }
        }
        Assert.NotNull(best);
        Assert.Equal(bestRanks!, alloc.Select(a => a.Rank).ToArray());
        double keptParams = alloc.Select((a, i) => (double)a.Rank * (targets[i].M + targets[i].N)).Sum();
        Assert.True(keptParams <= budget, $"kept {keptParams} > budget {budget}");
    }

    [Fact]
    public void A_sensitive_matrix_keeps_more_rank_than_an_insensitive_one_of_the_same_shape()
    {
        var targets = Targets();
        // l0.* degrade steeply as rank falls, l1.* hardly at all.
        double Ppl(MatrixTarget t, int k)
        {
            double kept = Kept.First(x => RankAt(t, x) == k);
            return t.Name.StartsWith("l0.", StringComparison.Ordinal) ? 10 + 100 * (1 - kept) : 10 + 1 * (1 - kept);
        }
        var alloc = SensitivityAllocation.Allocate(targets, 0.4, (t, ks) => ks.Select(k => Ppl(t, k)).ToList(), out _).ToDictionary(a => a.Name);
        foreach (string type in new[] { "q", "k", "up" })
            Assert.True(alloc[$"l0.{type}"].Rank > alloc[$"l1.{type}"].Rank, $"{type}: l0 rank {alloc[$"l0.{type}"].Rank}, l1 rank {alloc[$"l1.{type}"].Rank}");
    }

    [Fact]
    public void Non_finite_probe_is_an_error()
    {
        var e = Assert.Throws<ArithmeticException>(() => SensitivityAllocation.Allocate(Targets(), 0.4, (t, ks) => ks.Select(_ => t.Name == "l1.k" ? double.NaN : 5.0).ToList(), out _));
        Assert.Contains("l1.k", e.Message);
    }
}
