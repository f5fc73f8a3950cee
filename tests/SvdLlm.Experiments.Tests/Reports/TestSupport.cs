using System.Text;
using SvdLlm.Experiments.Reports;

namespace SvdLlm.Experiments.Tests.Reports;

internal static class TestSupport
{
    /// <summary>An RFC 4180 reader written for the tests: quoted fields, doubled quotes, commas and line breaks inside quotes, CRLF records.</summary>
    public static List<List<string>> ParseCsv(string text)
    {
        var records = new List<List<string>>();
        var record = new List<string>();
        var field = new StringBuilder();
        bool quoted = false, any = false;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (quoted)
            {
                if (c == '"' && i + 1 < text.Length && text[i + 1] == '"') { field.Append('"'); i++; }
                else if (c == '"') quoted = false;
                else field.Append(c);
                continue;
            }
            switch (c)
            {
                case '"': quoted = true; any = true; break;
                case ',': record.Add(field.ToString()); field.Clear(); any = true; break;
                case '\r' when i + 1 < text.Length && text[i + 1] == '\n':
                    i++;
                    record.Add(field.ToString()); field.Clear();
                    records.Add(record); record = []; any = false;
                    break;
                case '\n': throw new FormatException($"bare LF at {i}: RFC 4180 records end in CRLF");
                default: field.Append(c); any = true; break;
            }
        }
        if (quoted) throw new FormatException("unterminated quoted field");
        if (any || field.Length > 0) { record.Add(field.ToString()); records.Add(record); }
        return records;
    }

    /// <summary>A Markdown pipe table after the "## title" heading: header cells and rows, with "**" bold markers kept.</summary>
    public static (List<string> Header, List<List<string>> Rows) ParseMarkdownTable(string markdown)
    {
        var lines = markdown.Split('\n').Where(l => l.StartsWith('|')).ToList();
        static List<string> Cells(string line) => line.Trim().Trim('|').Split(" | ").Select(c => c.Trim()).ToList();
        return (Cells(lines[0]), lines.Skip(2).Select(Cells).ToList());
    }

    public static ReportSummary GenerateStandard(Models.Tests.TempDirectory dir, string outName = "results")
    {
        string db = dir.File("results.db");
        if (!File.Exists(db))
        {
            using var fixture = new FixtureDb(db);
            StandardFixture.Write(fixture);
        }
        return ReportGenerator.Generate(db, dir.Sub(outName));
    }
}

/// <summary>A fact that runs only when Chromium is on PATH, and otherwise shows as skipped with the reason (xunit 2 has no dynamic skip).</summary>
public sealed class ChromiumFactAttribute : FactAttribute
{
    public ChromiumFactAttribute()
    {
        if (HtmlCheck.FindChromium() is null)
            Skip = "chromium not on PATH: install it (apt-get install -y chromium, or ./build.sh --target=Setup as root) to run the headless HTML check";
    }
}
