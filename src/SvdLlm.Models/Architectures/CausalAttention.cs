using SvdLlm.Numerics;
using SvdLlm.Numerics.Backends;

namespace SvdLlm.Models.Architectures;

/// <summary>
/// Scaled dot-product causal self-attention shared by every family, on GEMMs.
/// B=batch, T=seq, NH=query heads, NKV=key/value heads, D=head_dim.
/// q is [B·T, NH·D], k and v are [B·T, NKV·D]; a head is a column block, reached through the
/// leading dimension, so nothing is transposed or copied. Query head h reads key/value head
/// h / (NH/NKV) (grouped-query attention; NKV = NH is plain multi-head attention).
/// A structurally pruned layer (MoDeGPT) has fewer query/key dimensions Dqk than value dimensions Dv or than the
/// original D: q is then [B·T, NH·Dqk], k [B·T, NKV·Dqk], v [B·T, NKV·Dv] and the output [B·T, NH·Dv]; the scale is
/// the caller's (it stays 1/√D of the unpruned head, see <see cref="LlamaForCausalLM"/>).
/// </summary>
internal static class CausalAttention
{
    /// <summary><see cref="Forward(IComputeBackend, ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{float}, Span{float}, int, int, int, int, int, int, float, int?, Span{float})"/> with Dqk = Dv = D.</summary>
    public static void Forward(IComputeBackend backend, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        Span<float> output, int batch, int seqLen, int heads, int kvHeads, int headDim, float scale, int? window, Span<float> scores)
        => Forward(backend, q, k, v, output, batch, seqLen, heads, kvHeads, headDim, headDim, scale, window, scores);

    /// <param name="scores">scratch [T, T]; or, for training, [B·NH, T, T] where every head's probabilities P are kept for the backward pass</param>
    /// <param name="output">[B·T, NH·Dv], overwritten</param>
    public static void Forward(IComputeBackend backend, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        Span<float> output, int batch, int seqLen, int heads, int kvHeads, int qkDim, int vDim, float scale, int? window, Span<float> scores)
    {
        int tt = seqLen * seqLen;
        bool keep = scores.Length >= (long)batch * heads * tt;
        int qWidth = heads * qkDim, kWidth = kvHeads * qkDim, vWidth = kvHeads * vDim, oWidth = heads * vDim, groups = heads / kvHeads;
        for (int b = 0; b < batch; b++)
        {
            int rowBase = b * seqLen;
            for (int h = 0; h < heads; h++)
            {
                int kvh = h / groups;
                var qh = q[(rowBase * qWidth + h * qkDim)..];
                var kh = k[(rowBase * kWidth + kvh * qkDim)..];
                var vh = v[(rowBase * vWidth + kvh * vDim)..];
                var oh = output[(rowBase * oWidth + h * vDim)..];
                var p = keep ? scores.Slice((b * heads + h) * tt, tt) : scores[..tt];
                // scores [T, T] = scale · Q_h [T, Dqk] · K_hᵀ [Dqk, T]
                backend.Sgemm(Transpose.No, Transpose.Yes, seqLen, seqLen, qkDim, scale, qh, qWidth, kh, kWidth, 0f, p, seqLen);
                backend.CausalSoftmax(p, seqLen, window);
                // O_h [T, Dv] = P [T, T] · V_h [T, Dv]
                backend.Sgemm(Transpose.No, Transpose.No, seqLen, vDim, seqLen, 1f, p, seqLen, vh, vWidth, 0f, oh, oWidth);
            }
        }
    }

