using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace SvdLlm.Experiments.Matrix;

/// <summary>Where a value came from: file, 1-based line and column.</summary>
public sealed record SourcePosition(string File, long Line, long Column)
{
    public override string ToString() => $"{File}:{Line}:{Column}";
}

/// <summary>One problem in a matrix file, printed as <c>file:line:column: message</c>.</summary>
public sealed record MatrixError(SourcePosition Position, string Message)
{
    public override string ToString() => $"{Position}: {Message}";
}

/// <summary>Every problem found in a matrix (all of them, not just the first), one per line.</summary>
public sealed class MatrixValidationException(IReadOnlyList<MatrixError> errors)
    : UserInputException(string.Join("\n", errors.Select(e => e.ToString())))
{
    public IReadOnlyList<MatrixError> Errors { get; } = errors;
}

/// <summary>
/// A YAML document as a small tree whose every node knows its file and position, so that values merged from
/// an <c>extends:</c> base file or an anchor still report where they were written. Aliases are resolved by
/// YamlDotNet (an alias node is the anchored node, so its position is the anchor's: the place to edit).
/// </summary>
public abstract record YNode(SourcePosition Position, string? Anchor);

public sealed record YScalar(string Value, bool Quoted, SourcePosition Position, string? Anchor) : YNode(Position, Anchor)
{
    /// <summary>A plain (unquoted) null, ~ or empty scalar.</summary>
    public bool IsNull => !Quoted && Value is "" or "~" or "null" or "Null" or "NULL";
}

public sealed record YSequence(IReadOnlyList<YNode> Items, SourcePosition Position, string? Anchor) : YNode(Position, Anchor);

public sealed record YMapping(IReadOnlyList<KeyValuePair<YScalar, YNode>> Entries, SourcePosition Position, string? Anchor) : YNode(Position, Anchor)
{
    public YNode? this[string key] => Entries.FirstOrDefault(e => e.Key.Value == key).Value;

    public YScalar? KeyNode(string key) => Entries.FirstOrDefault(e => e.Key.Value == key).Key;
}

