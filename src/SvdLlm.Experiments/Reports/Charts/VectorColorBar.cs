using ScottPlot;

namespace SvdLlm.Experiments.Reports.Charts;

/// <summary>
/// A colour bar right of the data area drawn as stacked rectangles, so that it stays vector in the SVG (ScottPlot's
/// own colour bar draws a bitmap), with an axis labelled at the colour scale's 1-2-5 ticks.
/// </summary>
internal sealed class VectorColorBar : IPanel
{
    private const float BarWidth = 16, Gap = 12;
    private const int Steps = 48;

    private readonly LinearScale _scale;
    private readonly Func<double, LinearScale, string> _color;
    private readonly ScottPlot.AxisPanels.RightAxis _axis = new();

    public VectorColorBar(LinearScale scale, Func<double, string> format, Func<double, LinearScale, string> color, string label)
    {
        _scale = scale;
        _color = color;
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        foreach (double t in scale.Ticks) ticks.AddMajor(t, format(t));
        _axis.TickGenerator = ticks;
        _axis.Min = scale.Min;
        _axis.Max = scale.Max;
        _axis.LabelText = label;
        _axis.LabelFontName = ChartStyle.FontFamily;
        _axis.LabelFontSize = 12;
        _axis.TickLabelStyle.FontName = ChartStyle.FontFamily;
        _axis.TickLabelStyle.FontSize = 11;
    }

    public bool IsVisible { get; set; } = true;
    public float MinimumSize { get; set; }
    public float MaximumSize { get; set; } = float.MaxValue;
    public bool ShowDebugInformation { get; set; }
    public Edge Edge => Edge.Right;

    public float Measure(Paint paint)
    {
        _axis.RegenerateTicks(400, paint); // manual ticks: the length only matters to automatic generators
        return Gap + BarWidth + _axis.Measure(paint);
    }

    public PixelRect GetPanelRect(PixelRect dataRect, float size, float offset, Paint paint) =>
        new(left: dataRect.Right + offset, right: dataRect.Right + offset + size, bottom: dataRect.Bottom, top: dataRect.Top);

    public void Render(RenderPack rp, float size, float offset)
    {
        if (!IsVisible) return;
        var data = rp.DataRect;
        float left = data.Right + offset + Gap;
        for (int i = 0; i < Steps; i++)
        {
            // Step i covers [i, i+1]/Steps of the range from the bottom; a quarter pixel of overlap hides anti-aliasing seams.
            float bottom = data.Bottom - data.Height * i / Steps, top = data.Bottom - data.Height * (i + 1) / Steps;
            double value = _scale.Min + (_scale.Max - _scale.Min) * (i + 0.5) / Steps;
            var rect = new PixelRect(left, left + BarWidth, bottom + (i == 0 ? 0 : 0.25f), top);
            Drawing.FillRectangle(rp.Canvas, rect, rp.Paint, new FillStyle { Color = ChartStyle.Parse(_color(value, _scale)), AntiAlias = false });
        }
        Drawing.DrawRectangle(rp.Canvas, new PixelRect(left, left + BarWidth, data.Bottom, data.Top), rp.Paint, new LineStyle { Width = 1, Color = ChartStyle.Parse("#888888") });
        _axis.RegenerateTicks(data.Height, rp.Paint);
        _axis.Render(rp, size - Gap - BarWidth, offset + Gap + BarWidth);
    }
}
