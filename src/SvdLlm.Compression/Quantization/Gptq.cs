using SvdLlm.Numerics;

namespace SvdLlm.Compression.Quantization;

/// <summary>GPTQ's settings (defaults of the reference's LLaMA script: 1 % relative damping, blocks of 128, whole-row groups).</summary>
public sealed record GptqOptions
{
    public int Bits { get; init; } = 4;

    /// <summary>Columns per group (one scale and zero per row and group); ≤ 0 means one group per row.</summary>
    public int GroupSize { get; init; } = -1;

    /// <summary>Quantize columns in order of decreasing H_jj (the reference's --act-order).</summary>
    public bool ActOrder { get; init; }

    /// <summary>Group parameters fitted up front on the original W in original column order (--static-groups).</summary>
    public bool StaticGroups { get; init; }

    public bool Symmetric { get; init; }

    /// <summary>Lazy-update block width; the result does not depend on it (see <see cref="Gptq"/>).</summary>
    public int BlockSize { get; init; } = 128;

    /// <summary>Damping λ = PercentDamping · mean(diag H) added to H's diagonal.</summary>
    public double PercentDamping { get; init; } = 0.01;

    public void Check()
    {
        UniformGrid.CheckBits(Bits);
        if (BlockSize < 1) throw new ArgumentOutOfRangeException(nameof(BlockSize), $"block size must be ≥ 1, got {BlockSize}");
        if (!(PercentDamping > 0 && PercentDamping < 1)) throw new ArgumentOutOfRangeException(nameof(PercentDamping), $"relative damping must be in (0, 1), got {PercentDamping}");
        if (StaticGroups && GroupSize <= 0) throw new ArgumentException("static groups need a group size");
    }
}

/// <summary>
/// A quantized W [m, n]: integer codes per weight (original column order), and per group and row a scale and an
/// integer zero; column c belongs to group <see cref="GroupIndex"/>[c]. <see cref="Dequantize"/> gives W'.
/// </summary>
public sealed class QuantizedMatrix(int bits, byte[] codes, int rows, int cols, double[] scales, int[] zeros, int[] groupIndex) : IQuantizedMatrix
{
    public int Bits { get; } = bits;
    public int Rows { get; } = rows;
    public int Cols { get; } = cols;

    /// <summary>Codes [rows, cols] row-major, each in 0..2^bits − 1 (with mixed widths, <see cref="Bits"/> is the widest).</summary>
    public byte[] Codes { get; } = codes;

    /// <summary>Scales [groups, rows] (the GPTQ layout's order).</summary>
    public double[] Scales { get; } = scales;

    /// <summary>Zero points [groups, rows].</summary>
    public int[] Zeros { get; } = zeros;

    /// <summary>The group of each input column (GPTQ's g_idx).</summary>
    public int[] GroupIndex { get; } = groupIndex;

    public int Groups => Scales.Length / Rows;

    public double Value(int row, int col)
    {
        int g = GroupIndex[col];
        return UniformGrid.Value(Codes[(long)row * Cols + col], Scales[g * Rows + row], Zeros[g * Rows + row]);
    }

    public Tensor<double> Dequantize() => QuantizedValues.Dense(Rows, Cols, Value);

    public long StoredBytes => LayoutBytes(Rows, Cols, Groups, Bits);

    /// <summary>Bytes of one linear [out, in] in the GPTQ layout: qweight, qzeros (int32), scales (float16), g_idx (int32).</summary>
    public static long LayoutBytes(int outFeatures, int inFeatures, int groups, int bits)
        => 4L * inFeatures / 32 * bits * outFeatures + 4L * groups * outFeatures / 32 * bits + 2L * groups * outFeatures + 4L * inFeatures;

