namespace SvdLlm.Build;

public enum OptionKind
{
    /// <summary>Present or absent (<c>--tree</c>); <c>--tree=false</c> is also accepted.</summary>
    Flag,

    /// <summary>Takes a value: <c>--name=value</c> or <c>--name value</c>.</summary>
    Value,
}

public sealed record OptionSpec(
    string Name,
    OptionKind Kind,
    string Help,
    string ValueName = "VALUE",
    IReadOnlyList<string>? AllowedValues = null,
    Func<string, bool>? IsValid = null,
    string Requirement = "valid");

/// <summary>
/// Every option the host accepts. A target that reads a new option registers it here: anything else on
/// the command line is far more likely a typo than a wish, so it is rejected rather than silently ignored.
/// </summary>
public static class KnownOptions
{
    public static readonly IReadOnlyList<OptionSpec> All =
    [
        new("target", OptionKind.Value, "target to run (default: Build)", ValueName: "NAME"),
        new("exclusive", OptionKind.Flag, "run only the target, not its dependencies"),
        new("tree", OptionKind.Flag, "print the dependency graph of the target (of every target without --target) and exit"),
        new("configuration", OptionKind.Value, "build configuration (default: Release)", ValueName: "CFG",
            AllowedValues: ["Release", "Debug"]),
        new("verbosity", OptionKind.Value, "quiet: no headers or summary table unless a task fails, dotnet at -v q (default: normal)", ValueName: "LEVEL",
            AllowedValues: ["quiet", "normal"]),
        new("help", OptionKind.Flag, "list the targets and options"),
        new("threads", OptionKind.Value, "thread count for Bench and TrainDefaultModel", ValueName: "T",
            IsValid: v => int.TryParse(v, out int n) && n > 0, Requirement: "a positive integer"),
        new("filter", OptionKind.Value, "test filter expression for Test (dotnet test --filter)", ValueName: "EXPR"),
    ];

    public static OptionSpec? Find(string name) =>
        All.FirstOrDefault(o => o.Name.Equals(name, StringComparison.OrdinalIgnoreCase));
}
