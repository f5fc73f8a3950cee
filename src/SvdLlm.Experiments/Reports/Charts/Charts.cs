using System.Globalization;
using ScottPlot;

namespace SvdLlm.Experiments.Reports.Charts;

public sealed record Series(string Name, IReadOnlyList<(double X, double Y)> Points, SeriesStyle Style);

/// <param name="Format">tick label text; the scale's own formatting when null</param>
/// <param name="Include">values the domain must contain besides the data (e.g. 0 on a ratio axis)</param>
public sealed record Axis(string Label, ScaleKind Kind = ScaleKind.Linear, Func<double, string>? Format = null, bool IntegerTicks = false, IReadOnlyList<double>? Include = null)
{
    /// <summary>The label as drawn: a log axis says so.</summary>
    public string Title => Label + (Kind == ScaleKind.Log10 ? " (log scale)" : "");

    /// <summary>Axis coordinate of a data value: ScottPlot draws a log axis as a linear one over log10 of the data.</summary>
    public double Coordinate(double v) => Kind == ScaleKind.Log10 ? Math.Log10(v) : v;

    public bool Usable(double v) => double.IsFinite(v) && (Kind == ScaleKind.Linear || v > 0);
}

/// <summary>A dashed reference: a horizontal line at <see cref="Y"/>, or the diagonal y = x when <see cref="Y"/> is null.</summary>
public sealed record ReferenceLine(string Label, double? Y);

/// <summary>A figure of the report: how big it is, and how to build it as a ScottPlot <see cref="Plot"/>.</summary>
public abstract class Chart
{
    public required string Title { get; init; }

    /// <summary>Size in CSS pixels (1/96 inch): the SVG's size, and the PNG's at 96 dpi.</summary>
    public abstract (int Width, int Height) Size { get; }

    /// <summary>A new plot each call: ScottPlot's plots hold render state, so each output gets its own.</summary>
    public abstract Plot Build();

    /// <summary>
    /// The report's look on a plot whose axis labels are set: the font, font sizes, a white background, and a title
    /// that fits the width (bold DejaVu Sans averages about 0.62 em per character).
    /// </summary>
    protected void Decorate(Plot plot)
    {
        ChartFonts.Apply(plot);
        plot.Title(Title);
        plot.Axes.Title.Label.FontSize = (float)Math.Clamp((Size.Width - 24) / (0.62 * Math.Max(1, Title.Length)), 9, 15);
        plot.Axes.Title.Label.Bold = true;
        foreach (var axis in plot.Axes.GetAxes())
        {
            axis.Label.FontSize = 13;
            axis.Label.Bold = false;
            axis.TickLabelStyle.FontSize = 12;
        }
        plot.FigureBackground.Color = Colors.White;
        plot.DataBackground.Color = Colors.White;
    }

    /// <summary>Ticks as given (ScottPlot's own generator would pick other values than the report's scales).</summary>
    protected static ScottPlot.TickGenerators.NumericManual Ticks(Scale scale, Axis axis)
    {
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        foreach (double t in scale.Ticks) ticks.AddMajor(axis.Coordinate(t), axis.Format?.Invoke(t) ?? scale.Label(t));
        if (scale is Log10Scale)
            foreach (double m in Log10Scale.MinorTicks(scale.Min, scale.Max).Where(m => !scale.Ticks.Contains(m)))
                ticks.AddMinor(Math.Log10(m));
        return ticks;
    }

    protected static Color C(string hex) => ChartStyle.Parse(hex);
}

/// <summary>
/// Line chart or scatter plot over linear or log10 axes, with markers, a legend right of the plot (so it never hides
/// data) and dashed reference lines. Axis ranges and ticks come from <see cref="Scale"/>: 1-2-5 steps, log axes
/// labelled at 1-2-5 values (whole decades when the range is wide) with minor ticks at every integer multiple.
/// </summary>
public sealed class XYChart : Chart
{
    public required Axis XAxis { get; init; }
    public required Axis YAxis { get; init; }
    public required IReadOnlyList<Series> Series { get; init; }
    public IReadOnlyList<ReferenceLine> References { get; init; } = [];
    public bool Lines { get; init; } = true;
    public int Width { get; init; } = 780;
    public int Height { get; init; } = 440;

