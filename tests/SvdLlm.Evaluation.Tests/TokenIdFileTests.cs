using SvdLlm.Evaluation.Perplexity;
using SvdLlm.Models.Tests;

namespace SvdLlm.Evaluation.Tests;

public class TokenIdFileTests
{
    [Fact]
    public void Reads_whitespace_comma_and_json_array_forms()
    {
        using var dir = new TempDirectory();
        string a = Path.Combine(dir.Path, "a.txt");
        File.WriteAllText(a, "1 2\n3\t4,5 ,6\r\n");
        Assert.Equal(new[] { 1, 2, 3, 4, 5, 6 }, TokenIdFile.Read(a));
        string b = Path.Combine(dir.Path, "b.json");
        File.WriteAllText(b, "[128000, 9906, 1917]");
        Assert.Equal(new[] { 128000, 9906, 1917 }, TokenIdFile.Read(b));
    }

    [Fact]
    public void Bad_token_is_reported_with_file_line_and_column()
    {
        using var dir = new TempDirectory();
        string p = Path.Combine(dir.Path, "ids.txt");
        File.WriteAllText(p, "1 2 3\n4 x5 6\n");
        var e = Assert.Throws<TokenIdFileException>(() => TokenIdFile.Read(p));
        Assert.Contains("ids.txt:2:3", e.Message);
        Assert.Contains("'x5'", e.Message);
        File.WriteAllText(p, "1 -2");
        Assert.Throws<TokenIdFileException>(() => TokenIdFile.Read(p));
        File.WriteAllText(p, "1 200");
        Assert.Contains("outside the model's vocabulary", Assert.Throws<TokenIdFileException>(() => TokenIdFile.Read(p, vocabSize: 99)).Message);
        File.WriteAllText(p, " \n");
        Assert.Contains("no token ids", Assert.Throws<TokenIdFileException>(() => TokenIdFile.Read(p)).Message);
    }
}
