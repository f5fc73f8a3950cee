namespace SvdLlm.Models.Checkpoints;

/// <summary>
/// The files of a Hugging Face model directory whose bytes decide what the model computes: config.json, the safetensors
/// index and shards, and every tokenizer file this build can read. Every content key that depends on a model (its
/// calibration statistics, its cells) hashes exactly this list, so two keys cannot disagree about what a model is.
/// </summary>
public static class ModelContentFiles
{
    public static readonly IReadOnlyList<string> Named =
        ["config.json", "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt", "tokenizer.model"];

    /// <summary>The content files present in <paramref name="directory"/>, by file name in ordinal order.</summary>
    public static IReadOnlyList<string> In(string directory) =>
        Directory.EnumerateFiles(directory)
            .Where(f => Named.Contains(Path.GetFileName(f)) || f.EndsWith(".safetensors", StringComparison.Ordinal))
            .OrderBy(f => Path.GetFileName(f), StringComparer.Ordinal)
            .ToList();
}
