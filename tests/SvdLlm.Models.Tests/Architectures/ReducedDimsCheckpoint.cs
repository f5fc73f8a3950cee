using System.Text.Json.Nodes;
using SvdLlm.Models.Tests.Reference;

namespace SvdLlm.Models.Tests.Architectures;

/// <summary>
/// What one decoder layer of a structurally pruned (MoDeGPT-style) model keeps, as indices into the unpruned layer:
/// the MLP channels; per key/value head the rotary pairs (original frequency indices in [0, D/2), in the order the pruned
/// head stores them; null = every pair in its original order and no rope_pairs tensor); per key/value head the value
/// dimensions (indices in [0, D), in stored order). Every key/value head keeps the same number of each.
/// </summary>
internal sealed record LayerKeep(int[] Channels, int[][]? Pairs, int[][] ValueDims);

/// <summary>A pruned checkpoint before it is written, so a test can spoil one part of it.</summary>
internal sealed record ReducedParts(JsonObject Config, List<(string Name, long[] Shape, float[] Data)> Floats, List<(string Name, long[] Shape, int[] Data)> Ints)
{
    public string Write(string directory) => CheckpointVariants.Write(directory, Config, Floats, Ints);
}

/// <summary>
/// Builds the two checkpoints the reduced-dimension tests compare, from one tiny LLaMA-family checkpoint and a
/// <see cref="LayerKeep"/> per layer: the full-size model with every dropped row and column set to zero, and the
/// pruned model with them removed (smaller matrices, per-layer lists in config.json, self_attn.rope_pairs). Written
/// from the layout alone (q/k head h rows h·D … h·D + D − 1, rotate_half pairs (i, i + D/2), query head h in key/value
/// group h / (NH/NKV)), not from the loader's code.
/// </summary>
internal static class ReducedDims
{
    /// <summary>
    /// A random plan: layer l keeps <c>amounts[l].Channels</c> MLP channels, <c>amounts[l].Pairs</c> rotary pairs per
    /// key/value head (null: all, in order, no tensor) and <c>amounts[l].ValueDims</c> value dimensions per key/value head,
    /// each a random subset in random order, different for every key/value head.
    /// </summary>
    public static LayerKeep[] RandomPlan(TinyConfig c, int seed, params (int Channels, int? Pairs, int ValueDims)[] amounts)
    {
        if (amounts.Length != c.NumLayers) throw new ArgumentException($"{amounts.Length} layer amounts for {c.NumLayers} layers");
        var rng = new Random(seed);
        int d = c.EffectiveHeadDim;
        return amounts.Select(a => new LayerKeep(
            Pick(rng, c.IntermediateSize, a.Channels),
            a.Pairs is int m ? Enumerable.Range(0, c.NumKvHeads).Select(_ => Pick(rng, d / 2, m)).ToArray() : null,
            Enumerable.Range(0, c.NumKvHeads).Select(_ => Pick(rng, d, a.ValueDims)).ToArray())).ToArray();
    }

    /// <summary>Every layer keeps everything in its original order, rope_pairs = 0 … D/2 − 1 written explicitly.</summary>
    public static LayerKeep[] IdentityPlan(TinyConfig c)
    {
        int d = c.EffectiveHeadDim;
        return Enumerable.Range(0, c.NumLayers).Select(_ => new LayerKeep(
            Enumerable.Range(0, c.IntermediateSize).ToArray(),
            Enumerable.Range(0, c.NumKvHeads).Select(_ => Enumerable.Range(0, d / 2).ToArray()).ToArray(),
            Enumerable.Range(0, c.NumKvHeads).Select(_ => Enumerable.Range(0, d).ToArray()).ToArray())).ToArray();
    }

    private static int[] Pick(Random rng, int n, int count)
    {
        var all = Enumerable.Range(0, n).ToArray();
        rng.Shuffle(all);
        return all[..count];
    }

