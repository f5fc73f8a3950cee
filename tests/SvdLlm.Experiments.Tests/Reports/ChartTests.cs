using System.Globalization;
using System.IO.Compression;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using SvdLlm.Experiments.Reports;
using SvdLlm.Experiments.Reports.Charts;

namespace SvdLlm.Experiments.Tests.Reports;

/// <summary>The ScottPlot figures read back: SVG structure (texts, colours, ids), PNG pixels, and their determinism.</summary>
public class ChartTests
{
    private static readonly XNamespace Svg = "http://www.w3.org/2000/svg";
    private static double D(string s) => double.Parse(s, CultureInfo.InvariantCulture);

    private static XDocument Doc(Chart chart, string prefix = "t") => XDocument.Parse(ChartOutput.ToSvg(chart, prefix));

    /// <summary>Every text element: its (trimmed) content and the position of its anchor.</summary>
    private static List<(string Text, double X, double Y)> Texts(XDocument doc) =>
        doc.Descendants(Svg + "text").Select(t =>
        {
            var m = Regex.Match((string?)t.Attribute("transform") ?? "", @"translate\(([-0-9.e]+)[ ,]+([-0-9.e]+)\)");
            return (t.Value.Trim(), m.Success ? D(m.Groups[1].Value) : double.NaN, m.Success ? D(m.Groups[2].Value) : double.NaN);
        }).ToList();

    /// <summary>Elements drawn in <paramref name="hex"/> (fill or stroke; the SVG writes colours #rrggbb).</summary>
    private static List<XElement> InColor(XDocument doc, string hex) =>
        doc.Descendants().Where(e => (string?)e.Attribute("fill") == hex
                                     || (string?)e.Attribute("stroke") == hex).ToList();

    private static XYChart TwoMethods(string title = "ppl") => new()
    {
        Title = title,
        XAxis = new Axis("Compression ratio", Format: NumberFormat.Percent, Include: [0.0]),
        YAxis = new Axis("WikiText-2 perplexity", ScaleKind.Log10),
        Series =
        [
            new Series("SVD", [(0.2, 30), (0.4, 300), (0.6, 3000)], ChartStyle.ForMethod("svd")),
            new Series("SVD-LLM", [(0.2, 12), (0.4, 20), (0.6, 45)], ChartStyle.ForMethod("svdllm")),
        ],
        References = [new ReferenceLine("Original (10.00)", 10)],
    };

    [Fact]
    public void Variants_of_one_method_keep_its_colour_and_differ_in_marker()
    {
        // SVD-LLM and SVD-LLM + LoRA, GPTQ 3-bit and 4-bit: one family's colour, and no two of its curves alike.
        foreach (string method in new[] { "svdllm", "gptq", "delta-impart" })
        {
            var styles = Enumerable.Range(0, ChartStyle.Markers.Length).Select(v => ChartStyle.ForVariant(method, v)).ToList();
            Assert.Equal(ChartStyle.ForMethod(method), styles[0]);
            Assert.All(styles, st => Assert.Equal(ChartStyle.ForMethod(method).Color, st.Color));
            Assert.Equal(styles.Count, styles.Select(st => st.Marker).Distinct().Count());
        }
    }

    [Fact]
    public void Log_axis_labels_1_2_5_values_at_their_log_positions()
    {
        var chart = new XYChart { Title = "t", XAxis = new Axis("x"), YAxis = new Axis("y", ScaleKind.Log10), Series = [new Series("a", [(0, 3), (0.5, 30), (1, 80)], ChartStyle.Slot(0))] };
        var texts = Texts(Doc(chart));
        // Data 3..80: the domain runs from the 1-2-5 value below (2) to the one above (100), each labelled.
        string[] expected = ["2", "5", "10", "20", "50", "100"];
        var labels = expected.Select(l => texts.Single(t => t.Text == l && t.X < 100)).ToList();
        // Label heights are affine in log10 of the value: fit on the ends, check the rest within a pixel.
        double a = (labels[^1].Y - labels[0].Y) / (Math.Log10(100) - Math.Log10(2));
        foreach (var (l, t) in expected.Zip(labels))
            Assert.Equal(labels[0].Y + a * (Math.Log10(D(l)) - Math.Log10(2)), t.Y, 0.6);
        Assert.True(a < 0, "larger values higher up");
        Assert.Contains(texts, t => t.Text == "y (log scale)");
    }

    [Fact]
    public void Log_scales_pick_1_2_5_ticks_or_decades_and_minor_ticks_between()
    {
        Assert.Equal([0.002, 0.005, 0.01, 0.02, 0.05], Log10Scale.Nice(0.003, 0.04).Ticks);
        var wide = Log10Scale.Nice(1.5, 20000);
        Assert.Equal(["1", "10", "100", "1000", "1e4", "1e5"], wide.Ticks.Select(wide.Label));
        Assert.Equal([2.0, 3, 4, 5, 6, 7, 8, 9, 10, 20, 30], Log10Scale.MinorTicks(2, 30));
        Assert.Throws<ArgumentException>(() => Log10Scale.Nice(0, 10));
    }

