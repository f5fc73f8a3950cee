using System.Text.Json.Nodes;
using SvdLlm.Compression.Calibration;
using SvdLlm.Compression.Delta;
using SvdLlm.Compression.Recovery;
using SvdLlm.Models.Architectures;
using SvdLlm.Models.Checkpoints;
using SvdLlm.Models.Tests;
using SvdLlm.Models.Tests.Reference;
using SvdLlm.Numerics;

namespace SvdLlm.Compression.Tests;

/// <summary>
/// compress-delta's checkpoint on a real tiny pair (a base and a few steps of fine-tuning of it): each decoder linear is
/// the base plus the compressed delta, checked against an independent SVD of W_ft − W_base; everything else is the
/// fine-tuned model's bit for bit; the report's counts add up; a bad pair or setting writes nothing.
/// </summary>
public class DeltaCheckpointTests
{
    private const int SeqLen = 16;

    private static (string Base, string FineTuned) Pair(TempDirectory dir)
    {
        var ckpt = TinyCheckpoint.Create(dir.Sub("base"), TinyArch.Llama3, seed: 4);
        CalibrationWindows windows;
        using (var model = ModelLoader.Load(ckpt.Directory))
            windows = new CalibrationWindows(RandomWindows.Sample(model.VocabSize, 8, SeqLen, 2), SeqLen);
        string ft = Path.Combine(dir.Path, "ft");
        FineTuning.Run(ckpt.Directory, windows, new FineTuneOptions { Steps = 4, LearningRate = 1e-2, BatchSize = 4 }, ft, _ => { });
        return (ckpt.Directory, ft);
    }

    private static double[] Read(CheckpointReader r, string name) => r.ReadAsFloat32(name).Select(v => (double)v).ToArray();

