using System.Numerics;
using SvdLlm.Numerics;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace SvdLlm.Compression.Quantization;

/// <summary>
/// Which per-column weights GPTVQ's codebook fit and nearest-centroid lookup use (d_j = U_jj, U the upper Cholesky
/// factor of H⁻¹ as in GPTQ).
/// </summary>
public enum GptvqWeighting
{
    /// <summary>
    /// As the reference code does: for D &gt; 1 the k-means fit weighs column j by d_j and the lookup by 1/d_j; for D = 1
    /// both are unweighted (the reference passes no weights there; a 1-D lookup does not depend on them anyway).
    /// </summary>
    Reference,

    /// <summary>1/d_j² for both the fit and the lookup: the weight column j's error carries in GPTQ's loss (w − q)²/d_j².</summary>
    ObsConsistent,
}

/// <summary>
/// GPTVQ's settings. Defaults are the paper's scripts: 256 columns per codebook group, 100 k-means iterations from a
/// Mahalanobis initialisation, Hessian-weighted lookups, the codebook update after the pass, int8 codebooks per
/// codebook, and the paper's group size for (b, D), which is 64·K·D weights per codebook (1/8 bit per weight of int8
/// codebook overhead).
/// </summary>
public sealed record GptvqOptions
{
    /// <summary>Index bits per weight b (1..8); a D-dimensional vector's index has b·D bits.</summary>
    public int Bits { get; init; } = 2;

    /// <summary>Vector dimension D ∈ {1, 2, 4}: D consecutive input columns of one row form a vector.</summary>
    public int VqDim { get; init; } = 2;

    /// <summary>Input columns per codebook group (the reference's --columns-per-group); a multiple of D.</summary>
    public int ColumnsPerGroup { get; init; } = 256;

    /// <summary>
    /// Weights per codebook; ≤ 0 takes the paper's value for (b, D), 64·K·D (b=2,D=1: 256; 3,1: 512; 4,1: 1024; 2,2: 2048;
    /// 3,2: 8192; 4,2: 32768; 2,4: 65536). A codebook covers GroupSize / ColumnsPerGroup consecutive rows, so the group
    /// size must be a multiple of <see cref="ColumnsPerGroup"/>. A matrix with fewer rows or columns than one group
    /// simply gets smaller (partial) groups at its end.
    /// </summary>
    public int GroupSize { get; init; }

    /// <summary>Weighted k-means (EM) iterations per codebook; it stops early once the assignments repeat (the rest would change nothing).</summary>
    public int KMeansIterations { get; init; } = 100;

    /// <summary>Bits per codebook entry: 2..8 stores symmetric integer codes with one float32 scale per codebook; 0 keeps float64 codebooks.</summary>
    public int CodebookBits { get; init; } = 8;

    /// <summary>Lazy-update block width (rounded down to a multiple of D, at least D); the result does not depend on it.</summary>
    public int BlockSize { get; init; } = 128;

    /// <summary>Damping λ = PercentDamping · mean(diag H) added to H's diagonal for the pass (the codebook update uses H undamped).</summary>
    public double PercentDamping { get; init; } = 0.01;

    /// <summary>After the pass, refit the codebooks to the frozen assignments (exact least squares; see <see cref="Gptvq"/>).</summary>
    public bool IncludeMStep { get; init; } = true;

    public GptvqWeighting Weighting { get; init; } = GptvqWeighting.Reference;

    /// <summary>K = 2^(b·D) centroids per codebook.</summary>
    public int Centroids => 1 << (Bits * VqDim);

    /// <summary>The group size in use: <see cref="GroupSize"/>, or 64·K·D when that is ≤ 0.</summary>
    public int EffectiveGroupSize => GroupSize > 0 ? GroupSize : 64 * Centroids * VqDim;

    /// <summary>Rows a codebook covers (before clamping to the matrix).</summary>
    public int RowsPerCodebook => EffectiveGroupSize / ColumnsPerGroup;

    public void Check()
    {
        if (Bits < 1 || Bits > 8) throw new ArgumentOutOfRangeException(nameof(Bits), $"index bits per weight must be 1..8, got {Bits}");
        if (VqDim is not (1 or 2 or 4)) throw new ArgumentOutOfRangeException(nameof(VqDim), $"the vector dimension must be 1, 2 or 4, got {VqDim}");
        if (Bits * VqDim > 8)
            throw new ArgumentException($"{Bits} bits per weight with {VqDim}-dimensional vectors need K = 2^{Bits * VqDim} centroids; at most 256 (an index per byte) are supported, so b·D must be ≤ 8");
        if (ColumnsPerGroup < 1 || ColumnsPerGroup % VqDim != 0)
            throw new ArgumentOutOfRangeException(nameof(ColumnsPerGroup), $"columns per group must be a positive multiple of the vector dimension {VqDim}, got {ColumnsPerGroup}");
        int g = EffectiveGroupSize;
        if (g < ColumnsPerGroup || g % ColumnsPerGroup != 0)
            throw new ArgumentException($"the group size (weights per codebook) {g} must be a positive multiple of the columns per group {ColumnsPerGroup}");
        if (KMeansIterations < 0) throw new ArgumentOutOfRangeException(nameof(KMeansIterations), $"k-means iterations must be ≥ 0, got {KMeansIterations}");
        if (CodebookBits != 0 && (CodebookBits < 2 || CodebookBits > 8))
            throw new ArgumentOutOfRangeException(nameof(CodebookBits), $"codebook bits must be 0 (float64) or 2..8, got {CodebookBits}");
        if (BlockSize < 1) throw new ArgumentOutOfRangeException(nameof(BlockSize), $"block size must be ≥ 1, got {BlockSize}");
        if (!(PercentDamping > 0 && PercentDamping < 1)) throw new ArgumentOutOfRangeException(nameof(PercentDamping), $"relative damping must be in (0, 1), got {PercentDamping}");
        if (!Enum.IsDefined(Weighting)) throw new ArgumentOutOfRangeException(nameof(Weighting), $"unknown weighting {Weighting}");
    }
}