    /// <summary>The unpruned model with the dropped q AND k rows of every dropped pair (both halves), v rows, o_proj columns, gate/up rows and down_proj columns (and their bias entries) set to zero.</summary>
    public static string WriteZeroed(TinyCheckpoint ckpt, LayerKeep[] plan, string directory)
    {
        var tensors = CheckpointVariants.Tensors(ckpt).ToDictionary(t => t.Name);
        var c = ckpt.Config;
        int h = c.HiddenSize;
        for (int l = 0; l < plan.Length; l++)
        {
            var map = new LayerMap(c, plan[l]);
            string p = $"model.layers.{l}.";
            void ZeroRows(string name, IReadOnlyList<int> kept, int cols)
            {
                if (!tensors.TryGetValue(name, out var t)) return;
                var keep = kept.ToHashSet();
                var data = (float[])t.Data.Clone();
                for (int r = 0; r < data.Length / cols; r++)
                    if (!keep.Contains(r)) Array.Clear(data, r * cols, cols);
                tensors[name] = (t.Name, t.Shape, data);
            }
            void ZeroCols(string name, IReadOnlyList<int> kept, int cols)
            {
                var t = tensors[name];
                var keep = kept.ToHashSet();
                var data = (float[])t.Data.Clone();
                for (int r = 0; r < data.Length / cols; r++)
                    for (int j = 0; j < cols; j++)
                        if (!keep.Contains(j)) data[r * cols + j] = 0;
                tensors[name] = (t.Name, t.Shape, data);
            }
            ZeroRows(p + "self_attn.q_proj.weight", map.QRows, h);
            ZeroRows(p + "self_attn.q_proj.bias", map.QRows, 1);
            ZeroRows(p + "self_attn.k_proj.weight", map.KRows, h);
            ZeroRows(p + "self_attn.k_proj.bias", map.KRows, 1);
            ZeroRows(p + "self_attn.v_proj.weight", map.VRows, h);
            ZeroRows(p + "self_attn.v_proj.bias", map.VRows, 1);
            ZeroCols(p + "self_attn.o_proj.weight", map.OCols, c.NumHeads * c.EffectiveHeadDim);
            ZeroRows(p + "mlp.gate_proj.weight", plan[l].Channels, h);
            ZeroRows(p + "mlp.gate_proj.bias", plan[l].Channels, 1);
            ZeroRows(p + "mlp.up_proj.weight", plan[l].Channels, h);
            ZeroRows(p + "mlp.up_proj.bias", plan[l].Channels, 1);
            ZeroCols(p + "mlp.down_proj.weight", plan[l].Channels, c.IntermediateSize);
        }
        return CheckpointVariants.Write(directory, CheckpointVariants.Config(ckpt), tensors.Values.OrderBy(t => t.Name, StringComparer.Ordinal));
    }