    [Fact]
    public void Svd_delta_is_the_base_plus_the_best_rank_r_delta_and_the_rest_is_the_fine_tuned_model()
    {
        using var dir = new TempDirectory();
        var (b, ft) = Pair(dir);
        string outDir = Path.Combine(dir.Path, "svd");
        const double cr = 4;
        var report = DeltaCheckpoint.Write(b, ft, new DeltaOptions(DeltaMethod.Svd, cr), outDir, _ => { });

        using var rb = CheckpointReader.Open(b);
        using var rf = CheckpointReader.Open(ft);
        using var ro = CheckpointReader.Open(outDir);
        using var model = ModelLoader.Load(ft);
        var linearNames = model.Linears.Select(l => l.Name + ".weight").ToHashSet();
        Assert.Equal(linearNames.Count, report.Linears.Count);
        foreach (var l in model.Linears)
        {
            string name = l.Name + ".weight";
            int m = l.OutFeatures, n = l.InFeatures;
            double[] wb = Read(rb, name), wf = Read(rf, name), wo = Read(ro, name);
            using var delta = Tensor<double>.Zeros([m, n]);
            for (int i = 0; i < wb.Length; i++) delta.Span[i] = wf[i] - wb[i];
            using var svd = Lapack.Svd(delta);
            int r = Math.Max(1, Math.Min(Math.Min(m, n), (int)Math.Floor((double)m * n / (cr * (m + n)) + 1e-9)));
            double maxAbs = 0, maxW = 0;
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    double s = 0;
                    for (int k = 0; k < r; k++) s += svd.U.Span[i * svd.U.Cols + k] * svd.S[k] * svd.Vt.Span[k * n + j];
                    maxAbs = Math.Max(maxAbs, Math.Abs(wo[i * n + j] - (wb[i * n + j] + s)));
                    maxW = Math.Max(maxW, Math.Abs(wo[i * n + j]));
                }
            // The output is float32: each weight carries one rounding of at most 2⁻²⁴ of its magnitude.
            Assert.True(maxAbs <= 1e-7 * Math.Max(1, maxW) + 1e-12, $"{name}: |W_out − (W_base + Δ_r)| = {maxAbs:E2}");
            var rec = report.Linears.Single(x => x.Name == l.Name);
            Assert.Equal(r, rec.Rank);
            Assert.Equal((long)r * (m + n), rec.StoredValues);
        }
        Assert.True(report.AchievedRatio >= cr, $"CR achieved {report.AchievedRatio:F3} below the {cr} asked");
        foreach (string name in rf.TensorNames.Where(t => !linearNames.Contains(t)))
            Assert.Equal(rf.ReadAsFloat32(name), ro.ReadAsFloat32(name));
        // Fine-tuning moved the embeddings and norms too: the report says how many of those values differ from the base.
        long changed = rf.TensorNames.Where(t => !linearNames.Contains(t))
            .Sum(t => rf.ReadAsFloat32(t).Zip(rb.ReadAsFloat32(t)).LongCount(p => p.First != p.Second));
        Assert.True(changed > 0);
        Assert.Equal(changed, report.OtherChangedValues);
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, DeltaCheckpoint.ReportFileName)))!;
        Assert.Equal(report.StoredValues, json["stored_values"]!.GetValue<long>());
        Assert.Equal(File.ReadAllText(Path.Combine(ft, "config.json")), File.ReadAllText(Path.Combine(outDir, "config.json")));
        Assert.False(File.Exists(Path.Combine(outDir, "fine-tuning.json")));
    }

    [Fact]
    public void Impart_and_dare_meet_the_budget_and_repeat_bit_for_bit()
    {
        using var dir = new TempDirectory();
        var (b, ft) = Pair(dir);
        foreach (var method in new[] { DeltaMethod.Impart, DeltaMethod.Dare })
        {
            string a = Path.Combine(dir.Path, $"{method}-a"), c = Path.Combine(dir.Path, $"{method}-b");
            var ra = DeltaCheckpoint.Write(b, ft, new DeltaOptions(method, 8, Seed: 3), a, _ => { });
            DeltaCheckpoint.Write(b, ft, new DeltaOptions(method, 8, Seed: 3), c, _ => { });
            using var x = CheckpointReader.Open(a);
            using var y = CheckpointReader.Open(c);
            foreach (string name in x.TensorNames) Assert.Equal(x.ReadAsFloat32(name), y.ReadAsFloat32(name));
            // ImPart meets its per-matrix target to within a vector's share; DARE's kept count is binomial around mn/CR
            // (relative std sqrt((CR−1)/mn) ≈ 1 % for these sizes; 5 std allowed).
            Assert.InRange(ra.AchievedRatio, 8 * 0.9, 8 * 1.1);
        }
    }

    [Fact]
    public void Impart_with_exponent_zero_writes_the_same_checkpoint_as_svd()
    {
        // With C = 0 every kept singular vector has the same importance, so ImPart drops nothing inside the vectors and
        // truncates at the equal-budget rank: plain truncation (ImPart's paper, "only_lowrank").
        using var dir = new TempDirectory();
        var (b, ft) = Pair(dir);
        string svd = Path.Combine(dir.Path, "svd"), imp = Path.Combine(dir.Path, "imp");
        var rs = DeltaCheckpoint.Write(b, ft, new DeltaOptions(DeltaMethod.Svd, 6), svd, _ => { });
        var ri = DeltaCheckpoint.Write(b, ft, new DeltaOptions(DeltaMethod.Impart, 6, Beta: 0.3, Exponent: 0, Seed: 9), imp, _ => { });
        Assert.Equal(rs.StoredValues, ri.StoredValues);
        using var x = CheckpointReader.Open(svd);
        using var y = CheckpointReader.Open(imp);
        foreach (string name in x.TensorNames)
        {
            var a = x.ReadAsFloat32(name);
            var c = y.ReadAsFloat32(name);
            // Two float64 paths to the same rank-r matrix agree to ~1e-15; after the float32 cast at most one ulp apart.
            for (int i = 0; i < a.Length; i++)
                Assert.True(Math.Abs(a[i] - c[i]) <= 2 * float.Epsilon + Math.Abs(a[i]) * 1.2e-7, $"{name}[{i}]: {a[i]} vs {c[i]}");
        }
    }

    [Fact]
    public void A_mismatched_pair_a_low_rank_model_an_existing_output_and_bad_settings_are_refused_writing_nothing()
    {
        using var dir = new TempDirectory();
        var (b, ft) = Pair(dir);
        var other = TinyCheckpoint.Create(dir.Sub("other"), TinyArch.Llama2, seed: 4);
        string outDir = Path.Combine(dir.Path, "out");
        var before = Directory.GetFileSystemEntries(dir.Path).Order().ToArray();
        var e = Assert.ThrowsAny<Exception>(() => DeltaCheckpoint.Write(other.Directory, ft, new DeltaOptions(DeltaMethod.Svd, 4), outDir, _ => { }));
        Assert.Matches("not a base/fine-tuned pair|differ|is \\[", e.Message);
        Assert.Contains("needs more than full-rank storage", Assert.ThrowsAny<ArgumentException>(() => DeltaCheckpoint.Write(b, ft, new DeltaOptions(DeltaMethod.Svd, 0.5), outDir, _ => { })).Message);
        Assert.Contains("--ratio 0.5", Assert.Throws<ArgumentException>(() => DeltaCheckpoint.Write(b, ft, new DeltaOptions(DeltaMethod.Dare, 0.5), outDir, _ => { })).Message);
        Assert.Contains("--beta 1", Assert.Throws<ArgumentException>(() => DeltaCheckpoint.Write(b, ft, new DeltaOptions(DeltaMethod.Impart, 4, Beta: 1), outDir, _ => { })).Message);
        Assert.Throws<IOException>(() => DeltaCheckpoint.Write(b, ft, new DeltaOptions(DeltaMethod.Svd, 4), ft, _ => { }));
        Assert.False(Directory.Exists(outDir));
        Assert.Equal(before, Directory.GetFileSystemEntries(dir.Path).Order().ToArray()); // no staging directory left behind
    }
}
