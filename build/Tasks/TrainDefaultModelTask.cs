namespace SvdLlm.Build.Tasks;

[TaskName("TrainDefaultModel")]
[TaskDescription("Train (or reuse from the cache) the embedded default model, experiments/models/default-model.yaml (--threads=T)")]
[IsDependentOn(typeof(BuildTask))]
public sealed class TrainDefaultModelTask : FrostingTask
{
    public const string ConfigPath = "experiments/models/default-model.yaml";

    public override void Run(BuildContext context)
    {
        if (context.HasFlag("dry-run"))
        {
            context.Info("TrainDefaultModel: skipped (--dry-run; run-matrix --dry-run says whether the model is cached)");
            return;
        }
        // The model is cached under a key that hashes this config, the corpus checksums and the trainer
        // version; `svdllm train --cache` reuses it when present and says so.
        List<string> arguments = [context.CliDll, "train", "--config", context.FromRoot(ConfigPath), "--cache"];
        if (context.Option("threads") is { } threads) arguments.AddRange(["--threads", threads]);
        if (context.Quiet || Environment.GetEnvironmentVariable("CI") is not null) arguments.Add("--quiet");
        context.Run("dotnet", arguments);
    }
}
