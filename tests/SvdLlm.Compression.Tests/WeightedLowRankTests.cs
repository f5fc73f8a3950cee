using SvdLlm.Compression;
using SvdLlm.Compression.Truncation;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Tests;

/// <summary>
/// The production decomposition (one eigenproblem of size min(m, n), <see cref="WeightedLowRank"/>) against the papers'
/// literal computations kept as oracles (SVD of the weighted matrix, Cholesky/eigen whitening), on both routes.
/// </summary>
public class WeightedLowRankTests
{
    private static Tensor<double> Random(Random r, int rows, int cols) => TruncationTests.Random(r, rows, cols);

    /// <summary>X [n, t] with decaying column scales, C = X Xᵀ; positive definite when t ≥ n.</summary>
    private static (Tensor<double> X, Tensor<double> C) Data(Random r, int n, int t)
    {
        var x = Random(r, n, t);
        for (int i = 0; i < n; i++)
        {
            double scale = 1.0 / (1 + 0.3 * i);
            foreach (ref double v in x.Row(i)) v *= scale;
        }
        var c = Tensor<double>.Zeros(n, n);
        Blas.Dsyrk(lower: true, Transpose.No, n, t, 1.0, x.Span, t, 0.0, c.Span, n);
        Blas.SymmetrizeFromLower(c.Span, n);
        return (x, c);
    }

    private static double RelDiff(Tensor<double> a, Tensor<double> b)
    {
        double d = 0, s = 0;
        for (int i = 0; i < a.Length; i++)
        {
            d += Math.Pow(a.Span[i] - b.Span[i], 2);
            s += b.Span[i] * b.Span[i];
        }
        return Math.Sqrt(d / s);
    }

    /// <summary>‖(A − B)·X‖_F / ‖B·X‖_F: outputs compared on the span of the calibration inputs.</summary>
    private static double OutputRelDiff(Tensor<double> a, Tensor<double> b, Tensor<double> x)
    {
        using var diff = a.Clone();
        for (int i = 0; i < diff.Length; i++) diff.Span[i] -= b.Span[i];
        using var dx = DenseMath.MatMul(diff, false, x, false);
        using var bx = DenseMath.MatMul(b, false, x, false);
        return Math.Sqrt(TensorDot(dx) / TensorDot(bx));
    }

    private static double TensorDot(Tensor<double> t) => t.Span.ToArray().Sum(v => v * v);

    public static TheoryData<int, int> Shapes => new() { { 24, 40 }, { 40, 24 }, { 32, 32 } };

    [Theory, MemberData(nameof(Shapes))]
    public void Every_method_equals_its_reference_on_a_positive_definite_gram(int m, int n)
    {
        var r = new Random(m * 100 + n);
        using var w = Random(r, m, n);
        var (x, c) = Data(r, n, 3 * n);
        using (x)
        using (c)
        {
            var mean = Enumerable.Range(0, n).Select(j => 0.05 + 0.1 * j).ToArray();
            var fisherRows = Enumerable.Range(0, m).Select(i => 0.5 + (i * 7 % 11)).ToArray();
            int k = Math.Min(m, n) / 3;
            var cases = new (ITruncation Reference, TruncationInputs Inputs, Weighting Weighting)[]
            {
                (new PlainSvdTruncation(), new TruncationInputs(), new Weighting { Objective = "" }),
                (new AsvdTruncation(), new TruncationInputs { MeanAbsInput = mean },
                    new Weighting { Diagonal = mean.Select(v => Math.Pow(Math.Sqrt(v) + 1e-6, 2)).ToArray(), Objective = "" }),
                (new FisherWeightedTruncation(), new TruncationInputs { FisherRowSums = fisherRows },
                    new Weighting { Rows = fisherRows.Select(Math.Sqrt).ToArray(), Objective = "" }),
                (new CholeskyWhiteningTruncation(), new TruncationInputs { Gram = c }, new Weighting { Gram = c, Objective = "" }),
                (new EigenWhiteningTruncation(), new TruncationInputs { Gram = c }, new Weighting { Gram = c, Objective = "" }),
                // The same problem through a shared Cholesky factor (route L's trmm + syrk, route R's whitening).
                (new EigenWhiteningTruncation(), new TruncationInputs { Gram = c }, new Weighting { Gram = c, Objective = "", SharedWhitening = Whitening.TryCholesky(c) }),
            };
            foreach (var (reference, inputs, weighting) in cases)
            {
                using var expected = reference.Truncate(w, k, inputs);
                using var actual = WeightedLowRank.DecomposeAndTruncate(w, weighting, k, out string route);
                Assert.StartsWith(m <= n ? "L:" : "R:", route);
                using var pe = expected.Product();
                using var pa = actual.Product();
                Assert.True(RelDiff(pa, pe) < 1e-10, $"{reference.Name} {m}×{n}: product differs by {RelDiff(pa, pe):E2} ({route})");
                Assert.True(Math.Abs(actual.TheoreticalLoss - expected.TheoreticalLoss) <= 1e-10 * expected.TheoreticalLoss,
                    $"{reference.Name} {m}×{n}: loss {actual.TheoreticalLoss} vs {expected.TheoreticalLoss}");
            }
        }
    }

