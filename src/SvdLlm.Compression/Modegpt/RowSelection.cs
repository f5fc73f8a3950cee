using SvdLlm.Numerics;

namespace SvdLlm.Compression.Modegpt;

// MoDeGPT (Lin et al., "MoDeGPT: Modular Decomposition for Large Language Model Compression", ICLR 2025,
// arXiv 2408.09632). There is no official code; each file of this folder states how it reads the paper.

/// <summary>
/// Row gathering for the matrices MoDeGPT may only select from, never refit: gate_proj and up_proj (Type I: the
/// elementwise σ commutes with a selection, σ(S W x) = S σ(W x)) and q_proj/k_proj (Type II: RoPE acts on whole pairs,
/// so selecting whole pairs commutes with it). In Hugging Face layout a linear is [out, in], so "keeping a channel"
/// is keeping a row.
/// </summary>
public static class RowSelection
{
    /// <summary>
    /// The rows <paramref name="rows"/> of <paramref name="w"/> [r, c], in the given order, as a new [rows.Length, c]
    /// tensor. Each index must lie in [0, r) and appear once: a selection that names a row twice is a bug upstream, and
    /// silently duplicating a channel would change the module's function.
    /// </summary>
    public static Tensor<T> Rows<T>(Tensor<T> w, ReadOnlySpan<int> rows) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(w);
        if (w.Shape.Length != 2) throw new ArgumentException($"expected a matrix, got shape {w.ShapeString}", nameof(w));
        CheckIndices(rows, w.Rows, "row");
        var r = Tensor<T>.Uninitialized(rows.Length, w.Cols);
        for (int i = 0; i < rows.Length; i++) w.Row(rows[i]).CopyTo(r.Row(i));
        return r;
    }

    /// <summary>
    /// The rows of head <paramref name="head"/> of a [heads·headDim, d] projection that a within-head selection
    /// <paramref name="kept"/> names: head·headDim + kept[j], in the order of <paramref name="kept"/>.
    /// </summary>
    public static int[] HeadRows(int head, int headDim, ReadOnlySpan<int> kept)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(head);
        ArgumentOutOfRangeException.ThrowIfLessThan(headDim, 1);
        CheckIndices(kept, headDim, "head dimension");
        var r = new int[kept.Length];
        for (int j = 0; j < kept.Length; j++) r[j] = checked(head * headDim + kept[j]);
        return r;
    }

    internal static void CheckIndices(ReadOnlySpan<int> indices, int count, string what)
    {
        var seen = new bool[count];
        foreach (int i in indices)
        {
            if ((uint)i >= (uint)count) throw new ArgumentOutOfRangeException(nameof(indices), $"{what} index {i} outside [0, {count})");
            if (seen[i]) throw new ArgumentException($"{what} index {i} is selected twice", nameof(indices));
            seen[i] = true;
        }
    }
}
