using System.Globalization;
using System.Text;

namespace SvdLlm.Experiments.Reports.Svg;

/// <summary>Pixel geometry of a chart: the plot area is the rectangle inside the margins.</summary>
public sealed record ChartLayout(double Width = 780, double Height = 440, double Left = 78, double Right = 230, double Top = 46, double Bottom = 60)
{
    public double PlotWidth => Width - Left - Right;
    public double PlotHeight => Height - Top - Bottom;
    public double X(Scale s, double v) => Left + s.Fraction(v) * PlotWidth;
    public double Y(Scale s, double v) => Top + (1 - s.Fraction(v)) * PlotHeight;
}

/// <param name="ColorIndex">palette slot; charts of the same methods pass the same slots so colours match between charts</param>
public sealed record Series(string Name, IReadOnlyList<(double X, double Y)> Points, int ColorIndex, int MarkerIndex);

/// <param name="Format">tick label text; the scale's own formatting when null</param>
/// <param name="Include">values the domain must contain besides the data (e.g. 0 on a ratio axis)</param>
public sealed record Axis(string Label, ScaleKind Kind = ScaleKind.Linear, Func<double, string>? Format = null, bool IntegerTicks = false, IReadOnlyList<double>? Include = null);

/// <summary>A dashed reference: a horizontal line at <see cref="Y"/>, or the diagonal y = x when <see cref="Y"/> is null.</summary>
public sealed record ReferenceLine(string Label, double? Y);

/// <summary>Shared SVG writing: every number through one invariant formatter, every text through the XML escaper.</summary>
internal static class SvgText
{
    public static readonly string[] Palette =
        ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#c9a227", "#b07aa1", "#ff9da7", "#9c755f", "#1f3a93", "#bab0ac", "#17becf"];

    public static string Color(int index) => Palette[((index % Palette.Length) + Palette.Length) % Palette.Length];

    /// <summary>Two decimals are sub-pixel; "+ 0.0" turns −0 into 0 so that output does not depend on rounding direction.</summary>
    public static string N(double v) => (Math.Round(v, 2) + 0.0).ToString("0.##", CultureInfo.InvariantCulture);

    public static void Open(StringBuilder b, double width, double height, string title)
    {
        b.Append("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"").Append(N(width)).Append("\" height=\"").Append(N(height))
            .Append("\" viewBox=\"0 0 ").Append(N(width)).Append(' ').Append(N(height))
            .Append("\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"12\" role=\"img\">\n");
        b.Append("<title>").Append(Escape.Xml(title)).Append("</title>\n");
        b.Append("<rect class=\"background\" x=\"0\" y=\"0\" width=\"").Append(N(width)).Append("\" height=\"").Append(N(height)).Append("\" fill=\"#ffffff\"/>\n");
    }

    /// <summary>A title that fits <paramref name="width"/>: bold DejaVu Sans averages about 0.62 em per character, so long titles get a smaller font.</summary>
    public static void Title(StringBuilder b, double width, string title)
    {
        double size = Math.Clamp((width - 24) / (0.62 * Math.Max(1, title.Length)), 9, 15);
        Text(b, width / 2, 26, title, "middle", "chart-title", $" font-size=\"{N(size)}\" font-weight=\"bold\"");
    }

    public static void Text(StringBuilder b, double x, double y, string text, string anchor = "start", string? cls = null, string extra = "")
    {
        b.Append("<text");
        if (cls is not null) b.Append(" class=\"").Append(cls).Append('"');
        b.Append(" x=\"").Append(N(x)).Append("\" y=\"").Append(N(y)).Append("\" text-anchor=\"").Append(anchor).Append('"').Append(extra).Append('>')
            .Append(Escape.Xml(text)).Append("</text>\n");
    }

