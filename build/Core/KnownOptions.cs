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
        new("threads", OptionKind.Value, "thread count for Bench, TrainDefaultModel and the matrix targets", ValueName: "T",
            IsValid: v => int.TryParse(v, out int n) && n > 0, Requirement: "a positive integer"),
        new("matrix", OptionKind.Value, "experiment matrix for Calibrate/Compress/Evaluate/RunMatrix (default: experiments/default.yaml)", ValueName: "FILE"),
        new("db", OptionKind.Value, "results database (default: results/results.db)", ValueName: "PATH"),
        new("dpi", OptionKind.Value, "Report: resolution of the PNG figures in results/plots (default: 96; 300 for slides and papers)", ValueName: "N",
            IsValid: v => int.TryParse(v, out int n) && n >= 24 && n <= 1200, Requirement: "an integer from 24 to 1200"),
        new("dry-run", OptionKind.Flag, "matrix targets: print the cells and what is cached; compute nothing. Submit: print the job scripts; submit nothing"),
        new("no-build", OptionKind.Flag, "skip Restore and Build and use the binaries an earlier Build left (what Submit's jobs pass, so shards sharing a checkout do not build it at once)"),
        new("shard", OptionKind.Value, "matrix targets: run shard I of N (cells partitioned by key hash)", ValueName: "I/N",
            IsValid: v => v.Split('/') is [var i, var n] && int.TryParse(i, out int a) && int.TryParse(n, out int b) && a >= 1 && a <= b,
            Requirement: "I/N with 1 ≤ I ≤ N"),
        new("out", OptionKind.Value, "Report: directory for tables/, plots/ and report.html (default: results); Pack: directory for the .nupkg (default: artifacts/nupkg)", ValueName: "DIR"),
        new("scheduler", OptionKind.Value, "Submit: the batch scheduler to submit to", ValueName: "NAME",
            AllowedValues: ["slurm"]),
        new("shards", OptionKind.Value, "Submit: number of shard jobs (a job array of N tasks, then one merge and report job)", ValueName: "N",
            IsValid: v => int.TryParse(v, out int n) && n > 0, Requirement: "a positive integer"),
        new("partition", OptionKind.Value, "Submit: Slurm partition of every job (default: the cluster's default partition)", ValueName: "P",
            IsValid: v => v.Length > 0 && v.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or ','), Requirement: "a partition name (letters, digits, '-', '_', '.'; several separated by ',')"),
        new("time", OptionKind.Value, "Submit: Slurm time limit of every job (default: the partition's)", ValueName: "T",
            IsValid: Support.SlurmPlan.IsTimeLimit, Requirement: "a Slurm time limit: MINUTES, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"),
        new("from", OptionKind.Value, "MergeResults: comma-separated shard databases", ValueName: "A.db,B.db"),
        new("scale", OptionKind.Flag, "Bench: the 7B-shape scale benchmark (calibration and compression per layer, peak RSS, floor) instead of forward throughput"),
        new("layers", OptionKind.Value, "Bench --scale: comma-separated depths (default: 1,3)", ValueName: "A,B",
            IsValid: v => v.Split(',').All(x => int.TryParse(x, out int n) && n > 0), Requirement: "positive integers separated by commas"),
        new("methods", OptionKind.Value, "Bench --scale: comma-separated methods (default: svdllm-v2,svdllm,asvd)", ValueName: "A,B"),
        new("trials", OptionKind.Value, "Stress: trials to run (default: 100)", ValueName: "N",
            IsValid: v => int.TryParse(v, out int n) && n > 0, Requirement: "a positive integer"),
        new("processes", OptionKind.Value, "Stress: run-matrix processes started together per trial (default: 2)", ValueName: "P",
            IsValid: v => int.TryParse(v, out int n) && n >= 2, Requirement: "an integer of at least 2"),
        new("filter", OptionKind.Value, "test filter expression for Test (dotnet test --filter)", ValueName: "EXPR"),
    ];

    public static OptionSpec? Find(string name) =>
        All.FirstOrDefault(o => o.Name.Equals(name, StringComparison.OrdinalIgnoreCase));
}