    [Fact]
    public void Linear_axis_uses_nice_steps_covering_the_data()
    {
        Assert.Equal([0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], LinearScale.Nice(0.2, 0.8).Ticks);
        Assert.Equal([0, 2, 4, 6, 8, 10], LinearScale.Nice(0, 9.3).Ticks); // 9.3 / 5 = 1.86 → step 2
        Assert.Equal(Enumerable.Range(0, 9).Select(i => (double)i), LinearScale.Nice(0, 7.3).Ticks); // 1.46 → step 1
        Assert.All(LinearScale.Nice(0, 3, integerTicks: true).Ticks, t => Assert.Equal(Math.Round(t), t));
        var d = LinearScale.Nice(5, 5);
        Assert.True(d.Min < 5 && d.Max > 5);
    }

    [Fact]
    public void Svg_has_the_labels_legend_and_one_coloured_line_per_method()
    {
        var doc = Doc(TwoMethods());
        var texts = Texts(doc).Select(t => t.Text).ToList();
        Assert.Equal("ppl", doc.Root!.Element(Svg + "title")!.Value);
        foreach (string s in new[] { "ppl", "Compression ratio", "WikiText-2 perplexity (log scale)", "SVD", "SVD-LLM", "Original (10.00)", "0%", "20%", "60%", "10", "100", "1000" })
            Assert.Contains(s, texts);
        Assert.All(doc.Descendants(Svg + "text"), t => Assert.Equal(ChartStyle.FontFamily, (string?)t.Attribute("font-family")));
        foreach (string method in new[] { "svd", "svdllm" })
        {
            var drawn = InColor(doc, ChartStyle.ForMethod(method).Color);
            Assert.Contains(drawn, e => e.Name == Svg + "path" && (string?)e.Attribute("fill") == "none"); // the line (and the legend's)
            Assert.True(drawn.Count >= 3 + 1, $"{method}: {drawn.Count} elements in its colour"); // three markers, a line, the legend
        }
        Assert.NotEqual(ChartStyle.ForMethod("svd"), ChartStyle.ForMethod("svdllm"));
        Assert.Empty(doc.Descendants(Svg + "image")); // vector throughout
        Assert.Equal("0 0 780 440", (string?)doc.Root.Attribute("viewBox"));
    }

    [Fact]
    public void Svg_ids_are_unique_resolved_and_independent_of_charts_drawn_before()
    {
        var b = TwoMethods("B");
        string alone = ChartOutput.ToSvg(b, "fig-b");
        string raw1 = b.Build().GetSvgXml(780, 440);
        for (int i = 0; i < 3; i++) ChartOutput.ToSvg(TwoMethods("A" + i), "fig-a");
        string raw2 = b.Build().GetSvgXml(780, 440);
        // ScottPlot's (Skia's) own ids run on across charts: the reason for the renaming.
        Assert.NotEqual(raw1, raw2);
        Assert.Equal(alone, ChartOutput.ToSvg(b, "fig-b"));

        var doc = XDocument.Parse(alone);
        var ids = doc.Descendants().Select(e => (string?)e.Attribute("id")).OfType<string>().ToList();
        Assert.NotEmpty(ids); // clip paths
        Assert.Equal(ids.Count, ids.Distinct().Count());
        Assert.All(ids, id => Assert.StartsWith("fig-b-", id, StringComparison.Ordinal));
        var refs = Regex.Matches(alone, @"url\(#([^)]*)\)").Select(m => m.Groups[1].Value).ToList();
        Assert.NotEmpty(refs);
        Assert.All(refs, r => Assert.Contains(r, ids));
        Assert.DoesNotContain("<?xml", alone, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => ChartOutput.ToSvg(b, "1bad"));
    }

    [Fact]
    public void Scatter_with_y_equals_x_shares_one_domain_on_both_axes()
    {
        var chart = new XYChart
        {
            Title = "loss", XAxis = new Axis("theoretical", ScaleKind.Log10), YAxis = new Axis("measured", ScaleKind.Log10),
            Series = [new Series("m", [(10, 12), (100, 90), (300, 290)], ChartStyle.Slot(1))], References = [new ReferenceLine("y = x", null)], Lines = false,
        };
        var (x, y) = chart.Scales();
        Assert.Same(x, y);
        Assert.True(x.Min <= 10 && x.Max >= 300);
        var doc = Doc(chart);
        // No line through the points: only the legend's and the reference's paths are unfilled strokes in the series colour or grey.
        Assert.DoesNotContain(doc.Descendants(Svg + "path"), e => (string?)e.Attribute("fill") == "none" && (string?)e.Attribute("stroke") == ChartStyle.Slot(1).Color
                                                                 && ((string?)e.Attribute("d"))?.Count(c => c == 'L') > 1);
        Assert.Contains("y = x", Texts(doc).Select(t => t.Text));
    }

