namespace SvdLlm.Evaluation.Efficiency;

/// <summary>
/// The prompt an efficiency measurement feeds: seeded uniform token ids. Throughput does not depend on
/// which tokens are fed (every token costs the same), so no corpus or tokenizer is needed, and the same
/// seed gives the original and the compressed model the same prompt.
/// </summary>
public static class SyntheticPrompt
{
    /// <summary>tokens [batch · promptLen], row-major, each in [0, vocabSize), from <c>new Random(seed)</c> (stable across .NET versions for a given seed).</summary>
    public static int[] Create(int seed, int batch, int promptLen, int vocabSize)
    {
        if (batch <= 0 || promptLen <= 0 || vocabSize <= 0)
            throw new ArgumentException($"synthetic prompt: batch {batch}, prompt length {promptLen} and vocabulary {vocabSize} must be positive");
        var rng = new Random(seed);
        var tokens = new int[batch * promptLen];
        for (int i = 0; i < tokens.Length; i++) tokens[i] = rng.Next(vocabSize);
        return tokens;
    }
}