    [Theory, MemberData(nameof(Shapes))]
    public void On_a_singular_gram_it_matches_v2_on_the_span_of_x_and_keeps_w_on_the_null_space(int m, int n)
    {
        var r = new Random(7 + m + n);
        using var w = Random(r, m, n);
        var (x, c) = Data(r, n, n / 2);   // rank n/2: half of C's eigenvalues are zero
        using (x)
        using (c)
        {
            int k = Math.Min(m, n) / 4;
            using var old = new EigenWhiteningTruncation().Truncate(w, k, new TruncationInputs { Gram = c });
            var weighting = new Weighting { Gram = c, Objective = "", SharedWhitening = m > n ? Whitening.Of(c) : null };
            using var now = WeightedLowRank.DecomposeAndTruncate(w, weighting, k, out _);
            weighting.SharedWhitening?.Dispose();
            using var po = old.Product();
            using var pn = now.Product();
            Assert.True(OutputRelDiff(pn, po, x) < 1e-9, $"outputs on span(X) differ by {OutputRelDiff(pn, po, x):E2}");
            Assert.Equal(old.TheoreticalLoss, now.TheoreticalLoss, 1e-9 * old.TheoreticalLoss);

            // On null(C): the paper's form zeroes W' there, the projection keeps U_k U_kᵀ W q (not zero for generic W).
            using var eig = Lapack.SymmetricEigen(c);
            using var q = Tensor<double>.Uninitialized(n, 1);
            for (int i = 0; i < n; i++) q[i, 0] = eig.Vectors[i, 0];
            Assert.True(eig.Values[0] < 1e-10 * eig.Values[^1]);
            using var oq = DenseMath.MatMul(po, false, q, false);
            using var nq = DenseMath.MatMul(pn, false, q, false);
            Assert.True(Math.Sqrt(TensorDot(oq)) < 1e-6, "the paper's V2 form should vanish on null(C)");
            Assert.True(Math.Sqrt(TensorDot(nq)) > 1e-3, "the projection keeps W's component on null(C)");
        }
    }

    [Fact]
    public void Theoretical_loss_equals_the_naively_measured_output_error_at_every_rank()
    {
        var r = new Random(3);
        int m = 30, n = 20;
        using var w = Random(r, m, n);
        var (x, c) = Data(r, n, 50);
        using (x)
        using (c)
        {
            var weighting = new Weighting { Gram = c, Objective = "" };
            using var basis = WeightedLowRank.Decompose(w, weighting, WeightedLowRank.MaxUsefulRank(m, n));
            for (int k = 1; k <= basis.Kept; k += 3)
            {
                using var f = WeightedLowRank.Truncate(w, basis, k, weighting);
                using var p = f.Product();
                // ‖(W − W')X‖_F by explicit loops over X's columns.
                double s = 0;
                for (int i = 0; i < m; i++)
                    for (int t = 0; t < x.Cols; t++)
                    {
                        double e = 0;
                        for (int j = 0; j < n; j++) e += (w[i, j] - p[i, j]) * x[j, t];
                        s += e * e;
                    }
                Assert.Equal(Math.Sqrt(s), f.TheoreticalLoss, 1e-9 * Math.Sqrt(s));
                Assert.Equal(Math.Sqrt(s), Compressor.MeasuredLoss(w, f, c), 1e-9 * Math.Sqrt(s));
            }
        }
    }

