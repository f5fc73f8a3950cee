using System.Buffers.Binary;
using System.Globalization;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using ScottPlot;

namespace SvdLlm.Experiments.Reports.Charts;

/// <summary>Puts every chart in <see cref="ChartStyle.FontFamily"/>, or says clearly that the font is missing.</summary>
internal static class ChartFonts
{
    private static readonly Lock Gate = new();

    public static void Apply(Plot plot)
    {
        // FontStyler.Set also writes ScottPlot's process-wide default font; the lock keeps two reports from interleaving that.
        lock (Gate)
        {
            var typeface = plot.Font.Set(ChartStyle.FontFamily);
            if (typeface is null || typeface.FamilyName != ChartStyle.FontFamily)
                throw new ReportException($"the report's charts need the font '{ChartStyle.FontFamily}', which is not installed (found '{typeface?.FamilyName}'): apt-get install -y fonts-dejavu-core");
        }
    }
}

/// <summary>
/// A chart's two outputs. SVG: ScottPlot's (Skia's) SVG made embeddable and reproducible: no XML declaration, a
/// viewBox so that it scales, a title, trimmed text, and ids renamed. Skia numbers clip-path ids from a process-wide
/// counter, so the same chart drawn after another would get other ids; every id is renamed to the chart's prefix and
/// its rank of appearance (and colours are written #rrggbb), which makes the bytes depend on the chart alone and keeps ids unique across the charts
/// inlined in one page. PNG: the chart rendered at a given dpi (ScottPlot's scale factor, the figure keeps its size
/// in inches) with a pHYs chunk saying that dpi.
/// </summary>
public static class ChartOutput
{
    public const int MinDpi = 24, MaxDpi = 1200, ScreenDpi = 96;

    private static readonly Lock SvgGate = new();
    private static readonly XNamespace Svg = "http://www.w3.org/2000/svg";
    private static readonly XNamespace XLink = "http://www.w3.org/1999/xlink";
    private static readonly Regex HexColor = new("^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$", RegexOptions.CultureInvariant);
    private static readonly Regex UrlRef = new(@"url\(#([^)]*)\)", RegexOptions.CultureInvariant);

