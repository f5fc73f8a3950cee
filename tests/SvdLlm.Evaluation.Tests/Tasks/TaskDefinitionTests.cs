using SvdLlm.Evaluation.Tasks;

namespace SvdLlm.Evaluation.Tests.Tasks;

/// <summary>Every defined task is runnable: a reader of its kind knows it, and what it needs agrees with where its data comes from.</summary>
public class TaskDefinitionTests
{
    public static IEnumerable<object[]> Defined() => TaskDefinitions.All.Select(t => new object[] { t.Name });

    [Theory]
    [MemberData(nameof(Defined))]
    public void Each_task_has_a_reader_of_its_kind(string name)
    {
        var task = TaskDefinitions.Get(name);
        string missing = Path.Combine(Path.GetTempPath(), $"svdllm-no-such-file-{Guid.NewGuid():N}");
        // Reading a file that does not exist must get as far as the file: an error about the task itself means the
        // definition has no reader behind it.
        Exception? e = task.Kind switch
        {
            TaskKind.MultipleChoice => Record.Exception(() => TaskRegistry.ReadItems(name, missing)),
            TaskKind.Perplexity => Record.Exception(() => TaskRegistry.PerplexityStream(null!, new TaskRequest(name, missing), missing)),
            _ => null,
        };
        if (task.Kind == TaskKind.Efficiency)
        {
            Assert.Equal(Efficiency.EfficiencyResult.TaskName, name);
            return;
        }
        Assert.NotNull(e);
        Assert.True(e is FileNotFoundException or DirectoryNotFoundException or TaskDataException, $"{name}: {e.GetType().Name}: {e.Message}");
        Assert.Contains(Path.GetFileName(missing), e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Names_and_columns_are_unique_and_only_the_built_in_sets_need_no_data()
    {
        Assert.Equal(TaskDefinitions.All.Count, TaskDefinitions.All.Select(t => t.Name).Distinct().Count());
        Assert.Equal(TaskDefinitions.All.Count, TaskDefinitions.All.Select(t => t.Order).Distinct().Count());
        var noData = TaskDefinitions.All.Where(t => !t.NeedsData).Select(t => t.Name).Order().ToArray();
        var builtIn = DemoSuite.Tasks.Append(Efficiency.EfficiencyResult.TaskName).Order().ToArray();
        Assert.Equal(builtIn, noData);
        Assert.Contains("did you mean 'wikitext2'", Assert.Throws<ArgumentException>(() => TaskDefinitions.Get("wikitext")).Message);
    }
}
