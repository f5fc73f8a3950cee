using System.CommandLine;
using System.Text.Json;
using SvdLlm.Evaluation.Perplexity;
using SvdLlm.Models.Tokenizers;

namespace SvdLlm.Cli.Commands;

/// <summary>
/// <c>svdllm tokenize --tokenizer PATH (--text S | --text-file F) [--add-special-tokens true|false] [--json]</c> and
/// <c>svdllm detokenize --tokenizer PATH (--ids "1,2,3" | --token-ids FILE) [--skip-special-tokens] [--json]</c>.
/// PATH is a tokenizer.json or tokenizer.model, or a directory holding one (or GPT-2's vocab.json + merges.txt).
/// </summary>
internal static class TokenizeCommand
{
    public static Command CreateTokenize()
    {
        var tokenizer = TokenizerOption();
        var text = new Option<string?>("--text") { Description = "the text to encode" };
        var textFile = new Option<string?>("--text-file") { Description = "a UTF-8 file to encode (whole)" };
        var special = new Option<bool>("--add-special-tokens") { Description = "let the post-processor add BOS/EOS (true|false)", DefaultValueFactory = _ => true };
        var json = new Option<bool>("--json") { Description = "print the ids as one JSON array" };
        var command = new Command("tokenize", "Encode text to token ids exactly as the Hugging Face tokenizers library does.")
        {
            tokenizer, text, textFile, special, json,
        };
        command.SetAction(p => CliErrors.Run(() =>
        {
            string input = ReadInput(p.GetValue(text), p.GetValue(textFile));
            var tok = HfTokenizer.Load(p.GetValue(tokenizer)!);
            var ids = tok.Encode(input, p.GetValue(special));
            Console.WriteLine(p.GetValue(json) ? JsonSerializer.Serialize(ids) : string.Join(' ', ids));
            return 0;
        }));
        return command;
    }

    public static Command CreateDetokenize()
    {
        var tokenizer = TokenizerOption();
        var ids = new Option<string?>("--ids") { Description = "token ids separated by commas or whitespace, or a JSON array" };
        var tokenIds = new Option<string?>("--token-ids") { Description = "a file of token ids separated by whitespace or commas" };
        var skip = new Option<bool>("--skip-special-tokens") { Description = "leave out special tokens" };
        var json = new Option<bool>("--json") { Description = "print the text as a JSON string" };
        var command = new Command("detokenize", "Decode token ids to text.") { tokenizer, ids, tokenIds, skip, json };
        command.SetAction(p => CliErrors.Run(() =>
        {
            var tok = HfTokenizer.Load(p.GetValue(tokenizer)!);
            int[] values = (p.GetValue(ids), p.GetValue(tokenIds)) switch
            {
                ({ } inline, null) => ParseInline(inline),
                (null, { } file) => TokenIdFile.Read(file),
                _ => throw new ArgumentException("give exactly one of --ids and --token-ids"),
            };
            foreach (int id in values)
                if (id < 0 || id >= tok.VocabSize) throw new ArgumentException($"token id {id} is outside the vocabulary [0, {tok.VocabSize})");
            string text = tok.Decode(values, p.GetValue(skip));
            if (p.GetValue(json)) Console.WriteLine(JsonSerializer.Serialize(text));
            else Console.Write(text);
            return 0;
        }));
        return command;
    }

    private static Option<string> TokenizerOption()
        => new("--tokenizer") { Description = "tokenizer.json or tokenizer.model, or a directory with one (or vocab.json + merges.txt)", Required = true };

    /// <summary>The text of exactly one of --text and --text-file.</summary>
    internal static string ReadInput(string? text, string? textFile) => (text, textFile) switch
    {
        ({ } t, null) => t,
        (null, { } f) => SvdLlm.Models.Data.Utf8Text.ReadFile(f, "text file"),
        _ => throw new ArgumentException("give exactly one of --text and --text-file"),
    };

    private static int[] ParseInline(string s)
    {
        string body = s.Trim().TrimStart('[').TrimEnd(']');
        var parts = body.Split([',', ' ', '\t', '\n', '\r'], StringSplitOptions.RemoveEmptyEntries);
        return parts.Select((x, i) => int.TryParse(x, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out int v)
            ? v : throw new ArgumentException($"--ids: entry {i + 1} '{x}' is not an integer token id")).ToArray();
    }
}
