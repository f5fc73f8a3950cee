namespace SvdLlm.Models.Checkpoints;

/// <summary>
/// This project's checkpoint layout for Dobi-SVD's remapped factors (Wang, Ke et al., ICLR 2025, §3.3; no standard layout
/// exists). A linear <c>M</c> [m, n] of rank k is stored as k singular triplets, each a σ-scaled "long" vector (length
/// P = max(m, n): the left singular vector when m ≥ n, the right one otherwise) and a "short" unit vector (length
/// p = min(m, n)); the first p entries of both are 8-bit codes into a 256-value code book with one absmax per vector,
/// the long vector's other P − p entries float16. Under the U factor's module name <c>U</c> (<c>…q_u_proj</c>):
/// <list type="bullet">
/// <item><c>U.remap_long</c> U8 [k, p] and <c>U.remap_long_absmax</c> F16 [k];</item>
/// <item><c>U.remap_short</c> U8 [k, p] and <c>U.remap_short_absmax</c> F16 [k];</item>
/// <item><c>U.remap_rest</c> F16 [k, P − p] (absent when m = n);</item>
/// <item><c>U.remap_codebook</c> F32 [256]: value of each code (entry = codebook[code] · absmax);</item>
/// </list>
/// the bias, if any, at <c>U.bias</c>. Loaded as the factors U [m, k], V [k, n] with W' = U V. Stored bytes per rank
/// 2P + 4, so rank p costs about 2mn bytes: the paper's k·max(m, n) 16-bit units plus the scales it leaves out.
/// </summary>
public static class RemapLayout
{
    public static readonly string[] Suffixes = ["remap_long", "remap_long_absmax", "remap_short", "remap_short_absmax", "remap_rest", "remap_codebook"];

    public static bool IsRemapped(CheckpointReader reader, string uModule) => reader.Contains(uModule + ".remap_long");

    /// <summary>k from the header, checked against the linear's shape.</summary>
    public static int Rank(CheckpointReader reader, string uModule, int outFeatures, int inFeatures)
    {
        int p = Math.Min(outFeatures, inFeatures), big = Math.Max(outFeatures, inFeatures);
        var shape = reader.GetInfo(uModule + ".remap_long").Shape;
        if (shape.Length != 2 || shape[1] != p || shape[0] < 1 || shape[0] > p)
            throw new CheckpointFormatException(reader.Directory, $"remapped factors have shape [{string.Join(", ", shape)}]; expected [k, {p}] with 1 ≤ k ≤ {p}", uModule + ".remap_long", "shape");
        int k = (int)shape[0];
        reader.RequireShape(uModule + ".remap_short", k, p);
        reader.RequireShape(uModule + ".remap_long_absmax", k);
        reader.RequireShape(uModule + ".remap_short_absmax", k);
        reader.RequireShape(uModule + ".remap_codebook", 256);
        if (big > p) reader.RequireShape(uModule + ".remap_rest", k, big - p);
        return k;
    }

    /// <summary>The factors U [m, k] and V [k, n] (row-major float32) of a remapped linear.</summary>
    public static (float[] U, float[] V) Dequantize(CheckpointReader reader, string uModule, int outFeatures, int inFeatures, int k)
    {
        int m = outFeatures, n = inFeatures, p = Math.Min(m, n), big = Math.Max(m, n);
        var codebook = reader.ReadAsFloat32(uModule + ".remap_codebook");
        var lng = reader.ReadBytes(uModule + ".remap_long", SafeTensorsDType.U8);
        var sht = reader.ReadBytes(uModule + ".remap_short", SafeTensorsDType.U8);
        var la = reader.ReadAsFloat32(uModule + ".remap_long_absmax");
        var sa = reader.ReadAsFloat32(uModule + ".remap_short_absmax");
        var rest = big > p ? reader.ReadAsFloat32(uModule + ".remap_rest") : [];
        var u = new float[m * k];
        var v = new float[k * n];
        bool rowsLong = m >= n;
        for (int i = 0; i < k; i++)
            for (int r = 0; r < big; r++)
            {
                float value = r < p ? codebook[lng[i * p + r]] * la[i] : rest[i * (big - p) + r - p];
                if (!float.IsFinite(value)) throw new CheckpointFormatException(reader.Directory, $"remapped factor value {value} of triplet {i}", uModule + ".remap_long", "data");
                if (rowsLong) u[r * k + i] = value;
                else v[i * n + r] = value;
                if (r >= p) continue;
                float s = codebook[sht[i * p + r]] * sa[i];
                if (rowsLong) v[i * n + r] = s;
                else u[r * k + i] = s;
            }
        return (u, v);
    }

    /// <summary>
    /// The tensors of one remapped linear, from its codes [k, p], absmax scales [k], the long vectors' remaining entries
    /// [k, P − p] and the code book [256].
    /// </summary>
    public static IReadOnlyList<WriterTensor> Tensors(string uModule, int k, int p, int big, byte[] longCodes, double[] longAbsmax, byte[] shortCodes,
        double[] shortAbsmax, double[] rest, ReadOnlySpan<double> codebook)
    {
        float[] F(IEnumerable<double> x) => x.Select(v => (float)v).ToArray();
        var list = new List<WriterTensor>
        {
            WriterTensor.Bytes(uModule + ".remap_long", SafeTensorsDType.U8, [k, p], () => longCodes),
            new(uModule + ".remap_long_absmax", SafeTensorsDType.F16, [k], F(longAbsmax)),
            WriterTensor.Bytes(uModule + ".remap_short", SafeTensorsDType.U8, [k, p], () => shortCodes),
            new(uModule + ".remap_short_absmax", SafeTensorsDType.F16, [k], F(shortAbsmax)),
        };
        if (big > p) list.Add(new(uModule + ".remap_rest", SafeTensorsDType.F16, [k, big - p], F(rest)));
        list.Add(new(uModule + ".remap_codebook", SafeTensorsDType.F32, [256], F(codebook.ToArray())));
        return list;
    }
}