/// <summary>
/// A vector-quantized W [Rows, Cols]: row i's input columns [vD, vD + D) form vector v, stored as a one-byte index into
/// the codebook of its (row group, column group). Row group = row / <see cref="RowsPerCodebook"/>, column group =
/// column / <see cref="ColumnsPerGroup"/> (the last ones may be partial), codebook = row group · ColumnGroups + column group.
/// </summary>
public sealed class VqMatrix
{
    internal VqMatrix(int rows, int cols, int bits, int vqDim, int rowsPerCodebook, int columnsPerGroup, byte[] indices,
        int codebookBits, double[] centroids, sbyte[]? codes, float[]? scales)
    {
        Rows = rows;
        Cols = cols;
        Bits = bits;
        VqDim = vqDim;
        RowsPerCodebook = rowsPerCodebook;
        ColumnsPerGroup = columnsPerGroup;
        Indices = indices;
        CodebookBits = codebookBits;
        CentroidValues = centroids;
        CodebookCodes = codes;
        CodebookScales = scales;
    }

    public int Rows { get; }
    public int Cols { get; }

    /// <summary>Index bits per weight b.</summary>
    public int Bits { get; }

    public int VqDim { get; }

    /// <summary>K = 2^(b·D).</summary>
    public int Centroids => 1 << (Bits * VqDim);

    public int RowsPerCodebook { get; }
    public int ColumnsPerGroup { get; }
    public int RowGroups => (Rows + RowsPerCodebook - 1) / RowsPerCodebook;
    public int ColumnGroups => (Cols + ColumnsPerGroup - 1) / ColumnsPerGroup;
    public int CodebookCount => RowGroups * ColumnGroups;

    /// <summary>Centroid indices [Rows, Cols / VqDim], row-major.</summary>
    public byte[] Indices { get; }

    /// <summary>Bits per stored codebook entry: 2..8 (integer codes and a float32 scale per codebook) or 0 (float64 entries).</summary>
    public int CodebookBits { get; }

    /// <summary>
    /// Centroids [CodebookCount, K, D] as used: code · scale when <see cref="CodebookBits"/> &gt; 0 (computed in float64
    /// from the stored code and float32 scale), else the stored float64 values.
    /// </summary>
    public double[] CentroidValues { get; }

    /// <summary>Integer codebook entries [CodebookCount, K, D] when <see cref="CodebookBits"/> &gt; 0.</summary>
    public sbyte[]? CodebookCodes { get; }

    /// <summary>One scale per codebook when <see cref="CodebookBits"/> &gt; 0.</summary>
    public float[]? CodebookScales { get; }

    public int CodebookOf(int row, int col) => row / RowsPerCodebook * ColumnGroups + col / ColumnsPerGroup;

    public double Value(int row, int col)
    {
        int k = Indices[(long)row * (Cols / VqDim) + col / VqDim];
        return CentroidValues[((long)CodebookOf(row, col) * Centroids + k) * VqDim + col % VqDim];
    }

    public Tensor<double> Dequantize() => QuantizedValues.Dense(Rows, Cols, Value);

    /// <summary>
    /// Stored bits as the paper counts them: log₂K bits per index (packed, though held here in a byte) plus
    /// <see cref="CodebookBits"/> per codebook entry (64 for float64 codebooks).
    /// </summary>
    public long StorageBits => (long)Indices.Length * Bits * VqDim + (long)CentroidValues.Length * (CodebookBits > 0 ? CodebookBits : 64);

    /// <summary><see cref="StorageBits"/> per weight; equals <see cref="ExpectedBitsPerValue"/> when the groups tile the matrix.</summary>
    public double BitsPerWeight => StorageBits / ((double)Rows * Cols);

    /// <summary>
    /// <see cref="BitsPerWeight"/> plus one float32 scale per codebook for integer codebooks, which the paper's bpv
    /// leaves out (32/GroupSize per weight: 1/64 bit at b = 2, D = 2).
    /// </summary>
    public double BitsPerWeightWithScales => (StorageBits + (CodebookScales is null ? 0 : 32L * CodebookScales.Length)) / ((double)Rows * Cols);

    /// <summary>The paper's bits per value without block scaling: b + K·D·b_c / GroupSize (b_c = 64 for float64 codebooks).</summary>
    public static double ExpectedBitsPerValue(GptvqOptions options)
    {
        options.Check();
        int bc = options.CodebookBits > 0 ? options.CodebookBits : 64;
        return options.Bits + (double)options.Centroids * options.VqDim * bc / options.EffectiveGroupSize;
    }
}

/// <summary>What GPTVQ produced for one matrix.</summary>
/// <param name="Loss">½ tr(E H_damped Eᵀ), E = W − W' after the pass and before the codebook update (the update changes
/// the centroids, not this number); dead inputs count with H_jj = 1 and their weights as zero, as in GPTQ</param>
/// <param name="AccumulatedLoss">the pass's Σ over weights of (w − q)²/(2 U_jj²), GPTQ's (and the reference's) running sum:
/// equal to <paramref name="Loss"/> for D = 1; for D &gt; 1 not the objective, because a vector's own columns do not
/// update each other</param>
/// <param name="Damping">the damping λ finally added to diag H (raised when a Cholesky failed)</param>
/// <param name="MStepObjectiveBefore">tr((W − W')H(W − W')ᵀ), H undamped, before the codebook update; null without it</param>
/// <param name="MStepObjectiveAfter">the same after the update (never above the value before)</param>
/// <param name="Note">what was regularised or skipped, for the report; null when nothing was</param>
public sealed record GptvqResult(VqMatrix Matrix, double Loss, double AccumulatedLoss, double Damping, int DeadColumns,
    double? MStepObjectiveBefore, double? MStepObjectiveAfter, string? Note);

