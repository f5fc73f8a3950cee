namespace SvdLlm.Build;

/// <summary>
/// The parsed command line: registered options by name, plus whatever follows a bare <c>--</c>, which is
/// handed to the program a target runs (e.g. Bench) untouched.
/// </summary>
public sealed class CommandLine
{
    private readonly Dictionary<string, string> _values;

    private CommandLine(Dictionary<string, string> values, IReadOnlyList<string> passThrough)
    {
        _values = values;
        PassThrough = passThrough;
    }

    public IReadOnlyDictionary<string, string> Values => _values;

    public IReadOnlyList<string> PassThrough { get; }

    public string? Get(string name) => _values.GetValueOrDefault(Registered(name).Name);

    public bool Flag(string name) => Get(name) == "true";

    public static CommandLine Parse(IReadOnlyList<string> args)
    {
        var values = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        for (int i = 0; i < args.Count; i++)
        {
            string arg = args[i];
            if (arg == "--")
                return new CommandLine(values, args.Skip(i + 1).ToArray());
            if (arg is "-h" or "-?")
                arg = "--help";
            if (!arg.StartsWith("--", StringComparison.Ordinal) || arg.Length == 2)
                throw new UsageException($"Unexpected argument '{arg}'. Options look like --name=value; arguments for the program a target runs go after a bare --.");

            int equals = arg.IndexOf('=');
            string name = equals < 0 ? arg[2..] : arg[2..equals];
            string? value = equals < 0 ? null : arg[(equals + 1)..];
            OptionSpec spec = KnownOptions.Find(name) ?? throw UnknownOption(name);
            if (values.ContainsKey(spec.Name))
                throw new UsageException($"Option --{spec.Name} is given more than once.");

            if (spec.Kind == OptionKind.Flag)
            {
                values[spec.Name] = FlagValue(spec, value);
                continue;
            }
            if (value is null && i + 1 < args.Count && !args[i + 1].StartsWith("--", StringComparison.Ordinal))
                value = args[++i];
            values[spec.Name] = CheckedValue(spec, value);
        }
        return new CommandLine(values, []);
    }

    private static string FlagValue(OptionSpec spec, string? value) => value?.ToLowerInvariant() switch
    {
        null or "true" => "true",
        "false" => "false",
        _ => throw new UsageException($"Option --{spec.Name} is a switch: use --{spec.Name} (or --{spec.Name}=false), not --{spec.Name}={value}."),
    };

    private static string CheckedValue(OptionSpec spec, string? value)
    {
        if (string.IsNullOrEmpty(value))
            throw new UsageException($"Option --{spec.Name} needs a value: --{spec.Name}={spec.ValueName}.");
        if (spec.AllowedValues is { } allowed)
        {
            // Store the canonical spelling so targets can compare and pass it on without normalising again.
            return allowed.FirstOrDefault(a => a.Equals(value, StringComparison.OrdinalIgnoreCase))
                ?? throw new UsageException($"Option --{spec.Name} must be one of {string.Join(", ", allowed)}, not '{value}'.");
        }
        if (spec.IsValid is { } isValid && !isValid(value))
            throw new UsageException($"Option --{spec.Name} must be {spec.Requirement}, not '{value}'.");
        return value;
    }

    private static UsageException UnknownOption(string name)
    {
        var known = KnownOptions.All.Select(o => o.Name).ToArray();
        string hint = Suggestions.Closest(name, known) is { } match ? $" Did you mean '--{match}'?" : "";
        return new UsageException($"Unknown option '--{name}'.{hint} Known options: {string.Join(", ", known.Order().Select(k => "--" + k))}.");
    }

    private static OptionSpec Registered(string name) =>
        KnownOptions.Find(name) ?? throw new InvalidOperationException($"Option --{name} is read by a target but not registered in KnownOptions.");
}