    public override (int Width, int Height) Size => (Width, Height);

    /// <summary>The scales the chart draws with (exposed so that tests can locate values).</summary>
    public (Scale X, Scale Y) Scales()
    {
        bool identity = References.Any(r => r.Y is null);
        var xs = new List<double>();
        var ys = new List<double>();
        foreach (var s in Series)
            foreach (var (x, y) in s.Points)
                if (XAxis.Usable(x) && YAxis.Usable(y)) { xs.Add(x); ys.Add(y); }
        foreach (var r in References) if (r.Y is double ry && YAxis.Usable(ry)) ys.Add(ry);
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

    public override Plot Build()
    {
        var (sx, sy) = Scales();
        var plot = new Plot();
        plot.XLabel(XAxis.Title);
        plot.YLabel(YAxis.Title);
        Decorate(plot);

        // Series first, then the dashed references: the legend lists them in that order.
        foreach (var s in Series)
        {
            var points = s.Points.Where(p => XAxis.Usable(p.X) && YAxis.Usable(p.Y)).OrderBy(p => p.X).ToList();
            if (points.Count == 0) continue; // nothing to draw on these axes (e.g. only non-positive values on a log axis)
            var color = C(s.Style.Color);
            var scatter = plot.Add.Scatter(points.Select(p => XAxis.Coordinate(p.X)).ToArray(), points.Select(p => YAxis.Coordinate(p.Y)).ToArray(), color);
            scatter.LegendText = s.Name;
            scatter.LineWidth = Lines ? 2 : 0;
            scatter.MarkerShape = s.Style.Marker;
            scatter.MarkerSize = points.Count > 30 ? 5 : 8; // a training curve marks every step: smaller, so the line still reads
            scatter.MarkerColor = color;
            scatter.MarkerLineWidth = 1.5f;
        }

        foreach (var r in References)
        {
            if (r.Y is double ry && YAxis.Usable(ry))
            {
                var line = plot.Add.HorizontalLine(YAxis.Coordinate(ry), 1.5f, C(ChartStyle.ReferenceColor), LinePattern.DenselyDashed);
                line.LegendText = r.Label;
            }
            else if (r.Y is null)
            {
                var line = plot.Add.Line(XAxis.Coordinate(sx.Min), YAxis.Coordinate(sx.Min), XAxis.Coordinate(sx.Max), YAxis.Coordinate(sx.Max));
                line.LineColor = C(ChartStyle.ReferenceColor);
                line.LineWidth = 1.5f;
                line.LinePattern = LinePattern.DenselyDashed;
                line.MarkerShape = MarkerShape.None;
                line.LegendText = r.Label;
            }
        }
        plot.Axes.Bottom.TickGenerator = Ticks(sx, XAxis);
        plot.Axes.Left.TickGenerator = Ticks(sy, YAxis);
        // 3 % of the span beyond the scale's ends, so that markers on the first or last tick are not cut by the frame.
        (double, double) Padded(Axis axis, Scale scale)
        {
            double lo = axis.Coordinate(scale.Min), hi = axis.Coordinate(scale.Max), pad = (hi - lo) * 0.03;
            return (lo - pad, hi + pad);
        }
        var ((x0, x1), (y0, y1)) = (Padded(XAxis, sx), Padded(YAxis, sy));
        plot.Axes.SetLimits(x0, x1, y0, y1);
        plot.Grid.MajorLineColor = C("#e3e3e3");
        plot.Grid.MinorLineColor = C("#f2f2f2");
        plot.Grid.MinorLineWidth = sx is Log10Scale || sy is Log10Scale ? 1 : 0;
        plot.Legend.FontName = ChartStyle.FontFamily;
        plot.Legend.FontSize = 12;
        plot.ShowLegend(Edge.Right);
        return plot;
    }
}

/// <summary>
/// A heatmap of a value per (row category, column category), e.g. the allocated ratio per matrix type and layer, with
/// a colour bar. Every cell is a rectangle (vector in the SVG, where ScottPlot's own heatmap would embed a bitmap);
/// colours are viridis over the colour bar's 1-2-5 range; missing values are grey.
/// </summary>
public sealed class Heatmap : Chart
{
    public required string XLabel { get; init; }
    public required string YLabel { get; init; }
    public required IReadOnlyList<string> Columns { get; init; }
    public required IReadOnlyList<string> Rows { get; init; }
    /// <summary>[row][column]</summary>
    public required IReadOnlyList<IReadOnlyList<double?>> Values { get; init; }
    public Func<double, string> Format { get; init; } = v => v.ToString("0.00", CultureInfo.InvariantCulture);
    public string ColorLabel { get; init; } = "";