public static class YamlTree
{
    /// <summary>Parses one YAML document (merge keys <c>&lt;&lt;</c> supported, explicit keys winning); syntax errors carry their position.</summary>
    public static YNode? Parse(string text, string file)
    {
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(text));
        }
        catch (YamlException e)
        {
            string message = e.InnerException?.Message ?? e.Message;
            // YamlDotNet prefixes its own "(Line: .., Col: ..)" position; ours is in front already.
            int cut = message.IndexOf("): ", StringComparison.Ordinal);
            if (message.StartsWith("(Line", StringComparison.Ordinal) && cut > 0) message = message[(cut + 3)..];
            throw new MatrixValidationException([new MatrixError(new SourcePosition(file, e.Start.Line, e.Start.Column), "YAML syntax: " + message)]);
        }
        catch (InvalidOperationException)
        {
            // YamlDotNet's scanner fails this way (without a position) on input that ends inside a flow
            // collection; the end of the file is where the parser stopped.
            int lines = text.Split('\n').Length;
            throw new MatrixValidationException([new MatrixError(new SourcePosition(file, lines, 1), "YAML syntax: the file ends inside an unclosed [ or { (flow collection)")]);
        }
        if (stream.Documents.Count == 0) return null;
        if (stream.Documents.Count > 1)
        {
            var second = stream.Documents[1].RootNode.Start;
            throw new MatrixValidationException([new MatrixError(new SourcePosition(file, second.Line, second.Column), "a matrix file holds one YAML document; found a second")]);
        }
        return Convert(stream.Documents[0].RootNode, file, new Expansion());
    }

    /// <summary>
    /// Limits on what aliases can expand to. YamlDotNet resolves an alias to the anchored node itself, so a
    /// self-referencing anchor is a cycle and nested aliases multiply (a 775-byte "billion laughs" names 10⁹ nodes):
    /// without limits the first overflows the stack and the second exhausts memory. A matrix has a few hundred nodes.
    /// </summary>
    private sealed class Expansion
    {
        public const int MaxDepth = 64;
        public const int MaxNodes = 100_000;
        public int Nodes;
        public readonly HashSet<YamlNode> Open = new(ReferenceEqualityComparer.Instance);
    }

    private static YNode Convert(YamlNode node, string file, Expansion x)
    {
        var pos = new SourcePosition(file, node.Start.Line, node.Start.Column);
        if (node is YamlSequenceNode or YamlMappingNode)
        {
            if (!x.Open.Add(node))
                throw new MatrixValidationException([new MatrixError(pos, "YAML: an alias refers to the node that contains it (a recursive structure); a matrix is a finite tree")]);
            if (x.Open.Count > Expansion.MaxDepth)
                throw new MatrixValidationException([new MatrixError(pos, $"YAML: nested deeper than {Expansion.MaxDepth} levels; a matrix needs a handful")]);
            try
            {
                return ConvertNode(node, pos, file, x);
            }
            finally
            {
                x.Open.Remove(node);
            }
        }
        return ConvertNode(node, pos, file, x);
    }

    private static YNode ConvertNode(YamlNode node, SourcePosition pos, string file, Expansion x)
    {
        if (++x.Nodes > Expansion.MaxNodes)
            throw new MatrixValidationException([new MatrixError(pos, $"YAML: aliases expand to more than {Expansion.MaxNodes} values; a matrix needs a few hundred")]);
        string? anchor = node.Anchor.IsEmpty ? null : node.Anchor.Value;
        switch (node)
        {
            case YamlScalarNode s:
                return new YScalar(s.Value ?? "", s.Style is ScalarStyle.SingleQuoted or ScalarStyle.DoubleQuoted or ScalarStyle.Literal or ScalarStyle.Folded, pos, anchor);
            case YamlSequenceNode q:
                return new YSequence(q.Children.Select(c => Convert(c, file, x)).ToList(), pos, anchor);
            case YamlMappingNode m:
                var entries = new List<KeyValuePair<YScalar, YNode>>();
                var merged = new List<YMapping>();
                foreach (var (k, v) in m.Children)
                {
                    if (Convert(k, file, x) is not YScalar key)
                        throw new MatrixValidationException([new MatrixError(new SourcePosition(file, k.Start.Line, k.Start.Column), "mapping keys must be plain strings")]);
                    var value = Convert(v, file, x);
                    if (key.Value == "<<" && !key.Quoted)
                    {
                        // YAML merge key: the merged mappings supply the keys this mapping does not write itself.
                        var sources = value switch
                        {
                            YMapping one => [one],
                            YSequence many when many.Items.All(i => i is YMapping) => many.Items.Cast<YMapping>().ToList(),
                            _ => throw new MatrixValidationException([new MatrixError(value.Position, "'<<' merges a mapping (or a list of mappings), e.g. <<: *defaults")]),
                        };
                        merged.AddRange(sources);
                        continue;
                    }
                    entries.Add(new(key, value));
                }
                foreach (var source in merged)
                    foreach (var e in source.Entries)
                        if (!entries.Any(x => x.Key.Value == e.Key.Value)) entries.Add(e);
                return new YMapping(entries, pos, anchor);
            default:
                throw new MatrixValidationException([new MatrixError(pos, $"unsupported YAML node {node.NodeType}")]);
        }
    }

    /// <summary>
    /// <paramref name="child"/> over <paramref name="parent"/>: keys of the child replace the parent's, except
    /// that mappings listed in <paramref name="deepKeys"/> are merged key by key (so a child can change one
    /// calibration or run option and inherit the rest). Sequences are replaced whole: a child's
    /// <c>methods:</c> is the list of methods, not an addition to the base's.
    /// </summary>
    public static YMapping Overlay(YMapping parent, YMapping child, IReadOnlySet<string> deepKeys)
    {
        var result = new List<KeyValuePair<YScalar, YNode>>();
        foreach (var (k, v) in parent.Entries)
        {
            var over = child[k.Value];
            if (over is null) result.Add(new(k, v));
            else if (deepKeys.Contains(k.Value) && v is YMapping pm && over is YMapping cm) result.Add(new(child.KeyNode(k.Value)!, Overlay(pm, cm, new HashSet<string>())));
            else result.Add(new(child.KeyNode(k.Value)!, over));
        }
        foreach (var (k, v) in child.Entries)
            if (parent[k.Value] is null) result.Add(new(k, v));
        return new YMapping(result, child.Position, child.Anchor);
    }
}
