namespace SvdLlm.Models;

/// <summary>"Did you mean …" for unknown names (tensors, linears, methods, tasks): the closest candidate by edit distance.</summary>
public static class NameSuggestions
{
    /// <summary>
    /// The candidate closest to <paramref name="name"/>, or null when none is close enough to be a plausible typo
    /// (more than a third of the name, at least 2, away). Ties go to the ordinally smaller candidate.
    /// </summary>
    public static string? Closest(string name, IEnumerable<string> candidates)
    {
        string? best = null;
        int bestDistance = Math.Max(2, name.Length / 3) + 1;
        foreach (string candidate in candidates)
        {
            int distance = EditDistance(name, candidate);
            if (distance < bestDistance || (distance == bestDistance && best is not null && string.CompareOrdinal(candidate, best) < 0))
            {
                best = candidate;
                bestDistance = distance;
            }
        }
        return best;
    }

    /// <summary>Levenshtein distance with two rolling rows.</summary>
    public static int EditDistance(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++) previous[j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                int substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
                current[j] = Math.Min(substitution, Math.Min(previous[j], current[j - 1]) + 1);
            }
            (previous, current) = (current, previous);
        }
        return previous[b.Length];
    }
}