    /// <summary>The four GPTQ-layout tensors of this matrix [out, in] under module <paramref name="name"/>.</summary>
    public IReadOnlyList<SvdLlm.Models.Checkpoints.WriterTensor> LayoutTensors(string name)
    {
        int outF = Rows, inF = Cols, bits = Bits, groups = Groups;
        return
        [
            SvdLlm.Models.Checkpoints.WriterTensor.Int32(name + ".qweight", [inF / 32 * bits, outF], () =>
            {
                // The layout packs W transposed ([in, out]) along the input axis.
                var t = new int[(long)inF * outF];
                for (int o = 0; o < outF; o++)
                    for (int i = 0; i < inF; i++) t[(long)i * outF + o] = Codes[(long)o * inF + i];
                return SvdLlm.Models.Checkpoints.GptqLayout.PackRows(t, inF, outF, bits);
            }),
            SvdLlm.Models.Checkpoints.WriterTensor.Int32(name + ".qzeros", [groups, outF / 32 * bits], () =>
                SvdLlm.Models.Checkpoints.GptqLayout.PackCols(Zeros.Select(z => z - SvdLlm.Models.Checkpoints.GptqLayout.StoredZeroOffset).ToArray(), groups, outF, bits)),
            SvdLlm.Models.Checkpoints.WriterTensor.Lazy(name + ".scales", SvdLlm.Models.Checkpoints.SafeTensorsDType.F16, [groups, outF], () => Scales.Select(s => (float)s).ToArray()),
            SvdLlm.Models.Checkpoints.WriterTensor.Int32(name + ".g_idx", [inF], () => GroupIndex),
        ];
    }
}

/// <summary>What GPTQ produced for one matrix, with what it had to do to get there.</summary>
/// <param name="Loss">Σ over weights of (w − q)²/(2 [H⁻¹ Cholesky]_jj²) = ½ tr(E H_damped Eᵀ), E = W − W'</param>
/// <param name="Damping">the damping λ finally added to diag H (raised when a Cholesky failed)</param>
/// <param name="Note">what was regularised (dead inputs, raised damping), for the report; null when nothing was</param>
public sealed record GptqResult(QuantizedMatrix Matrix, double Loss, double Damping, int DeadColumns, string? Note);

/// <summary>
/// What ImPart-Qt (Yang, Li et al., "ImPart", ACL 2025, Algorithm 2) asks of GPTQ beyond the plain algorithm, for the
/// sparse factors of a compressed delta: a mask of the entries that are stored (the rest are quantized to exactly 0,
/// and their current values, after earlier columns' updates, are error the later columns compensate), and mixed
/// precision: a bit width per row (the V factor, one row per singular vector) or per column (the U factor, one column
/// per singular vector). With per-column widths a group never spans two widths: a new group starts where the width
/// changes, then every group-size columns within a run.
/// </summary>
/// <param name="Keep">[rows·cols] row-major, true where the entry is stored; null keeps every entry.</param>
/// <param name="RowBits">[rows] bit width of each row; null uses the options' (or the column's) width.</param>
/// <param name="ColumnBits">[cols] bit width of each column (original order); needs dynamic groups without act-order.</param>
public sealed record GptqEntryPlan(bool[]? Keep = null, int[]? RowBits = null, int[]? ColumnBits = null)
{
    internal void Check(int rows, int cols, GptqOptions options)
    {
        if (Keep is not null && Keep.LongLength != (long)rows * cols)
            throw new ArgumentException($"the GPTQ mask has {Keep.LongLength} entries for a [{rows}, {cols}] matrix");
        if (RowBits is not null && RowBits.Length != rows) throw new ArgumentException($"{RowBits.Length} row bit widths for {rows} rows");
        if (ColumnBits is not null && ColumnBits.Length != cols) throw new ArgumentException($"{ColumnBits.Length} column bit widths for {cols} columns");
        if (RowBits is not null && ColumnBits is not null) throw new ArgumentException("bit widths per row or per column, not both");
        foreach (int b in (RowBits ?? []).Concat(ColumnBits ?? [])) UniformGrid.CheckBits(b);
        if (ColumnBits is not null && (options.ActOrder || options.StaticGroups))
            throw new ArgumentException("per-column bit widths need groups fitted in column order as they come (no act-order, no static groups)");
    }
}

