using SvdLlm.Numerics;
using SvdLlm.Numerics.Backends;

namespace SvdLlm.Models.Architectures;

/// <summary>
/// Scaled dot-product causal self-attention shared by every family, on GEMMs.
/// B=batch, T=seq, NH=query heads, NKV=key/value heads, D=head_dim.
/// q is [B·T, NH·D], k and v are [B·T, NKV·D]; a head is a column block, reached through the
/// leading dimension, so nothing is transposed or copied. Query head h reads key/value head
/// h / (NH/NKV) (grouped-query attention; NKV = NH is plain multi-head attention).
/// </summary>
internal static class CausalAttention
{
    /// <param name="scores">scratch [T, T]</param>
    /// <param name="output">[B·T, NH·D], overwritten</param>
    public static void Forward(IComputeBackend backend, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        Span<float> output, int batch, int seqLen, int heads, int kvHeads, int headDim, float scale, int? window, Span<float> scores)
    {
        int qWidth = heads * headDim, kvWidth = kvHeads * headDim, groups = heads / kvHeads;
        for (int b = 0; b < batch; b++)
        {
            int rowBase = b * seqLen;
            for (int h = 0; h < heads; h++)
            {
                int kvh = h / groups;
                var qh = q[(rowBase * qWidth + h * headDim)..];
                var kh = k[(rowBase * kvWidth + kvh * headDim)..];
                var vh = v[(rowBase * kvWidth + kvh * headDim)..];
                var oh = output[(rowBase * qWidth + h * headDim)..];
                // scores [T, T] = scale · Q_h [T, D] · K_hᵀ [D, T]
                backend.Sgemm(Transpose.No, Transpose.Yes, seqLen, seqLen, headDim, scale, qh, qWidth, kh, kvWidth, 0f, scores, seqLen);
                backend.CausalSoftmax(scores, seqLen, window);
                // O_h [T, D] = P [T, T] · V_h [T, D]
                backend.Sgemm(Transpose.No, Transpose.No, seqLen, headDim, seqLen, 1f, scores, seqLen, vh, kvWidth, 0f, oh, qWidth);
            }
        }
    }
}