    /// <summary>
    /// Attention of one new token per sequence over the cached keys and values (incremental decoding).
    /// q is [B, NH·D]; keys and values are a <see cref="KvCache"/> layer, [B·maxLength, NKV·D], whose
    /// positions [0, length) are filled, the new token's own key at length − 1. The query at position
    /// i = length − 1 sees keys j ≥ i − window + 1 (the rule of <see cref="Kernels.Kernels.CausalSoftmax"/>),
    /// so the result equals row i of <see cref="Forward"/> over the whole sequence. The query heads of
    /// one group are adjacent columns of q, so a group is one [groups, D] matrix and costs one GEMM
    /// against its shared key head (GQA without repeating keys).
    /// </summary>
    /// <param name="keys">[B·maxLength, NKV·Dqk]</param>
    /// <param name="values">[B·maxLength, NKV·Dv]</param>
    /// <param name="scores">scratch of at least NH/NKV · min(length, window) floats</param>
    /// <param name="output">[B, NH·Dv], overwritten</param>
    public static void Decode(IComputeBackend backend, ReadOnlySpan<float> q, ReadOnlySpan<float> keys, ReadOnlySpan<float> values,
        Span<float> output, int batch, int length, int maxLength, int heads, int kvHeads, int qkDim, int vDim, float scale, int? window, Span<float> scores)
    {
        if (length < 1 || length > maxLength) throw new ArgumentException($"Decode: {length} cached positions outside [1, {maxLength}]");
        int lo = window is int w ? Math.Max(0, length - w) : 0, visible = length - lo;
        int qWidth = heads * qkDim, kWidth = kvHeads * qkDim, vWidth = kvHeads * vDim, oWidth = heads * vDim, groups = heads / kvHeads;
        var p = scores[..(groups * visible)];
        for (int b = 0; b < batch; b++)
        {
            int kvRow = b * maxLength + lo;
            for (int kvh = 0; kvh < kvHeads; kvh++)
            {
                int qOff = b * qWidth + kvh * groups * qkDim, kOff = kvRow * kWidth + kvh * qkDim;
                int vOff = kvRow * vWidth + kvh * vDim, oOff = b * oWidth + kvh * groups * vDim;
                // scores [G, L] = scale · Q_group [G, Dqk] · K_hᵀ [Dqk, L], L = visible positions
                backend.Sgemm(Transpose.No, Transpose.Yes, groups, visible, qkDim, scale, q[qOff..], qkDim, keys[kOff..], kWidth, 0f, p, visible);
                for (int g = 0; g < groups; g++) backend.SoftmaxInPlace(p.Slice(g * visible, visible));
                // O_group [G, Dv] = P [G, L] · V_h [L, Dv]
                backend.Sgemm(Transpose.No, Transpose.No, groups, vDim, visible, 1f, p, visible, values[vOff..], vWidth, 0f, output[oOff..], vDim);
            }
        }
    }

    /// <summary>
    /// Backward of <see cref="Forward"/> given the kept probabilities P [B·NH, T, T] and dO [B·T, NH·D].
    /// Per head: dV += Pᵀ·dO, dP = dO·Vᵀ, dS = P∘(dP − rowsum(dP∘P)), dQ = scale·dS·K, dK += scale·dSᵀ·Q.
    /// dq is overwritten; dk and dv are accumulated (a kv head receives the gradients of its whole
    /// query group), so the caller zeroes them first.
    /// </summary>
    /// <param name="scratch">[T, T]</param>
    public static void Backward(IComputeBackend backend, ReadOnlySpan<float> dOutput, ReadOnlySpan<float> q, ReadOnlySpan<float> k,
        ReadOnlySpan<float> v, ReadOnlySpan<float> probabilities, Span<float> dq, Span<float> dk, Span<float> dv,
        int batch, int seqLen, int heads, int kvHeads, int headDim, float scale, Span<float> scratch)
    {
        int qWidth = heads * headDim, kvWidth = kvHeads * headDim, groups = heads / kvHeads, tt = seqLen * seqLen;
        for (int b = 0; b < batch; b++)
        {
            int rowBase = b * seqLen;
            for (int h = 0; h < heads; h++)
            {
                int kvh = h / groups;
                int qOff = rowBase * qWidth + h * headDim, kvOff = rowBase * kvWidth + kvh * headDim;
                var p = probabilities.Slice((b * heads + h) * tt, tt);
                var dO = dOutput[qOff..];
                // dV_h [T, D] += Pᵀ [T, T] · dO_h [T, D]
                backend.Sgemm(Transpose.Yes, Transpose.No, seqLen, headDim, seqLen, 1f, p, seqLen, dO, qWidth, 1f, dv[kvOff..], kvWidth);
                // dP [T, T] = dO_h · V_hᵀ, then dS in place
                backend.Sgemm(Transpose.No, Transpose.Yes, seqLen, seqLen, headDim, 1f, dO, qWidth, v[kvOff..], kvWidth, 0f, scratch, seqLen);
                SvdLlm.Numerics.Kernels.Kernels.SoftmaxBackwardInPlace(p, scratch[..tt], seqLen);
                // dQ_h [T, D] = scale · dS · K_h ; dK_h [T, D] += scale · dSᵀ · Q_h
                backend.Sgemm(Transpose.No, Transpose.No, seqLen, headDim, seqLen, scale, scratch, seqLen, k[kvOff..], kvWidth, 0f, dq[qOff..], qWidth);
                backend.Sgemm(Transpose.Yes, Transpose.No, seqLen, headDim, seqLen, scale, scratch, seqLen, q[qOff..], qWidth, 1f, dk[kvOff..], kvWidth);
            }
        }
    }
}
