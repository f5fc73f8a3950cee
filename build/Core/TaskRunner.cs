using System.Diagnostics;

namespace SvdLlm.Build;

/// <summary>Runs a target (and, unless exclusive, its dependencies) and reports how each one went.</summary>
public sealed class TaskRunner(TaskGraph graph, BuildContext context)
{
    private enum Status { NotRun, Succeeded, Failed }

    /// <summary>The targets --no-build leaves out of a run (unless one of them is the target itself).</summary>
    public static readonly IReadOnlySet<string> SkippedByNoBuild = new HashSet<string>(["Restore", "Build"], StringComparer.OrdinalIgnoreCase);

    private sealed class Outcome(TaskNode task)
    {
        public TaskNode Task { get; } = task;
        public Status Status { get; set; } = Status.NotRun;
        public TimeSpan Duration { get; set; }
    }

    /// <returns>The process exit code: 0 when every task succeeded, 1 otherwise.</returns>
    public int Run(TaskNode target, bool exclusive)
    {
        var order = exclusive ? [target] : graph.ExecutionOrder(target);
        if (context.NoBuild)
        {
            var skipped = order.Where(t => t != target && SkippedByNoBuild.Contains(t.Name)).ToList();
            if (skipped.Count > 0)
            {
                if (!File.Exists(context.CliDll))
                {
                    Console.Error.WriteLine($"error: --no-build skips {string.Join(" and ", skipped.Select(t => t.Name))}, but {context.CliDll} has not been built; run ./build.sh --target=Build first.");
                    return 1;
                }
                context.Info($"{string.Join(", ", skipped.Select(t => t.Name))}: skipped (--no-build)");
                order = order.Except(skipped).ToList();
            }
        }
        var outcomes = order.Select(t => new Outcome(t)).ToList();
        Outcome? failed = null;
        foreach (var outcome in outcomes)
        {
            context.Info(outcome == outcomes[0] ? $"==> {outcome.Task.Name}" : $"{Environment.NewLine}==> {outcome.Task.Name}");
            var clock = Stopwatch.StartNew();
            try
            {
                var task = (FrostingTask)Activator.CreateInstance(outcome.Task.Type)!;
                task.Run(context);
                outcome.Status = Status.Succeeded;
            }
            catch (Exception e)
            {
                outcome.Status = Status.Failed;
                failed = outcome;
                ReportFailure(outcome.Task, e);
            }
            outcome.Duration = clock.Elapsed;
            if (failed is not null)
                break;
        }

        if (failed is not null || !context.Quiet)
            WriteSummary(outcomes);
        foreach (string line in context.ClosingLines)
            Console.WriteLine(line);
        return failed is null ? 0 : 1;
    }

    private static void ReportFailure(TaskNode task, Exception e)
    {
        // A BuildFailedException already says what to do; anything else is a bug here, so show where.
        string detail = e is BuildFailedException ? e.Message : e.ToString();
        Console.Out.Flush();
        Console.Error.WriteLine($"Task '{task.Name}' failed: {detail}");
    }

    private static void WriteSummary(IReadOnlyList<Outcome> outcomes)
    {
        int width = Math.Max("Total".Length, outcomes.Max(o => o.Task.Name.Length)) + 2;
        Console.WriteLine();
        Console.WriteLine($"{"Task".PadRight(width)}{"Duration",-14}Status");
        Console.WriteLine(new string('-', width + 14 + 10));
        foreach (var o in outcomes)
        {
            string duration = o.Status == Status.NotRun ? "-" : Format(o.Duration);
            string status = o.Status switch { Status.Succeeded => "Succeeded", Status.Failed => "Failed", _ => "Not run" };
            Console.WriteLine($"{o.Task.Name.PadRight(width)}{duration,-14}{status}");
        }
        Console.WriteLine(new string('-', width + 14 + 10));
        Console.WriteLine($"{"Total".PadRight(width)}{Format(TimeSpan.FromTicks(outcomes.Sum(o => o.Duration.Ticks)))}");
    }

    private static string Format(TimeSpan t) => t.ToString(@"hh\:mm\:ss\.ff");
}
