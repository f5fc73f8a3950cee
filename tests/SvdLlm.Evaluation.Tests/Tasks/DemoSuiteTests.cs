using SvdLlm.Evaluation.Tasks;
using SvdLlm.Models.Data;
using SvdLlm.Models.Tests;

namespace SvdLlm.Evaluation.Tests.Tasks;

/// <summary>The demo suite built from the corpora's test splits (needs the asset cache: ./build.sh --target=Setup).</summary>
public class DemoSuiteTests
{
    [Fact]
    public void Building_twice_gives_the_same_bytes_and_the_items_read_as_hellaswag()
    {
        using var dir = new TempDirectory();
        string a = dir.Sub("a"), b = dir.Sub("b");
        DemoSuite.Build(a);
        DemoSuite.Build(b);
        var names = Directory.GetFiles(a).Select(f => Path.GetFileName(f)).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(names, Directory.GetFiles(b).Select(f => Path.GetFileName(f)).Order(StringComparer.Ordinal).ToArray());
        Assert.Contains("manifest.json", names);
        foreach (string task in DemoSuite.Tasks) Assert.Contains(DemoSuite.FileName(task), names);
        foreach (string name in names) Assert.Equal(File.ReadAllBytes(Path.Combine(a, name)), File.ReadAllBytes(Path.Combine(b, name)));

        foreach (var (task, corpus) in DemoSuite.PplTasks)
            Assert.Equal(Corpora.ReadSplit(corpus, CorpusSplit.Test), File.ReadAllText(Path.Combine(a, DemoSuite.FileName(task))));

        string[] trainText = Corpora.Names.Select(c => Corpora.ReadSplit(c, CorpusSplit.Train)).ToArray();
        foreach (string task in new[] { DemoSuite.NextSentence, DemoSuite.Cloze })
        {
            var items = TaskRegistry.ReadItems(task, Path.Combine(a, DemoSuite.FileName(task)));
            Assert.True(items.Count >= 500, $"{task}: {items.Count} items");
            Assert.All(items, item =>
            {
                Assert.Equal(4, item.Requests.Count);
                Assert.InRange(item.Gold, 0, 3);
                Assert.Equal(4, item.Requests.Select(r => r.Continuation).Distinct().Count());
            });
            // Each answer position is used (the gold index is drawn, not fixed).
            Assert.Equal(4, items.Select(i => i.Gold).Distinct().Count());
        }

        // Spot check: the true cloze sentence and the true next sentence occur in the test split, not in train text.
        var cloze = TaskRegistry.ReadItems(DemoSuite.Cloze, Path.Combine(a, DemoSuite.FileName(DemoSuite.Cloze)))[0];
        string clozeSentence = cloze.Requests[0].Context["Moby-Dick: ".Length..] + cloze.Requests[cloze.Gold].Continuation;
        Assert.Contains(clozeSentence, Normalize(Corpora.ReadSplit(Corpora.MobyDick, CorpusSplit.Test)));
        Assert.DoesNotContain(clozeSentence, Normalize(trainText[0]));
    }

    private static string Normalize(string text) => System.Text.RegularExpressions.Regex.Replace(text, @"\s+", " ");

    [Fact]
    public void Sentences_are_cut_after_end_punctuation_before_a_capital_but_not_after_titles_or_initials()
    {
        var s = DemoSuite.SplitSentences("Call me Ishmael. Some years ago\nMr. Starbuck said “Aye!” Then the H.M.S. Mercury was rowed. end? No.");
        Assert.Equal(new[] { "Call me Ishmael.", "Some years ago Mr. Starbuck said “Aye!”", "Then the H.M.S. Mercury was rowed. end?", "No." }, s);
    }

    [Fact]
    public void EnsureFile_builds_once_into_the_versioned_cache_directory_and_leaves_no_temporary()
    {
        using var root = new TempDirectory();
        string first = DemoSuite.EnsureFile(DemoSuite.Cloze, root.Path);
        Assert.Equal(Path.Combine(root.Path, "demo", DemoSuite.Version, "cloze.jsonl"), first);
        var written = File.GetLastWriteTimeUtc(Path.Combine(root.Path, "demo", DemoSuite.Version, "manifest.json"));
        string again = DemoSuite.EnsureFile(DemoSuite.NextSentence, root.Path);
        Assert.True(File.Exists(again));
        Assert.Equal(written, File.GetLastWriteTimeUtc(Path.Combine(root.Path, "demo", DemoSuite.Version, "manifest.json")));
        Assert.Equal([DemoSuite.Version], Directory.GetDirectories(Path.Combine(root.Path, "demo")).Select(d => Path.GetFileName(d)));
    }
}