    private double CellWidth => Math.Clamp(560.0 / Math.Max(1, Columns.Count), 8, 48);
    private double CellHeight => Math.Clamp(320.0 / Math.Max(1, Rows.Count), 14, 30);

    public override (int Width, int Height) Size =>
        ((int)Math.Ceiling(Math.Max(130 + CellWidth * Columns.Count + 150, 440)), (int)Math.Ceiling(60 + Math.Max(CellHeight * Rows.Count, 80) + 70));

    private static readonly ScottPlot.Colormaps.Viridis Viridis = new();

    /// <summary>The colour range: the values' range widened to 1-2-5 steps, the same numbers the colour bar is labelled with.</summary>
    public LinearScale ColorScale()
    {
        var finite = Values.SelectMany(r => r).OfType<double>().Where(double.IsFinite).ToList();
        return LinearScale.Nice(finite.Count > 0 ? finite.Min() : 0, finite.Count > 0 ? finite.Max() : 1);
    }

    /// <summary>The colour of <paramref name="value"/> as #rrggbb.</summary>
    public static string ColorOf(double value, LinearScale scale) =>
        Hex(Viridis.GetColor(Math.Clamp((value - scale.Min) / (scale.Max - scale.Min), 0, 1)));

    private static string Hex(Color c) => $"#{c.R:x2}{c.G:x2}{c.B:x2}";

    public override Plot Build()
    {
        if (Values.Count != Rows.Count || Values.Any(r => r.Count != Columns.Count))
            throw new ArgumentException($"heatmap '{Title}': values must be {Rows.Count} rows × {Columns.Count} columns");
        var scale = ColorScale();
        var plot = new Plot();
        plot.XLabel(XLabel);
        plot.YLabel(YLabel);
        Decorate(plot);
        bool labels = CellWidth >= 34;
        int n = Rows.Count;
        for (int r = 0; r < n; r++)
            for (int c = 0; c < Columns.Count; c++)
            {
                double? v = Values[r][c];
                bool has = v is double d && double.IsFinite(d);
                string fill = has ? ColorOf(v!.Value, scale) : ChartStyle.MissingColor;
                // Row 0 at the top, as the rows are listed.
                var rect = plot.Add.Rectangle(c, c + 1, n - 1 - r, n - r);
                rect.FillColor = C(fill);
                rect.LineColor = Colors.White;
                rect.LineWidth = 0.5f;
                if (labels && has)
                {
                    var rgb = C(fill);
                    double lum = 0.2126 * rgb.R + 0.7152 * rgb.G + 0.0722 * rgb.B;
                    var text = plot.Add.Text(Format(v!.Value), c + 0.5, n - r - 0.5);
                    text.Alignment = Alignment.MiddleCenter;
                    text.LabelFontName = ChartStyle.FontFamily;
                    text.LabelFontSize = 10;
                    text.LabelFontColor = lum > 140 ? Colors.Black : Colors.White;
                }
            }
        var x = new ScottPlot.TickGenerators.NumericManual();
        int every = Math.Max(1, (int)Math.Ceiling(Columns.Count / 24.0));
        for (int c = 0; c < Columns.Count; c += every) x.AddMajor(c + 0.5, Columns[c]);
        var y = new ScottPlot.TickGenerators.NumericManual();
        for (int r = 0; r < n; r++) y.AddMajor(n - r - 0.5, Rows[r]);
        plot.Axes.Bottom.TickGenerator = x;
        plot.Axes.Left.TickGenerator = y;
        plot.Axes.SetLimits(0, Columns.Count, 0, n);
        plot.HideGrid();
        plot.Axes.AddPanel(new VectorColorBar(scale, Format, ColorOf, ColorLabel));
        return plot;
    }
}
