namespace SvdLlm.Build;

/// <summary>
/// The task host behind build.sh / build.ps1, shaped like Cake Frosting but without its package, so it
/// runs on a machine where nothing has been restored yet. Exit codes: 0 success, 1 a task failed,
/// 2 the command line was wrong.
/// </summary>
public static class Program
{
    public const string DefaultTarget = "Build";

    public static int Main(string[] args)
    {
        try
        {
            var commandLine = CommandLine.Parse(args);
            var graph = TaskGraph.FromAssembly(typeof(Program).Assembly);
            if (commandLine.Flag("help"))
            {
                Usage.Write(Console.Out, graph);
                return 0;
            }

            string? targetName = commandLine.Get("target");
            TaskNode? target = targetName is null ? null : graph.Find(targetName) ?? throw UnknownTarget(targetName, graph);
            if (commandLine.Flag("tree"))
            {
                var roots = target is null ? graph.Tasks : [target];
                for (int i = 0; i < roots.Count; i++)
                {
                    if (i > 0)
                        Console.WriteLine();
                    TaskGraph.WriteTree(Console.Out, roots[i]);
                }
                return 0;
            }

            target ??= graph.Find(DefaultTarget) ?? throw new InvalidOperationException($"No '{DefaultTarget}' task.");
            var context = new BuildContext(RepositoryRoot.Find(), commandLine);
            return new TaskRunner(graph, context).Run(target, commandLine.Flag("exclusive"));
        }
        catch (UsageException e)
        {
            Console.Error.WriteLine(e.Message);
            Console.Error.WriteLine("Run ./build.sh --help for the targets and options.");
            return 2;
        }
        catch (Exception e) when (e is BuildFailedException or InvalidOperationException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }

    private static UsageException UnknownTarget(string name, TaskGraph graph)
    {
        var names = graph.Tasks.Select(t => t.Name).ToArray();
        return new UsageException($"Unknown target '{name}'. Known targets: {string.Join(", ", names)}.{Suggestions.DidYouMean(name, names)}");
    }
}