    [Fact]
    public void Series_without_drawable_points_are_left_out()
    {
        var chart = new XYChart
        {
            Title = "t", XAxis = new Axis("x"), YAxis = new Axis("y", ScaleKind.Log10),
            Series = [new Series("zero", [(1, 0), (2, -1)], ChartStyle.Slot(0)), new Series("ok", [(1, 2), (2, 3)], ChartStyle.Slot(1))],
        };
        var texts = Texts(Doc(chart)).Select(t => t.Text).ToList();
        Assert.Contains("ok", texts);
        Assert.DoesNotContain("zero", texts); // no legend entry for a series that is not drawn
    }

    [Fact]
    public void Text_is_xml_escaped()
    {
        string name = "<a & \"b\"> 'c' ‖WX − W′X‖ Δ";
        var chart = new XYChart { Title = name, XAxis = new Axis("x & y"), YAxis = new Axis("<y>"), Series = [new Series(name, [(1, 2), (2, 3)], ChartStyle.Slot(0))] };
        var doc = Doc(chart);
        Assert.Equal(name, doc.Root!.Element(Svg + "title")!.Value);
        var texts = Texts(doc).Select(t => t.Text).ToList();
        Assert.Contains("x & y", texts);
        Assert.Contains("<y>", texts);
        Assert.Equal(2, texts.Count(t => t == name)); // the title and the legend
    }

    /// <summary>Equal within one step per channel (colour maps are tabulated, their ends rounded either way).</summary>
    private static void Close(string expected, string actual)
    {
        for (int i = 1; i < 7; i += 2)
            Assert.True(Math.Abs(Convert.ToInt32(expected.Substring(i, 2), 16) - Convert.ToInt32(actual.Substring(i, 2), 16)) <= 1, $"{actual} is not {expected}");
    }

    [Fact]
    public void Heatmap_cells_are_vector_rectangles_in_viridis_with_a_colour_bar()
    {
        var heat = new Heatmap
        {
            Title = "h", XLabel = "layer", YLabel = "type", Columns = ["0", "1"], Rows = ["q", "k"],
            Values = [[0.1, 0.3], [0.2, null]], ColorLabel = "ratio removed",
        };
        var scale = heat.ColorScale();
        Assert.Equal((0.1, 0.3), (scale.Min, scale.Max));
        var doc = Doc(heat);
        Assert.Empty(doc.Descendants(Svg + "image"));
        // Viridis' ends at the extremes (its published first and last colours), grey where a value is missing.
        Close("#440154", Heatmap.ColorOf(0.1, scale));
        Close("#fde725", Heatmap.ColorOf(0.3, scale));
        foreach (string fill in new[] { Heatmap.ColorOf(0.1, scale), Heatmap.ColorOf(0.3, scale), Heatmap.ColorOf(0.2, scale), ChartStyle.MissingColor })
            Assert.Contains(doc.Descendants(), e => e.Name.LocalName is "rect" or "path" && (string?)e.Attribute("fill") == fill);
        // The colour bar: many small steps of the colour map, and its label and end values.
        int filled = doc.Descendants().Count(e => e.Name.LocalName is "rect" or "path" && ((string?)e.Attribute("fill"))?.StartsWith('#') == true);
        Assert.True(filled >= 4 + 40, $"{filled} filled shapes");
        var texts = Texts(doc).Select(t => t.Text).ToList();
        foreach (string s in new[] { "ratio removed", "0.15", "0.25", "q", "k", "layer", "type", "0.20" }) // 0.15, 0.25: colour bar ticks only
            Assert.Contains(s, texts);
        Assert.Throws<ArgumentException>(() => new Heatmap { Title = "h", XLabel = "", YLabel = "", Columns = ["0"], Rows = ["q"], Values = [[1, 2]] }.Build());
    }