    /// <summary>Marker shapes, cycled: circle, square, triangle, diamond, inverted triangle, cross.</summary>
    public static void Marker(StringBuilder b, int index, double x, double y, string color, string? tooltip)
    {
        const double r = 4.5;
        string shape = (((index % 6) + 6) % 6) switch
        {
            0 => $"<circle cx=\"{N(x)}\" cy=\"{N(y)}\" r=\"{N(r)}\"",
            1 => $"<rect x=\"{N(x - r * 0.85)}\" y=\"{N(y - r * 0.85)}\" width=\"{N(r * 1.7)}\" height=\"{N(r * 1.7)}\"",
            2 => $"<path d=\"M{N(x)} {N(y - r * 1.1)}L{N(x + r)} {N(y + r * 0.8)}L{N(x - r)} {N(y + r * 0.8)}Z\"",
            3 => $"<path d=\"M{N(x)} {N(y - r * 1.2)}L{N(x + r)} {N(y)}L{N(x)} {N(y + r * 1.2)}L{N(x - r)} {N(y)}Z\"",
            4 => $"<path d=\"M{N(x)} {N(y + r * 1.1)}L{N(x + r)} {N(y - r * 0.8)}L{N(x - r)} {N(y - r * 0.8)}Z\"",
            _ => $"<path d=\"M{N(x - r)} {N(y - r)}L{N(x + r)} {N(y + r)}M{N(x - r)} {N(y + r)}L{N(x + r)} {N(y - r)}\" stroke-width=\"2\"",
        };
        b.Append(shape).Append(" class=\"marker\" fill=\"").Append(color).Append("\" stroke=\"").Append(color).Append('"');
        if (tooltip is null) b.Append("/>\n");
        else b.Append("><title>").Append(Escape.Xml(tooltip)).Append("</title>").Append(shape.StartsWith("<circle", StringComparison.Ordinal) ? "</circle>\n" : shape.StartsWith("<rect", StringComparison.Ordinal) ? "</rect>\n" : "</path>\n");
    }
}

/// <summary>
/// Line chart or scatter plot over linear or log10 axes, with markers, a legend right of the plot, dashed reference
/// lines and tooltips. Output depends only on the inputs (no ids, no clocks), so it can be inlined many times in one page.
/// </summary>
public sealed class XYChart
{
    public required string Title { get; init; }
    public required Axis XAxis { get; init; }
    public required Axis YAxis { get; init; }
    public required IReadOnlyList<Series> Series { get; init; }
    public IReadOnlyList<ReferenceLine> References { get; init; } = [];
    public bool Lines { get; init; } = true;
    public bool Markers { get; init; } = true;
    public ChartLayout Layout { get; init; } = new();

    /// <summary>The scales the chart will draw with (exposed so that callers and tests can locate values in pixels).</summary>
    public (Scale X, Scale Y) Scales()
    {
        bool identity = References.Any(r => r.Y is null);
        var xs = new List<double>();
        var ys = new List<double>();
        foreach (var s in Series)
            foreach (var (x, y) in s.Points)
                if (Usable(x, XAxis.Kind) && Usable(y, YAxis.Kind)) { xs.Add(x); ys.Add(y); }
        foreach (var r in References) if (r.Y is double ry && Usable(ry, YAxis.Kind)) ys.Add(ry);
        xs.AddRange(XAxis.Include ?? []);
        ys.AddRange(YAxis.Include ?? []);
        if (xs.Count == 0) xs.AddRange(XAxis.Kind == ScaleKind.Log10 ? [1, 10] : [0, 1]);
        if (ys.Count == 0) ys.AddRange(YAxis.Kind == ScaleKind.Log10 ? [1, 10] : [0, 1]);
        if (identity && XAxis.Kind == YAxis.Kind)
        {
            // y = x is only the diagonal when both axes share one domain.
            double lo = Math.Min(xs.Min(), ys.Min()), hi = Math.Max(xs.Max(), ys.Max());
            var shared = Scale.Create(XAxis.Kind, lo, hi, XAxis.IntegerTicks);
            return (shared, shared);
        }
        return (Scale.Create(XAxis.Kind, xs.Min(), xs.Max(), XAxis.IntegerTicks), Scale.Create(YAxis.Kind, ys.Min(), ys.Max(), YAxis.IntegerTicks));
    }

    private static bool Usable(double v, ScaleKind kind) => double.IsFinite(v) && (kind == ScaleKind.Linear || v > 0);

