using SvdLlm.Evaluation.Perplexity;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Checkpoints;
using SvdLlm.Numerics;

namespace SvdLlm.Cli.Commands;

/// <summary>Turns the errors a user can cause (bad files, bad arguments) into one clear line and exit code 1.</summary>
internal static class CliErrors
{
    public static int Run(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (e is CheckpointFormatException or ModelConfigException or TokenIdFileException or PerplexityException
                                       or FileNotFoundException or DirectoryNotFoundException or ArgumentException or LapackException
                                       or NonFiniteLogitsException or KeyNotFoundException or SvdLlm.Compression.InsufficientResourcesException
                                       or SvdLlm.Models.Training.TrainConfigException or SvdLlm.Models.Tokenizers.TokenizerFormatException or IOException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
        catch (Exception e)
        {
            // Unexpected: still one line first, then the trace so that a bug report has it.
            Console.Error.WriteLine($"error: {e.GetType().Name}: {e.Message}");
            Console.Error.WriteLine(e.StackTrace);
            return 1;
        }
    }
}