/// <summary>
/// GPTQ (Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained Transformers", 2022):
/// min ‖(W − Q)X‖² column by column with optimal-brain-surgeon updates of the columns not yet quantized, through the
/// upper Cholesky factor U of H⁻¹ (H = X Xᵀ up to scale, damped), with lazy block updates.
/// <para>
/// Resolved ambiguity (docs/QUANTIZATION.md): with groups, a group's scale and zero are fitted on its columns' current
/// values, i.e. after every update from the columns already quantized. The reference fits them on the block-start copy
/// of W, which is the same thing when the group size is a multiple of the block size (its default 128/128) and makes Q
/// depend on the block size otherwise. Here a block also ends where a group starts, so Q never depends on the block size.
/// </para>
/// All arithmetic is float64: U's diagonal enters every update and H is as ill-conditioned as C.
/// </summary>
public static class Gptq
{
    /// <summary>Quantizes W [m, n] against H [n, n] (symmetric positive semi-definite, any scale). W and H are not modified.</summary>
    public static GptqResult Quantize(Tensor<double> w, Tensor<double> h, GptqOptions options) => Quantize(w, h, options, null);

    /// <summary>
    /// GPTQ with an entry plan (<see cref="GptqEntryPlan"/>): entries outside the plan's mask are forced to exactly 0, and
    /// the bit width may differ per row or per run of columns. A null plan, or one with an all-true mask and no bit
    /// overrides, gives exactly <see cref="Quantize(Tensor{double}, Tensor{double}, GptqOptions)"/>'s result.
    /// </summary>
    public static GptqResult Quantize(Tensor<double> w, Tensor<double> h, GptqOptions options, GptqEntryPlan? plan)
    {
        options.Check();
        int m = w.Rows, n = w.Cols;
        if (h.Rows != n || h.Cols != n) throw new ArgumentException($"H {h.ShapeString} does not match W {w.ShapeString}");
        plan?.Check(m, n, options);
        var keep = plan?.Keep;
        var rowBits = plan?.RowBits;
        var columnBits = plan?.ColumnBits;
        // The grid of row i in column c's group: a row's own width, else its column run's, else the options'.
        UniformGrid Grid(int row, int col) => new(rowBits?[row] ?? columnBits?[col] ?? options.Bits, options.Symmetric);
        int g = options.GroupSize > 0 ? Math.Min(options.GroupSize, n) : n;

        // Dead inputs: no calibration token reached column j, so it cannot matter to the objective; zero it.
        var isDead = new bool[n];
        int deadCount = 0;
        for (int j = 0; j < n; j++)
        {
            double hjj = h[j, j];
            if (double.IsNaN(hjj)) throw new ArgumentException($"H[{j},{j}] is NaN");
            if (hjj == 0) { isDead[j] = true; deadCount++; }
        }

        var perm = Enumerable.Range(0, n).ToArray();
        if (options.ActOrder)
        {
            // Decreasing H_jj; ties keep the column order (a stable sort; torch.argsort's order on ties is unspecified).
            var diag = Enumerable.Range(0, n).Select(j => h[j, j]).ToArray();
            perm = [.. perm.OrderByDescending(j => diag[j])];
        }

        // The working copy of W, columns in quantization order, dead ones zeroed.
        using var wp = Tensor<double>.Uninitialized(m, n);
        for (int i = 0; i < m; i++)
        {
            var src = w.Row(i);
            var dst = wp.Row(i);
            for (int j = 0; j < n; j++) dst[j] = isDead[perm[j]] ? 0 : src[perm[j]];
        }

        // Groups in quantization order: consecutive runs of g columns, and with per-column widths also a new group
        // wherever the width changes (one grid never spans two widths). nextStart[j] is the first group start after j.
        bool dynamic = (options.GroupSize > 0 && !options.StaticGroups) || columnBits is not null;
        var groupStarts = new List<int>();
        for (int j = 0, runStart = 0; j < n; j++)
        {
            if (j > 0 && columnBits is not null && columnBits[perm[j]] != columnBits[perm[j - 1]]) runStart = j;
            if (j == 0 || j == runStart || (j - runStart) % g == 0) groupStarts.Add(j);
        }
        int groups = dynamic ? groupStarts.Count : (n + g - 1) / g;
        var nextStart = new int[n];
        for (int k = 0, j = 0; j < n; j++)
        {
            while (k < groupStarts.Count && groupStarts[k] <= j) k++;
            nextStart[j] = k < groupStarts.Count ? groupStarts[k] : n;
        }

        int[] groupIndex;
        double[] scales;
        int[] zeros;
        if (!dynamic)
        {
            // Fitted up front on the original W in column order (the grid starts from [0, 0], so zeroing the dead
            // columns would change nothing): one group per row, or static groups c / g.
            (scales, zeros, groupIndex) = FitGroups(Grid, w, g);
        }
        else
        {
            // Dynamic groups: consecutive in quantization order, fitted when each starts (below).
            scales = new double[groups * m];
            zeros = new int[groups * m];
            groupIndex = new int[n];
            for (int k = 0; k < groupStarts.Count; k++)
                for (int j = groupStarts[k]; j < nextStart[groupStarts[k]]; j++) groupIndex[perm[j]] = k;
        }

        var (u, damping, raised) = UpperCholeskyOfInverse(h, perm, isDead, options.PercentDamping);
        using (u)
        {
            var codes = new byte[(long)m * n];
            double loss = 0;
            int block = options.BlockSize;
            using var w1 = Tensor<double>.Uninitialized(m, Math.Min(block, n));
            using var err = Tensor<double>.Uninitialized(m, Math.Min(block, n));
            var us = u.Span;
            int maxBits = rowBits?.Max() ?? columnBits?.Max() ?? options.Bits;
            for (int i1 = 0; i1 < n;)
            {
                int i2 = Math.Min(n, i1 + block);
                // A group that starts inside the block starts a new block, so its parameters see every update so far.
                if (dynamic)
                {
                    i2 = Math.Min(i2, nextStart[i1]);
                    if (groupStarts.BinarySearch(i1) >= 0)
                        FitGroup(Grid, wp, perm, i1, nextStart[i1], scales, zeros, groupIndex[perm[i1]], m);
                }
                int b = i2 - i1;
                for (int i = 0; i < m; i++) wp.Row(i).Slice(i1, b).CopyTo(w1.Row(i)[..b]);
                for (int j = 0; j < b; j++)
                {
                    int col = i1 + j, original = perm[col];
                    int group = groupIndex[original];
                    double d = us[col * n + col];
                    var uRow = us.Slice(col * n + i1, b);
                    for (int i = 0; i < m; i++)
                    {
                        var row = w1.Row(i);
                        double wv = row[j];
                        double scale = scales[group * m + i];
                        int zero = zeros[group * m + i];
                        var grid = Grid(i, original);
                        // A masked entry is stored as 0 (the zero point's code stands for exactly 0 on every grid); its
                        // current value, moved there by earlier updates, becomes error like any rounding's.
                        int code = keep is null || keep[(long)i * n + original] ? grid.Code(wv, scale, zero) : zero;
                        codes[(long)i * n + original] = (byte)code;
                        double q = UniformGrid.Value(code, scale, zero);
                        double e = (wv - q) / d;
                        loss += e * e / 2;
                        err[i, j] = e;
                        // OBS update of the block's later columns: w_k −= e · U[col, k].
                        if (j + 1 < b)
                            System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(uRow[(j + 1)..], -e, row[(j + 1)..b], row[(j + 1)..b]);
                    }
                }
                // Lazy update of every column after the block: W[:, i2:] −= Err · U[i1:i2, i2:].
                if (i2 < n)
                    Blas.Dgemm(Transpose.No, Transpose.No, m, n - i2, b, -1.0, err.Span, err.Cols, us[(i1 * n + i2)..], n, 1.0, wp.Span[i2..], n);
                i1 = i2;
            }
            string? note = null;
            if (deadCount > 0) note = $"{deadCount} dead input column(s) (H_jj = 0) set to zero";
            if (raised) note = (note is null ? "" : note + "; ") + $"Cholesky failed at {options.PercentDamping:G3} relative damping, raised to λ = {damping:G3}";
            return new GptqResult(new QuantizedMatrix(maxBits, codes, m, n, scales, zeros, groupIndex), loss, damping, deadCount, note);
        }
    }

