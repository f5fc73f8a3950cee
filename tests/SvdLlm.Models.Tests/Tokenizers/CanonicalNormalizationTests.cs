using System.Globalization;
using System.Text;
using SvdLlm.Models.Tokenizers.Unicode;

namespace SvdLlm.Models.Tests.Tokenizers;

/// <summary>
/// Our NFC/NFD (the solution runs in invariant globalization mode, where string.Normalize does nothing
/// for non-ASCII text) against the Unicode Consortium's NormalizationTest.txt (Unicode 15.0), sampled
/// into fixtures/nfc-normalization-test.txt by src/SvdLlm.Models/Tokenizers/Unicode/generate-normalization-data.mjs.
/// </summary>
public sealed class CanonicalNormalizationTests
{
    private static readonly Lazy<List<(string Source, string Nfc, string Nfd)>> Cases = new(() =>
        File.ReadLines(Path.Combine(TestTokenizers.FixturesDirectory, "nfc-normalization-test.txt"))
            .Where(l => l.Length > 0 && l[0] != '#')
            .Select(l => l.Split(';'))
            .Select(c => (FromHex(c[0]), FromHex(c[1]), FromHex(c[2])))
            .ToList());

    [Fact]
    public void Nfc_and_nfd_match_the_Unicode_conformance_test()
    {
        Assert.True(Cases.Value.Count > 1000);
        var failures = new List<string>();
        foreach (var (source, nfc, nfd) in Cases.Value)
        {
            if (CanonicalNormalization.ToNfc(source) != nfc) failures.Add($"NFC {Hex(source)}: expected {Hex(nfc)}, got {Hex(CanonicalNormalization.ToNfc(source))}");
            if (CanonicalNormalization.ToNfd(source) != nfd) failures.Add($"NFD {Hex(source)}: expected {Hex(nfd)}, got {Hex(CanonicalNormalization.ToNfd(source))}");
            if (CanonicalNormalization.ToNfc(nfd) != nfc) failures.Add($"NFC of NFD {Hex(nfd)}");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(20)));
    }

    [Fact]
    public void Text_already_in_nfc_is_returned_as_is()
    {
        foreach (string s in new[] { "plain ASCII", "café 日本語 한국어 😀 𝐀", "" })
            Assert.Same(s, CanonicalNormalization.ToNfc(s));
        Assert.Equal("\u00e9", CanonicalNormalization.ToNfc("e\u0301"));
        Assert.Equal("\uac01", CanonicalNormalization.ToNfc("\u1100\u1161\u11a8")); // Hangul LVT composes algorithmically
    }

    private static string FromHex(string column)
    {
        var sb = new StringBuilder();
        foreach (string h in column.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            sb.Append(char.ConvertFromUtf32(int.Parse(h, NumberStyles.HexNumber, CultureInfo.InvariantCulture)));
        return sb.ToString();
    }

    private static string Hex(string s) => string.Join(" ", s.EnumerateRunes().Select(r => r.Value.ToString("X4", CultureInfo.InvariantCulture)));
}