    public string Render()
    {
        var L = Layout;
        var (sx, sy) = Scales();
        var b = new StringBuilder();
        SvgText.Open(b, L.Width, L.Height, Title);
        SvgText.Title(b, L.Width, Title);
        b.Append("<rect class=\"plot-area\" x=\"").Append(SvgText.N(L.Left)).Append("\" y=\"").Append(SvgText.N(L.Top)).Append("\" width=\"").Append(SvgText.N(L.PlotWidth))
            .Append("\" height=\"").Append(SvgText.N(L.PlotHeight)).Append("\" fill=\"none\" stroke=\"#888888\"/>\n");

        foreach (double t in sx.Ticks)
        {
            double x = L.X(sx, t);
            b.Append("<g class=\"tick x\" data-value=\"").Append(Value(t)).Append("\">");
            b.Append("<line x1=\"").Append(SvgText.N(x)).Append("\" y1=\"").Append(SvgText.N(L.Top)).Append("\" x2=\"").Append(SvgText.N(x)).Append("\" y2=\"").Append(SvgText.N(L.Top + L.PlotHeight))
                .Append("\" stroke=\"#e3e3e3\"/>");
            b.Append("<text x=\"").Append(SvgText.N(x)).Append("\" y=\"").Append(SvgText.N(L.Top + L.PlotHeight + 17)).Append("\" text-anchor=\"middle\">")
                .Append(Escape.Xml(XAxis.Format?.Invoke(t) ?? sx.Label(t))).Append("</text></g>\n");
        }
        foreach (double t in sy.Ticks)
        {
            double y = L.Y(sy, t);
            b.Append("<g class=\"tick y\" data-value=\"").Append(Value(t)).Append("\">");
            b.Append("<line x1=\"").Append(SvgText.N(L.Left)).Append("\" y1=\"").Append(SvgText.N(y)).Append("\" x2=\"").Append(SvgText.N(L.Left + L.PlotWidth)).Append("\" y2=\"").Append(SvgText.N(y))
                .Append("\" stroke=\"#e3e3e3\"/>");
            b.Append("<text x=\"").Append(SvgText.N(L.Left - 7)).Append("\" y=\"").Append(SvgText.N(y + 4)).Append("\" text-anchor=\"end\">")
                .Append(Escape.Xml(YAxis.Format?.Invoke(t) ?? sy.Label(t))).Append("</text></g>\n");
        }
        SvgText.Text(b, L.Left + L.PlotWidth / 2, L.Height - 16, XAxis.Label + (XAxis.Kind == ScaleKind.Log10 ? " (log scale)" : ""), "middle", "axis-label x");
        double cy = L.Top + L.PlotHeight / 2;
        SvgText.Text(b, 20, cy, YAxis.Label + (YAxis.Kind == ScaleKind.Log10 ? " (log scale)" : ""), "middle", "axis-label y", $" transform=\"rotate(-90 20 {SvgText.N(cy)})\"");

        foreach (var r in References)
        {
            b.Append("<g class=\"reference\" data-name=\"").Append(Escape.Xml(r.Label)).Append("\">");
            if (r.Y is double ry && Usable(ry, YAxis.Kind))
                b.Append($"<line x1=\"{SvgText.N(L.Left)}\" y1=\"{SvgText.N(L.Y(sy, ry))}\" x2=\"{SvgText.N(L.Left + L.PlotWidth)}\" y2=\"{SvgText.N(L.Y(sy, ry))}\"");
            else
                b.Append($"<line x1=\"{SvgText.N(L.X(sx, sx.Min))}\" y1=\"{SvgText.N(L.Y(sy, sx.Min))}\" x2=\"{SvgText.N(L.X(sx, sx.Max))}\" y2=\"{SvgText.N(L.Y(sy, sx.Max))}\"");
            b.Append(" stroke=\"#555555\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\"><title>").Append(Escape.Xml(r.Label)).Append("</title></line></g>\n");
        }

        foreach (var s in Series)
        {
            string color = SvgText.Color(s.ColorIndex);
            var points = s.Points.Where(p => Usable(p.X, XAxis.Kind) && Usable(p.Y, YAxis.Kind)).ToList();
            b.Append("<g class=\"series\" data-name=\"").Append(Escape.Xml(s.Name)).Append("\">\n");
            if (Lines && points.Count >= 2)
            {
                b.Append("<polyline fill=\"none\" stroke=\"").Append(color).Append("\" stroke-width=\"2\" points=\"");
                b.Append(string.Join(" ", points.OrderBy(p => p.X).Select(p => SvgText.N(L.X(sx, p.X)) + "," + SvgText.N(L.Y(sy, p.Y)))));
                b.Append("\"/>\n");
            }
            if (Markers)
                foreach (var (x, y) in points)
                    SvgText.Marker(b, s.MarkerIndex, L.X(sx, x), L.Y(sy, y), color,
                        $"{s.Name}: {XAxis.Format?.Invoke(x) ?? Value(x)}, {Value(y)}");
            b.Append("</g>\n");
        }

        // Legend right of the plot, so that it never hides data.
        double lx = L.Left + L.PlotWidth + 16, ly = L.Top + 8;
        b.Append("<g class=\"legend\">\n");
        foreach (var s in Series)
        {
            string color = SvgText.Color(s.ColorIndex);
            b.Append("<g class=\"legend-item\">");
            if (Lines) b.Append($"<line x1=\"{SvgText.N(lx)}\" y1=\"{SvgText.N(ly)}\" x2=\"{SvgText.N(lx + 26)}\" y2=\"{SvgText.N(ly)}\" stroke=\"{color}\" stroke-width=\"2\"/>");
            b.Append('\n');
            if (Markers) SvgText.Marker(b, s.MarkerIndex, lx + 13, ly, color, null);
            SvgText.Text(b, lx + 34, ly + 4, s.Name);
            b.Append("</g>\n");
            ly += 20;
        }
        foreach (var r in References)
        {
            b.Append($"<g class=\"legend-item reference\"><line x1=\"{SvgText.N(lx)}\" y1=\"{SvgText.N(ly)}\" x2=\"{SvgText.N(lx + 26)}\" y2=\"{SvgText.N(ly)}\" stroke=\"#555555\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\"/>\n");
            SvgText.Text(b, lx + 34, ly + 4, r.Label);
            b.Append("</g>\n");
            ly += 20;
        }
        b.Append("</g>\n</svg>\n");
        return b.ToString();
    }

