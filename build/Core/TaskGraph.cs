using System.Reflection;

namespace SvdLlm.Build;

public sealed class TaskNode(string name, string description, Type type)
{
    public string Name { get; } = name;
    public string Description { get; } = description;
    public Type Type { get; } = type;
    public List<TaskNode> Dependencies { get; } = [];
}

/// <summary>The targets and their dependencies, checked once when the host starts.</summary>
public sealed class TaskGraph
{
    private readonly Dictionary<string, TaskNode> _byName;

    private TaskGraph(Dictionary<string, TaskNode> byName)
    {
        _byName = byName;
        Tasks = byName.Values.OrderBy(t => t.Name, StringComparer.Ordinal).ToArray();
    }

    /// <summary>Every target, by name.</summary>
    public IReadOnlyList<TaskNode> Tasks { get; }

    public static TaskGraph FromAssembly(Assembly assembly) =>
        FromTypes(assembly.GetTypes().Where(t => t.IsClass && !t.IsAbstract && t.IsSubclassOf(typeof(FrostingTask))));

    public static TaskGraph FromTypes(IEnumerable<Type> types)
    {
        var byType = new Dictionary<Type, TaskNode>();
        var byName = new Dictionary<string, TaskNode>(StringComparer.OrdinalIgnoreCase);
        foreach (var type in types)
        {
            string name = type.GetCustomAttribute<TaskNameAttribute>()?.Name
                ?? throw new InvalidOperationException($"Task class {type.FullName} has no [TaskName].");
            var node = new TaskNode(name, type.GetCustomAttribute<TaskDescriptionAttribute>()?.Description ?? "", type);
            if (!byName.TryAdd(name, node))
                throw new InvalidOperationException($"Two task classes are named '{name}': {byName[name].Type.FullName} and {type.FullName}.");
            byType[type] = node;
        }
        foreach (var node in byType.Values)
        {
            foreach (var dependency in node.Type.GetCustomAttributes<IsDependentOnAttribute>())
            {
                node.Dependencies.Add(byType.GetValueOrDefault(dependency.Task)
                    ?? throw new InvalidOperationException($"Task '{node.Name}' depends on {dependency.Task.FullName}, which is not a task."));
            }
        }
        var graph = new TaskGraph(byName);
        foreach (var node in graph.Tasks)
            graph.ExecutionOrder(node);
        return graph;
    }

    public TaskNode? Find(string name) => _byName.GetValueOrDefault(name);

    /// <summary>The target's dependencies, each once, each after everything it depends on, then the target.</summary>
    public IReadOnlyList<TaskNode> ExecutionOrder(TaskNode target)
    {
        var order = new List<TaskNode>();
        var done = new HashSet<TaskNode>();
        var path = new List<TaskNode>();
        Visit(target);
        return order;

        void Visit(TaskNode node)
        {
            if (done.Contains(node))
                return;
            int seen = path.IndexOf(node);
            if (seen >= 0)
            {
                string cycle = string.Join(" -> ", path.Skip(seen).Append(node).Select(n => n.Name));
                throw new InvalidOperationException($"Task dependency cycle: {cycle}.");
            }
            path.Add(node);
            foreach (var dependency in node.Dependencies)
                Visit(dependency);
            path.RemoveAt(path.Count - 1);
            done.Add(node);
            order.Add(node);
        }
    }

    public static void WriteTree(TextWriter writer, TaskNode root)
    {
        writer.WriteLine(root.Name);
        WriteChildren(writer, root, "");
    }

    private static void WriteChildren(TextWriter writer, TaskNode node, string indent)
    {
        for (int i = 0; i < node.Dependencies.Count; i++)
        {
            bool last = i == node.Dependencies.Count - 1;
            writer.WriteLine($"{indent}{(last ? "└── " : "├── ")}{node.Dependencies[i].Name}");
            WriteChildren(writer, node.Dependencies[i], indent + (last ? "    " : "│   "));
        }
    }
}
