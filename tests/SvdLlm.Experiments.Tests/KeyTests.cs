using SvdLlm.Experiments.Cache;
using SvdLlm.Experiments.Matrix;
using SvdLlm.Experiments.Pipeline;

namespace SvdLlm.Experiments.Tests;

public sealed class KeyTests
{
    private static readonly SourcePosition Here = new("test", 1, 1);

    private static MethodSpec Method(string name, params (string, string)[] ps) => new(name, ps.ToDictionary(p => p.Item1, p => p.Item2), Here);

    [Fact]
    public void CellKeysAreStableAcrossInstancesAndInsensitiveToCacheLocationAndPosition()
    {
        using var w = new MicroWorld();
        var model = new ModelSpec("tiny", w.ModelDir, Here);
        var cal = new CalibrationSpec(w.TextFile, 8, 32, 3, Here);
        string a = new ArtifactKeys(w.Temp.Sub("c1")).CellKey(model, cal, Method("svd"), 0.2);
        string b = new ArtifactKeys(w.Temp.Sub("c2")).CellKey(model with { Name = "renamed", Position = new("other", 9, 9) }, cal with { Position = new("x", 2, 2) }, Method("svd"), 0.2);
        Assert.Equal(a, b);
        Assert.Matches("^[0-9a-f]{64}$", a);
    }

    /// <summary>
    /// The pipeline and the calibrate/compress commands name statistics with one key; it covers every file a model's
    /// cells cover (the statistics key ignored tokenizer.model, so a changed SentencePiece model reused stale statistics).
    /// </summary>
    [Fact]
    public void StatisticsHaveOneKeyOverTheFilesThatDefineTheModel()
    {
        using var w = new MicroWorld();
        var keys = new ArtifactKeys(w.CacheDir);
        var request = new SvdLlm.Compression.Calibration.CalibrationRequest(w.ModelDir, w.TextFile, 8, 32, 3, false);
        string plain = SvdLlm.Compression.Calibration.CalibrationCache.Key(request);
        Assert.Equal(plain, keys.StatisticsKey(request));
        var model = new ModelSpec("tiny", w.ModelDir, Here);
        string cell = keys.CellKey(model, new CalibrationSpec(w.TextFile, 8, 32, 3, Here), Method("svd"), 0.2);

        // The memoised hash the compress command uses gives the same key.
        var once = SvdLlm.Models.Data.AssetCache.Sha256Once();
        Assert.Equal(plain, SvdLlm.Compression.Calibration.CalibrationCache.Key(request, once));
        Assert.Equal(plain, SvdLlm.Compression.Calibration.CalibrationCache.Key(request, once));

        File.WriteAllBytes(Path.Combine(w.ModelDir, "tokenizer.model"), [1, 2, 3]);
        var fresh = new ArtifactKeys(w.CacheDir);
        Assert.NotEqual(plain, fresh.StatisticsKey(request));
        Assert.NotEqual(cell, fresh.CellKey(model, new CalibrationSpec(w.TextFile, 8, 32, 3, Here), Method("svd"), 0.2));
    }

