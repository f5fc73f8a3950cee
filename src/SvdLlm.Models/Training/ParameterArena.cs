using SvdLlm.Numerics;

namespace SvdLlm.Models.Training;

/// <summary>
/// All trainable parameters in one block of native memory with named views (llm.c's
/// ParameterTensors): the gradient and the two AdamW moments use the same layout, so an optimizer
/// step is one loop over four equally long spans. Names are the Hugging Face checkpoint names.
/// </summary>
public sealed class ParameterArena : IDisposable
{
    /// <summary>One named tensor inside the arena.</summary>
    public sealed record Entry(string Name, int[] Shape, long Offset, int Length, bool WeightDecay);

    private readonly List<Entry> _entries = [];
    private readonly Dictionary<string, Entry> _byName = [];
    private Tensor<float>? _data;

    public IReadOnlyList<Entry> Entries => _entries;
    public long Length { get; private set; }

    /// <summary>Declares a tensor; only before <see cref="Allocate"/>. Matrices get weight decay, vectors (norms, biases) do not.</summary>
    public Entry Add(string name, params int[] shape)
    {
        if (_data is not null) throw new InvalidOperationException("the arena is already allocated");
        if (_byName.ContainsKey(name)) throw new ArgumentException($"parameter '{name}' declared twice");
        int length = checked(shape.Aggregate(1, (a, b) => a * b));
        var e = new Entry(name, shape, Length, length, WeightDecay: shape.Length >= 2);
        _entries.Add(e);
        _byName[name] = e;
        Length += length;
        return e;
    }

    public void Allocate() => _data ??= Tensor<float>.Zeros(checked((int)Length));

    public Tensor<float> Data => _data ?? throw new InvalidOperationException("the arena is not allocated");

    public bool Contains(string name) => _byName.ContainsKey(name);

    public Entry this[string name] => _byName.TryGetValue(name, out var e) ? e : throw new KeyNotFoundException($"no parameter '{name}'");

    /// <summary>The values of <paramref name="entry"/> inside <paramref name="block"/> (this arena's data or a same-layout block).</summary>
    public static Span<float> View(Tensor<float> block, Entry entry) => block.Span.Slice((int)entry.Offset, entry.Length);

    public Span<float> View(Entry entry) => View(Data, entry);

    public Span<float> View(string name) => View(this[name]);

    /// <summary>A zeroed block with the same layout (for gradients and optimizer moments).</summary>
    public Tensor<float> NewBlock() => Tensor<float>.Zeros(checked((int)Length));

    public void Dispose() => _data?.Dispose();
}