    /// <summary>Round-to-nearest on the same grid (GPTQ with H = I, or no calibration data).</summary>
    public static QuantizedMatrix RoundToNearest(Tensor<double> w, int bits, int groupSize, bool symmetric)
    {
        UniformGrid.CheckBits(bits);
        int m = w.Rows, n = w.Cols;
        var grid = new UniformGrid(bits, symmetric);
        var (scales, zeros, groupIndex) = FitGroups((_, _) => grid, w, groupSize > 0 ? Math.Min(groupSize, n) : n);
        var codes = new byte[(long)m * n];
        for (int i = 0; i < m; i++)
            for (int c = 0; c < n; c++)
            {
                int k = groupIndex[c];
                codes[(long)i * n + c] = (byte)grid.Code(w[i, c], scales[k * m + i], zeros[k * m + i]);
            }
        return new QuantizedMatrix(bits, codes, m, n, scales, zeros, groupIndex);
    }

    /// <summary>Every group's grid fitted on W as it is, groups of <paramref name="g"/> consecutive columns: scales, zeros, g_idx.</summary>
    private static (double[] Scales, int[] Zeros, int[] GroupIndex) FitGroups(Func<int, int, UniformGrid> grid, Tensor<double> w, int g)
    {
        int m = w.Rows, n = w.Cols, groups = (n + g - 1) / g;
        var scales = new double[groups * m];
        var zeros = new int[groups * m];
        var identity = Enumerable.Range(0, n).ToArray();
        for (int k = 0; k < groups; k++) FitGroup(grid, w, identity, k * g, Math.Min(n, (k + 1) * g), scales, zeros, k, m);
        return (scales, zeros, Enumerable.Range(0, n).Select(c => c / g).ToArray());
    }