    /// <summary>The chart's SVG; <paramref name="idPrefix"/> (letters, digits, '-', '_', '.') starts every id in it.</summary>
    public static string ToSvg(Chart chart, string idPrefix)
    {
        if (idPrefix.Length == 0 || !char.IsAsciiLetter(idPrefix[0]) || idPrefix.Any(c => !char.IsAsciiLetterOrDigit(c) && c is not ('-' or '_' or '.')))
            throw new ArgumentException($"SVG id prefix '{idPrefix}' must start with a letter and hold only letters, digits, '-', '_' and '.'");
        var (width, height) = chart.Size;
        string raw;
        // One SVG at a time in the process: Skia's id counter is shared, and two charts drawn at once could interleave
        // their increments (and, were it not atomic, give one chart a clip id twice).
        lock (SvgGate) raw = chart.Build().GetSvgXml(width, height);
        var doc = XDocument.Parse(raw);
        var root = doc.Root ?? throw new InvalidOperationException("ScottPlot wrote an empty SVG");

        var ids = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var e in root.DescendantsAndSelf())
            if (e.Attribute("id") is { } id)
            {
                string renamed = idPrefix + "-" + (ids.Count + 1).ToString(CultureInfo.InvariantCulture);
                if (!ids.TryAdd(id.Value, renamed)) throw new InvalidOperationException($"ScottPlot wrote id '{id.Value}' twice in chart '{chart.Title}'");
                id.Value = renamed;
            }
        foreach (var e in root.DescendantsAndSelf())
        {
            foreach (var a in e.Attributes().Where(a => !a.IsNamespaceDeclaration && a.Name.LocalName != "id"))
            {
                if (a.Value.Contains("url(#", StringComparison.Ordinal))
                    a.Value = UrlRef.Replace(a.Value, m => "url(#" + Renamed(ids, m.Groups[1].Value, chart) + ")");
                else if (a.Name.LocalName == "href" && a.Value.StartsWith('#'))
                    a.Value = "#" + Renamed(ids, a.Value[1..], chart);
                else if (a.Name.LocalName is "fill" or "stroke" && HexColor.IsMatch(a.Value))
                    a.Value = a.Value.Length == 4 ? string.Concat("#", a.Value[1], a.Value[1], a.Value[2], a.Value[2], a.Value[3], a.Value[3]).ToLowerInvariant() : a.Value.ToLowerInvariant();
            }
            if (e.Name == Svg + "text")
            {
                // Skia writes each glyph's position as "x0, x1, …, " and the text between line breaks and tabs.
                foreach (var a in e.Attributes().Where(a => a.Name.LocalName is "x" or "y")) a.Value = a.Value.Trim().TrimEnd(',').Trim();
                e.Value = e.Value.Trim();
            }
        }
        root.SetAttributeValue("viewBox", $"0 0 {width.ToString(CultureInfo.InvariantCulture)} {height.ToString(CultureInfo.InvariantCulture)}");
        root.SetAttributeValue("role", "img");
        root.AddFirst(new XElement(Svg + "title", chart.Title));
        // xlink is only declared by Skia for images, which charts do not have; keep the declaration only when used.
        if (!root.Descendants().Attributes().Any(a => a.Name.Namespace == XLink)) root.Attributes().Where(a => a.IsNamespaceDeclaration && a.Value == XLink.NamespaceName).Remove();
        return root.ToString(SaveOptions.DisableFormatting) + "\n";
    }

    private static string Renamed(Dictionary<string, string> ids, string id, Chart chart) =>
        ids.TryGetValue(id, out var renamed) ? renamed : throw new InvalidOperationException($"chart '{chart.Title}': SVG refers to id '{id}', which it does not define");

    /// <summary>Pixel size of the PNG at <paramref name="dpi"/>: the chart's CSS-pixel size scaled by dpi/96.</summary>
    public static (int Width, int Height) PngSize(Chart chart, int dpi)
    {
        CheckDpi(dpi);
        var (w, h) = chart.Size;
        return ((int)Math.Round(w * (double)dpi / ScreenDpi), (int)Math.Round(h * (double)dpi / ScreenDpi));
    }

    public static void CheckDpi(int dpi)
    {
        if (dpi < MinDpi || dpi > MaxDpi) throw new ReportException($"--dpi must be between {MinDpi} and {MaxDpi}, got {dpi}");
    }

    public static byte[] ToPng(Chart chart, int dpi)
    {
        var (width, height) = PngSize(chart, dpi);
        var plot = chart.Build();
        plot.ScaleFactor = dpi / (double)ScreenDpi;
        using var image = plot.GetImage(width, height);
        return WithDpi(image.GetImageBytes(ImageFormat.Png), dpi);
    }

    /// <summary>Inserts a pHYs chunk (pixels per metre) after IHDR, so that image viewers and LaTeX read the intended size.</summary>
    public static byte[] WithDpi(byte[] png, int dpi)
    {
        const int ihdrEnd = 8 + 4 + 4 + 13 + 4;
        if (png.Length < ihdrEnd || png[12] != 'I' || png[13] != 'H' || png[14] != 'D' || png[15] != 'R')
            throw new InvalidDataException("not a PNG with IHDR first");
        uint ppm = (uint)Math.Round(dpi / 0.0254);
        var chunk = new byte[4 + 4 + 9 + 4];
        BinaryPrimitives.WriteInt32BigEndian(chunk, 9);
        "pHYs"u8.CopyTo(chunk.AsSpan(4));
        BinaryPrimitives.WriteUInt32BigEndian(chunk.AsSpan(8), ppm);
        BinaryPrimitives.WriteUInt32BigEndian(chunk.AsSpan(12), ppm);
        chunk[16] = 1; // unit: metre
        BinaryPrimitives.WriteUInt32BigEndian(chunk.AsSpan(17), Crc32(chunk.AsSpan(4, 13)));
        return [.. png.AsSpan(0, ihdrEnd), .. chunk, .. png.AsSpan(ihdrEnd)];
    }

    private static readonly uint[] CrcTable = Enumerable.Range(0, 256).Select(n =>
    {
        uint c = (uint)n;
        for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        return c;
    }).ToArray();

    /// <summary>CRC-32 as PNG chunks use it (ISO 3309, reflected, initial and final XOR 0xffffffff).</summary>
    public static uint Crc32(ReadOnlySpan<byte> data)
    {
        uint c = 0xffffffffu;
        foreach (byte b in data) c = CrcTable[(c ^ b) & 0xff] ^ (c >> 8);
        return c ^ 0xffffffffu;
    }
}
