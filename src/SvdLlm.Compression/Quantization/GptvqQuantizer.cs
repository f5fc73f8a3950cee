using System.Globalization;
using System.Text.Json.Nodes;
using SvdLlm.Models.Checkpoints;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Quantization;

/// <summary>
/// GPTVQ (<see cref="Gptvq"/>) as a <see cref="MatrixQuantizer"/>: run by the sequential calibration like GPTQ, stored in
/// this project's VQ layout (<see cref="VqLayout"/>: bit-packed indices, int8 codebooks with a float32 scale each).
/// </summary>
public sealed class GptvqQuantizer : MatrixQuantizer
{
    private readonly GptvqOptions _options;

    public GptvqQuantizer(GptvqOptions options)
    {
        options.Check();
        _options = options;
    }

    public override string Name => "gptvq";
    public override bool NeedsHessian => true;
    public override int Bits => _options.Bits;

    public override (IQuantizedMatrix Matrix, QuantizationOutcome? Outcome) Quantize(Tensor<double> w, Tensor<double>? h)
    {
        var r = Gptvq.Quantize(w, h ?? throw new ArgumentNullException(nameof(h), "GPTVQ needs H"), _options);
        string? note = r.Note;
        if (r.MStepObjectiveBefore is double before && r.MStepObjectiveAfter is double after && before > 0)
            note = (note is null ? "" : note + "; ") + $"codebook update: tr(E H Eᵀ) {before:G4} → {after:G4} ({100 * (after / before - 1):F1} %)";
        return (new StoredVqMatrix(r.Matrix), new QuantizationOutcome(r.Loss, r.Damping, r.DeadColumns, note));
    }

    public override void CheckShape(string name, int rows, int cols)
    {
        if (cols % _options.VqDim != 0)
            throw new ArgumentException($"{name}: {cols} input columns are not a multiple of the vector dimension {_options.VqDim}");
    }

    public override long StoredBytes(int rows, int cols)
        => LayoutBytes(rows, cols, _options.VqDim, _options.Bits, VqLayout.Codebooks(rows, cols, _options.RowsPerCodebook, _options.ColumnsPerGroup),
            _options.Centroids, _options.CodebookBits);

    /// <summary>
    /// Bytes of one matrix in the VQ layout: the 16-byte grid, the bit-packed indices, and the codebooks (int8 with a
    /// float32 scale each, or float32 entries when <paramref name="codebookBits"/> is 0).
    /// </summary>
    private static long LayoutBytes(int rows, int cols, int d, int bits, int books, int centroids, int codebookBits)
    {
        long entries = (long)books * centroids * d;
        return 16 + (long)rows * VqLayout.PackedRowBytes(cols / d, bits * d) + (codebookBits > 0 ? entries + 4L * books : 4 * entries);
    }

    public override JsonObject QuantizationConfig(string method)
    {
        var config = new JsonObject
        {
            // Not a format the Hugging Face stack knows: this project's own layout, described in docs/QUANTIZATION.md.
            ["quant_method"] = "svdllm_vq",
            ["layout"] = "per linear: vq_grid [D, rows per codebook, columns per codebook, bits], vq_indices (packed), vq_codebooks, vq_scales",
            ["svdllm_method"] = method,
        };
        foreach (var (k, v) in Settings()) config[k] = v?.DeepClone();
        return config;
    }

    public override JsonObject Settings() => new()
    {
        ["bits"] = _options.Bits,
        ["vq_dim"] = _options.VqDim,
        ["group_size"] = _options.EffectiveGroupSize,
        ["columns_per_group"] = _options.ColumnsPerGroup,
        ["codebook_bits"] = _options.CodebookBits,
        ["kmeans_iters"] = _options.KMeansIterations,
        ["m_step"] = _options.IncludeMStep,
        ["weighting"] = _options.Weighting.ToString().ToLowerInvariant(),
        ["damp_percent"] = _options.PercentDamping,
        ["block_size"] = _options.BlockSize,
        ["expected_bits_per_value"] = Math.Round(VqMatrix.ExpectedBitsPerValue(_options), 4),
    };

    /// <summary>A GPTVQ result with its VQ-layout tensors.</summary>
    private sealed class StoredVqMatrix(VqMatrix m) : IQuantizedMatrix
    {
        public int Rows => m.Rows;
        public int Cols => m.Cols;
        public int Groups => m.CodebookCount;
        public Tensor<double> Dequantize() => m.Dequantize();

        private int IndexBits => m.Bits * m.VqDim;

        public long StoredBytes => LayoutBytes(m.Rows, m.Cols, m.VqDim, m.Bits, m.CodebookCount, m.Centroids, m.CodebookBits);

        public IReadOnlyList<WriterTensor> LayoutTensors(string name)
        {
            int k = m.Centroids, d = m.VqDim, books = m.CodebookCount;
            var tensors = new List<WriterTensor>
            {
                WriterTensor.Int32(name + ".vq_grid", [4], () => [d, m.RowsPerCodebook, m.ColumnsPerGroup, m.Bits]),
                WriterTensor.Bytes(name + ".vq_indices", SafeTensorsDType.U8, [m.Rows, VqLayout.PackedRowBytes(m.Cols / d, IndexBits)],
                    () => VqLayout.PackIndices(m.Indices, m.Rows, m.Cols / d, IndexBits)),
            };
            if (m.CodebookBits > 0)
            {
                tensors.Add(WriterTensor.Bytes(name + ".vq_codebooks", SafeTensorsDType.I8, [books, k, d], () => m.CodebookCodes!.Select(c => unchecked((byte)c)).ToArray()));
                tensors.Add(new WriterTensor(name + ".vq_scales", SafeTensorsDType.F32, [books], m.CodebookScales!));
            }
            else
                tensors.Add(WriterTensor.Lazy(name + ".vq_codebooks", SafeTensorsDType.F32, [books, k, d], () => m.CentroidValues.Select(v => (float)v).ToArray()));
            return tensors;
        }
    }

    /// <summary>"GPTVQ 2-bit D2" plus what differs from the defaults.</summary>
    public string Label
    {
        get
        {
            var defaults = new GptvqOptions { Bits = _options.Bits, VqDim = _options.VqDim };
            var parts = new List<string> { $"GPTVQ {_options.Bits}-bit D{_options.VqDim}" };
            if (_options.EffectiveGroupSize != defaults.EffectiveGroupSize) parts.Add($"g{_options.EffectiveGroupSize}");
            if (_options.ColumnsPerGroup != defaults.ColumnsPerGroup) parts.Add($"c{_options.ColumnsPerGroup}");
            if (_options.CodebookBits != defaults.CodebookBits) parts.Add(_options.CodebookBits == 0 ? "float codebooks" : $"{_options.CodebookBits}-bit codebooks");
            if (_options.KMeansIterations != defaults.KMeansIterations) parts.Add($"{_options.KMeansIterations} iters");
            if (!_options.IncludeMStep) parts.Add("no update");
            if (_options.Weighting != defaults.Weighting) parts.Add(_options.Weighting.ToString().ToLowerInvariant());
            if (_options.PercentDamping != defaults.PercentDamping) parts.Add($"damp {_options.PercentDamping.ToString("G3", CultureInfo.InvariantCulture)}");
            return string.Join(" ", parts);
        }
    }
}
