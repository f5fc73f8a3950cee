using SvdLlm.Models.Checkpoints;
using SvdLlm.Numerics;
using SvdLlm.Numerics.Backends;

namespace SvdLlm.Models.Architectures;

/// <summary>Sees the input of every linear during a forward pass (calibration statistics hook).</summary>
public interface ILinearObserver
{
    /// <summary>x is [rows, linear.InFeatures], valid only during the call.</summary>
    void OnInput(Linear linear, ReadOnlySpan<float> x, int rows);
}

/// <summary>
/// y = x·Wᵀ + b for a Hugging Face linear (W is [out, in]), stored either dense or low-rank as
/// W ≈ U·V with U [out, k] and V [k, in], computed as two GEMMs y = (x·Vᵀ)·Uᵀ.
/// In a checkpoint the low-rank form of "…q_proj" is "…q_u_proj.weight" (U) and
/// "…q_v_proj.weight" (V) with the bias on "…q_u_proj.bias" (the SVD-LLM reference's module names).
/// Weights are read from the checkpoint on first use and can be released again, so a model larger
/// than memory can be walked layer by layer.
/// </summary>
public sealed class Linear : IDisposable
{
    private Tensor<float>? _weight, _u, _v, _bias;

    /// <summary>Hugging Face module name, e.g. "model.layers.3.self_attn.q_proj".</summary>
    public string Name { get; }

    /// <summary>Linears fed the same activations share this key (q/k/v; gate/up), so statistics are gathered once.</summary>
    public string InputKey { get; }

    /// <summary>The linear's type across layers ("q_proj", "fc1"): the grouping SVD-LLM V2 allocates over.</summary>
    public string Kind { get; }

    public int InFeatures { get; }
    public int OutFeatures { get; }
    public bool HasBias { get; }

    /// <summary>Rank k of the low-rank form, or null when dense.</summary>
    public int? Rank { get; private set; }

    public bool IsLowRank => Rank is not null;

    public long ParameterCount => (Rank is int k ? (long)k * (InFeatures + OutFeatures) : (long)InFeatures * OutFeatures) + (HasBias ? OutFeatures : 0);

    /// <summary>Parameters of the dense form, whatever the current storage.</summary>
    public long DenseParameterCount => (long)InFeatures * OutFeatures + (HasBias ? OutFeatures : 0);

    public bool IsLoaded => _weight is not null || _u is not null;

    internal Linear(string name, string inputKey, int inFeatures, int outFeatures, bool hasBias, int? rank)
    {
        Name = name;
        InputKey = inputKey;
        Kind = name[(name.LastIndexOf('.') + 1)..];
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        HasBias = hasBias;
        Rank = rank;
    }

    /// <summary>Checkpoint name of U for the low-rank form of <paramref name="name"/> ("q_proj" → "q_u_proj", "fc1" → "fc1_u_proj").</summary>
    public static string UName(string name) => FactorName(name, "u");

    /// <summary>Checkpoint name of V for the low-rank form of <paramref name="name"/>.</summary>
    public static string VName(string name) => FactorName(name, "v");

    private static string FactorName(string name, string factor)
        => name.EndsWith("_proj", StringComparison.Ordinal) ? $"{name[..^5]}_{factor}_proj" : $"{name}_{factor}_proj";

