using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using SvdLlm.Compression.Calibration;
using SvdLlm.Models.Tests;

namespace SvdLlm.Compression.Tests;

/// <summary>The statistics file (format 2): writer, random-access reader, validation, atomicity.</summary>
public class CalibrationStatisticsFileTests
{
    private static InputStatistics RandomInput(int n, int seed)
    {
        var r = new Random(seed);
        var s = new InputStatistics(n);
        for (int i = 0; i < n; i++)
            for (int j = 0; j <= i; j++)
                s.Gram[i, j] = s.Gram[j, i] = (r.NextDouble() - 0.5) * Math.Pow(10, r.Next(-20, 20));
        for (int j = 0; j < n; j++) s.AbsSum[j] = r.NextDouble() * 100;
        s.Tokens = r.Next(1, 100000);
        return s;
    }

    private static string WriteSample(string path, params (string Key, int N, int Seed)[] inputs)
    {
        using var w = new CalibrationStatisticsWriter(path);
        foreach (var (k, n, seed) in inputs)
        {
            using var s = RandomInput(n, seed);
            w.WriteInput(k, s);
        }
        w.WriteFisher("lin", [1.5, 2.5, 1e-300]);
        w.Commit(new Dictionary<string, string> { ["seed"] = "3", ["model"] = "x" });
        return path;
    }

    /// <summary>The table of contents parsed independently of the reader: trailer → offset/length → JSON.</summary>
    private static (JsonObject Toc, long Offset) ReadToc(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var trailer = bytes.AsSpan(bytes.Length - 24);
        Assert.Equal("SVDLLMCT", Encoding.ASCII.GetString(trailer[16..]));
        long off = BinaryPrimitives.ReadInt64LittleEndian(trailer), len = BinaryPrimitives.ReadInt64LittleEndian(trailer[8..]);
        return ((JsonObject)JsonNode.Parse(bytes.AsSpan((int)off, (int)len))!, off);
    }

    private static JsonObject EntryOf(JsonObject toc, string kind, string name)
        => toc["entries"]!.AsArray().Select(e => e!.AsObject()).Single(e => (string)e["kind"]! == kind && (string)e["name"]! == name);

    /// <summary>Rewrites the file with a modified table of contents (data kept, new footer and trailer).</summary>
    private static void RewriteToc(string path, Action<JsonObject> edit)
    {
        var (toc, off) = ReadToc(path);
        edit(toc);
        var data = File.ReadAllBytes(path).AsSpan(0, (int)off).ToArray();
        var json = Encoding.UTF8.GetBytes(toc.ToJsonString());
        var trailer = new byte[24];
        BinaryPrimitives.WriteInt64LittleEndian(trailer, data.Length);
        BinaryPrimitives.WriteInt64LittleEndian(trailer.AsSpan(8), json.Length);
        Encoding.ASCII.GetBytes("SVDLLMCT").CopyTo(trailer, 16);
        File.WriteAllBytes(path, [.. data, .. json, .. trailer]);
    }

