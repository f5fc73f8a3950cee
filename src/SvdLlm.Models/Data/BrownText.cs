using System.Text;

namespace SvdLlm.Models.Data;

/// <summary>
/// Turns a Brown corpus file (Form C, as in NLTK's copy) into readable text.
/// </summary>
/// <remarks>
/// The source: every token is <c>word/tag</c> (the tag after the last '/', so <c>1-1/2/cd</c> is the word
/// <c>1-1/2</c>), tokens separated by spaces, one sentence per line (a paragraph's first sentence indented
/// by a tab), paragraphs separated by blank lines; headlines (tags ending in <c>-hl</c>) are lines of
/// their own. Contractions and possessives are single tokens (<c>don't/do*</c>, <c>Atlanta's/np$</c>), so
/// undoing the tokenization is only about punctuation and quotes.
/// <para>The output rule: tags dropped; <b>one sentence per line, and one blank line between
/// paragraphs</b> (sentences are not joined, because headlines carry no final punctuation and would run
/// into the next sentence). Within a sentence, words are joined by one space except: no space before
/// <c>, . ; : ? !</c>, closing brackets and closing quotes; no space after opening brackets and opening
/// quotes. The corpus's <c>``</c> and <c>''</c> become <c>"</c> (opening and closing). A lone <c>'</c>
/// token is a single quote whose direction the corpus does not mark: within a sentence they alternate,
/// opening first, except that one followed by closing punctuation (or ending the sentence) always
/// closes (and the next one opens again). The dash <c>--</c> keeps its spaces. Punctuation the corpus
/// repeats is written once: a doubled <c>, ; : ? !</c> token (the corpus doubles the final mark of
/// thousands of sentences) and a period token after an abbreviation ("Jr. ." → "Jr."). Inch marks inside
/// words (<c>10''/cd</c>, <c>1/2''/nn</c>) are kept as they are.</para>
/// </remarks>
public static class BrownText
{
    private const string OpeningDouble = "``";
    private const string ClosingDouble = "''";
    private const string Single = "'";

    /// <summary>Readable text of one tagged Brown file (see the class remarks for the rule).</summary>
    public static string Detokenize(string taggedText)
    {
        ArgumentNullException.ThrowIfNull(taggedText);
        var paragraphs = new List<string>();
        var sentences = new List<string>();
        foreach (string line in taggedText.ReplaceLineEndings("\n").Split('\n'))
        {
            if (string.IsNullOrWhiteSpace(line))
            {
                if (sentences.Count > 0)
                    paragraphs.Add(string.Join('\n', sentences));
                sentences.Clear();
                continue;
            }
            string sentence = DetokenizeSentence(line);
            if (sentence.Length > 0)
                sentences.Add(sentence);
        }
        if (sentences.Count > 0)
            paragraphs.Add(string.Join('\n', sentences));
        return string.Join("\n\n", paragraphs);
    }

    /// <summary>One line of <c>word/tag</c> tokens as a readable sentence.</summary>
    public static string DetokenizeSentence(string taggedLine)
    {
        ArgumentNullException.ThrowIfNull(taggedLine);
        string[] words = taggedLine
            .Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)
            .Select(WordOf)
            .ToArray();

        var text = new StringBuilder(taggedLine.Length);
        bool glueNext = false;
        bool singleOpen = false;
        for (int i = 0; i < words.Length; i++)
        {
            string word = words[i];
            if (i > 0 && IsRepeatedPunctuation(words[i - 1], word))
                continue;
            bool opens, closes;
            string output = word;
            switch (word)
            {
                case OpeningDouble:
                    (output, opens, closes) = ("\"", true, false);
                    break;
                case ClosingDouble:
                    (output, opens, closes) = ("\"", false, true);
                    break;
                case Single:
                    bool closesHere = singleOpen || i + 1 == words.Length || IsClosingPunctuation(words[i + 1]);
                    (opens, closes) = (!closesHere, closesHere);
                    singleOpen = opens;
                    break;
                default:
                    opens = word is "(" or "[" or "{";
                    closes = IsClosingPunctuation(word);
                    break;
            }
            if (text.Length > 0 && !glueNext && !closes)
                text.Append(' ');
            text.Append(output);
            glueNext = opens;
        }
        return text.ToString();
    }

    /// <summary>The word of a <c>word/tag</c> token: everything before the last '/'.</summary>
    private static string WordOf(string token)
    {
        int slash = token.LastIndexOf('/');
        return slash > 0 ? token[..slash] : token;
    }

    /// <summary>
    /// The corpus doubles the final punctuation of many sentences ("?/. ?/." 2,346 times, ";/. ;/." 2,777,
    /// "!/. !/." 798, ",/, ,/," 72, ":/. :/." 27) and ends sentences after an abbreviation with a second
    /// period ("Jr./np ./.", 198 times): the repeat is dropped.
    /// </summary>
    private static bool IsRepeatedPunctuation(string previous, string word) =>
        word is "," or ";" or ":" or "?" or "!" ? previous == word
        : word == "." && previous.Length > 1 && previous[^1] == '.' && char.IsLetter(previous[^2]);

    private static bool IsClosingPunctuation(string word) =>
        word is "," or "." or ";" or ":" or "?" or "!" or ")" or "]" or "}" or ClosingDouble;
}
