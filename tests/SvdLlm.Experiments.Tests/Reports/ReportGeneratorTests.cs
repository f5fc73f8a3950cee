using System.Globalization;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using Microsoft.Data.Sqlite;
using SvdLlm.Experiments.Reports;
using SvdLlm.Models.Tests;
using static SvdLlm.Experiments.Tests.Reports.StandardFixture;

namespace SvdLlm.Experiments.Tests.Reports;

public class ReportGeneratorTests
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    // What the tables should call things, spelled out here rather than taken from the catalog under test.
    private static readonly Dictionary<string, string> Display = new()
    {
        ["original"] = "Original", ["svd"] = "SVD", ["asvd"] = "ASVD", ["svdllm"] = "SVD-LLM", ["svdllm-v2"] = "SVD-LLM V2",
        ["wikitext2"] = "WikiText-2", ["c4"] = "C4", ["piqa"] = "PIQA", ["arc_easy"] = "ARC-e",
    };

    private static readonly string[] PaperOrder = ["original", "svd", "asvd", "svdllm", "svdllm-v2"];

    private static string F2(double v) => v.ToString("F2", Inv);
    /// <summary>Two decimals, none once a collapsed model's perplexity reaches the thousands.</summary>
    private static string PplText(double v) => v.ToString(v >= 1000 ? "F0" : "F2", Inv);
    private static string Unbold(string s) => s.Replace("**", "");

    private static double Average(string method, double ratio) => AccTasks.Average(t => Acc(method, ratio, t));

    [Fact]
    public void Markdown_table_has_the_fixture_values_in_paper_layout()
    {
        using var dir = new TempDirectory();
        TestSupport.GenerateStandard(dir);
        foreach (double ratio in Ratios)
        {
            string md = File.ReadAllText(Path.Combine(dir.Path, "results", "tables", $"tiny-llama_r{ratio * 100:0}.md"));
            var (header, rows) = TestSupport.ParseMarkdownTable(md);
            // Perplexities first (WikiText-2, then C4), then accuracies in the V2 paper's order (ARC-e before PIQA), then the average.
            Assert.Equal(["Method", "WikiText-2 ↓", "C4 ↓", "ARC-e ↑", "PIQA ↑", "Avg. ↑"], header);
            Assert.Equal(PaperOrder.Select(m => Display[m]), rows.Select(r => r[0]));
            foreach (var row in rows)
            {
                string method = Display.First(kv => kv.Value == row[0]).Key;
                double r = method == "original" ? 0 : ratio;
                Assert.Equal(PplText(Ppl(method, r, "wikitext2")), Unbold(row[1]));
                Assert.Equal(PplText(Ppl(method, r, "c4")), Unbold(row[2]));
                Assert.Equal(F2(Acc(method, r, "arc_easy")), Unbold(row[3]));
                Assert.Equal(F2(Acc(method, r, "piqa")), Unbold(row[4]));
                Assert.Equal(F2(Average(method, r)), Unbold(row[5]));
            }
            Assert.Contains("PIQA: n = 1,838 items", md);
            Assert.Contains("WikiText-2: n = 32,768 tokens", md);
        }
    }

    /// <summary>
    /// Quantized cells (ratio 0, parameters in config_json) and SVD cells meet in one table ordered by stored bytes, with
    /// labels that tell the parameters apart, and in a perplexity-vs-bytes plot; the quantizers also get a full-rank table.
    /// </summary>
    [Fact]
    public void Methods_are_placed_by_linear_bytes_with_their_parameters_in_the_label()
    {
        using var dir = new TempDirectory();
        string db = dir.File("results.db");
        const long before = 2_000_000; // 1,000,000 float16 linear weights
        var cells = new (string Method, double Ratio, string Config, long Bytes, double Ppl, string Label)[]
        {
            ("svd", 0.4, "{}", 1_200_000, 30.0, "SVD"),
            ("gptq", 0, """{"params": {"bits": "4", "group_size": "128"}}""", 515_000, 12.5, "GPTQ 4-bit g128"),
            ("gptq", 0, """{"params": {"bits": "3", "group_size": "128"}}""", 390_000, 14.0, "GPTQ 3-bit g128"),
            ("svdllm-v2", 0.2, """{"params": {"bits": "4", "group_size": "128", "quantize": "gptq"}}""", 420_000, 16.0, "SVD-LLM V2 + GPTQ 4-bit g128"),
        };
        using (var f = new FixtureDb(db))
        {
            f.AddRun();
            string o = f.AddCell("m", "original", 0);
            f.AddMetric(o, "wikitext2", "ppl", 12.0);
            f.AddMetric(o, "piqa", "acc", 0.70);
            f.AddMetric(o, "arc_easy", "acc", 0.50);
            foreach (var (c, i) in cells.Select((c, i) => (c, i)))
            {
                string key = f.AddCell("m", c.Method, c.Ratio, key: $"cell{i}", configJson: c.Config);
                f.AddCompressionBytes(key, c.Ratio, before, c.Bytes);
                f.AddMetric(key, "wikitext2", "ppl", c.Ppl);
                f.AddMetric(key, "piqa", "acc", 0.70 - i / 100.0);
                f.AddMetric(key, "arc_easy", "acc", 0.50 - i / 100.0);
            }
        }
        ReportGenerator.Generate(db, dir.Sub("out"));
        string tables = Path.Combine(dir.Path, "out", "tables");
        var (header, rows) = TestSupport.ParseMarkdownTable(File.ReadAllText(Path.Combine(tables, "m_memory.md")));
        Assert.Equal(["Method", "Ratio", "Linear weights (MiB)", "Bits / weight", "Of original", "WikiText-2 ↓", "Avg. ↑"], header);
        var expected = cells.Select((c, i) => (c.Label, c.Bytes, c.Ppl, Acc: 0.60 - i / 100.0)).Append(("Original", before, 12.0, 0.60)).OrderBy(c => c.Item2).ToList();
        Assert.Equal(expected.Select(e => e.Item1), rows.Select(r => r[0]));
        foreach (var (e, r) in expected.Zip(rows))
        {
            Assert.Equal((e.Item2 / 1048576.0).ToString("F1", Inv), r[2]);
            Assert.Equal((8.0 * e.Item2 / 1_000_000).ToString("F2", Inv), r[3]);
            Assert.Equal((100.0 * e.Item2 / before).ToString("F1", Inv) + "%", r[4]);
            Assert.Equal(PplText(e.Item3), Unbold(r[5]));
            Assert.Equal(F2(e.Item4), Unbold(r[6]));
        }
        // The quantizers' full-rank table names both GPTQ cells apart.
        var (_, fullRank) = TestSupport.ParseMarkdownTable(File.ReadAllText(Path.Combine(tables, "m_r0.md")));
        Assert.Equal(["Original", "GPTQ 3-bit g128", "GPTQ 4-bit g128"], fullRank.Select(r => r[0]));
        string svg = File.ReadAllText(Path.Combine(dir.Path, "out", "plots", "m_ppl_bytes_wikitext2.svg"));
        foreach (var c in cells) Assert.Contains(c.Label, svg, StringComparison.Ordinal);
    }

    [Fact]
    public void Latex_bolds_the_best_compressed_value_of_each_column()
    {
        using var dir = new TempDirectory();
        TestSupport.GenerateStandard(dir);
        string tex = File.ReadAllText(Path.Combine(dir.Path, "results", "tables", "tiny-llama_r20.tex"));
        Assert.Contains("\\toprule", tex);
        Assert.Contains("\\bottomrule", tex);
        Assert.Contains("\\multicolumn{2}{c}{Perplexity ($\\downarrow$)}", tex);
        var body = tex[(tex.IndexOf("Method &", StringComparison.Ordinal))..tex.IndexOf("\\bottomrule", StringComparison.Ordinal)]
            .Split('\n').Where(l => l.EndsWith("\\\\", StringComparison.Ordinal) && !l.StartsWith("Method", StringComparison.Ordinal))
            .Select(l => l[..^2].Split(" & ").Select(c => c.Trim()).ToList()).ToList();
        Assert.Equal(PaperOrder.Length, body.Count);

        // Expected bold cells recomputed from the fixture's formulas: lower perplexity, higher accuracy, compared as printed, original excluded.
        var compressed = PaperOrder.Skip(1).ToList();
        Func<string, double>[] column =
        [
            m => Ppl(m, 0.2, "wikitext2"), m => Ppl(m, 0.2, "c4"), m => Acc(m, 0.2, "arc_easy"), m => Acc(m, 0.2, "piqa"), m => Average(m, 0.2),
        ];
        bool[] lowerIsBetter = [true, true, false, false, false];
        int boldCount = 0;
        for (int c = 0; c < column.Length; c++)
        {
            double best = lowerIsBetter[c] ? compressed.Min(column[c]) : compressed.Max(column[c]);
            var expectedBold = compressed.Where(m => F2(column[c](m)) == F2(best)).ToHashSet();
            for (int r = 0; r < PaperOrder.Length; r++)
            {
                string cell = body[r][c + 1];
                bool bold = cell.StartsWith("\\textbf{", StringComparison.Ordinal);
                Assert.True(expectedBold.Contains(PaperOrder[r]) == bold, $"column {c + 1}, row {PaperOrder[r]}: '{cell}'");
                if (bold) boldCount++;
            }
        }
        // The fixture has a tie on PIQA (ASVD and V2 both print 0.58): both bold.
        Assert.Equal(6, boldCount);
        Assert.DoesNotContain("\\textbf", string.Join(" ", body[0]));
    }

    [Fact]
    public void Csv_files_parse_back_to_the_database_values()
    {
        using var dir = new TempDirectory();
        TestSupport.GenerateStandard(dir);
        string tables = Path.Combine(dir.Path, "results", "tables");
        var wide = TestSupport.ParseCsv(File.ReadAllText(Path.Combine(tables, "tiny-llama_r40.csv")));
        var h = wide[0];
        Assert.Equal(1 + PaperOrder.Length, wide.Count);
        foreach (var row in wide.Skip(1))
        {
            Assert.Equal(h.Count, row.Count);
            string method = row[h.IndexOf("method")];
            double r = method == "original" ? 0 : 0.4;
            Assert.Equal(r, double.Parse(row[h.IndexOf("ratio")], Inv));
            Assert.Equal(Ppl(method, r, "wikitext2"), double.Parse(row[h.IndexOf("wikitext2_ppl")], Inv));
            Assert.Equal(Acc(method, r, "piqa"), double.Parse(row[h.IndexOf("piqa_acc")], Inv));
            Assert.Equal(Stderr(Acc(method, r, "piqa"), 1838), double.Parse(row[h.IndexOf("piqa_acc_stderr")], Inv));
            Assert.Equal("1838", row[h.IndexOf("piqa_acc_n")]);
            Assert.Equal(Average(method, r), double.Parse(row[h.IndexOf("average_acc")], Inv), 15);
        }

        var longRows = TestSupport.ParseCsv(File.ReadAllText(Path.Combine(tables, "metrics_long.csv")));
        var lh = longRows[0];
        // 9 cells × (2 ppl + 2 tasks × acc/acc_norm) + 3 cells × 5 efficiency metrics + 2 demo cells × 2 metrics.
        Assert.Equal(9 * 6 + 3 * 5 + 4, longRows.Count - 1);
        var demo = longRows.Skip(1).Where(r => r[lh.IndexOf("model")] == DemoModel).ToList();
        Assert.Equal(4, demo.Count);
        Assert.Contains(demo, r => r[lh.IndexOf("task")] == "demo_cloze" && double.Parse(r[lh.IndexOf("value")], Inv) == 0.4 / 1.5);
        // The name with a comma and a quote must have been quoted on disk.
        Assert.Contains("\"demo, \"\"q\"\"\"", File.ReadAllText(Path.Combine(tables, "metrics_long.csv")));
    }

    [Fact]
    public void Compression_and_provenance_tables_show_the_database_rows()
    {
        using var dir = new TempDirectory();
        TestSupport.GenerateStandard(dir);
        string tables = Path.Combine(dir.Path, "results", "tables");
        var (header, rows) = TestSupport.ParseMarkdownTable(File.ReadAllText(Path.Combine(tables, "tiny-llama_compression.md")));
        Assert.Equal(Ratios.Length * Methods.Length, rows.Count);
        var v2 = rows.Single(r => r[0] == "SVD-LLM V2" && r[1] == "40%");
        Assert.Equal("40.00%", v2[header.IndexOf("Achieved (linear)")]);
        Assert.Equal("32.00%", v2[header.IndexOf("Achieved (model)")]);
        Assert.Equal("600,000 / 1,000,000", v2[header.IndexOf("Linear params after / before")]);
        Assert.Equal("0.25 s", v2[header.IndexOf("Largest SVD time")]);
        Assert.Equal("2.90 s", v2[header.IndexOf("Compression time")]); // truncation 2.4 + write 0.5; eval excluded

        string provenance = File.ReadAllText(Path.Combine(tables, "provenance.md"));
        Assert.Contains("0123456789ab", provenance);
        Assert.Contains("Microsoft.Data.Sqlite 9.0.23, YamlDotNet 16.3.0", provenance);
        Assert.Contains("OpenBLAS 0.3.21 pthreads", provenance);
        var (ph, prow) = TestSupport.ParseMarkdownTable(provenance);
        Assert.Equal(["2", "4"], prow.Select(r => r[ph.IndexOf("Threads")]).Order());
    }

    [Fact]
    public void Efficiency_table_has_its_own_rows_and_units()
    {
        using var dir = new TempDirectory();
        TestSupport.GenerateStandard(dir);
        var (header, rows) = TestSupport.ParseMarkdownTable(File.ReadAllText(Path.Combine(dir.Path, "results", "tables", "tiny-llama_efficiency.md")));
        Assert.Equal(["Method", "Ratio", "Params", "Weights (MiB)", "Prefill tok/s", "Decode tok/s", "Peak RSS (MiB)",
            "Params ×", "Weights (MiB) ×", "Prefill tok/s ×", "Decode tok/s ×", "Peak RSS (MiB) ×"], header);
        Assert.Equal([("Original", "–"), ("SVD-LLM V2", "20%"), ("SVD-LLM V2", "40%")], rows.Select(r => (r[0], r[1])));
        var v2 = rows[2];
        Assert.Equal("900,000", v2[2]);
        Assert.Equal((6e6 * 0.6 / 1048576).ToString("F1", Inv), v2[3]);
        Assert.Equal((1000 / 0.6).ToString("F1", Inv), v2[4]);
        Assert.Equal((123.44 / 0.6).ToString("F1", Inv), v2[5]);
        Assert.Equal("3.0", v2[6]);
        // Ratios to the original row: the fixture's sizes scale by 1 − R and its throughputs by 1 / (1 − R).
        Assert.Equal(["0.60×", "0.60×", (1 / 0.6).ToString("F2", Inv) + "×", (1 / 0.6).ToString("F2", Inv) + "×", "1.00×"], v2.Skip(7));
        Assert.Equal(["1.00×", "1.00×", "1.00×", "1.00×", "1.00×"], rows[0].Skip(7));
    }

    [Fact]
    public void Efficiency_ratios_measured_as_a_pair_are_shown_instead_of_the_quotient()
    {
        using var dir = new TempDirectory();
        string db = dir.File("results.db");
        using (var fixture = new FixtureDb(db))
        {
            StandardFixture.Write(fixture);
            // The pipeline stores <metric>_ratio for a compressed cell measured against its original; pick a value
            // that no quotient of the fixture's absolute numbers gives.
            fixture.AddMetric($"k-{StandardFixture.Model}-svdllm-v2-40", "efficiency", "prefill_tokens_per_s_ratio", 1.234, n: 4);
        }
        ReportGenerator.Generate(db, dir.Sub("results"));
        string md = File.ReadAllText(Path.Combine(dir.Path, "results", "tables", "tiny-llama_efficiency.md"));
        var (header, rows) = TestSupport.ParseMarkdownTable(md);
        Assert.DoesNotContain(header, h => h.Contains("ratio", StringComparison.Ordinal));  // ratios are not absolute columns
        int prefill = header.IndexOf("Prefill tok/s ×");
        Assert.Equal("1.23×", rows[2][prefill]);                               // stored pair ratio (V2 40 %)
        Assert.Equal((1 / 0.8).ToString("F2", Inv) + "×", rows[1][prefill]);  // V2 20 %: the quotient, no pair stored
        Assert.Contains("otherwise the quotient", md, StringComparison.Ordinal);
    }

    [Fact]
    public void Plots_are_svg_and_png_with_one_series_per_method()
    {
        using var dir = new TempDirectory();
        var summary = TestSupport.GenerateStandard(dir);
        string plots = Path.Combine(dir.Path, "results", "plots");
        var files = Directory.GetFiles(plots, "*.svg");
        Assert.Equal(summary.Plots, files.Length);
        XNamespace svg = "http://www.w3.org/2000/svg";
        foreach (string file in files)
        {
            var doc = XDocument.Load(file); // throws on malformed XML
            Assert.Equal("svg", doc.Root!.Name.LocalName);
            // Its PNG beside it, at the SVG's size (96 dpi by default), and not blank.
            string png = Path.ChangeExtension(file, ".png");
            var image = PngInspector.Decode(File.ReadAllBytes(png), png);
            Assert.Equal(((int)doc.Root.Attribute("width")!, (int)doc.Root.Attribute("height")!), (image.Width, image.Height));
            Assert.Equal(96, image.Dpi);
            Assert.True(PngInspector.Inspect(png).DistinctColors > 16, png);
        }
        Assert.Equal(summary.Plots, Directory.GetFiles(plots, "*.png").Length);

        List<string> Texts(string name) => XDocument.Load(Path.Combine(plots, name)).Descendants(svg + "text").Select(t => t.Value.Trim()).ToList();
        // The legend names the series in order; names of methods without data do not appear.
        string[] Legend(string name, params string[] candidates) => Texts(name).Where(candidates.Contains).ToArray();
        string[] methods = ["SVD", "ASVD", "SVD-LLM", "SVD-LLM V2"];
        Assert.Equal(methods, Legend("tiny-llama_ppl_wikitext2.svg", methods));
        Assert.Equal(methods, Legend("tiny-llama_accuracy.svg", methods));
        Assert.Equal(["q_proj", "k_proj", "down_proj"], Legend("tiny-llama_alloc_svdllm-v2_r20.svg", "q_proj", "k_proj", "down_proj", "v_proj"));
        Assert.Equal(["SVD-LLM", "SVD-LLM V2"], Legend("tiny-llama_loss.svg", methods)); // only those record both losses
        // The heatmap: one white-edged rectangle per (matrix type, layer), and the colour bar's label.
        var heat = XDocument.Load(Path.Combine(plots, "tiny-llama_alloc_svdllm-v2_r40_heatmap.svg"));
        Assert.Equal(3 * 3, heat.Descendants(svg + "rect").Count(r => (string?)r.Attribute("stroke") == "white"));
        Assert.Contains("ratio removed", heat.Descendants(svg + "text").Select(t => t.Value.Trim()));

        // Each method's markers, in its own colour: one per ratio, plus the legend's.
        var ppl = XDocument.Load(Path.Combine(plots, "tiny-llama_ppl_c4.svg"));
        foreach (string method in new[] { "svd", "asvd", "svdllm", "svdllm-v2" })
        {
            string color = SvdLlm.Experiments.Reports.Charts.ChartStyle.ForMethod(method).Color;
            Assert.Equal(Ratios.Length + 1, ppl.Descendants().Count(e => (string?)e.Attribute("fill") == color));
            Assert.Contains(ppl.Descendants(svg + "path"), e => (string?)e.Attribute("fill") == "none" && (string?)e.Attribute("stroke") == color);
        }
        Assert.Contains(Texts("tiny-llama_ppl_c4.svg"), t => t.StartsWith("Original (21.00)", StringComparison.Ordinal));
    }

    [Fact]
    public void Png_figures_follow_the_dpi_asked_for()
    {
        using var dir = new TempDirectory();
        string db = dir.File("results.db");
        using (var fixture = new FixtureDb(db)) StandardFixture.Write(fixture);
        ReportGenerator.Generate(db, dir.Sub("r300"), dpi: 300);
        string svgPath = Path.Combine(dir.Path, "r300", "plots", "tiny-llama_loss.svg");
        var root = XDocument.Load(svgPath).Root!;
        var image = PngInspector.Decode(File.ReadAllBytes(Path.ChangeExtension(svgPath, ".png")));
        Assert.InRange(image.Width - (int)root.Attribute("width")! * 300 / 96.0, -0.5, 0.5);
        Assert.InRange(image.Height - (int)root.Attribute("height")! * 300 / 96.0, -0.5, 0.5);
        Assert.Equal(300, image.Dpi);
        Assert.Throws<ReportException>(() => ReportGenerator.Generate(db, dir.Sub("bad"), dpi: 0));
    }

    [Fact]
    public void Same_database_gives_the_same_bytes()
    {
        using var dir = new TempDirectory();
        var a = TestSupport.GenerateStandard(dir, "a");
        var b = TestSupport.GenerateStandard(dir, "b");
        string ra = Path.Combine(dir.Path, "a"), rb = Path.Combine(dir.Path, "b");
        Assert.Equal(a.Files.Select(f => Path.GetRelativePath(ra, f)), b.Files.Select(f => Path.GetRelativePath(rb, f)));
        foreach (string f in a.Files)
            Assert.True(File.ReadAllBytes(f).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(rb, Path.GetRelativePath(ra, f)))), $"{f} differs");
        Assert.Empty(Directory.GetFiles(ra, "*.tmp", SearchOption.AllDirectories));
    }

    [Fact]
    public void Html_is_self_contained_and_inlines_every_plot()
    {
        using var dir = new TempDirectory();
        var summary = TestSupport.GenerateStandard(dir);
        string html = File.ReadAllText(summary.HtmlPath);
        Assert.DoesNotMatch(new Regex(@"(src|href)\s*=\s*[""']?\s*(https?:|//)", RegexOptions.IgnoreCase), html);
        Assert.DoesNotMatch(new Regex(@"<(script|link|img|iframe|object)\b", RegexOptions.IgnoreCase), html);
        // url() only to a fragment of the page itself (the charts' clip paths), never a file or a host.
        Assert.DoesNotMatch(new Regex(@"url\((?!#)|@import", RegexOptions.IgnoreCase), html);
        Assert.Equal(summary.Plots, Regex.Matches(html, "<svg ").Count);
        // Charts are inlined side by side: their ids must not collide, and every reference must find its target.
        var ids = Regex.Matches(html, @"\sid=""([^""]*)""").Select(m => m.Groups[1].Value).ToList();
        Assert.Equal(ids.Count, ids.Distinct().Count());
        Assert.All(Regex.Matches(html, @"url\(#([^)]*)\)").Select(m => m.Groups[1].Value), r => Assert.Contains(r, ids));
        Assert.Contains("SVD-LLM V2", html);
        Assert.Contains("demo, &quot;q&quot;", html);
        // Well-formed enough for an XML parser once the doctype is dropped: every element closed, every text escaped.
        XDocument.Parse(html.Replace("<!DOCTYPE html>", "").Replace("<meta charset=\"utf-8\">", "<meta charset=\"utf-8\"/>")
            .Replace("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">", "<meta/>"));
    }

    [Fact]
    public void Empty_database_gives_a_report_that_says_so()
    {
        using var dir = new TempDirectory();
        string db = dir.File("empty.db");
        using (var fixture = new FixtureDb(db)) { }
        var summary = ReportGenerator.Generate(db, dir.Sub("out"));
        Assert.True(summary.Empty);
        Assert.Equal(0, summary.Tables);
        Assert.Contains("No results yet", File.ReadAllText(summary.HtmlPath));
        Assert.Contains("No results yet", File.ReadAllText(Path.Combine(dir.Path, "out", "tables", "index.md")));
        Assert.Single(TestSupport.ParseCsv(File.ReadAllText(Path.Combine(dir.Path, "out", "tables", "metrics_long.csv")))); // header only
    }

    [Fact]
    public void Missing_unversioned_and_newer_databases_are_clear_errors()
    {
        using var dir = new TempDirectory();
        string[] outs = [dir.Sub("o1"), dir.Sub("o2"), dir.Sub("o3"), dir.Sub("o4")];
        var missing = Assert.Throws<ReportException>(() => ReportGenerator.Generate(dir.File("nope.db"), outs[0]));
        Assert.Contains("nope.db", missing.Message);
        Assert.Contains("not found", missing.Message);

        string newer = dir.File("newer.db");
        using (new FixtureDb(newer, userVersion: SvdLlm.Experiments.Store.Schema.Migrations.Count + 1)) { }
        var e = Assert.Throws<ReportException>(() => ReportGenerator.Generate(newer, outs[1]));
        Assert.Contains("newer.db", e.Message);
        Assert.Contains($"schema version {SvdLlm.Experiments.Store.Schema.Migrations.Count + 1}", e.Message);

        string plain = dir.File("plain.db");
        using (var c = new SqliteConnection($"Data Source={plain};Pooling=False"))
        {
            c.Open();
            using var cmd = c.CreateCommand();
            cmd.CommandText = "CREATE TABLE x (a INTEGER)";
            cmd.ExecuteNonQuery();
        }
        Assert.Contains("not a results database", Assert.Throws<ReportException>(() => ReportGenerator.Generate(plain, outs[2])).Message);

        string garbage = dir.File("garbage.db");
        File.WriteAllText(garbage, "this is not sqlite at all, just text that is long enough to have a header.................................");
        Assert.Contains("garbage.db", Assert.Throws<ReportException>(() => ReportGenerator.Generate(garbage, outs[3])).Message);
        Assert.All(outs, o => Assert.Empty(Directory.GetFileSystemEntries(o))); // nothing written on error
    }

    [Fact]
    public void Regenerating_removes_files_of_results_that_are_gone()
    {
        using var dir = new TempDirectory();
        string out_ = dir.Sub("out");
        string big = dir.File("big.db"), small = dir.File("small.db");
        using (var f = new FixtureDb(big)) StandardFixture.Write(f);
        using (var f = new FixtureDb(small))
        {
            f.AddRun();
            string c = f.AddCell("tiny-llama", "original", 0);
            f.AddMetric(c, "wikitext2", "ppl", 17.25);
        }
        File.WriteAllText(Path.Combine(out_, "results.db-notes.txt"), "the user's own file");
        ReportGenerator.Generate(big, out_);
        Assert.True(File.Exists(Path.Combine(out_, "tables", "tiny-llama_r40.md")));
        ReportGenerator.Generate(small, out_);
        Assert.False(File.Exists(Path.Combine(out_, "tables", "tiny-llama_r40.md")));
        Assert.False(File.Exists(Path.Combine(out_, "plots", "tiny-llama_loss.svg")));
        Assert.False(File.Exists(Path.Combine(out_, "plots", "tiny-llama_loss.png")));
        Assert.True(File.Exists(Path.Combine(out_, "tables", "tiny-llama_r0.md")));
        Assert.True(File.Exists(Path.Combine(out_, "results.db-notes.txt")));
    }

    [Fact]
    public void Ratios_that_print_alike_still_get_their_own_tables()
    {
        using var dir = new TempDirectory();
        string db = dir.File("r.db");
        using (var f = new FixtureDb(db))
        {
            f.AddRun();
            foreach (var (ratio, ppl) in new[] { (0.2, 30.0), (0.2000001, 31.0) })
                f.AddMetric(f.AddCell("m|x", "svd", ratio, key: "k" + ppl), "wikitext2", "ppl", ppl);
        }
        var summary = ReportGenerator.Generate(db, dir.Sub("out"));
        Assert.Equal(2, summary.Tables);
        string a = File.ReadAllText(Path.Combine(dir.Path, "out", "tables", "m-x_r20.md"));
        string b = File.ReadAllText(Path.Combine(dir.Path, "out", "tables", "m-x_r20-2.md"));
        Assert.Contains("| SVD | **30.00** |", a);
        Assert.Contains("| SVD | **31.00** |", b);
        Assert.StartsWith("## m\\|x at 20% compression", a); // the pipe in the model name is escaped
    }

    [ChromiumFact]
    public void Report_renders_in_headless_chromium()
    {
        using var dir = new TempDirectory();
        var summary = TestSupport.GenerateStandard(dir);
        var shot = HtmlCheck.Check(summary.HtmlPath, dir.File("shot.png"));
        Assert.Equal(HtmlCheck.Width, shot.Width);
        Assert.Equal(HtmlCheck.Height, shot.Height);
        Assert.True(shot.BackgroundFraction < 0.98, $"background fraction {shot.BackgroundFraction}");
        Assert.True(shot.DistinctColors >= 64, $"{shot.DistinctColors} colours"); // text antialiasing and the plots' palette
    }
}