    /// <summary>
    /// Describes the linear <paramref name="name"/> as the checkpoint stores it: dense "name.weight", or
    /// low-rank "U"/"V" factors. The rank is read from the header, no data is loaded.
    /// </summary>
    internal static Linear FromCheckpoint(CheckpointReader reader, string name, string inputKey, int inFeatures, int outFeatures, bool bias)
    {
        string dense = name + ".weight", u = UName(name) + ".weight", v = VName(name) + ".weight";
        int? rank = null;
        int? bits = null;
        if (VqLayout.IsVq(reader, name))
        {
            // Vector-quantized (Checkpoints/VqLayout, GPTVQ): dequantized to float32 when loaded.
            bits = VqLayout.Grid(reader, name, outFeatures, inFeatures).Bits;
            return new Linear(name, inputKey, inFeatures, outFeatures, bias, null) { QuantizedBits = bits, VectorQuantized = true }.RequireBias(reader, bias);
        }
        if (RemapLayout.IsRemapped(reader, UName(name)))
        {
            // Dobi-SVD's remapped factors (Checkpoints/RemapLayout): 8-bit codes dequantized to float32 factors when loaded.
            rank = RemapLayout.Rank(reader, UName(name), outFeatures, inFeatures);
            if (bias) reader.RequireShape(BiasName(name, true), outFeatures);
            return new Linear(name, inputKey, inFeatures, outFeatures, bias, rank) { QuantizedBits = 8, Remapped = true };
        }
        if (reader.Contains(name + ".qweight"))
        {
            // GPTQ layout (Checkpoints/GptqLayout): dequantized to float32 when loaded.
            bits = GptqLayout.BitsOf(reader, name, inFeatures);
        }
        else if (reader.Contains(UName(name) + ".qweight") && reader.Contains(VName(name) + ".qweight"))
        {
            // Low-rank factors, each in the GPTQ layout: V [k, in] is a linear with k outputs, U [out, k] one with k inputs.
            var vScales = reader.GetInfo(VName(name) + ".scales").Shape;
            if (vScales.Length != 2 || vScales[1] <= 0 || vScales[1] > Math.Min(inFeatures, outFeatures))
                throw new CheckpointFormatException(reader.Directory,
                    $"quantized factor's scales have shape [{string.Join(", ", vScales)}]; expected [groups, k] with 1 ≤ k ≤ {Math.Min(inFeatures, outFeatures)}", VName(name) + ".scales", "shape");
            rank = (int)vScales[1];
            bits = GptqLayout.BitsOf(reader, VName(name), inFeatures);
            if (GptqLayout.BitsOf(reader, UName(name), rank.Value) != bits)
                throw new CheckpointFormatException(reader.Directory, $"the factors of {name} have different bit widths", UName(name) + ".qweight", "shape");
        }
        else if (!reader.Contains(dense))
        {
            if (!reader.Contains(u) || !reader.Contains(v))
            {
                // Let the reader produce its "missing tensor (did you mean …)" error for the dense name.
                reader.GetInfo(dense);
            }
            var shape = reader.GetInfo(u).Shape;
            if (shape.Length != 2 || shape[0] != outFeatures || shape[1] <= 0 || shape[1] > Math.Min(inFeatures, outFeatures))
                throw new CheckpointFormatException(reader.Directory,
                    $"low-rank factor has shape [{string.Join(", ", shape)}]; expected [{outFeatures}, k] with 1 ≤ k ≤ {Math.Min(inFeatures, outFeatures)}", u, "shape");
            rank = (int)shape[1];
            reader.RequireShape(v, rank.Value, inFeatures);
        }
        else
        {
            reader.RequireShape(dense, outFeatures, inFeatures);
        }
        if (bias) reader.RequireShape(BiasName(name, rank is not null), outFeatures);
        return new Linear(name, inputKey, inFeatures, outFeatures, bias, rank) { QuantizedBits = bits };
    }

    /// <summary>Bytes of the weight tensors the checkpoint stores for this linear (bias excluded): what it costs on disk and to load.</summary>
    public long StoredWeightBytes(CheckpointReader reader)
    {
        if (Remapped) return RemapLayout.Suffixes.Where(s => reader.Contains($"{UName(Name)}.{s}")).Sum(s => reader.GetInfo($"{UName(Name)}.{s}").ByteLength);
        IEnumerable<string> modules = Rank is null ? [Name] : [UName(Name), VName(Name)];
        return modules.Sum(m => QuantizedBits is null ? reader.GetInfo(m + ".weight").ByteLength
            : VectorQuantized ? VqLayout.Suffixes.Where(s => reader.Contains($"{m}.{s}")).Sum(s => reader.GetInfo($"{m}.{s}").ByteLength)
            : GptqLayout.Suffixes.Sum(s => reader.GetInfo($"{m}.{s}").ByteLength));
    }

    /// <summary>Stored as vector-quantization indices and codebooks (<see cref="VqLayout"/>) rather than the GPTQ layout.</summary>
    public bool VectorQuantized { get; private set; }

    /// <summary>Stored as Dobi-SVD's remapped 8-bit factors (<see cref="RemapLayout"/>).</summary>
    public bool Remapped { get; private set; }

    private Linear RequireBias(CheckpointReader reader, bool bias)
    {
        if (bias) reader.RequireShape(BiasName(Name, false), OutFeatures);
        return this;
    }

    /// <summary>Bits per weight of the checkpoint's GPTQ-layout storage (of W, or of both factors), or null when stored as floats.</summary>
    public int? QuantizedBits { get; private set; }

    private static string BiasName(string name, bool lowRank) => (lowRank ? UName(name) : name) + ".bias";

    /// <summary>Reads the weights from the checkpoint if they are not in memory yet.</summary>
    public void Load(CheckpointReader reader)
    {
        if (IsLoaded) return;
        if (Rank is int r && Remapped)
        {
            var (u, v) = RemapLayout.Dequantize(reader, UName(Name), OutFeatures, InFeatures, r);
            _u = Tensor<float>.From(u, OutFeatures, r);
            _v = Tensor<float>.From(v, r, InFeatures);
        }
        else if (Rank is int k)
        {
            _u = QuantizedBits is null ? Weights.Matrix(reader, UName(Name) + ".weight", OutFeatures, k) : Dequantized(reader, UName(Name), OutFeatures, k);
            _v = QuantizedBits is null ? Weights.Matrix(reader, VName(Name) + ".weight", k, InFeatures) : Dequantized(reader, VName(Name), k, InFeatures);
        }
        else
        {
            _weight = QuantizedBits is null ? Weights.Matrix(reader, Name + ".weight", OutFeatures, InFeatures) : Dequantized(reader, Name, OutFeatures, InFeatures);
        }
        if (HasBias) _bias = Weights.Vector(reader, BiasName(Name, Rank is not null), OutFeatures);
    }