/// <summary>
/// GPTVQ (van Baalen et al., "GPTVQ: The Blessing of Dimensionality for LLM Quantization", 2024, arXiv 2402.15319):
/// GPTQ's column-by-column optimal-brain-surgeon pass with D-dimensional vector quantization of D consecutive columns
/// of a row, one codebook of K = 2^(b·D) centroids per (row group × column group).
/// <list type="number">
/// <item>H, dead inputs (H_jj = 0: W's column zeroed, H_jj = 1), damping, U = upper Cholesky of H_d⁻¹ and lazy blocks are
/// GPTQ's (<see cref="Gptq.UpperCholeskyOfInverse"/>). No act-order and no static groups (the reference has neither).</item>
/// <item>When a column group starts, the codebooks of its row groups are fitted on the current (already updated) weights:
/// Mahalanobis initialisation (<see cref="MahalanobisInit"/>), then weighted k-means (<see cref="WeightedKMeans"/>), then
/// integer codebook compression, so the pass looks up the stored centroids.</item>
/// <item>Per vector: nearest centroid under the lookup weights, err_c = (w_c − q_c)/U_cc for its columns, and the columns
/// after the vector get w_k −= Σ_c err_c U_ck; the vector's own columns do not update each other.</item>
/// <item>Optional codebook update (the paper's "M-step") with the assignments frozen, then compression again.</item>
/// </list>
/// Resolved choices (docs/QUANTIZATION.md):
/// <para>Blocks. A lazy block also ends where a column group starts (as <see cref="Gptq"/> does with groups), so every fit
/// sees all updates so far and the result does not depend on the block size. With the defaults (256-column groups,
/// 128-column blocks) group starts are block starts, which is exactly the reference.</para>
/// <para>Weights. <see cref="GptvqWeighting.Reference"/> reproduces the reference (fit weights U_jj, lookup weights
/// 1/U_jj, D &gt; 1 only); <see cref="GptvqWeighting.ObsConsistent"/> uses GPTQ's 1/U_jj² for both.</para>
/// <para>Codebook update. The reference runs 25 Adam steps (lr 1e-3) on tr((W₀ − Q(C)) H (W₀ − Q(C))ᵀ), W₀ the original
/// weights and H undamped. Rows of different row groups use different codebooks, so the problem separates per row group
/// into a linear least-squares problem in that row group's P = ColumnGroups·K·D centroid coordinates; here it is solved
/// exactly through its normal equations (float64 Cholesky, pinned unused centroids, a tiny ridge only if the Cholesky
/// fails), which lower-bounds what Adam reaches. A row group keeps its new codebooks only if the objective, after
/// integer compression, does not increase. Building the normal matrices costs one pass over H per batch of rows
/// (m·n² additions in all); memory stays O(P²) per row group. Above 8192 unknowns per row group (b = 4, D = 2 or
/// b = 2, D = 4 on wide matrices) the update is skipped and the note says so.</para>
/// <para>Empty clusters keep their centroid (the reference sets it to 0). Not implemented: block scaling
/// (--vq-scaling-blocksize) and SVD-compressed codebooks (--svd-rank).</para>
/// </summary>
public static class Gptvq
{
    /// <summary>Largest number of centroid coordinates per row group for which the exact codebook update runs.</summary>
    internal const int MaxMStepUnknowns = 8192;

    /// <summary>Quantizes W [m, n] against H [n, n] (symmetric positive semi-definite, any scale). W and H are not modified.</summary>
    public static GptvqResult Quantize(Tensor<double> w, Tensor<double> h, GptvqOptions options) => Run(w, h, options, null);

    /// <summary>
    /// The pass alone with given float64 codebooks [codebooks, K, D] (no fit, no update, no compression); for tests
    /// that compare GPTVQ with GPTQ on a fixed grid.
    /// </summary>
    internal static GptvqResult QuantizeWithCodebooks(Tensor<double> w, Tensor<double> h, GptvqOptions options, double[] codebooks) =>
        Run(w, h, options with { CodebookBits = 0, IncludeMStep = false }, codebooks);

    /// <summary>The codebook grid of a matrix: K, D and the clamped row/column groups.</summary>
    private readonly record struct Layout(int M, int N, int D, int K, int Rpg, int Cpg)
    {
        public int RowGroups => (M + Rpg - 1) / Rpg;
        public int ColGroups => (N + Cpg - 1) / Cpg;
        public int Codebooks => RowGroups * ColGroups;
        public int VectorsPerRow => N / D;
        public int CodebookLength => K * D;
    }

