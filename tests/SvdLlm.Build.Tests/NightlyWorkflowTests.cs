using System.Text;
using System.Text.RegularExpressions;
using YamlDotNet.RepresentationModel;

namespace SvdLlm.Build.Tests;

/// <summary>
/// .github/workflows/nightly.yml against the host it drives: every <c>./build.sh</c> line, with its expressions
/// expanded for each shard, must name a real target and parse with the host's own option rules; the shard list must
/// match the N of <c>--shard=I/N</c>; the merge job must wait for the shards and merge exactly the databases they upload.
/// </summary>
public class NightlyWorkflowTests
{
    private static readonly string WorkflowPath = Path.Combine(HostRunner.Root, ".github", "workflows", "nightly.yml");

    /// <summary>One <c>./build.sh</c> invocation of a job, after expansion.</summary>
    private sealed record Call(string Job, CommandLine Line);

    /// <summary>One upload-artifact or download-artifact step, after expansion.</summary>
    private sealed record ArtifactStep(string Job, string Action, IReadOnlyDictionary<string, string> With);

    [Fact]
    public void Every_build_sh_line_names_a_target_and_only_options_the_host_knows()
    {
        var workflow = Workflow.Load(WorkflowPath);
        var graph = TaskGraph.FromAssembly(typeof(Program).Assembly);
        var calls = workflow.Calls();
        Assert.NotEmpty(calls);
        foreach (var call in calls)
        {
            string? target = call.Line.Get("target");
            Assert.True(target is not null, $"{call.Job}: a ./build.sh line without --target");
            Assert.True(graph.Find(target) is not null, $"{call.Job}: --target={target} is not a target");
        }
        // The matrix the scheduled run uses (the dispatch input's default) is a file in the repository.
        foreach (var call in calls.Where(c => c.Line.Get("matrix") is not null))
            Assert.True(File.Exists(Path.Combine(HostRunner.Root, call.Line.Get("matrix")!)), call.Line.Get("matrix"));
    }

    [Fact]
    public void Shards_are_the_job_matrix_and_the_merge_job_needs_them_and_merges_exactly_what_they_upload() =>
        CheckShardsAndMerge(WorkflowPath);

    [Theory]
    [InlineData("shard: [1, 2, 3, 4]", "shard: [1, 2, 3]")]                      // three jobs still saying --shard=I/4
    [InlineData(",results/shards/shard-4.db", "")]                                // a shard's database left out of the merge
    [InlineData("    needs: shard\n", "")]                                        // the merge not waiting for the shards
    [InlineData("name: shard-${{ matrix.shard }}", "name: shard-db")]           // every shard uploading under one name
    public void The_checks_fail_on_a_workflow_broken_in_one_place(string original, string replacement)
    {
        string text = File.ReadAllText(WorkflowPath);
        Assert.Contains(original, text, StringComparison.Ordinal);
        using var dir = new SvdLlm.Models.Tests.TempDirectory();
        string broken = dir.File("nightly.yml");
        File.WriteAllText(broken, text.Replace(original, replacement, StringComparison.Ordinal));
        Assert.ThrowsAny<Xunit.Sdk.XunitException>(() => CheckShardsAndMerge(broken));
    }