    /// <summary>Each row's grid over columns [start, end) of <paramref name="w"/>, whose column j is original column perm[j].</summary>
    private static void FitGroup(Func<int, int, UniformGrid> grid, Tensor<double> w, int[] perm, int start, int end, double[] scales, int[] zeros, int group, int m)
    {
        for (int i = 0; i < m; i++)
        {
            var (scale, zero) = grid(i, perm[start]).Fit(w.Row(i)[start..end]);
            scales[group * m + i] = scale;
            zeros[group * m + i] = zero;
        }
    }

    /// <summary>
    /// U upper triangular with Uᵀ U = (H + λI)⁻¹, λ = percent · mean(diag H), without forming the inverse: with J the
    /// order reversal, the Cholesky factor L̃ of J H J gives H = R Rᵀ with R = J L̃ J upper triangular, so
    /// H⁻¹ = R⁻ᵀ R⁻¹ and U = R⁻¹ (positive diagonal, hence the unique such factor). One Cholesky and one triangular
    /// inverse, 2n³/3 flops, where the reference's chol → inverse → chol costs about 2.7n³ and squares H's condition
    /// number on the way. When the Cholesky fails the damping is raised tenfold (at most four times) and the result says
    /// so; the reference has no fallback and stops.
    /// </summary>
    internal static (Tensor<double> U, double Damping, bool Raised) UpperCholeskyOfInverse(Tensor<double> h, int[] perm, bool[] dead, double percent)
    {
        int n = h.Rows;
        // H_p = H[perm, perm] with a dead input's diagonal set to 1 (the reference's H[dead, dead] = 1).
        double mean = 0;
        for (int j = 0; j < n; j++) mean += dead[j] ? 1 : h[j, j];
        mean /= n;
        for (int attempt = 0; ; attempt++)
        {
            double damping = percent * Math.Pow(10, attempt) * mean;
            // One n×n float64 buffer (an 11008² one is 969 MB) on top of the caller's H: J H_p J + λI, factored and
            // inverted in place.
            var t = Tensor<double>.Uninitialized(n, n);
            try
            {
                for (int i = 0; i < n; i++)
                {
                    int a = perm[n - 1 - i];
                    var src = h.Row(a);
                    var dst = t.Row(i);
                    for (int j = 0; j < n; j++) dst[j] = src[perm[n - 1 - j]];
                    if (dead[a]) dst[i] = 1;
                    dst[i] += damping;
                }
                Lapack.CholeskyInPlace(t);
                // R = J L̃ J (upper), then U = R⁻¹.
                var span = t.Span;
                for (int x = 0, y = span.Length - 1; x < y; x++, y--) (span[x], span[y]) = (span[y], span[x]);
                Lapack.InvertTriangular(t, upper: true);
                return (t, damping, attempt > 0);
            }
            catch (LapackException e) when (e.Info > 0 && attempt < 4)
            {
                t.Dispose();
            }
            catch
            {
                t.Dispose();
                throw;
            }
        }
    }
}