    private Tensor<float> Dequantized(CheckpointReader reader, string name, int rows, int cols)
        => Tensor<float>.From(VectorQuantized ? VqLayout.Dequantize(reader, name, rows, cols) : GptqLayout.Dequantize(reader, name, rows, cols), rows, cols);

    /// <summary>Releases the weights; the next <see cref="Load"/> reads them again.</summary>
    public void Unload()
    {
        _weight?.Dispose(); _u?.Dispose(); _v?.Dispose(); _bias?.Dispose();
        _weight = _u = _v = _bias = null;
    }

    /// <summary>The dense weight [out, in]; throws when the linear is low-rank or not loaded.</summary>
    public Tensor<float> Weight => _weight ?? throw new InvalidOperationException($"{Name}: no dense weight in memory (low-rank or not loaded)");

    /// <summary>U [out, k] of the low-rank form.</summary>
    public Tensor<float> U => _u ?? throw new InvalidOperationException($"{Name}: not low-rank or not loaded");

    /// <summary>V [k, in] of the low-rank form.</summary>
    public Tensor<float> V => _v ?? throw new InvalidOperationException($"{Name}: not low-rank or not loaded");

    public Tensor<float>? Bias => _bias;

    /// <summary>Replaces the weights with a dense W [out, in] (the linear takes ownership).</summary>
    public void SetDense(Tensor<float> weight, Tensor<float>? bias)
    {
        CheckShape(weight, OutFeatures, InFeatures, "weight");
        SetBias(bias);
        _u?.Dispose(); _v?.Dispose(); _weight?.Dispose();
        _u = _v = null;
        _weight = weight;
        Rank = null;
        QuantizedBits = null;
        VectorQuantized = false;
        Remapped = false;
    }

    /// <summary>Replaces the weights with low-rank factors U [out, k], V [k, in] (the linear takes ownership).</summary>
    public void SetLowRank(Tensor<float> u, Tensor<float> v, Tensor<float>? bias)
    {
        if (u.Shape.Length != 2 || u.Shape[0] != OutFeatures) throw new ArgumentException($"{Name}: U has shape {u.ShapeString}, expected [{OutFeatures}, k]");
        int k = u.Shape[1];
        if (k < 1 || k > Math.Min(InFeatures, OutFeatures))
            throw new ArgumentException($"{Name}: rank {k} outside [1, {Math.Min(InFeatures, OutFeatures)}]");
        CheckShape(v, k, InFeatures, "V");
        SetBias(bias);
        _u?.Dispose(); _v?.Dispose(); _weight?.Dispose();
        _weight = null;
        _u = u;
        _v = v;
        Rank = k;
        QuantizedBits = null;
        VectorQuantized = false;
        Remapped = false;
    }

    private void SetBias(Tensor<float>? bias)
    {
        if (HasBias != bias is not null) throw new ArgumentException($"{Name}: bias {(HasBias ? "required" : "not expected")}");
        if (bias is not null && bias.Length != OutFeatures) throw new ArgumentException($"{Name}: bias has {bias.Length} elements, expected {OutFeatures}");
        if (!ReferenceEquals(bias, _bias)) _bias?.Dispose();
        _bias = bias;
    }

    private void CheckShape(Tensor<float> t, int rows, int cols, string what)
    {
        if (t.Shape.Length != 2 || t.Shape[0] != rows || t.Shape[1] != cols)
            throw new ArgumentException($"{Name}: {what} has shape {t.ShapeString}, expected [{rows}, {cols}]");
    }

    /// <summary>y [rows, out] = x [rows, in]·Wᵀ + b (overwrites y). The observer, if any, sees x first.</summary>
    public void Forward(IComputeBackend backend, ReadOnlySpan<float> x, int rows, Span<float> y, ILinearObserver? observer = null)
    {
        if (!IsLoaded) throw new InvalidOperationException($"{Name}: weights not loaded");
        observer?.OnInput(this, x[..(rows * InFeatures)], rows);
        if (_weight is not null)
        {
            backend.Sgemm(Transpose.No, Transpose.Yes, rows, OutFeatures, InFeatures, 1f, x, InFeatures, _weight.Span, InFeatures, 0f, y, OutFeatures);
        }
        else
        {
            int k = Rank!.Value;
            using var t = Tensor<float>.Uninitialized(rows, k);
            backend.Sgemm(Transpose.No, Transpose.Yes, rows, k, InFeatures, 1f, x, InFeatures, _v!.Span, InFeatures, 0f, t.Span, k);
            backend.Sgemm(Transpose.No, Transpose.Yes, rows, OutFeatures, k, 1f, t.Span, k, _u!.Span, k, 0f, y, OutFeatures);
        }
        if (_bias is not null) backend.AddBias(_bias.Span, y[..(rows * OutFeatures)], rows);
    }

    public void Dispose() => Unload();

    public override string ToString() => $"{Name} [{OutFeatures}×{InFeatures}]" + (Rank is int k ? $" rank {k}" : "");
}
