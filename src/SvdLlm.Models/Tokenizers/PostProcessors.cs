namespace SvdLlm.Models.Tokenizers;

/// <summary>
/// A tokenizer.json <c>post_processor</c> for a single sequence: decides which special tokens
/// (BOS, EOS, CLS/SEP) surround the encoded text when the caller asks for special tokens.
/// </summary>
internal abstract class PostProcessor
{
    /// <summary>Rewrites <paramref name="ids"/> in place.</summary>
    public abstract void Process(List<int> ids, bool addSpecialTokens);

    /// <summary>The ids placed before and after the sequence when special tokens are added.</summary>
    public abstract (IReadOnlyList<int> Prefix, IReadOnlyList<int> Suffix) SpecialTokens { get; }
}

/// <summary>
/// <c>TemplateProcessing</c> with its <c>single</c> template, e.g. <c>[&lt;s&gt;, $A]</c>. Without
/// special tokens only the sequence is kept.
/// </summary>
internal sealed class TemplatePostProcessor(int[] prefix, int[] suffix) : PostProcessor
{
    public override (IReadOnlyList<int> Prefix, IReadOnlyList<int> Suffix) SpecialTokens => (prefix, suffix);

    public override void Process(List<int> ids, bool addSpecialTokens)
    {
        if (!addSpecialTokens) return;
        ids.InsertRange(0, prefix);
        ids.AddRange(suffix);
    }
}

/// <summary><c>ByteLevel</c> as a post-processor only trims offsets: the ids are unchanged.</summary>
internal sealed class ByteLevelPostProcessor : PostProcessor
{
    public override (IReadOnlyList<int> Prefix, IReadOnlyList<int> Suffix) SpecialTokens => ([], []);

    public override void Process(List<int> ids, bool addSpecialTokens) { }
}

/// <summary><c>Sequence</c>: applies each processor in order.</summary>
internal sealed class SequencePostProcessor(IReadOnlyList<PostProcessor> processors) : PostProcessor
{
    public override (IReadOnlyList<int> Prefix, IReadOnlyList<int> Suffix) SpecialTokens
    {
        get
        {
            var ids = new List<int> { -1 };
            Process(ids, addSpecialTokens: true);
            int at = ids.IndexOf(-1);
            return (ids[..at], ids[(at + 1)..]);
        }
    }

    public override void Process(List<int> ids, bool addSpecialTokens)
    {
        foreach (PostProcessor p in processors) p.Process(ids, addSpecialTokens);
    }
}