    [Fact]
    public void Png_has_the_pixel_size_of_its_dpi_the_method_colours_and_the_same_bytes_again()
    {
        var chart = TwoMethods();
        foreach (int dpi in new[] { 96, 300 })
        {
            byte[] png = ChartOutput.ToPng(chart, dpi);
            var image = PngInspector.Decode(png);
            Assert.InRange(image.Width - 780 * dpi / 96.0, -0.5, 0.5); // the figure keeps its size in inches
            Assert.InRange(image.Height - 440 * dpi / 96.0, -0.5, 0.5);
            Assert.Equal(ChartOutput.PngSize(chart, dpi), (image.Width, image.Height));
            Assert.Equal(dpi, image.Dpi);
            var counts = new Dictionary<int, int>();
            for (int i = 0; i < image.Width * image.Height; i++) counts[image.Rgb(i)] = counts.GetValueOrDefault(image.Rgb(i)) + 1;
            Assert.Equal(0xffffff, counts.MaxBy(kv => kv.Value).Key); // a white figure
            foreach (string method in new[] { "svd", "svdllm" })
            {
                int rgb = Convert.ToInt32(ChartStyle.ForMethod(method).Color[1..], 16);
                // Markers of 8 px and 2 px lines: hundreds of pixels of the exact colour at 96 dpi, ~10× at 300.
                Assert.True(counts.GetValueOrDefault(rgb) > 150 * dpi / 96 * dpi / 96, $"{method} at {dpi} dpi: {counts.GetValueOrDefault(rgb)} pixels of #{rgb:x6}");
            }
            Assert.Equal(png, ChartOutput.ToPng(chart, dpi));
        }
        Assert.Throws<ReportException>(() => ChartOutput.ToPng(chart, 5));
    }

    [Fact]
    public void Png_dpi_chunk_carries_a_valid_crc()
    {
        // The CRC of the IEND chunk's type is a published constant of the PNG format.
        Assert.Equal(0xAE426082u, ChartOutput.Crc32("IEND"u8));
        byte[] png = ChartOutput.ToPng(TwoMethods(), 150);
        int p = 8 + 25; // after the signature and IHDR
        Assert.Equal("pHYs", System.Text.Encoding.ASCII.GetString(png, p + 4, 4));
        uint crc = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(p + 8 + 9));
        Assert.Equal(ChartOutput.Crc32(png.AsSpan(p + 4, 13)), crc);
    }

    [Fact]
    public void Png_inspector_undoes_every_scanline_filter()
    {
        // 3×5 RGB image, one row per filter type, encoded here from the PNG spec's definitions.
        const int w = 3, h = 5, bpp = 3;
        var pixels = new byte[h, w * bpp];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w * bpp; x++)
                pixels[y, x] = (byte)((y * 53 + x * 29 + x * y * 7) % 256);
        var raw = new List<byte>();
        for (int y = 0; y < h; y++)
        {
            raw.Add((byte)y);
            for (int x = 0; x < w * bpp; x++)
            {
                int a = x >= bpp ? pixels[y, x - bpp] : 0, b = y > 0 ? pixels[y - 1, x] : 0, c = x >= bpp && y > 0 ? pixels[y - 1, x - bpp] : 0;
                int p = a + b - c;
                int paeth = Math.Abs(p - a) <= Math.Abs(p - b) && Math.Abs(p - a) <= Math.Abs(p - c) ? a : Math.Abs(p - b) <= Math.Abs(p - c) ? b : c;
                int predictor = y switch { 0 => 0, 1 => a, 2 => b, 3 => (a + b) / 2, _ => paeth };
                raw.Add((byte)(pixels[y, x] - predictor));
            }
        }
        var decoded = PngInspector.Unfilter(raw.ToArray(), w, h, bpp);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w * bpp; x++)
                Assert.Equal(pixels[y, x], decoded[y * w * bpp + x]);

        // And through a whole file: signature, IHDR, zlib IDAT, IEND.
        using var dir = new Models.Tests.TempDirectory();
        string path = dir.File("t.png");
        using (var f = File.Create(path))
        {
            f.Write([137, 80, 78, 71, 13, 10, 26, 10]);
            void Chunk(string type, byte[] body)
            {
                var len = new byte[4];
                System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(len, body.Length);
                f.Write(len);
                f.Write(System.Text.Encoding.ASCII.GetBytes(type));
                f.Write(body);
                f.Write(new byte[4]); // CRC, not checked by the inspector
            }
            var ihdr = new byte[13];
            System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(ihdr, w);
            System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), h);
            ihdr[8] = 8;
            ihdr[9] = 2;
            Chunk("IHDR", ihdr);
            using var ms = new MemoryStream();
            using (var z = new ZLibStream(ms, CompressionLevel.Optimal, leaveOpen: true)) z.Write(raw.ToArray());
            Chunk("IDAT", ms.ToArray());
            Chunk("IEND", []);
        }
        var summary = PngInspector.Inspect(path);
        Assert.Equal((w, h, 2), (summary.Width, summary.Height, summary.ColorType));
        Assert.Equal(w * h, summary.DistinctColors); // the formula gives every pixel its own colour
        Assert.Equal(1.0 / (w * h), summary.BackgroundFraction, 12);
    }
}