    private static GptvqResult Run(Tensor<double> w, Tensor<double> h, GptvqOptions options, double[]? fixedCodebooks)
    {
        options.Check();
        int m = w.Rows, n = w.Cols, dim = options.VqDim;
        if (h.Rows != n || h.Cols != n) throw new ArgumentException($"H {h.ShapeString} does not match W {w.ShapeString}");
        if (n % dim != 0) throw new ArgumentException($"W has {n} columns, not a multiple of the vector dimension {dim}");
        CheckFinite(w.Span, "W");
        CheckFinite(h.Span, "H");
        var layout = new Layout(m, n, dim, options.Centroids, Math.Min(options.RowsPerCodebook, Math.Max(1, m)), options.ColumnsPerGroup);
        int cbLength = layout.CodebookLength;
        if (fixedCodebooks is not null && fixedCodebooks.Length != layout.Codebooks * cbLength)
            throw new ArgumentException($"{fixedCodebooks.Length} codebook values given, the layout needs {layout.Codebooks}·{layout.K}·{dim}");

        var isDead = new bool[n];
        int deadCount = 0;
        for (int j = 0; j < n; j++)
            if (h[j, j] == 0) { isDead[j] = true; deadCount++; }

        using var wp = w.Clone();
        if (deadCount > 0)
            for (int i = 0; i < m; i++)
            {
                var row = wp.Row(i);
                for (int j = 0; j < n; j++) if (isDead[j]) row[j] = 0;
            }

        var perm = Enumerable.Range(0, n).ToArray();
        var (u, damping, raised) = Gptq.UpperCholeskyOfInverse(h, perm, isDead, options.PercentDamping);
        double accumulated;
        var centroids = fixedCodebooks is null ? new double[layout.Codebooks * cbLength] : (double[])fixedCodebooks.Clone();
        int codebookBits = options.CodebookBits;
        var codes = codebookBits > 0 ? new sbyte[centroids.Length] : null;
        var scales = codebookBits > 0 ? new float[layout.Codebooks] : null;
        var indices = new byte[(long)m * layout.VectorsPerRow];
        using (u)
        {
            var diagU = new double[n];
            for (int j = 0; j < n; j++) diagU[j] = u[j, j];
            var fitWeights = new double[n];
            var lookupWeights = new double[n];
            for (int j = 0; j < n; j++)
            {
                double d = diagU[j];
                (fitWeights[j], lookupWeights[j]) = options.Weighting switch
                {
                    GptvqWeighting.ObsConsistent => (1 / (d * d), 1 / (d * d)),
                    _ => dim > 1 ? (d, 1 / d) : (1.0, 1.0),
                };
            }

            var rowLoss = new double[m];
            int block = Math.Max(dim, options.BlockSize / dim * dim);
            int width = Math.Min(block, n);
            using var w1 = Tensor<double>.Uninitialized(m, Math.Max(1, width));
            using var err = Tensor<double>.Uninitialized(m, Math.Max(1, width));
            int cpg = layout.Cpg;
            for (int i1 = 0; i1 < n;)
            {
                int i2 = Math.Min(n, i1 + block);
                int nextGroup = (i1 / cpg + 1) * cpg;
                if (nextGroup < i2) i2 = nextGroup;
                int b = i2 - i1, cg = i1 / cpg;
                if (fixedCodebooks is null && i1 % cpg == 0)
                    FitColumnGroup(wp, layout, cg, fitWeights, options.KMeansIterations, codebookBits, centroids, codes, scales);
                for (int i = 0; i < m; i++) wp.Row(i).Slice(i1, b).CopyTo(w1.Row(i)[..b]);
                int chunk = Math.Max(8, (m + 4 * Environment.ProcessorCount - 1) / (4 * Environment.ProcessorCount));
                Parallel.For(0, (m + chunk - 1) / chunk, c =>
                {
                    var us = u.Span;
                    Span<double> e = stackalloc double[4];
                    for (int i = c * chunk, end = Math.Min(m, (c + 1) * chunk); i < end; i++)
                    {
                        var row = w1.Row(i)[..b];
                        var errRow = err.Row(i)[..b];
                        var cb = new ReadOnlySpan<double>(centroids, (i / layout.Rpg * layout.ColGroups + cg) * cbLength, cbLength);
                        double rl = 0;
                        for (int j = 0; j < b; j += dim)
                        {
                            int col = i1 + j;
                            int k = Nearest(row.Slice(j, dim), cb, lookupWeights.AsSpan(col, dim), layout.K, dim);
                            indices[(long)i * layout.VectorsPerRow + col / dim] = (byte)k;
                            for (int d = 0; d < dim; d++)
                            {
                                double ed = (row[j + d] - cb[k * dim + d]) / diagU[col + d];
                                e[d] = ed;
                                errRow[j + d] = ed;
                                rl += ed * ed / 2;
                            }
                            int rest = b - j - dim;
                            if (rest > 0)
                            {
                                var tail = row[(j + dim)..];
                                for (int d = 0; d < dim; d++)
                                    TensorPrimitives.MultiplyAdd(us.Slice((col + d) * n + col + dim, rest), -e[d], tail, tail);
                            }
                        }
                        rowLoss[i] += rl;
                    }
                });
                // Lazy update of every column after the block: W[:, i2:] −= Err · U[i1:i2, i2:].
                if (i2 < n)
                    Blas.Dgemm(Transpose.No, Transpose.No, m, n - i2, b, -1.0, err.Span, err.Cols, u.Span[(i1 * n + i2)..], n, 1.0, wp.Span[i2..], n);
                i1 = i2;
            }
            accumulated = 0;
            foreach (double l in rowLoss) accumulated += l;
        }
        // For D = 1, E = Err·U and U H_d Uᵀ = I make the accumulated sum the objective exactly (as in GPTQ). For D > 1 a
        // vector's own columns do not update each other, so E ≠ Err·U and tr(E H_d Eᵀ) is evaluated: its H part is the
        // codebook update's starting objective when that runs, else one gemm. E goes into the working copy of W.
        double diagonalPart = FillError(w, wp, isDead, damping, centroids, indices, layout);
        string? note = null;
        void AddNote(string s) => note = note is null ? s : note + "; " + s;
        if (deadCount > 0) AddNote($"{deadCount} dead input column(s) (H_jj = 0) zeroed before quantization");
        if (raised) AddNote($"Cholesky failed at {options.PercentDamping:G3} relative damping, raised to λ = {damping:G3}");

        double? before = null, after = null;
        if (options.IncludeMStep && fixedCodebooks is null)
        {
            int unknowns = layout.ColGroups * cbLength;
            if (unknowns > MaxMStepUnknowns)
                AddNote($"codebook update skipped: {unknowns} unknowns per row group exceed {MaxMStepUnknowns}");
            else
            {
                var outcome = UpdateCodebooks(w, h, layout, indices, centroids, codebookBits, codes, scales);
                (before, after) = (outcome.Before, outcome.After);
                if (outcome.Rejected > 0) AddNote($"codebook update kept the old codebooks of {outcome.Rejected} of {layout.RowGroups} row group(s) (no decrease)");
                if (outcome.Ridged > 0) AddNote($"codebook update needed a ridge in {outcome.Ridged} row group(s)");
            }
        }

        double loss = dim == 1 ? accumulated : ((before ?? HObjective(wp, h)) + diagonalPart) / 2;
        var matrix = new VqMatrix(m, n, options.Bits, dim, layout.Rpg, layout.Cpg, indices, codebookBits, centroids, codes, scales);
        return new GptvqResult(matrix, loss, accumulated, damping, deadCount, before, after, note);
    }

    /// <summary>
    /// Writes E = W_z − Q into <paramref name="error"/> (W_z: W with dead columns zeroed) and returns Σ_ij (λ + [j dead]) E_ij²,
    /// the part of tr(E H_p Eᵀ) that H_p (H with a dead input's diagonal set to 1, plus λI) adds to H.
    /// </summary>
    private static double FillError(Tensor<double> w, Tensor<double> error, bool[] dead, double lambda, double[] centroids, byte[] indices, Layout layout)
    {
        int m = layout.M, n = layout.N, dim = layout.D, nv = layout.VectorsPerRow, kd = layout.CodebookLength;
        double total = 0;
        for (int i = 0; i < m; i++)
        {
            var e = error.Row(i);
            var src = w.Row(i);
            int rowBase = i / layout.Rpg * layout.ColGroups;
            for (int j = 0; j < n; j++)
            {
                int k = indices[(long)i * nv + j / dim];
                double q = centroids[(long)(rowBase + j / layout.Cpg) * kd + k * dim + j % dim];
                double ej = (dead[j] ? 0 : src[j]) - q;
                e[j] = ej;
                total += ((dead[j] ? 1 : 0) + lambda) * ej * ej;
            }
        }
        return total;
    }