    [Fact]
    public void Round_trip_is_bit_exact_and_the_file_holds_exactly_the_packed_lower_triangle()
    {
        using var dir = new TempDirectory();
        string path = WriteSample(dir.File("s.svdstats"), ("a", 1, 1), ("b", 5, 2), ("c", 37, 3));
        using var f = CalibrationStatisticsFile.Open(path);
        Assert.Equal(["a", "b", "c"], f.InputKeys.OrderBy(k => k));
        Assert.True(f.HasFisher);
        Assert.Equal("3", f.Metadata["seed"]);
        Assert.Equal([1.5, 2.5, 1e-300], f.FisherRowSums("lin")!);
        Assert.Null(f.FisherRowSums("other"));
        var (toc, _) = ReadToc(path);
        var bytes = File.ReadAllBytes(path);
        Assert.Equal("SVDLLMCS", Encoding.ASCII.GetString(bytes, 0, 8));
        Assert.Equal(2, BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(8)));
        foreach (var (key, n, seed) in new[] { ("a", 1, 1), ("b", 5, 2), ("c", 37, 3) })
        {
            using var expected = RandomInput(n, seed);
            var got = f.Input(key);
            Assert.Equal(expected.Gram.Span.ToArray().Select(BitConverter.DoubleToInt64Bits), got.Gram.Span.ToArray().Select(BitConverter.DoubleToInt64Bits));
            Assert.Equal(expected.AbsSum, got.AbsSum);
            Assert.Equal(expected.Tokens, got.Tokens);
            // On disk: n(n+1)/2 float64, row i holding C[i, 0…i] (independent of the reader's unpacking).
            var e = EntryOf(toc, "gram_lower", key);
            long at = (long)e["offset"]!;
            Assert.Equal(8L * n * (n + 1) / 2, (long)e["length"]!);
            for (int i = 0; i < n; i++)
                for (int j = 0; j <= i; j++, at += 8)
                    Assert.Equal(BitConverter.DoubleToInt64Bits(expected.Gram[i, j]), BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan((int)at)));
        }
        // Cached until released.
        Assert.Same(f.Input("b"), f.Input("b"));
        Assert.Equal(3, f.LoadedCount);
        f.Release("b");
        Assert.Equal(2, f.LoadedCount);
        Assert.Contains("'zz'", Assert.Throws<KeyNotFoundException>(() => f.Input("zz")).Message);

        // The in-memory statistics go through the same file.
        using var all = CalibrationStatistics.Load(path);
        using var c = RandomInput(37, 3);
        Assert.Equal(c.Gram.Span.ToArray(), all.Inputs["c"].Gram.Span.ToArray());
        Assert.Equal([1.5, 2.5, 1e-300], all.Fisher["lin"]);
        string again = dir.File("again.svdstats");
        all.Save(again);
        Assert.Equal(File.ReadAllBytes(path), File.ReadAllBytes(again));
    }

    [Fact]
    public void Reading_one_input_touches_only_its_entries()
    {
        using var dir = new TempDirectory();
        string path = WriteSample(dir.File("s.svdstats"), ("a", 30, 1), ("b", 20, 2));
        var (toc, _) = ReadToc(path);
        var bytes = File.ReadAllBytes(path);
        foreach (string kind in new[] { "gram_lower", "abs_sum" })
        {
            var e = EntryOf(toc, kind, "a");
            bytes.AsSpan((int)(long)e["offset"]!, (int)(long)e["length"]!).Fill(0xFF); // NaNs
        }
        File.WriteAllBytes(path, bytes);
        using var f = CalibrationStatisticsFile.Open(path);
        using var b = RandomInput(20, 2);
        Assert.Equal(b.Gram.Span.ToArray(), f.Input("b").Gram.Span.ToArray());
        Assert.Equal(b.AbsSum, f.Input("b").AbsSum);
        Assert.True(double.IsNaN(f.Input("a").Gram[3, 1])); // the corruption is real
    }

    [Fact]
    public void Truncated_corrupted_foreign_and_version_1_files_are_refused_naming_the_file_and_field()
    {
        using var dir = new TempDirectory();
        string good = WriteSample(dir.File("good.svdstats"), ("a", 4, 1), ("b", 3, 2));
        string Copy(string name)
        {
            string p = dir.File(name);
            File.Copy(good, p);
            return p;
        }
        void Refused(string path, params string[] words)
        {
            var e = Assert.Throws<InvalidDataException>(() => CalibrationStatisticsFile.Open(path).Dispose());
            Assert.Contains(path, e.Message);
            foreach (string w in words) Assert.Contains(w, e.Message);
        }

        string truncated = Copy("truncated.svdstats");
        File.WriteAllBytes(truncated, File.ReadAllBytes(good)[..^10]);
        Refused(truncated, "trailer");
        string tiny = Copy("tiny.svdstats");
        File.WriteAllBytes(tiny, File.ReadAllBytes(good)[..20]);
        Refused(tiny, "too short");
        File.WriteAllText(dir.File("foreign.svdstats"), "not a statistics file at all, but long enough to have a trailer");
        Refused(dir.File("foreign.svdstats"), "magic");
        string v1 = Copy("v1.svdstats");
        var bytes = File.ReadAllBytes(v1);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(8), 1);
        File.WriteAllBytes(v1, bytes);
        Refused(v1, "version 1", "delete");
        string v9 = Copy("v9.svdstats");
        bytes = File.ReadAllBytes(v9);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(8), 9);
        File.WriteAllBytes(v9, bytes);
        Refused(v9, "'version'");
        string badTrailer = Copy("trailer.svdstats");
        bytes = File.ReadAllBytes(badTrailer);
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(bytes.Length - 24), 17);
        File.WriteAllBytes(badTrailer, bytes);
        Refused(badTrailer, "toc_offset");
        string json = Copy("json.svdstats");
        bytes = File.ReadAllBytes(json);
        bytes[ReadToc(good).Offset] = (byte)'!';
        File.WriteAllBytes(json, bytes);
        Refused(json, "JSON");

        void Tampered(string name, Action<JsonObject> edit, params string[] words)
        {
            string p = Copy(name);
            RewriteToc(p, edit);
            Refused(p, words);
        }
        Tampered("length.svdstats", t => EntryOf(t, "gram_lower", "a")["length"] = 8 * 16, "'length'", "gram_lower 'a'");
        Tampered("shape.svdstats", t => EntryOf(t, "abs_sum", "b")["shape"] = new JsonArray(3, 1), "'shape'");
        Tampered("outside.svdstats", t => EntryOf(t, "abs_sum", "b")["offset"] = 1L << 40, "'offset'", "outside");
        Tampered("before.svdstats", t => EntryOf(t, "abs_sum", "b")["offset"] = 8, "'offset'", "outside");
        Tampered("overlap.svdstats", t => EntryOf(t, "abs_sum", "b")["offset"] = (long)EntryOf(t, "gram_lower", "b")["offset"]! + 8, "overlaps");
        Tampered("kind.svdstats", t => EntryOf(t, "abs_sum", "b")["kind"] = "hessian", "'kind'", "hessian");
        Tampered("missing.svdstats", t => t["entries"]!.AsArray().Remove(EntryOf(t, "abs_sum", "b")), "'b'", "abs_sum");
        Tampered("tokens.svdstats", t => t["tokens"]!.AsObject().Remove("a"), "tokens", "'a'");
        Tampered("negative.svdstats", t => t["tokens"]!["a"] = -1, "tokens", "'a'");
        Tampered("duplicate.svdstats", t => t["entries"]!.AsArray().Add(EntryOf(t, "fisher_rows", "lin").DeepClone()), "second", "'lin'");
        Tampered("format.svdstats", t => t["format"] = 1, "'format'");
        Tampered("noentries.svdstats", t => t.Remove("entries"), "'entries'");
    }

    [Fact]
    public void Nothing_appears_under_the_final_name_before_commit_and_dispose_removes_the_temporary_file()
    {
        using var dir = new TempDirectory();
        string path = dir.File("s.svdstats");
        using (var w = new CalibrationStatisticsWriter(path))
        {
            using var s = RandomInput(8, 1);
            w.WriteInput("a", s);
            Assert.False(File.Exists(path));
            Assert.Single(Directory.GetFiles(dir.Path)); // the temporary file, beside the target
            // No Commit: a crash or an exception between entries.
        }
        Assert.Empty(Directory.GetFiles(dir.Path));

        // A failed write (a non-symmetric Gram is refused: only the lower triangle would be kept) leaves nothing either.
        using (var w = new CalibrationStatisticsWriter(path))
        {
            using var s = RandomInput(4, 2);
            s.Gram[0, 3] += 1;
            Assert.Contains("not symmetric", Assert.Throws<ArgumentException>(() => w.WriteInput("a", s)).Message);
        }
        Assert.Empty(Directory.GetFiles(dir.Path));

        // Commit replaces an existing file atomically and leaves no temporary file.
        WriteSample(path, ("a", 3, 1));
        WriteSample(path, ("b", 2, 1));
        Assert.Equal([path], Directory.GetFiles(dir.Path));
        using var f = CalibrationStatisticsFile.Open(path);
        Assert.Equal(["b"], f.InputKeys);
    }
}