    private static void CheckShardsAndMerge(string path)
    {
        var workflow = Workflow.Load(path);
        Assert.Contains("schedule", workflow.Triggers);
        Assert.Contains("workflow_dispatch", workflow.Triggers);

        var calls = workflow.Calls();
        var shardRuns = calls.Where(c => c.Line.Get("target") == "RunMatrix").ToList();
        string shardJob = Assert.Single(shardRuns.Select(c => c.Job).Distinct());
        var shardValues = workflow.MatrixValues(shardJob, "shard");
        int n = shardValues.Count;
        Assert.True(n >= 2, $"{n} shard(s)");
        Assert.Equal(Enumerable.Range(1, n).Select(i => i.ToString()), shardValues);
        // Job i runs shard i of N, N being the number of jobs, into a database of its own.
        Assert.Equal(shardValues.Select(v => $"{v}/{n}"), shardRuns.Select(c => c.Line.Get("shard")));
        var databases = shardRuns.Select(c => c.Line.Get("db") ?? "").ToList();
        Assert.Equal(n, databases.Distinct().Count());
        Assert.Contains("self-hosted", workflow.RunsOn(shardJob));
        Assert.Contains("gpu", workflow.RunsOn(shardJob));

        // Each shard job uploads its database, under an artifact name of its own.
        var uploads = workflow.Artifacts().Where(a => a.Job == shardJob && a.Action.StartsWith("actions/upload-artifact", StringComparison.Ordinal)).ToList();
        Assert.Equal(databases, uploads.Select(u => u.With["path"]));
        var artifactNames = uploads.Select(u => u.With["name"]).ToList();
        Assert.Equal(n, artifactNames.Distinct().Count());

        // The merge job waits for the shard job, downloads every shard artifact and merges the files they hold.
        var merge = Assert.Single(calls, c => c.Line.Get("target") == "MergeResults");
        Assert.Contains(shardJob, workflow.Needs(merge.Job));
        var download = Assert.Single(workflow.Artifacts(), a => a.Job == merge.Job && a.Action.StartsWith("actions/download-artifact", StringComparison.Ordinal));
        string downloadTo = download.With.GetValueOrDefault("path", ".");
        bool flat = download.With.GetValueOrDefault("merge-multiple") == "true";
        Assert.All(artifactNames, name => Assert.True(Downloads(download.With, name), $"artifact {name} is not downloaded"));
        var expectedSources = uploads.Select(u => flat
            ? $"{downloadTo}/{Path.GetFileName(u.With["path"])}"
            : $"{downloadTo}/{u.With["name"]}/{Path.GetFileName(u.With["path"])}").Order(StringComparer.Ordinal);
        Assert.Equal(expectedSources, merge.Line.Get("from")!.Split(',').Order(StringComparer.Ordinal));
        if (flat) Assert.Equal(n, uploads.Select(u => Path.GetFileName(u.With["path"])).Distinct().Count());

        // The report is made from the merged database, and the merged database and report are uploaded.
        var report = Assert.Single(calls, c => c.Line.Get("target") == "Report");
        Assert.Equal(merge.Job, report.Job);
        Assert.Equal(merge.Line.Get("db"), report.Line.Get("db"));
        var results = Assert.Single(workflow.Artifacts(), a => a.Job == merge.Job && a.Action.StartsWith("actions/upload-artifact", StringComparison.Ordinal));
        var uploaded = results.With["path"].Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Contains(merge.Line.Get("db"), uploaded);
        Assert.Contains(uploaded, p => p.EndsWith("report.html", StringComparison.Ordinal));
    }

    private static bool Downloads(IReadOnlyDictionary<string, string> with, string artifact) =>
        with.TryGetValue("name", out string? name) ? name == artifact
        : !with.TryGetValue("pattern", out string? pattern) || Regex.IsMatch(artifact, "^" + Regex.Escape(pattern).Replace(@"\*", ".*").Replace(@"\?", ".") + "$");

    /// <summary>The parts of a GitHub Actions workflow these checks read, with <c>${{ }}</c> and <c>$VAR</c> expanded.</summary>
    private sealed class Workflow
    {
        private readonly YamlMappingNode _root;

        private Workflow(YamlMappingNode root) => _root = root;

        public static Workflow Load(string path)
        {
            var stream = new YamlStream();
            using (var reader = new StreamReader(path)) stream.Load(reader);
            return new Workflow((YamlMappingNode)stream.Documents[0].RootNode);
        }

        private YamlMappingNode Jobs => (YamlMappingNode)_root["jobs"];

        private YamlMappingNode Job(string name) => (YamlMappingNode)Jobs[name];

        public IReadOnlyList<string> Triggers => ((YamlMappingNode)_root["on"]).Children.Keys.Select(k => k.ToString()).ToList();

        public IReadOnlyList<string> RunsOn(string job) => Job(job)["runs-on"] switch
        {
            YamlSequenceNode s => s.Children.Select(c => c.ToString()).ToList(),
            var scalar => [scalar.ToString()],
        };

        public IReadOnlyList<string> Needs(string job) => Child(Job(job), "needs") switch
        {
            null => [],
            YamlSequenceNode s => s.Children.Select(c => c.ToString()).ToList(),
            var scalar => [scalar.ToString()],
        };

        public IReadOnlyList<string> MatrixValues(string job, string key) =>
            Child(Child(Job(job), "strategy") as YamlMappingNode, "matrix") is YamlMappingNode m && Child(m, key) is YamlSequenceNode s
                ? s.Children.Select(c => c.ToString()).ToList()
                : [];

        /// <summary>Each job once per combination of its matrix (a job without one: once).</summary>
        private IEnumerable<(string Job, YamlMappingNode Node, IReadOnlyDictionary<string, string> Matrix)> Instances()
        {
            foreach (var (key, node) in Jobs.Children)
            {
                string job = key.ToString();
                var matrix = Child(Child((YamlMappingNode)node, "strategy") as YamlMappingNode, "matrix") as YamlMappingNode;
                IEnumerable<Dictionary<string, string>> combinations = [new()];
                foreach (var (axis, values) in matrix?.Children ?? (IEnumerable<KeyValuePair<YamlNode, YamlNode>>)[])
                {
                    var list = ((YamlSequenceNode)values).Children.Select(v => v.ToString()).ToList();
                    combinations = combinations.SelectMany(c => list.Select(v => new Dictionary<string, string>(c) { [axis.ToString()] = v })).ToList();
                }
                foreach (var combination in combinations)
                    yield return (job, (YamlMappingNode)node, combination);
            }
        }