    /// <summary>Σ_i e_i H e_iᵀ over the rows of <paramref name="e"/>, by float64 gemms over chunks of rows (m·n² multiply-adds).</summary>
    private static double HObjective(Tensor<double> e, Tensor<double> h)
    {
        int m = e.Rows, n = e.Cols;
        int chunk = Math.Max(1, Math.Min(m, (32 << 20) / Math.Max(1, n * sizeof(double))));
        using var z = Tensor<double>.Uninitialized(chunk, n);
        double total = 0;
        for (int r0 = 0; r0 < m; r0 += chunk)
        {
            int rows = Math.Min(chunk, m - r0);
            Blas.Dgemm(Transpose.No, Transpose.No, rows, n, n, 1.0, e.Span[(r0 * n)..], n, h.Span, n, 0.0, z.Span, n);
            for (int i = 0; i < rows; i++) total += TensorPrimitives.Dot(e.Row(r0 + i), z.Row(i));
        }
        return total;
    }

    private static void CheckFinite(ReadOnlySpan<double> values, string name)
    {
        for (int i = 0; i < values.Length; i++)
            if (!double.IsFinite(values[i])) throw new ArgumentException($"{name} holds a non-finite value ({values[i]}) at flat index {i}");
    }

    /// <summary>The centroid minimising Σ_d weight_d (x_d − c_d)² (the lowest index on ties).</summary>
    internal static int Nearest(ReadOnlySpan<double> x, ReadOnlySpan<double> codebook, ReadOnlySpan<double> weights, int k, int dim)
    {
        int best = 0;
        double bestDist = double.PositiveInfinity;
        for (int c = 0; c < k; c++)
        {
            double dist = 0;
            for (int d = 0; d < dim; d++)
            {
                double diff = x[d] - codebook[c * dim + d];
                dist += weights[d] * (diff * diff);
            }
            if (dist < bestDist) { bestDist = dist; best = c; }
        }
        return best;
    }

    /// <summary>Fits the codebooks of column group <paramref name="cg"/> for every row group on the current weights.</summary>
    private static void FitColumnGroup(Tensor<double> wp, Layout layout, int cg, double[] fitWeights, int iterations,
        int codebookBits, double[] centroids, sbyte[]? codes, float[]? scales)
    {
        int dim = layout.D, c0 = cg * layout.Cpg, c1 = Math.Min(layout.N, c0 + layout.Cpg), nv = (c1 - c0) / dim;
        int cbLength = layout.CodebookLength;
        Parallel.For(0, layout.RowGroups, () => new KMeansWorkspace(layout.Rpg * nv, dim, layout.K), (rg, _, ws) =>
        {
            int r0 = rg * layout.Rpg, r1 = Math.Min(layout.M, r0 + layout.Rpg), count = (r1 - r0) * nv;
            for (int i = r0; i < r1; i++)
            {
                var row = wp.Row(i);
                int p0 = (i - r0) * nv;
                for (int v = 0; v < nv; v++)
                    for (int d = 0; d < dim; d++)
                    {
                        ws.X[d * count + p0 + v] = row[c0 + v * dim + d];
                        ws.W[d * count + p0 + v] = fitWeights[c0 + v * dim + d];
                    }
            }
            int cb = rg * layout.ColGroups + cg;
            var c = centroids.AsSpan(cb * cbLength, cbLength);
            var xs = ws.X.AsSpan(0, dim * count);
            MahalanobisInit(xs, count, dim, c, ws.Order, ws.Dist);
            WeightedKMeans(xs, ws.W.AsSpan(0, dim * count), count, dim, c, iterations, ws);
            if (codebookBits > 0) scales![cb] = CompressCodebook(c, codebookBits, codes.AsSpan(cb * cbLength, cbLength));
            return ws;
        }, _ => { });
    }

    /// <summary>Scratch buffers of one k-means fit (allocated once per worker, reused for every codebook).</summary>
    internal sealed class KMeansWorkspace(int points, int dim, int k)
    {
        public readonly double[] X = new double[points * dim];
        public readonly double[] W = new double[points * dim];
        public readonly int[] Assign = new int[points];
        public readonly int[] Previous = new int[points];
        public readonly int[] Order = new int[points];
        public readonly double[] Dist = new double[points];
        public readonly double[] Sums = new double[2 * k * dim];
    }

    /// <summary>
    /// Mahalanobis initialisation (the reference's default in the paper scripts). Points are given column-wise,
    /// <paramref name="xs"/>[d·count + p]. With μ their mean and Σ = Σ_p (x_p − μ)(x_p − μ)ᵀ, every point gets
    /// r_p = (x_p − μ)ᵀ Σ⁻¹ (x_p − μ); points are sorted by (r_p, p), and centroid k (k = 0..K−1) is the point of rank
    /// round(k·(count − 1)/(K − 1)), rounding half to even (torch.round of torch.linspace as the reference does; the
    /// rank is computed in integers). A singular Σ gets a ridge of 1e-9·tr Σ (growing if needed); Σ = 0 ranks by index.
    /// </summary>
    internal static void MahalanobisInit(ReadOnlySpan<double> xs, int count, int dim, Span<double> centroids, int[]? orderBuffer = null, double[]? distBuffer = null)
    {
        int k = centroids.Length / dim;
        if (count == 0) { centroids.Clear(); return; }
        Span<double> mu = stackalloc double[4];
        Span<double> sigma = stackalloc double[16];
        Span<double> l = stackalloc double[16];
        Span<double> y = stackalloc double[4];
        for (int d = 0; d < dim; d++) mu[d] = Mean(xs.Slice(d * count, count));
        sigma.Clear();
        for (int a = 0; a < dim; a++)
            for (int b = 0; b <= a; b++)
            {
                double s = 0;
                var xa = xs.Slice(a * count, count);
                var xb = xs.Slice(b * count, count);
                for (int p = 0; p < count; p++) s += (xa[p] - mu[a]) * (xb[p] - mu[b]);
                sigma[a * dim + b] = s;
                sigma[b * dim + a] = s;
            }
        double trace = 0;
        for (int d = 0; d < dim; d++) trace += sigma[d * dim + d];
        bool usable = trace > 0;
        for (double ridge = 0; usable; ridge = ridge == 0 ? 1e-9 * trace : ridge * 1000)
        {
            if (SmallCholesky(sigma, dim, ridge, l, 1e-12 * trace)) break;
            if (ridge > trace) { usable = false; break; }
        }
        var order = orderBuffer ?? new int[count];
        var dist = distBuffer ?? new double[count];
        for (int p = 0; p < count; p++)
        {
            order[p] = p;
            if (!usable) { dist[p] = 0; continue; }
            // r = ‖L⁻¹(x − μ)‖², Σ = L Lᵀ.
            double r = 0;
            for (int a = 0; a < dim; a++)
            {
                double s = xs[a * count + p] - mu[a];
                for (int b = 0; b < a; b++) s -= l[a * dim + b] * y[b];
                y[a] = s / l[a * dim + a];
                r += y[a] * y[a];
            }
            dist[p] = r;
        }
        Array.Sort(order, 0, count, new ByDistance(dist));
        for (int c = 0; c < k; c++)
        {
            int p = order[QuantileRank(c, count, k)];
            for (int d = 0; d < dim; d++) centroids[c * dim + d] = xs[d * count + p];
        }
    }

