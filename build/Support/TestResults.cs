using System.Xml;
using System.Xml.Linq;

namespace SvdLlm.Build.Support;

/// <summary>Test outcomes summed over one or more TRX files.</summary>
public sealed class TestResults
{
    private static readonly XNamespace Trx = "http://microsoft.com/schemas/VisualStudio/TeamTest/2010";

    public int Passed { get; private set; }
    public int Failed { get; private set; }
    public int Skipped { get; private set; }
    public int Total => Passed + Failed + Skipped;
    private readonly List<string> _failedTests = [];

    public IReadOnlyList<string> FailedTests => _failedTests;

    public override string ToString() => $"{Passed} passed, {Failed} failed, {Skipped} skipped";

    /// <summary>Every .trx under the directory: dotnet test writes one per test project.</summary>
    public static TestResults ReadDirectory(string directory)
    {
        var results = new TestResults();
        if (!Directory.Exists(directory))
            return results;
        foreach (string file in Directory.EnumerateFiles(directory, "*.trx", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
            results.Add(file);
        return results;
    }

    private void Add(string file)
    {
        XDocument document;
        try
        {
            document = XDocument.Load(file);
        }
        catch (XmlException e)
        {
            throw new BuildFailedException($"Could not read test results {file}: {e.Message}");
        }

        // Outcomes of the individual results rather than ResultSummary/Counters: the counters have no
        // "skipped" and file errors and timeouts apart from failures, which here all count as failed.
        var unitTestResults = document.Root?.Element(Trx + "Results")?.Elements(Trx + "UnitTestResult") ?? [];
        foreach (var result in unitTestResults)
        {
            switch ((string?)result.Attribute("outcome"))
            {
                case "Passed" or "PassedButRunAborted" or "Warning":
                    Passed++;
                    break;
                case "NotExecuted" or "Inconclusive" or "Pending":
                    Skipped++;
                    break;
                default:
                    Failed++;
                    _failedTests.Add((string?)result.Attribute("testName") ?? "(unnamed test)");
                    break;
            }
        }
    }
}
