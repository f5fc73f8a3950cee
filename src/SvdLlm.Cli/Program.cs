using System.CommandLine;
using SvdLlm.Cli.Commands;

namespace SvdLlm.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        var root = new RootCommand("svdllm: SVD compression of large language models (SVD-LLM V2 and baselines), evaluation and experiments.")
        {
            InspectCommand.Create(),
            PplCommand.Create(),
            TokenizeCommand.CreateTokenize(),
            TokenizeCommand.CreateDetokenize(),
            TrainCommand.Create(),
            CompressDeltaCommand.Create(),
            CompressCommand.CreateCalibrate(),
            CompressCommand.CreateCompress(),
            EvalCommand.Create(),
            BenchEfficiencyCommand.Create(),
            ReportCommand.Create(),
            RunMatrixCommand.Create(),
            RunMatrixCommand.CreateMerge(),
        };
        return root.Parse(args).Invoke();
    }
}