    /// <summary>round(c·(count − 1)/(k − 1)) with ties to even, in integers.</summary>
    internal static int QuantileRank(int c, int count, int k)
    {
        if (k == 1) return 0;
        long num = (long)c * (count - 1), den = k - 1;
        long q = num / den, rem = num % den;
        if (2 * rem > den || (2 * rem == den && (q & 1) == 1)) q++;
        return (int)q;
    }

    private sealed class ByDistance(double[] dist) : IComparer<int>
    {
        public int Compare(int a, int b)
        {
            int c = dist[a].CompareTo(dist[b]);
            return c != 0 ? c : a.CompareTo(b);
        }
    }

    private static double Mean(ReadOnlySpan<double> x) => x.Length == 0 ? 0 : TensorPrimitives.Sum(x) / x.Length;

    /// <summary>Lower Cholesky of a dim×dim (S + ridge·I) into l; false if a pivot is ≤ <paramref name="floor"/>.</summary>
    private static bool SmallCholesky(ReadOnlySpan<double> s, int dim, double ridge, Span<double> l, double floor)
    {
        l[..(dim * dim)].Clear();
        for (int a = 0; a < dim; a++)
            for (int b = 0; b <= a; b++)
            {
                double v = s[a * dim + b] + (a == b ? ridge : 0);
                for (int c = 0; c < b; c++) v -= l[a * dim + c] * l[b * dim + c];
                if (a == b)
                {
                    if (!(v > floor)) return false;
                    l[a * dim + a] = Math.Sqrt(v);
                }
                else l[a * dim + b] = v / l[b * dim + b];
            }
        return true;
    }

    /// <summary>
    /// Weighted k-means from the given centroids [K, dim]: each of <paramref name="iterations"/> rounds assigns every point
    /// to the centroid minimising Σ_d w_pd (x_pd − c_d)² (lowest index on ties), then sets each centroid coordinate to
    /// the weighted mean Σ w_pd x_pd / Σ w_pd of its points; a centroid without points stays as it is. Stops early when
    /// the assignments repeat (the remaining rounds would reproduce the same centroids). Points and weights column-wise.
    /// </summary>
    internal static void WeightedKMeans(ReadOnlySpan<double> xs, ReadOnlySpan<double> ws, int count, int dim, Span<double> centroids, int iterations, KMeansWorkspace? workspace = null)
    {
        int k = centroids.Length / dim;
        workspace ??= new KMeansWorkspace(count, dim, k);
        var assign = workspace.Assign.AsSpan(0, count);
        var previous = workspace.Previous.AsSpan(0, count);
        var sums = workspace.Sums.AsSpan(0, 2 * k * dim);
        for (int it = 0; it < iterations; it++)
        {
            Assign(xs, ws, count, dim, centroids, assign);
            if (it > 0 && assign.SequenceEqual(previous)) break;
            sums.Clear();
            var sw = sums[..(k * dim)];
            var swx = sums[(k * dim)..];
            for (int d = 0; d < dim; d++)
            {
                var x = xs.Slice(d * count, count);
                var w = ws.Slice(d * count, count);
                for (int p = 0; p < count; p++)
                {
                    int slot = assign[p] * dim + d;
                    sw[slot] += w[p];
                    swx[slot] += w[p] * x[p];
                }
            }
            for (int s = 0; s < k * dim; s++)
                if (sw[s] > 0) centroids[s] = swx[s] / sw[s];
            assign.CopyTo(previous);
        }
    }

    /// <summary>The E-step: nearest centroid of every point, vectorised over points.</summary>
    private static void Assign(ReadOnlySpan<double> xs, ReadOnlySpan<double> ws, int count, int dim, ReadOnlySpan<double> centroids, Span<int> assign)
    {
        int k = centroids.Length / dim, lanes = Vector<double>.Count, p = 0;
        Span<Vector<double>> xv = stackalloc Vector<double>[4];
        Span<Vector<double>> wv = stackalloc Vector<double>[4];
        for (; p + lanes <= count; p += lanes)
        {
            for (int d = 0; d < dim; d++)
            {
                xv[d] = new Vector<double>(xs.Slice(d * count + p, lanes));
                wv[d] = new Vector<double>(ws.Slice(d * count + p, lanes));
            }
            var best = new Vector<double>(double.PositiveInfinity);
            var bestK = Vector<double>.Zero;
            for (int c = 0; c < k; c++)
            {
                var dist = Vector<double>.Zero;
                for (int d = 0; d < dim; d++)
                {
                    var diff = xv[d] - new Vector<double>(centroids[c * dim + d]);
                    dist += wv[d] * (diff * diff);
                }
                var less = Vector.LessThan(dist, best);
                best = Vector.ConditionalSelect(less, dist, best);
                bestK = Vector.ConditionalSelect(less, new Vector<double>(c), bestK);
            }
            for (int l = 0; l < lanes; l++) assign[p + l] = (int)bestK[l];
        }
        Span<double> x = stackalloc double[4];
        Span<double> w = stackalloc double[4];
        for (; p < count; p++)
        {
            for (int d = 0; d < dim; d++) { x[d] = xs[d * count + p]; w[d] = ws[d * count + p]; }
            assign[p] = Nearest(x[..dim], centroids, w[..dim], k, dim);
        }
    }