    [Fact]
    public void Sampled_measured_loss_is_close_to_the_exact_one()
    {
        var r = new Random(11);
        int m = 2048, n = 64;
        using var w = Random(r, m, n);
        var (x, c) = Data(r, n, 200);
        using (x)
        using (c)
        {
            var weighting = new Weighting { Gram = c, Objective = "" };
            using var f = WeightedLowRank.DecomposeAndTruncate(w, weighting, 20, out _);
            // A zero budget forces the 512-of-2048-rows estimate; it must differ from the exact figure and stay within 5 %.
            double sampled = Compressor.MeasuredLoss(w, f, c, exactBudget: 0);
            double exact = Compressor.MeasuredLoss(w, f, c);
            Assert.Equal(f.TheoreticalLoss, exact, 1e-9 * f.TheoreticalLoss);
            Assert.NotEqual(exact, sampled);
            Assert.Equal(exact, sampled, 0.05 * exact);
        }
    }

    [Fact]
    public void Float32_workspace_moves_the_product_by_at_most_the_stated_bound()
    {
        var r = new Random(5);
        int m = 48, n = 64, k = 20;
        using var w = Random(r, m, n);
        var (x, c) = Data(r, n, 128);
        using (x)
        using (c)
        {
            var weighting = new Weighting { Gram = c, Objective = "" };
            using var exact = WeightedLowRank.DecomposeAndTruncate(w, weighting, k, out _);
            using var space = new BasisWorkspace(null, compact: true);
            using (var b = WeightedLowRank.Decompose(w, weighting, WeightedLowRank.MaxUsefulRank(m, n))) space.Write("w", b);
            using var read = space.Read("w");
            using var rounded = WeightedLowRank.Truncate(w, read, k, weighting);
            using var pe = exact.Product();
            using var pr = rounded.Product();
            double bound = 2 * Math.Pow(2, -24) * Math.Sqrt(k) * Math.Sqrt(TensorDot(w)) / Math.Sqrt(TensorDot(pe));
            double diff = RelDiff(pr, pe);
            Assert.True(diff <= bound, $"float32 workspace moved W' by {diff:E2}, bound {bound:E2}");
            Assert.True(diff > 0, "the float32 round trip should change something (else this test checks nothing)");
        }
    }

    [Fact]
    public void A_killed_runs_workspace_is_swept_when_the_next_one_is_made()
    {
        using var dir = new SvdLlm.Models.Tests.TempDirectory();
        using var gone = System.Diagnostics.Process.Start("true")!;
        gone.WaitForExit();
        string dead = Path.Combine(dir.Path, $"{BasisWorkspace.Prefix}.tmp-{gone.Id}-0badf00d");
        Directory.CreateDirectory(dead);
        File.WriteAllText(Path.Combine(dead, "w.basis"), "singular vectors");
        string unrelated = Path.Combine(dir.Path, $"other.tmp-{gone.Id}-0badf00d");
        Directory.CreateDirectory(unrelated);
        using (var space = new BasisWorkspace(dir.Path, compact: false))
        {
            Assert.False(Directory.Exists(dead));
            Assert.True(Directory.Exists(unrelated));
            Assert.True(Directory.Exists(space.Path_));
            Assert.Equal(Environment.ProcessId, SvdLlm.Models.Data.Leftovers.OwnerPid(Path.GetFileName(space.Path_)));
        }
    }
}
