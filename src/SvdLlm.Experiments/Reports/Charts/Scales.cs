using System.Globalization;

namespace SvdLlm.Experiments.Reports.Charts;

public enum ScaleKind { Linear, Log10 }

/// <summary>A mapping from data values to [0, 1] over a "nice" domain, with the tick values to label.</summary>
public abstract class Scale
{
    public double Min { get; protected init; }
    public double Max { get; protected init; }
    public IReadOnlyList<double> Ticks { get; protected init; } = [];

    /// <summary>Position of <paramref name="v"/> in the domain: 0 at <see cref="Min"/>, 1 at <see cref="Max"/>.</summary>
    public abstract double Fraction(double v);

    public abstract string Label(double tick);

    public static Scale Create(ScaleKind kind, double min, double max, bool integerTicks = false) =>
        kind == ScaleKind.Log10 ? Log10Scale.Nice(min, max) : LinearScale.Nice(min, max, integerTicks);
}

/// <summary>Linear axis; the step is 1, 2 or 5 times a power of ten, for about five intervals, and the domain is widened to whole steps.</summary>
public sealed class LinearScale : Scale
{
    public double Step { get; private init; }

    public static LinearScale Nice(double min, double max, bool integerTicks = false, int targetIntervals = 5)
    {
        if (!double.IsFinite(min) || !double.IsFinite(max)) throw new ArgumentException($"axis range must be finite, got [{min}, {max}]");
        if (min > max) (min, max) = (max, min);
        if (min == max)
        {
            double pad = min == 0 ? 1 : Math.Abs(min) * 0.1;
            min -= pad;
            max += pad;
        }
        double raw = (max - min) / targetIntervals;
        double magnitude = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double norm = raw / magnitude;
        double step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * magnitude;
        if (integerTicks && step < 1) step = 1;
        int decimals = Math.Max(0, -(int)Math.Floor(Math.Log10(step) + 1e-9));
        long first = (long)Math.Floor(min / step + 1e-9), last = (long)Math.Ceiling(max / step - 1e-9);
        var ticks = new List<double>();
        for (long k = first; k <= last; k++)
            ticks.Add(Math.Round(k * step, decimals + 3));
        return new LinearScale { Min = ticks[0], Max = ticks[^1], Ticks = ticks, Step = step, Decimals = decimals };
    }

    private int Decimals { get; init; }

    public override double Fraction(double v) => (v - Min) / (Max - Min);

    public override string Label(double tick) => (Math.Round(tick, Decimals) + 0.0).ToString("F" + Decimals.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
}

/// <summary>
/// Base-10 log axis. Over at most three decades the domain runs between 1-2-5 values (…, 1, 2, 5, 10, 20, …) and every
/// one of them is a tick; wider ranges get whole decades, thinned to at most about eight labels.
/// </summary>
public sealed class Log10Scale : Scale
{
    private static readonly double[] Mantissas = [1, 2, 5];

    public static Log10Scale Nice(double min, double max)
    {
        if (!(min > 0) || !(max > 0) || !double.IsFinite(min) || !double.IsFinite(max))
            throw new ArgumentException($"a log axis needs positive finite values, got [{min}, {max}]");
        if (min > max) (min, max) = (max, min);
        double lo = Below(min), hi = Above(max);
        if (lo == hi) { lo = Below(lo * (1 - 1e-9)); hi = Above(hi * (1 + 1e-9)); }
        var ticks = new List<double>();
        if (Math.Log10(hi / lo) <= 3 + 1e-9)
        {
            for (int e = (int)Math.Floor(Math.Log10(lo)) - 1; e <= (int)Math.Ceiling(Math.Log10(hi)); e++)
                foreach (double m in Mantissas)
                {
                    double v = Value(m, e);
                    if (v >= lo * (1 - 1e-12) && v <= hi * (1 + 1e-12)) ticks.Add(v);
                }
        }
        else
        {
            int e0 = (int)Math.Floor(Math.Log10(min) + 1e-12), e1 = (int)Math.Ceiling(Math.Log10(max) - 1e-12);
            lo = Value(1, e0);
            hi = Value(1, e1);
            int every = Math.Max(1, (int)Math.Ceiling((e1 - e0) / 8.0));
            for (int e = e0; e <= e1; e += every) ticks.Add(Value(1, e));
        }
        return new Log10Scale { Min = lo, Max = hi, Ticks = ticks };
    }

    /// <summary>m·10^e computed so that 2·10^-3 is the double nearest 0.002 (Math.Pow(10, -3) is not exactly 1e-3).</summary>
    private static double Value(double m, int e) => e >= 0 ? m * Math.Pow(10, e) : m / Math.Pow(10, -e);

    /// <summary>The largest 1-2-5 value ≤ v.</summary>
    private static double Below(double v)
    {
        int e = (int)Math.Floor(Math.Log10(v));
        for (int de = 1; de >= -1; de--)
            foreach (double m in Mantissas.Reverse())
                if (Value(m, e + de) <= v * (1 + 1e-12)) return Value(m, e + de);
        return Value(1, e - 1);
    }

    /// <summary>The smallest 1-2-5 value ≥ v.</summary>
    private static double Above(double v)
    {
        int e = (int)Math.Floor(Math.Log10(v));
        for (int de = -1; de <= 1; de++)
            foreach (double m in Mantissas)
                if (Value(m, e + de) >= v * (1 - 1e-12)) return Value(m, e + de);
        return Value(1, e + 2);
    }

    public override double Fraction(double v) => (Math.Log10(v) - Math.Log10(Min)) / (Math.Log10(Max) - Math.Log10(Min));

    /// <summary>Every m·10^e (m = 1…9) in [<paramref name="min"/>, <paramref name="max"/>]: where a log axis draws its minor ticks.</summary>
    public static IReadOnlyList<double> MinorTicks(double min, double max)
    {
        var ticks = new List<double>();
        for (int e = (int)Math.Floor(Math.Log10(min)) - 1; e <= (int)Math.Ceiling(Math.Log10(max)); e++)
            for (int m = 1; m <= 9; m++)
            {
                double v = Value(m, e);
                if (v >= min * (1 - 1e-12) && v <= max * (1 + 1e-12)) ticks.Add(v);
            }
        return ticks;
    }

    public override string Label(double tick)
    {
        // Exponent form for tiny values and for large ones, from 1e4 up once the axis reaches 1e5, so that one axis does not mix "10000" and "1e5".
        if (tick < 1e-3 || tick >= 1e5 || (tick >= 1e4 && Max >= 1e5 * (1 - 1e-12)))
        {
            int e = (int)Math.Floor(Math.Log10(tick) + 1e-9);
            double m = Math.Round(tick / Math.Pow(10, e), 6);
            return (m == 1 ? "1" : m.ToString("0.##", CultureInfo.InvariantCulture)) + "e" + e.ToString(CultureInfo.InvariantCulture);
        }
        return tick.ToString("0.###", CultureInfo.InvariantCulture);
    }
}
