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
        // Another matrix's stages train (or fine-tune) whatever models it names on demand, the default one
        // included, under the same lock and cache entry; training the default model up front is for the
        // default matrix, and would make a matrix of other models wait ten minutes for one it never uses.
        if (context.Option("matrix") is { } matrix && !"TrainDefaultModel".Equals(context.Option("target"), StringComparison.OrdinalIgnoreCase)
            && Path.GetFullPath(context.FromRoot(matrix)) != Path.GetFullPath(context.FromRoot(Support.MatrixRun.DefaultMatrix)))
        {
            context.Info($"TrainDefaultModel: skipped (--matrix={matrix}: its stages train the models it names when they are not cached)");
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