    /// <summary>
    /// Symmetric integer compression of one codebook in place (the reference's quantize_centroids per codebook):
    /// scale = max|c| / (2^(bits−1) − 1) rounded to float32, code = clamp(round(c/scale)) (half to even), c ← code·scale.
    /// An all-zero codebook gets scale 0 and codes 0. Returns the scale.
    /// </summary>
    internal static float CompressCodebook(Span<double> values, int bits, Span<sbyte> codes)
    {
        int imax = (1 << (bits - 1)) - 1, imin = -(1 << (bits - 1));
        double max = TensorPrimitives.MaxMagnitude<double>(values);
        max = Math.Abs(max);
        float scale = (float)(max / imax);
        for (int s = 0; s < values.Length; s++)
        {
            int code = scale == 0 ? 0 : (int)Math.Clamp(Math.Round(values[s] / scale, MidpointRounding.ToEven), imin, imax);
            codes[s] = (sbyte)code;
            values[s] = code * (double)scale;
        }
        return scale;
    }

    /// <summary>Scratch of one worker building normal-matrix blocks.</summary>
    private sealed class PairWorkspace(int kd, int cpg)
    {
        public readonly double[] T = new double[kd * cpg];
        public readonly double[] Block = new double[kd * kd];
        public readonly bool[] Used = new bool[kd];
        public readonly int[] List = new int[kd];
        public readonly int[] Row = new int[cpg];
    }

    private readonly record struct MStepOutcome(double Before, double After, int Rejected, int Ridged);

    /// <summary>
    /// The exact codebook update. For row group r with unknowns c (p = (column group·K + k)·D + d, the row group's
    /// codebooks in storage order), Q's row i is E_i c with E_i one-hot, and
    /// f(c) = Σ_i (w_i − E_i c)ᵀ H (w_i − E_i c) = cᵀ N c − 2 bᵀ c + const, N = Σ_i E_i H E_iᵀ, b = Σ_i E_i H w_i.
    /// N is built block by block: for column groups g ≥ g′ and a row i, T[l][j] = Σ_{j′ ∈ g′, label(j′) = l} H[j′, j]
    /// (contiguous row adds of H) and then N[label(j), (g′, l)] += T[l][j]; the other triangle is mirrored.
    /// </summary>
    private static MStepOutcome UpdateCodebooks(Tensor<double> w0, Tensor<double> h, Layout layout, byte[] indices,
        double[] centroids, int codebookBits, sbyte[]? codes, float[]? scales)
    {
        int m = layout.M, n = layout.N, dim = layout.D, kd = layout.CodebookLength, cpg = layout.Cpg, nv = layout.VectorsPerRow;
        int groups = layout.ColGroups, p = groups * kd, rpg = layout.Rpg;
        long matrixBytes = (long)p * p * sizeof(double);
        // Enough rows per pass over H that reading H is amortised, within ~256 MB of normal matrices.
        int batch = Math.Clamp((64 + rpg - 1) / rpg, 1, layout.RowGroups);
        while (batch > 1 && batch * matrixBytes > (256L << 20)) batch--;
        var pairs = new List<(int G, int Gp)>();
        for (int g = 0; g < groups; g++)
            for (int gp = 0; gp <= g; gp++) pairs.Add((g, gp));

        double before = 0, after = 0;
        int rejected = 0, ridged = 0;
        var normals = new Tensor<double>[batch];
        var rhs = new double[batch][];
        var constants = new double[batch];
        for (int t = 0; t < batch; t++) { normals[t] = Tensor<double>.Zeros(p, p); rhs[t] = new double[p]; }
        using var y = Tensor<double>.Uninitialized(Math.Min(m, batch * rpg), n);
        var c0 = new double[p];
        var gradient = new double[p];
        var solution = new double[p];
        var scratchCodes = new sbyte[kd];
        try
        {
            for (int rgStart = 0; rgStart < layout.RowGroups; rgStart += batch)
            {
                int rgEnd = Math.Min(layout.RowGroups, rgStart + batch);
                int r0 = rgStart * rpg, r1 = Math.Min(m, rgEnd * rpg), rows = r1 - r0;
                for (int t = 0; t < rgEnd - rgStart; t++) { normals[t].Span.Clear(); Array.Clear(rhs[t]); constants[t] = 0; }

                Parallel.For(0, pairs.Count, () => new PairWorkspace(kd, cpg), (pi, _, local) =>
                {
                    var (g, gp) = pairs[pi];
                    int a0 = g * cpg, a1 = Math.Min(n, a0 + cpg), wa = a1 - a0;
                    int b0 = gp * cpg, b1 = Math.Min(n, b0 + cpg);
                    var tBuf = local.T.AsSpan();
                    var blockSpan = local.Block.AsSpan();
                    for (int i = r0; i < r1; i++)
                    {
                        long rowBase = (long)i * nv;
                        int used = 0;
                        for (int jp = b0; jp < b1; jp++)
                        {
                            int label = indices[rowBase + jp / dim] * dim + jp % dim;
                            var target = tBuf.Slice(label * cpg, wa);
                            var hRow = h.Row(jp).Slice(a0, wa);
                            if (!local.Used[label])
                            {
                                local.Used[label] = true;
                                local.List[used++] = label;
                                hRow.CopyTo(target);
                            }
                            else TensorPrimitives.Add(target, hRow, target);
                        }
                        for (int j = a0; j < a1; j++)
                            local.Row[j - a0] = (indices[rowBase + j / dim] * dim + j % dim) * kd;
                        // Into a small dense kd×kd block first: N's rows are P apart (often a power of two), and
                        // scattering straight into them thrashes the cache sets.
                        for (int q = 0; q < used; q++)
                        {
                            int label = local.List[q];
                            local.Used[label] = false;
                            var tl = tBuf.Slice(label * cpg, wa);
                            for (int j = 0; j < wa; j++) blockSpan[local.Row[j] + label] += tl[j];
                        }
                        if (i + 1 == r1 || (i + 1) % rpg == 0)
                        {
                            var nSpan = normals[i / rpg - rgStart].Span;
                            for (int a = 0; a < kd; a++)
                            {
                                var dst = nSpan.Slice((g * kd + a) * p + gp * kd, kd);
                                TensorPrimitives.Add(dst, blockSpan.Slice(a * kd, kd), dst);
                            }
                            blockSpan.Clear();
                        }
                    }
                    return local;
                }, _ => { });

                // b and the constant from Y = W₀[rows] H.
                Blas.Dgemm(Transpose.No, Transpose.No, rows, n, n, 1.0, w0.Span[(r0 * n)..], n, h.Span, n, 0.0, y.Span, n);
                for (int i = r0; i < r1; i++)
                {
                    int t = i / rpg - rgStart;
                    var yRow = y.Row(i - r0);
                    var wRow = w0.Row(i);
                    var bt = rhs[t];
                    long rowBase = (long)i * nv;
                    double s = 0;
                    for (int j = 0; j < n; j++)
                    {
                        bt[j / cpg * kd + indices[rowBase + j / dim] * dim + j % dim] += yRow[j];
                        s += yRow[j] * wRow[j];
                    }
                    constants[t] += s;
                }

                for (int rg = rgStart; rg < rgEnd; rg++)
                {
                    int t = rg - rgStart;
                    var nt = normals[t];
                    var ns = nt.Span;
                    // Mirror the blocks below the diagonal (g > g′) into the ones above it.
                    for (int g = 0; g < groups; g++)
                        for (int gp = 0; gp < g; gp++)
                            for (int a = 0; a < kd; a++)
                                for (int c = 0; c < kd; c++)
                                    ns[(gp * kd + c) * p + g * kd + a] = ns[(g * kd + a) * p + gp * kd + c];
                    var bt = rhs[t];
                    Array.Copy(centroids, (long)rg * p, c0, 0, p);
                    // gradient/2 = N c0 − b, f(c0) = c0ᵀ N c0 − 2 bᵀ c0 + const.
                    double f0 = constants[t];
                    for (int a = 0; a < p; a++)
                    {
                        double nc = TensorPrimitives.Dot(ns.Slice(a * p, p), c0);
                        gradient[a] = nc - bt[a];
                        f0 += c0[a] * (nc - 2 * bt[a]);
                    }
                    before += f0;
                    bool ridge = SolveNormalEquations(nt, bt, c0, solution);
                    if (ridge) ridged++;
                    if (codebookBits > 0)
                        for (int g = 0; g < groups; g++)
                            CompressCodebook(solution.AsSpan(g * kd, kd), codebookBits, scratchCodes);
                    // f(c) − f(c0) = δᵀ N δ + 2 δᵀ (N c0 − b), δ = c − c0 (no cancellation against the constant).
                    double change = 0;
                    for (int a = 0; a < p; a++)
                    {
                        double da = solution[a] - c0[a];
                        if (da == 0) continue;
                        double nd = 0;
                        var nrow = ns.Slice(a * p, p);
                        for (int c = 0; c < p; c++) nd += nrow[c] * (solution[c] - c0[c]);
                        change += da * (nd + 2 * gradient[a]);
                    }
                    if (change <= 0 && double.IsFinite(change))
                    {
                        after += f0 + change;
                        Array.Copy(solution, 0, centroids, (long)rg * p, p);
                        if (codebookBits > 0)
                            for (int g = 0; g < groups; g++)
                            {
                                int cb = rg * groups + g;
                                scales![cb] = CompressCodebook(centroids.AsSpan(cb * kd, kd), codebookBits, codes.AsSpan(cb * kd, kd));
                            }
                    }
                    else
                    {
                        after += f0;
                        rejected++;
                    }
                }
            }
        }
        finally
        {
            foreach (var t in normals) t?.Dispose();
        }
        return new MStepOutcome(before, after, rejected, ridged);
    }