        private IEnumerable<(string Job, YamlMappingNode Step, Func<string, string> Expand)> Steps()
        {
            foreach (var (job, node, matrix) in Instances())
            {
                foreach (var step in ((YamlSequenceNode)node["steps"]).Children.Cast<YamlMappingNode>())
                {
                    var env = new Dictionary<string, string>();
                    foreach (var scope in new[] { _root, node, step })
                        if (Child(scope, "env") is YamlMappingNode e)
                            foreach (var (k, v) in e.Children) env[k.ToString()] = Expressions(v.ToString(), matrix);
                    yield return (job, step, s => Shell(Expressions(s, matrix), env));
                }
            }
        }

        public List<Call> Calls()
        {
            var calls = new List<Call>();
            foreach (var (job, step, expand) in Steps())
            {
                if (Child(step, "run") is not { } run) continue;
                foreach (string line in run.ToString().Split('\n').Select(l => l.Trim()).Where(l => l.StartsWith("./build.sh", StringComparison.Ordinal)))
                {
                    var words = Words(expand(line));
                    calls.Add(new Call(job, CommandLine.Parse(words.Skip(1).ToList())));
                }
            }
            return calls;
        }

        public List<ArtifactStep> Artifacts()
        {
            var steps = new List<ArtifactStep>();
            foreach (var (job, step, expand) in Steps())
            {
                if (Child(step, "uses")?.ToString() is not { } uses || !uses.StartsWith("actions/", StringComparison.Ordinal) || !uses.Contains("-artifact@", StringComparison.Ordinal)) continue;
                var with = (Child(step, "with") as YamlMappingNode)?.Children.ToDictionary(kv => kv.Key.ToString(), kv => expand(kv.Value.ToString()).Trim())
                    ?? [];
                steps.Add(new ArtifactStep(job, uses, with));
            }
            return steps;
        }

        /// <summary>
        /// <c>${{ matrix.K }}</c>, <c>${{ inputs.K }}</c> (the dispatch input's default, what a scheduled run gets) and
        /// <c>'literal'</c>, joined by <c>||</c>; any other expression fails the test rather than being guessed at.
        /// </summary>
        private string Expressions(string text, IReadOnlyDictionary<string, string> matrix) =>
            Regex.Replace(text, @"\$\{\{\s*(.*?)\s*\}\}", m =>
            {
                foreach (string alternative in m.Groups[1].Value.Split("||").Select(a => a.Trim()))
                {
                    string? value = alternative switch
                    {
                        _ when alternative.StartsWith('\'') && alternative.EndsWith('\'') => alternative[1..^1],
                        _ when alternative.StartsWith("matrix.", StringComparison.Ordinal) => matrix.GetValueOrDefault(alternative["matrix.".Length..]) ?? throw new InvalidOperationException($"no matrix axis in {m.Value}"),
                        _ when alternative.StartsWith("inputs.", StringComparison.Ordinal) => InputDefault(alternative["inputs.".Length..]),
                        _ => throw new InvalidOperationException($"unsupported expression {m.Value}"),
                    };
                    if (!string.IsNullOrEmpty(value)) return value;
                }
                return "";
            });

        private string? InputDefault(string input) =>
            Child(Child(Child(Child((YamlMappingNode)_root["on"], "workflow_dispatch") as YamlMappingNode, "inputs") as YamlMappingNode, input) as YamlMappingNode, "default")?.ToString();

        /// <summary><c>$NAME</c> and <c>${NAME}</c> from the step's environment; an unknown variable fails.</summary>
        private static string Shell(string text, IReadOnlyDictionary<string, string> env) =>
            Regex.Replace(text, @"\$(?:\{(\w+)\}|(\w+))", m =>
            {
                string name = m.Groups[1].Success ? m.Groups[1].Value : m.Groups[2].Value;
                return env.TryGetValue(name, out string? v) ? v : throw new InvalidOperationException($"${name} is not set in the workflow");
            });

        /// <summary>A command line split into words as a shell would (whitespace, single and double quotes).</summary>
        private static List<string> Words(string line)
        {
            var words = new List<string>();
            var word = new StringBuilder();
            bool inWord = false;
            char quote = '\0';
            foreach (char c in line)
            {
                if (quote != '\0')
                {
                    if (c == quote) quote = '\0';
                    else word.Append(c);
                }
                else if (c is '\'' or '"') { quote = c; inWord = true; }
                else if (char.IsWhiteSpace(c))
                {
                    if (inWord) words.Add(word.ToString());
                    word.Clear();
                    inWord = false;
                }
                else if ("|;&<>`".Contains(c)) throw new InvalidOperationException($"a ./build.sh line with shell syntax these checks do not follow: {line}");
                else { word.Append(c); inWord = true; }
            }
            if (quote != '\0') throw new InvalidOperationException($"unbalanced quote in: {line}");
            if (inWord) words.Add(word.ToString());
            return words;
        }

        private static YamlNode? Child(YamlMappingNode? node, string key) =>
            node is not null && node.Children.TryGetValue(new YamlScalarNode(key), out var value) ? value : null;
    }
}
