namespace SvdLlm.Build;

public static class Usage
{
    public static void Write(TextWriter writer, TaskGraph graph)
    {
        writer.WriteLine("Usage: ./build.sh [--target=NAME] [options] [-- arguments for the program the target runs]");
        writer.WriteLine("       ./build.ps1 [-Target NAME] [-Exclusive] [-Tree] [options]");
        writer.WriteLine();
        writer.WriteLine($"Targets (default: {Program.DefaultTarget}):");
        int nameWidth = graph.Tasks.Max(t => t.Name.Length) + 2;
        foreach (var task in graph.Tasks)
        {
            string after = task.Dependencies.Count == 0 ? "" : $" [after {string.Join(", ", task.Dependencies.Select(d => d.Name))}]";
            writer.WriteLine($"  {task.Name.PadRight(nameWidth)}{task.Description}{after}");
        }
        writer.WriteLine();
        writer.WriteLine("Options:");
        var options = KnownOptions.All.Select(o => (Syntax: Syntax(o), o.Help)).ToArray();
        int optionWidth = options.Max(o => o.Syntax.Length) + 2;
        foreach (var (syntax, help) in options)
            writer.WriteLine($"  {syntax.PadRight(optionWidth)}{help}");
    }

    private static string Syntax(OptionSpec o) => o switch
    {
        { Kind: OptionKind.Flag } => $"--{o.Name}",
        { AllowedValues: { } allowed } => $"--{o.Name}={string.Join('|', allowed)}",
        _ => $"--{o.Name}={o.ValueName}",
    };
}
