using System.CommandLine;
using System.Text.Json;
using SvdLlm.Evaluation.Perplexity;
using SvdLlm.Models.Architectures;
using SvdLlm.Numerics;

namespace SvdLlm.Cli.Commands;

/// <summary>
/// <c>svdllm ppl --model DIR (--token-ids FILE | --text-file F) --seq-len N [--max-chunks K] [--batch-size B] [--threads T] [--json]</c>:
/// perplexity of an already-tokenized stream, or of a text tokenized whole with the model directory's tokenizer
/// (BOS, if its post-processor adds one, at the start only), with SVD-LLM's non-overlapping-chunk protocol.
/// </summary>
internal static class PplCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Hugging Face model directory", Required = true };
        var tokenIds = new Option<string?>("--token-ids") { Description = "file of token ids separated by whitespace or commas (BOS included if wanted)" };
        var textFile = new Option<string?>("--text-file") { Description = "UTF-8 text, tokenized whole with the model's tokenizer (BOS at the start only)" };
        var seqLen = new Option<int>("--seq-len") { Description = "tokens per non-overlapping chunk", Required = true };
        var maxChunks = new Option<int?>("--max-chunks") { Description = "evaluate at most this many chunks" };
        var batchSize = new Option<int>("--batch-size") { Description = "chunks per forward pass", DefaultValueFactory = _ => 1 };
        var threads = new Option<int?>("--threads") { Description = "threads for BLAS and kernels (default: all cores)" };
        var json = new Option<bool>("--json") { Description = "print one JSON object" };
        var command = new Command("ppl", "Perplexity over non-overlapping chunks of a token stream (SVD-LLM protocol).")
        {
            model, tokenIds, textFile, seqLen, maxChunks, batchSize, threads, json,
        };
        command.SetAction(parse => CliErrors.Run(() => Run(parse.GetValue(model)!, parse.GetValue(tokenIds), parse.GetValue(textFile), parse.GetValue(seqLen),
            parse.GetValue(maxChunks), parse.GetValue(batchSize), parse.GetValue(threads), parse.GetValue(json))));
        return command;
    }

    private static int Run(string directory, string? tokenIdsPath, string? textFile, int seqLen, int? maxChunks, int batchSize, int? threads, bool json)
    {
        if (threads is int t)
        {
            if (t <= 0) throw new ArgumentException($"--threads must be positive, got {t}");
            NumericsRuntime.SetThreads(t);
        }
        if ((tokenIdsPath is null) == (textFile is null)) throw new ArgumentException("give exactly one of --token-ids and --text-file");
        using var model = ModelLoader.Load(directory);
        var ids = tokenIdsPath is not null
            ? TokenIdFile.Read(tokenIdsPath, model.VocabSize)
            : SvdLlm.Models.Tokenizers.HfTokenizer.Load(directory).Encode(TokenizeCommand.ReadInput(null, textFile), addSpecialTokens: true);
        model.LoadAll();
        // A carriage-return progress line only on a terminal; a redirected stderr (logs, CI) gets none.
        bool live = !Console.IsErrorRedirected;
        var result = PerplexityEvaluator.Evaluate(model, ids, seqLen, maxChunks, batchSize,
            live ? (done, total) => Console.Error.Write($"\rppl: chunk {done}/{total}") : null);
        if (live) Console.Error.WriteLine();
        if (json)
        {
            var o = new Dictionary<string, object?>
            {
                ["ppl"] = result.Ppl,
                ["nll"] = result.MeanNll,
                ["tokens"] = result.Tokens,
                ["chunks"] = result.Chunks,
                ["seq_len"] = result.SeqLen,
                ["dropped_tokens"] = result.DroppedTokens,
                ["protocol"] = result.Protocol,
                ["input"] = Path.GetFullPath(tokenIdsPath ?? textFile!),
                ["model"] = Path.GetFullPath(directory),
                ["architecture"] = model.Architecture,
                ["batch_size"] = batchSize,
                ["threads"] = NumericsRuntime.Threads,
                ["blas"] = NumericsRuntime.BlasConfig,
                ["seconds"] = result.Seconds,
                ["tokens_per_second"] = result.TokensPerSecond,
            };
            Console.WriteLine(JsonSerializer.Serialize(o, JsonOutput.Options));
        }
        else
        {
            Console.WriteLine($"ppl {result.Ppl:F4}  (mean NLL {result.MeanNll:F6} over {result.Tokens} predicted tokens in {result.Chunks} chunks of {seqLen}; {result.DroppedTokens} tokens dropped; {result.TokensPerSecond:F0} tok/s)");
        }
        return 0;
    }
}
