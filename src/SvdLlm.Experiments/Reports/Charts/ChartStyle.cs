using ScottPlot;

namespace SvdLlm.Experiments.Reports.Charts;

/// <summary>How one series looks: its colour (as #rrggbb) and marker.</summary>
public sealed record SeriesStyle(string Color, MarkerShape Marker);

/// <summary>
/// The one place where the report's look is decided: the font, the palette, the marker shapes, and which colour and
/// marker each method gets, so that a method looks the same in every figure.
/// </summary>
public static class ChartStyle
{
    /// <summary>
    /// Every chart is drawn in this family, named explicitly so that the PNG's text does not depend on which sans font
    /// the machine would pick by default (Debian: fonts-dejavu-core, a dependency of fontconfig).
    /// </summary>
    public const string FontFamily = "DejaVu Sans";

    /// <summary>Colour-blind-friendly categorical palette (Tableau 10 order, then two extra hues).</summary>
    public static readonly string[] Palette =
        ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#c9a227", "#b07aa1", "#ff9da7", "#9c755f", "#1f3a93", "#bab0ac", "#17becf"];

    /// <summary>Marker shapes, cycled: filled, so that they read at 96 dpi and in grey scale, and a marker is a shape in its series' fill colour.</summary>
    public static readonly MarkerShape[] Markers =
        [MarkerShape.FilledCircle, MarkerShape.FilledSquare, MarkerShape.FilledTriangleUp, MarkerShape.FilledDiamond, MarkerShape.FilledTriangleDown];

    /// <summary>Dashed reference lines (the uncompressed model, y = x, a target).</summary>
    public const string ReferenceColor = "#555555";

    /// <summary>A heatmap cell without a value.</summary>
    public const string MissingColor = "#dddddd";

    private static T Cycle<T>(T[] items, int index) => items[((index % items.Length) + items.Length) % items.Length];

    /// <summary>Palette slot <paramref name="index"/> with the marker of the same slot (series that are not methods, e.g. matrix types).</summary>
    public static SeriesStyle Slot(int index) => new(Cycle(Palette, index), Cycle(Markers, index));

    public static MarkerShape Marker(int index) => Cycle(Markers, index);

    /// <summary>A method's colour and marker, the same in every chart: its slot is its paper order, an unknown method's a stable hash of its name.</summary>
    public static SeriesStyle ForMethod(string method) => Slot(MethodSlot(method));

    /// <summary>
    /// The <paramref name="variant"/>-th curve of one method (another parameter set: "SVD-LLM + LoRA" beside "SVD-LLM",
    /// "GPTQ 3-bit" beside "GPTQ 4-bit"; variant 0 is <see cref="ForMethod"/>): the method's colour with the next marker
    /// shape, so a family stays recognisable by colour and its members stay apart.
    /// </summary>
    public static SeriesStyle ForVariant(string method, int variant) => new(ForMethod(method).Color, Marker(MethodSlot(method) + variant));

    public static int MethodSlot(string method) => MethodCatalog.Get(method) is { Order: < 100 } m ? m.Order : 10 + Math.Abs(StableHash(method) % 10);

    private static int StableHash(string s)
    {
        int h = 17;
        foreach (char c in s) h = unchecked(h * 31 + c);
        return h;
    }

    public static Color Parse(string hex) => Color.FromHex(hex);
}
