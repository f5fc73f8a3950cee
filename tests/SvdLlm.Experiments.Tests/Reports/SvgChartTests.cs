using System.Globalization;
using System.IO.Compression;
using System.Xml.Linq;
using SvdLlm.Experiments.Reports;
using SvdLlm.Experiments.Reports.Svg;

namespace SvdLlm.Experiments.Tests.Reports;

public class SvgChartTests
{
    private static readonly XNamespace Svg = "http://www.w3.org/2000/svg";
    private static double D(string s) => double.Parse(s, CultureInfo.InvariantCulture);

    private static IEnumerable<XElement> Ticks(XDocument doc, string axis) =>
        doc.Descendants(Svg + "g").Where(g => (string?)g.Attribute("class") == "tick " + axis);

    private static XYChart LogChart(params (double X, double Y)[] points) => new()
    {
        Title = "t",
        XAxis = new Axis("x"),
        YAxis = new Axis("y", ScaleKind.Log10),
        Series = [new Series("a", points, 0, 0)],
    };

    [Fact]
    public void Log_axis_puts_1_2_5_ticks_at_their_log_positions()
    {
        // Data 3..80: the domain runs from the 1-2-5 value below (2) to the one above (100).
        var chart = LogChart((0, 3), (0.5, 30), (1, 80));
        var doc = XDocument.Parse(chart.Render());
        var L = chart.Layout;
        var ticks = Ticks(doc, "y").ToList();
        Assert.Equal(["2", "5", "10", "20", "50", "100"], ticks.Select(t => t.Element(Svg + "text")!.Value));
        foreach (var t in ticks)
        {
            double v = D(t.Element(Svg + "text")!.Value);
            double expected = L.Top + L.PlotHeight * (1 - (Math.Log10(v) - Math.Log10(2)) / (Math.Log10(100) - Math.Log10(2)));
            Assert.Equal(expected, D((string)t.Element(Svg + "line")!.Attribute("y1")!), 2);
        }
        // The marker of (0.5, 30): x half-way (linear 0..1), y at log10(30) in [log10 2, 2].
        var marker = doc.Descendants(Svg + "circle").ElementAt(1);
        Assert.Equal(L.Left + 0.5 * L.PlotWidth, D((string)marker.Attribute("cx")!), 2);
        Assert.Equal(L.Top + L.PlotHeight * (1 - (Math.Log10(30) - Math.Log10(2)) / (2 - Math.Log10(2))), D((string)marker.Attribute("cy")!), 2);
    }

    [Fact]
    public void Wide_log_ranges_get_decade_ticks()
    {
        var doc = XDocument.Parse(LogChart((0, 1.5), (1, 20000)).Render());
        Assert.Equal(["1", "10", "100", "1000", "1e4", "1e5"], Ticks(doc, "y").Select(t => t.Element(Svg + "text")!.Value));
        var s = Log10Scale.Nice(0.003, 0.04);
        Assert.Equal([0.002, 0.005, 0.01, 0.02, 0.05], s.Ticks);
        Assert.Throws<ArgumentException>(() => Log10Scale.Nice(0, 10));
    }

    [Fact]
    public void Linear_axis_uses_nice_steps_covering_the_data()
    {
        var a = LinearScale.Nice(0.2, 0.8);
        Assert.Equal([0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], a.Ticks);
        var b = LinearScale.Nice(0, 9.3); // 9.3 / 5 = 1.86 → step 2
        Assert.Equal([0, 2, 4, 6, 8, 10], b.Ticks);
        var e = LinearScale.Nice(0, 7.3); // 1.46 → step 1
        Assert.Equal(Enumerable.Range(0, 9).Select(i => (double)i), e.Ticks);
        var c = LinearScale.Nice(0, 3, integerTicks: true);
        Assert.All(c.Ticks, t => Assert.Equal(Math.Round(t), t));
        var d = LinearScale.Nice(5, 5);
        Assert.True(d.Min < 5 && d.Max > 5);
    }

    [Fact]
    public void Scatter_draws_y_equals_x_on_the_diagonal_of_a_shared_domain()
    {
        var chart = new XYChart
        {
            Title = "loss",
            XAxis = new Axis("theoretical", ScaleKind.Log10),
            YAxis = new Axis("measured", ScaleKind.Log10),
            Series = [new Series("m", [(10, 12), (300, 290)], 1, 1)],
            References = [new ReferenceLine("y = x", null)],
            Lines = false,
        };
        var doc = XDocument.Parse(chart.Render());
        var L = chart.Layout;
        var line = doc.Descendants(Svg + "g").Single(g => (string?)g.Attribute("class") == "reference").Element(Svg + "line")!;
        Assert.Equal(L.Left, D((string)line.Attribute("x1")!), 2);
        Assert.Equal(L.Top + L.PlotHeight, D((string)line.Attribute("y1")!), 2);
        Assert.Equal(L.Left + L.PlotWidth, D((string)line.Attribute("x2")!), 2);
        Assert.Equal(L.Top, D((string)line.Attribute("y2")!), 2);
        Assert.Empty(doc.Descendants(Svg + "polyline"));
        Assert.Equal(Ticks(doc, "x").Select(t => t.Element(Svg + "text")!.Value), Ticks(doc, "y").Select(t => t.Element(Svg + "text")!.Value));
    }

    [Fact]
    public void Text_is_xml_escaped()
    {
        string name = "<a & \"b\"> 'c'";
        var chart = new XYChart { Title = name, XAxis = new Axis("x & y"), YAxis = new Axis("<y>"), Series = [new Series(name, [(1, 2), (2, 3)], 0, 0)] };
        var doc = XDocument.Parse(chart.Render());
        Assert.Equal(name, doc.Root!.Element(Svg + "title")!.Value);
        Assert.Equal(name, (string)doc.Descendants(Svg + "g").Single(g => (string?)g.Attribute("class") == "series").Attribute("data-name")!);
        Assert.Contains(doc.Descendants(Svg + "text"), t => t.Value == "x & y");
    }

    [Fact]
    public void Heatmap_maps_the_extremes_to_the_ends_of_the_colour_scale()
    {
        var heat = new Heatmap
        {
            Title = "h", XLabel = "layer", YLabel = "type", Columns = ["0", "1"], Rows = ["q", "k"],
            Values = [[0.1, 0.3], [0.2, null]],
        };
        var cells = XDocument.Parse(heat.Render()).Descendants(Svg + "rect").Where(r => (string?)r.Attribute("class") == "cell").ToList();
        Assert.Equal(4, cells.Count);
        string[] fills = cells.Select(c => (string)c.Attribute("fill")!).ToArray();
        Assert.Equal("#440154", fills[0]); // viridis start at the minimum
        Assert.Equal("#fde725", fills[1]); // viridis end at the maximum
        Assert.Equal("#dddddd", fills[3]); // missing
        Assert.Throws<ArgumentException>(() => new Heatmap { Title = "h", XLabel = "", YLabel = "", Columns = ["0"], Rows = ["q"], Values = [[1, 2]] }.Render());
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