    private static string Value(double v) => v.ToString("G6", CultureInfo.InvariantCulture);
}

/// <summary>
/// A heatmap of a value per (row category, column category), e.g. the allocated ratio per matrix type and layer,
/// with a colour bar. Missing values are drawn grey.
/// </summary>
public sealed class Heatmap
{
    public required string Title { get; init; }
    public required string XLabel { get; init; }
    public required string YLabel { get; init; }
    public required IReadOnlyList<string> Columns { get; init; }
    public required IReadOnlyList<string> Rows { get; init; }
    /// <summary>[row][column]</summary>
    public required IReadOnlyList<IReadOnlyList<double?>> Values { get; init; }
    public Func<double, string> Format { get; init; } = v => v.ToString("0.00", CultureInfo.InvariantCulture);
    public string ColorLabel { get; init; } = "";

    // Viridis at five stops: perceptually uniform and readable in grey scale.
    private static readonly (double R, double G, double B)[] Stops =
        [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)];

    public static (int R, int G, int B) ColorAt(double t)
    {
        t = Math.Clamp(double.IsFinite(t) ? t : 0, 0, 1) * (Stops.Length - 1);
        int i = Math.Min((int)Math.Floor(t), Stops.Length - 2);
        double f = t - i;
        var (a, c) = (Stops[i], Stops[i + 1]);
        return ((int)Math.Round(a.R + (c.R - a.R) * f), (int)Math.Round(a.G + (c.G - a.G) * f), (int)Math.Round(a.B + (c.B - a.B) * f));
    }

    private static string Hex((int R, int G, int B) c) => $"#{c.R:x2}{c.G:x2}{c.B:x2}";

    public string Render()
    {
        if (Values.Count != Rows.Count || Values.Any(r => r.Count != Columns.Count))
            throw new ArgumentException($"heatmap '{Title}': values must be {Rows.Count} rows × {Columns.Count} columns");
        const double left = 110, top = 46, bottom = 56, bar = 110;
        double cw = Math.Clamp(560.0 / Math.Max(1, Columns.Count), 8, 48), ch = Math.Clamp(320.0 / Math.Max(1, Rows.Count), 14, 30);
        double pw = cw * Columns.Count, ph = ch * Rows.Count;
        double width = Math.Max(left + pw + bar, 420), height = top + Math.Max(ph, 80) + bottom;
        var finite = Values.SelectMany(r => r).OfType<double>().Where(double.IsFinite).ToList();
        double lo = finite.Count > 0 ? finite.Min() : 0, hi = finite.Count > 0 ? finite.Max() : 1;
        double T(double v) => hi > lo ? (v - lo) / (hi - lo) : 0.5;

        var b = new StringBuilder();
        SvgText.Open(b, width, height, Title);
        SvgText.Title(b, width, Title);
        bool labels = cw >= 34;
        for (int r = 0; r < Rows.Count; r++)
        {
            double y = top + r * ch;
            SvgText.Text(b, left - 6, y + ch / 2 + 4, Rows[r], "end", "row-label");
            for (int c = 0; c < Columns.Count; c++)
            {
                double x = left + c * cw;
                double? v = Values[r][c];
                var rgb = v is double d && double.IsFinite(d) ? ColorAt(T(d)) : (221, 221, 221);
                string tip = $"{Rows[r]}, {XLabel} {Columns[c]}: {(v is double dv ? Format(dv) : "missing")}";
                b.Append($"<rect class=\"cell\" x=\"{SvgText.N(x)}\" y=\"{SvgText.N(y)}\" width=\"{SvgText.N(cw)}\" height=\"{SvgText.N(ch)}\" fill=\"{Hex(rgb)}\" stroke=\"#ffffff\" stroke-width=\"0.5\"><title>{Escape.Xml(tip)}</title></rect>\n");
                if (labels && v is double lv && double.IsFinite(lv))
                {
                    // Relative luminance decides between dark and light text.
                    double lum = 0.2126 * rgb.Item1 + 0.7152 * rgb.Item2 + 0.0722 * rgb.Item3;
                    SvgText.Text(b, x + cw / 2, y + ch / 2 + 4, Format(lv), "middle", null, $" font-size=\"10\" fill=\"{(lum > 140 ? "#000000" : "#ffffff")}\"");
                }
            }
        }
        int every = Math.Max(1, (int)Math.Ceiling(Columns.Count / 24.0));
        for (int c = 0; c < Columns.Count; c += every)
            SvgText.Text(b, left + c * cw + cw / 2, top + ph + 15, Columns[c], "middle", "column-label");
        SvgText.Text(b, left + pw / 2, top + ph + 36, XLabel, "middle", "axis-label x");
        SvgText.Text(b, 16, top + ph / 2, YLabel, "middle", "axis-label y", $" transform=\"rotate(-90 16 {SvgText.N(top + ph / 2)})\"");

        // Colour bar from rectangles rather than a gradient: a gradient needs an id, and ids collide when charts are inlined together.
        double bx = left + pw + 20, bh = Math.Max(ph, 80);
        const int steps = 24;
        b.Append("<g class=\"colorbar\">\n");
        for (int i = 0; i < steps; i++)
        {
            double y0 = top + bh * (steps - 1 - i) / steps;
            b.Append($"<rect x=\"{SvgText.N(bx)}\" y=\"{SvgText.N(y0)}\" width=\"14\" height=\"{SvgText.N(bh / steps + 0.5)}\" fill=\"{Hex(ColorAt((i + 0.5) / steps))}\"/>\n");
        }
        SvgText.Text(b, bx + 20, top + 10, Format(hi));
        SvgText.Text(b, bx + 20, top + bh, Format(lo));
        if (ColorLabel.Length > 0) SvgText.Text(b, bx, top - 8, ColorLabel, "start", null, " font-size=\"11\"");
        b.Append("</g>\n</svg>\n");
        return b.ToString();
    }
}
