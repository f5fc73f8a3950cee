using System.Globalization;

namespace SvdLlm.Evaluation.Perplexity;

/// <summary>Bad content in a token-id file; the message names the file, line and column.</summary>
public sealed class TokenIdFileException(string message) : UserInputException(message);

/// <summary>
/// Reads a file of already-tokenized ids: non-negative integers separated by whitespace or commas
/// (a JSON array such as "[1, 2, 3]" is accepted too: the brackets are separators).
/// </summary>
public static class TokenIdFile
{
    public static int[] Read(string path, int? vocabSize = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"token id file not found: {path}", path);
        var ids = new List<int>();
        int line = 1, col = 1, startLine = 0, startCol = 0;
        var token = new System.Text.StringBuilder();
        void Flush()
        {
            if (token.Length == 0) return;
            string s = token.ToString();
            token.Clear();
            if (!int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out int id))
                throw new TokenIdFileException($"{path}:{startLine}:{startCol}: '{s}' is not a non-negative integer token id");
            if (vocabSize is int v && id >= v)
                throw new TokenIdFileException($"{path}:{startLine}:{startCol}: token id {id} is outside the model's vocabulary [0, {v})");
            ids.Add(id);
        }
        foreach (char ch in File.ReadAllText(path))
        {
            if (char.IsWhiteSpace(ch) || ch is ',' or '[' or ']') Flush();
            else
            {
                if (token.Length == 0) (startLine, startCol) = (line, col);
                token.Append(ch);
            }
            if (ch == '\n') { line++; col = 1; }
            else col++;
        }
        Flush();
        if (ids.Count == 0) throw new TokenIdFileException($"{path}: no token ids found");
        return ids.ToArray();
    }
}
