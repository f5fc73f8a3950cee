using System.Globalization;
using System.Text;

namespace SvdLlm.Experiments.Reports;

/// <summary>Every number a report prints goes through here, always with the invariant culture so that output is the same on every machine.</summary>
public static class NumberFormat
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>Perplexity: 2 decimals as the papers print it; collapsed models (ppl in the thousands) without decimals; beyond 1e5 in scientific notation.</summary>
    public static string Perplexity(double v)
    {
        if (double.IsNaN(v)) return "nan";
        if (double.IsPositiveInfinity(v)) return "inf";
        if (Math.Abs(v) >= 1e5) return Scientific(v);
        if (Math.Abs(v) >= 1000) return v.ToString("F0", Inv);
        return v.ToString("F2", Inv);
    }

    /// <summary>Accuracy as a fraction with 2 decimals (the SVD-LLM papers' style).</summary>
    public static string Accuracy(double v) => double.IsFinite(v) ? v.ToString("F2", Inv) : "nan";

    /// <summary>Stderr of an accuracy, one more decimal than the value so that it is not rounded away.</summary>
    public static string AccuracyStderr(double v) => double.IsFinite(v) ? v.ToString("F3", Inv) : "nan";

    /// <summary>A ratio as a percentage: 0.2 → "20%", 0.125 → "12.5%".</summary>
    public static string Percent(double ratio) => PercentNumber(ratio) + "%";

    public static string PercentNumber(double ratio) => Math.Round(ratio * 100, 2).ToString("0.##", Inv);

    public static string Fixed(double v, int decimals) => double.IsFinite(v) ? v.ToString("F" + decimals.ToString(Inv), Inv) : (double.IsNaN(v) ? "nan" : "inf");

    public static string Integer(long v) => v.ToString("N0", Inv);

    /// <summary>Loss-free text form of a double for CSV (round-trips exactly).</summary>
    public static string RoundTrip(double v) => v.ToString("R", Inv);

    public static string Scientific(double v)
    {
        if (!double.IsFinite(v)) return double.IsNaN(v) ? "nan" : "inf";
        if (v == 0) return "0";
        int exponent = (int)Math.Floor(Math.Log10(Math.Abs(v)));
        double mantissa = v / Math.Pow(10, exponent);
        if (Math.Abs(Math.Round(mantissa, 1)) >= 10) { mantissa /= 10; exponent++; }
        return mantissa.ToString("F1", Inv) + "e" + exponent.ToString(Inv);
    }

    /// <summary>Seconds as people read them: 0.42 s, 12.3 s, 4 min 05 s, 1 h 02 min.</summary>
    public static string Duration(double seconds)
    {
        if (!double.IsFinite(seconds)) return "nan";
        if (seconds < 10) return seconds.ToString("F2", Inv) + " s";
        if (seconds < 60) return seconds.ToString("F1", Inv) + " s";
        long s = (long)Math.Round(seconds);
        if (s < 3600) return $"{(s / 60).ToString(Inv)} min {(s % 60).ToString("00", Inv)} s";
        return $"{(s / 3600).ToString(Inv)} h {(s % 3600 / 60).ToString("00", Inv)} min";
    }

    public static string Mebibytes(double bytes) => (bytes / (1024.0 * 1024.0)).ToString("F1", Inv);
}

/// <summary>Escaping for each output format.</summary>
public static class Escape
{
    public static string Xml(string s)
    {
        var b = new StringBuilder(s.Length);
        foreach (char c in s)
        {
            switch (c)
            {
                case '&': b.Append("&amp;"); break;
                case '<': b.Append("&lt;"); break;
                case '>': b.Append("&gt;"); break;
                case '"': b.Append("&quot;"); break;
                case '\'': b.Append("&#39;"); break;
                default:
                    // Control characters are not allowed in XML 1.0 at all; drop them rather than write an unparsable file.
                    if (c >= ' ' || c == '\t' || c == '\n' || c == '\r') b.Append(c);
                    break;
            }
        }
        return b.ToString();
    }

    public static string Html(string s) => Xml(s);

    /// <summary>Markdown table cell: pipes would split the cell, newlines would end the row.</summary>
    public static string Markdown(string s) => s.Replace("\\", "\\\\").Replace("|", "\\|").Replace("\r", " ").Replace("\n", " ");

    public static string Latex(string s)
    {
        var b = new StringBuilder(s.Length);
        foreach (char c in s)
        {
            b.Append(c switch
            {
                '\\' => @"\textbackslash{}",
                '&' => @"\&",
                '%' => @"\%",
                '$' => @"\$",
                '#' => @"\#",
                '_' => @"\_",
                '{' => @"\{",
                '}' => @"\}",
                '~' => @"\textasciitilde{}",
                '^' => @"\textasciicircum{}",
                '\n' or '\r' => " ",
                '×' => @"$\times$",
                '–' => "--",
                '≤' => @"$\le$",
                '±' => @"$\pm$",
                _ => c.ToString(),
            });
        }
        return b.ToString();
    }

    /// <summary>RFC 4180: a field with a comma, quote or line break is quoted and its quotes doubled.</summary>
    public static string Csv(string s) =>
        s.IndexOfAny([',', '"', '\r', '\n']) >= 0 ? "\"" + s.Replace("\"", "\"\"") + "\"" : s;

    /// <summary>A file-name-safe slug: lower-case letters, digits, '-' and '.'; anything else becomes '-'.</summary>
    public static string Slug(string s)
    {
        var b = new StringBuilder();
        foreach (char c in s.ToLowerInvariant())
        {
            if (c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '.') b.Append(c);
            else if (b.Length > 0 && b[^1] != '-') b.Append('-');
        }
        string slug = b.ToString().Trim('-', '.');
        return slug.Length == 0 ? "model" : slug;
    }
}