    /// <summary>
    /// Solves N c = b (N symmetric positive semi-definite) by Cholesky on a copy. An unknown with N_pp = 0 (a centroid no
    /// weight with H_jj ≠ 0 uses) is pinned to its current value. If the Cholesky still fails, a ridge of
    /// 1e-12·mean(diag N), growing 100-fold, is added (at most five times; then the current values are returned).
    /// Returns whether a ridge was needed.
    /// </summary>
    private static bool SolveNormalEquations(Tensor<double> normal, double[] b, double[] current, double[] solution)
    {
        int p = b.Length;
        var ns = normal.Span;
        double mean = 0;
        for (int a = 0; a < p; a++) mean += ns[a * p + a];
        mean = mean > 0 ? mean / p : 1;
        using var l = Tensor<double>.Uninitialized(p, p);
        for (int attempt = 0; attempt <= 5; attempt++)
        {
            double ridge = attempt == 0 ? 0 : 1e-12 * Math.Pow(100, attempt - 1) * mean;
            ns.CopyTo(l.Span);
            var ls = l.Span;
            for (int a = 0; a < p; a++)
            {
                if (ns[a * p + a] == 0) { ls[a * p + a] = 1; solution[a] = current[a]; }
                else { ls[a * p + a] += ridge; solution[a] = b[a]; }
            }
            try
            {
                Lapack.CholeskyInPlace(l);
            }
            catch (LapackException e) when (e.Info > 0)
            {
                continue;
            }
            // L y = rhs, then Lᵀ c = y (row-oriented both ways).
            for (int a = 0; a < p; a++)
                solution[a] = (solution[a] - TensorPrimitives.Dot(ls.Slice(a * p, a), solution.AsSpan(0, a))) / ls[a * p + a];
            for (int a = p - 1; a >= 0; a--)
            {
                solution[a] /= ls[a * p + a];
                double xa = solution[a];
                if (a > 0) TensorPrimitives.MultiplyAdd(ls.Slice(a * p, a), -xa, solution.AsSpan(0, a), solution.AsSpan(0, a));
            }
            return attempt > 0;
        }
        current.CopyTo(solution, 0);
        return true;
    }
}
