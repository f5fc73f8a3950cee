using SvdLlm.Models.Checkpoints;
using SvdLlm.Numerics.Backends;

namespace SvdLlm.Models.Architectures;

/// <summary>Opens a Hugging Face model directory (config.json + safetensors) as a <see cref="CausalLanguageModel"/>.</summary>
public static class ModelLoader
{
    public static readonly string[] SupportedArchitectures = [.. LlamaConfig.Architectures, OptConfig.ArchitectureName];

    private static readonly Dictionary<string, string> ArchitectureByModelType = new()
    {
        ["llama"] = "LlamaForCausalLM",
        ["mistral"] = "MistralForCausalLM",
        ["qwen2"] = "Qwen2ForCausalLM",
        ["opt"] = "OPTForCausalLM",
    };

    /// <summary>
    /// Reads config.json, validates every tensor the architecture needs (names and shapes, from the
    /// safetensors headers only) and returns the model; weights are read on first use.
    /// </summary>
    public static CausalLanguageModel Load(string directory, IComputeBackend? backend = null)
    {
        if (!System.IO.Directory.Exists(directory)) throw new DirectoryNotFoundException($"model directory not found: {directory}");
        var config = ConfigJson.Load(Path.Combine(directory, "config.json"));
        string architecture = ResolveArchitecture(config);
        var reader = CheckpointReader.Open(directory);
        try
        {
            backend ??= CpuBackend.Instance;
            return architecture == OptConfig.ArchitectureName
                ? new OptForCausalLM(directory, reader, backend, OptConfig.Parse(config))
                : new LlamaForCausalLM(directory, reader, backend, LlamaConfig.Parse(config, architecture));
        }
        catch
        {
            reader.Dispose();
            throw;
        }
    }

    /// <summary>The architecture named by config.json's "architectures" (first entry), else by "model_type".</summary>
    public static string ResolveArchitecture(ConfigJson config)
    {
        string? arch = null;
        if (config.Root.TryGetProperty("architectures", out var archs) && archs.ValueKind == System.Text.Json.JsonValueKind.Array && archs.GetArrayLength() > 0)
            arch = archs[0].GetString();
        string? modelType = config.String("model_type");
        if (arch is null && modelType is not null) ArchitectureByModelType.TryGetValue(modelType, out arch);
        if (arch is null)
            throw config.Invalid($"neither 'architectures' nor a known 'model_type' names the architecture (supported: {string.Join(", ", SupportedArchitectures)})");
        if (!SupportedArchitectures.Contains(arch))
            throw config.Invalid($"architecture '{arch}' is not supported (supported: {string.Join(", ", SupportedArchitectures)})");
        return arch;
    }
}
