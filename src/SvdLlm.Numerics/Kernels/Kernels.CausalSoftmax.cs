namespace SvdLlm.Numerics.Kernels;

public static partial class Kernels
{
    /// <summary>
    /// Masked softmax of attention scores [T, T] in place: row i keeps columns j with
    /// lo(i) ≤ j ≤ i, where lo(i) = max(0, i − window + 1) with a sliding window and 0 without one
    /// (a query sees itself and at most window − 1 earlier keys, the Hugging Face Mistral rule
    /// kv_idx &gt; q_idx − sliding_window). Masked entries are set to exactly 0, so the following
    /// P·V product can run over all T columns. Each kept row is a stable softmax (max subtracted).
    /// </summary>
    public static unsafe void CausalSoftmax(Span<float> scores, int tokens, int? window)
    {
        CheckAtLeast(nameof(CausalSoftmax), "scores", scores.Length, (long)tokens * tokens);
        if (window is <= 0) throw new ArgumentException($"CausalSoftmax: window {window} must be positive");
        fixed (float* ps = scores)
        {
            nint a = (nint)ps;
            ForRows(tokens, tokens, i =>
            {
                var row = new Span<float>((float*)a + (long)i * tokens, tokens);
                int lo = window is int w ? Math.Max(0, i - w + 1) : 0;
                row[..lo].Clear();
                row[(i + 1)..].Clear();
                SoftmaxInPlace(row[lo..(i + 1)]);
            });
        }
    }
}