    /// <summary>The pruned model: the kept rows and columns only, in the plan's order, the per-layer lists and rope_pairs.</summary>
    public static ReducedParts Reduced(TinyCheckpoint ckpt, LayerKeep[] plan)
    {
        var c = ckpt.Config;
        int h = c.HiddenSize;
        var tensors = CheckpointVariants.Tensors(ckpt).ToDictionary(t => t.Name);
        var ints = new List<(string, long[], int[])>();
        var inter = new JsonArray();
        var qk = new JsonArray();
        var vd = new JsonArray();
        for (int l = 0; l < plan.Length; l++)
        {
            var keep = plan[l];
            var map = new LayerMap(c, keep);
            string p = $"model.layers.{l}.";
            void Rows(string name, IReadOnlyList<int> kept, int cols)
            {
                if (!tensors.TryGetValue(name, out var t)) return;
                var data = kept.SelectMany(r => t.Data.AsSpan(r * cols, cols).ToArray()).ToArray();
                tensors[name] = (t.Name, t.Shape.Length == 1 ? [kept.Count] : [kept.Count, cols], data);
            }
            void Cols(string name, IReadOnlyList<int> kept, int cols)
            {
                var t = tensors[name];
                int rows = t.Data.Length / cols;
                var data = new float[rows * kept.Count];
                for (int r = 0; r < rows; r++)
                    for (int j = 0; j < kept.Count; j++) data[r * kept.Count + j] = t.Data[r * cols + kept[j]];
                tensors[name] = (t.Name, [rows, kept.Count], data);
            }
            Rows(p + "self_attn.q_proj.weight", map.QRows, h);
            Rows(p + "self_attn.q_proj.bias", map.QRows, 1);
            Rows(p + "self_attn.k_proj.weight", map.KRows, h);
            Rows(p + "self_attn.k_proj.bias", map.KRows, 1);
            Rows(p + "self_attn.v_proj.weight", map.VRows, h);
            Rows(p + "self_attn.v_proj.bias", map.VRows, 1);
            Cols(p + "self_attn.o_proj.weight", map.OCols, c.NumHeads * c.EffectiveHeadDim);
            Rows(p + "mlp.gate_proj.weight", keep.Channels, h);
            Rows(p + "mlp.gate_proj.bias", keep.Channels, 1);
            Rows(p + "mlp.up_proj.weight", keep.Channels, h);
            Rows(p + "mlp.up_proj.bias", keep.Channels, 1);
            Cols(p + "mlp.down_proj.weight", keep.Channels, c.IntermediateSize);
            if (keep.Pairs is { } pairs)
                ints.Add((p + "self_attn.rope_pairs", [c.NumKvHeads, pairs[0].Length], pairs.SelectMany(x => x).ToArray()));
            inter.Add(keep.Channels.Length);
            qk.Add(map.QkDim);
            vd.Add(map.VDim);
        }
        var config = CheckpointVariants.Config(ckpt);
        config["intermediate_sizes"] = inter;
        config["qk_head_dims"] = qk;
        config["v_head_dims"] = vd;
        return new ReducedParts(config, tensors.Values.OrderBy(t => t.Name, StringComparer.Ordinal).ToList(), ints);
    }

    /// <summary>Which rows/columns of the unpruned layer's matrices a plan keeps, in the pruned layer's order.</summary>
    private sealed class LayerMap
    {
        public LayerMap(TinyConfig c, LayerKeep keep)
        {
            int d = c.EffectiveHeadDim, half = d / 2, groups = c.NumHeads / c.NumKvHeads;
            int[] PairsOf(int g) => keep.Pairs?[g] ?? Enumerable.Range(0, half).ToArray();
            // A pruned head keeps rotate_half: kept pair j at j and j + m, i.e. original rows i_j and i_j + D/2.
            List<int> HeadRows(int head, int g) => [.. PairsOf(g).Select(i => head * d + i), .. PairsOf(g).Select(i => head * d + half + i)];
            QRows = Enumerable.Range(0, c.NumHeads).SelectMany(hd => HeadRows(hd, hd / groups)).ToList();
            KRows = Enumerable.Range(0, c.NumKvHeads).SelectMany(g => HeadRows(g, g)).ToList();
            VRows = Enumerable.Range(0, c.NumKvHeads).SelectMany(g => keep.ValueDims[g].Select(r => g * d + r)).ToList();
            // Query head h's attention output holds the values of its key/value head, so o_proj keeps those columns.
            OCols = Enumerable.Range(0, c.NumHeads).SelectMany(hd => keep.ValueDims[hd / groups].Select(r => hd * d + r)).ToList();
            QkDim = 2 * PairsOf(0).Length;
            VDim = keep.ValueDims[0].Length;
        }

        public List<int> QRows { get; }
        public List<int> KRows { get; }
        public List<int> VRows { get; }
        public List<int> OCols { get; }
        public int QkDim { get; }
        public int VDim { get; }
    }
}