    [Fact]
    public void CellKeysChangeWithEveryInput()
    {
        using var w = new MicroWorld();
        var keys = new ArtifactKeys(w.CacheDir);
        var model = new ModelSpec("tiny", w.ModelDir, Here);
        var cal = new CalibrationSpec(w.TextFile, 8, 32, 3, Here);
        string baseKey = keys.CellKey(model, cal, Method("svd"), 0.2);
        var variants = new List<string>
        {
            keys.CellKey(model, cal, Method("asvd"), 0.2),
            keys.CellKey(model, cal, Method("svd", ("alpha", "0.5")), 0.2),
            keys.CellKey(model, cal, Method("svd"), 0.2000001),
            keys.CellKey(model, cal with { Samples = 9 }, Method("svd"), 0.2),
            keys.CellKey(model, cal with { SeqLen = 33 }, Method("svd"), 0.2),
            keys.CellKey(model, cal with { Seed = 4 }, Method("svd"), 0.2),
            keys.CellKey(model, null, Method(MethodSpec.Original), 0),
        };
        // Other calibration text, same parameters.
        string other = w.Temp.File("other.txt");
        File.WriteAllText(other, MicroWorld.Text(seed: 8, words: 2500));
        variants.Add(keys.CellKey(model, cal with { Dataset = other }, Method("svd"), 0.2));
        // Other weights: one byte of the checkpoint changed (a fresh ArtifactKeys: the memo is keyed by mtime and length too).
        string copy = w.Temp.Sub("model2");
        foreach (string f in Directory.GetFiles(w.ModelDir)) File.Copy(f, Path.Combine(copy, Path.GetFileName(f)));
        var bytes = File.ReadAllBytes(Path.Combine(copy, "model.safetensors"));
        bytes[^1] ^= 1;
        File.WriteAllBytes(Path.Combine(copy, "model.safetensors"), bytes);
        variants.Add(keys.CellKey(model with { Source = copy }, cal, Method("svd"), 0.2));
        // Same weights, other tokenizer.
        string copy2 = w.Temp.Sub("model3");
        foreach (string f in Directory.GetFiles(w.ModelDir)) File.Copy(f, Path.Combine(copy2, Path.GetFileName(f)));
        File.AppendAllText(Path.Combine(copy2, "tokenizer.json"), " ");
        variants.Add(keys.CellKey(model with { Source = copy2 }, cal, Method("svd"), 0.2));
        // A copy with identical bytes is the same model.
        string copy3 = w.Temp.Sub("model4");
        foreach (string f in Directory.GetFiles(w.ModelDir)) File.Copy(f, Path.Combine(copy3, Path.GetFileName(f)));
        Assert.Equal(baseKey, keys.CellKey(model with { Source = copy3 }, cal, Method("svd"), 0.2));

        Assert.DoesNotContain(baseKey, variants);
        Assert.Equal(variants.Count, variants.Distinct().Count());
    }

    [Fact]
    public void TaskKeysChangeWithDataLimitAndSeqLenButNotThePath()
    {
        using var w = new MicroWorld();
        var keys = new ArtifactKeys(w.CacheDir);
        var task = new TaskSpec("wikitext2", w.TextFile, 10, 32, Here);
        string k = keys.TaskKey("cell", task);
        string moved = w.Temp.File("moved.txt");
        File.Copy(w.TextFile, moved);
        Assert.Equal(k, keys.TaskKey("cell", task with { Data = moved, Position = new("y", 3, 3) }));
        string edited = w.Temp.File("edited.txt");
        File.WriteAllText(edited, File.ReadAllText(w.TextFile) + "x");
        string[] variants =
        [
            keys.TaskKey("cell2", task), keys.TaskKey("cell", task with { Name = "ptb" }), keys.TaskKey("cell", task with { Limit = 11 }),
            keys.TaskKey("cell", task with { Limit = null }), keys.TaskKey("cell", task with { SeqLen = 64 }), keys.TaskKey("cell", task with { Data = edited }),
        ];
        Assert.DoesNotContain(k, variants);
        Assert.Equal(variants.Length, variants.Distinct().Count());
    }

    [Fact]
    public void ShardsPartitionTheCellsExactlyOnce()
    {
        var cellKeys = Enumerable.Range(0, 500).Select(i => ArtifactKeys.Sha256Hex("cell " + i)).ToList();
        foreach (int n in new[] { 1, 2, 3, 7 })
        {
            var shards = Enumerable.Range(1, n).Select(i => Shard.Parse($"{i}/{n}")).ToList();
            foreach (string key in cellKeys) Assert.Equal(1, shards.Count(s => s.Contains(key)));
            // Even enough that no shard is empty for this many cells.
            Assert.All(shards, s => Assert.True(cellKeys.Count(s.Contains) > 500 / n / 2, $"shard {s} holds {cellKeys.Count(s.Contains)}"));
        }
        Assert.Throws<ArgumentException>(() => Shard.Parse("0/2"));
        Assert.Throws<ArgumentException>(() => Shard.Parse("3/2"));
        Assert.Throws<ArgumentException>(() => Shard.Parse("1-2"));
    }

    [Fact]
    public void ShardMembershipIsTheKeyModuloN()
    {
        // Independent reading of the documented rule: first 16 hex digits as an unsigned 64-bit number, mod N.
        string key = "00000000000000ff" + new string('0', 48);
        Assert.True(new Shard(255 % 4 + 1, 4).Contains(key));
        Assert.False(new Shard(1, 4).Contains(key));
    }
}
