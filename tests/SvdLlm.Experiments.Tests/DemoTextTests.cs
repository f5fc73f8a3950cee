using SvdLlm.Experiments.Cache;
using SvdLlm.Models.Data;
using SvdLlm.Models.Tests;

namespace SvdLlm.Experiments.Tests;

/// <summary>The <c>demo</c> and <c>demo:&lt;corpus&gt;</c> text names: the training splits of the real corpora (the cache's assets; Setup fetches them).</summary>
public class DemoTextTests
{
    [Fact]
    public void Demo_corpus_names_resolve_to_that_corpus_training_split_and_unknown_names_are_refused()
    {
        using var cache = new TempDirectory();
        string sotu = DemoCalibrationText.Resolve("demo:sotu", cache.Path);
        Assert.Equal(Corpora.ReadSplit("sotu", CorpusSplit.Train), File.ReadAllText(sotu));
        Assert.Equal(sotu, DemoCalibrationText.Resolve("demo:sotu", cache.Path)); // written once, then reused
        string all = DemoCalibrationText.Resolve("demo", cache.Path);
        Assert.NotEqual(sotu, all);
        Assert.Contains(File.ReadAllText(sotu), File.ReadAllText(all));
        Assert.DoesNotContain(Corpora.ReadSplit("sotu", CorpusSplit.Test), File.ReadAllText(sotu));
        Assert.Equal("some/file.txt", DemoCalibrationText.Resolve("some/file.txt", cache.Path));
        var e = Assert.Throws<ArgumentException>(() => DemoCalibrationText.Resolve("demo:wiki", cache.Path));
        Assert.Contains("unknown corpus 'wiki'", e.Message);
        Assert.Contains("sotu", e.Message);
    }
}
