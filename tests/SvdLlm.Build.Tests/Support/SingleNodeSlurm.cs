using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;

namespace SvdLlm.Build.Tests;

/// <summary>
/// A real one-node Slurm cluster on 127.0.0.1 for the length of a test: its own munge daemon (own key and socket),
/// slurmctld and slurmd in the foreground as children of the test, on two free ports, with every state, spool, pid
/// and log file in one directory. Nothing of the machine's own Slurm or munge setup is read or changed.
/// </summary>
internal sealed class SingleNodeSlurm : IDisposable
{
    public static readonly string[] Programs = ["sbatch", "scontrol", "sinfo", "slurmctld", "slurmd", "munged"];

    private readonly List<Process> _daemons = [];
    private readonly string _directory;

    private SingleNodeSlurm(string directory)
    {
        _directory = directory;
        ConfigFile = Path.Combine(directory, "slurm.conf");
    }

    public string ConfigFile { get; }

    /// <summary>What a Slurm client (sbatch, scontrol) needs in its environment to talk to this cluster.</summary>
    public IReadOnlyDictionary<string, string> Environment => new Dictionary<string, string> { ["SLURM_CONF"] = ConfigFile };

    public static bool IsRoot => System.Environment.IsPrivilegedProcess;

    public static IReadOnlyList<string> MissingPrograms() => Programs.Where(p => Locate(p) is null).ToList();

    /// <summary>On PATH, or in /usr/sbin where Debian puts the daemons (not on a non-root user's PATH).</summary>
    private static string? Locate(string program) =>
        Support.ProgramOnPath.Find(program) ?? (File.Exists("/usr/sbin/" + program) ? "/usr/sbin/" + program : null);

    /// <summary>Debian's slurm-wlm and munge, installed with apt-get when a program is missing (root only; once per machine).</summary>
    public static void InstallIfMissing()
    {
        var missing = MissingPrograms();
        if (missing.Count == 0) return;
        if (!IsRoot) throw new InvalidOperationException($"{string.Join(", ", missing)} not installed and not root: sudo apt-get install -y slurm-wlm munge");
        var env = new Dictionary<string, string> { ["DEBIAN_FRONTEND"] = "noninteractive" };
        var update = HostRunner.Run("apt-get", ["update"], "/", env, TimeSpan.FromMinutes(5));
        var install = HostRunner.Run("apt-get", ["install", "-y", "slurm-wlm", "munge"], "/", env, TimeSpan.FromMinutes(10));
        if (install.Exit != 0)
            throw new InvalidOperationException($"apt-get install -y slurm-wlm munge exited {install.Exit}:\n{update.Out}{update.Err}{install.Out}{install.Err}");
        if (MissingPrograms() is { Count: > 0 } still)
            throw new InvalidOperationException($"{string.Join(", ", still)} still missing after apt-get install -y slurm-wlm munge");
    }

    public static SingleNodeSlurm Start(string directory)
    {
        var cluster = new SingleNodeSlurm(directory);
        try
        {
            cluster.Configure();
            cluster.Launch();
            return cluster;
        }
        catch
        {
            cluster.Dispose();
            throw;
        }
    }

    private string File_(string name) => Path.Combine(_directory, name);

    private void Configure()
    {
        foreach (string sub in new[] { "state", "spool" })
            Directory.CreateDirectory(File_(sub));
        // munged wants its key readable by its own user alone.
        File.WriteAllBytes(File_("munge.key"), RandomNumberGenerator.GetBytes(1024));
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(File_("munge.key"), UnixFileMode.UserRead);
        string host = Dns.GetHostName().Split('.')[0];
        int cpus = System.Environment.ProcessorCount;
        var conf = new StringBuilder();
        foreach (string line in new[]
        {
            "ClusterName=svdllmtest",
            $"SlurmctldHost={host}(127.0.0.1)",
            $"SlurmctldPort={FreePort()}",
            $"SlurmdPort={FreePort()}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            $"AuthInfo=socket={File_("munge.sock")}",
            "SlurmUser=root",
            "SlurmdUser=root",
            $"StateSaveLocation={File_("state")}",
            $"SlurmdSpoolDir={File_("spool")}",
            $"SlurmctldPidFile={File_("slurmctld.pid")}",
            $"SlurmdPidFile={File_("slurmd.pid")}",
            $"SlurmctldLogFile={File_("slurmctld.log")}",
            $"SlurmdLogFile={File_("slurmd.log")}",
            // No cgroups (a container may have none to give): processes tracked through /proc, no task binding.
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "SwitchType=switch/none",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "ReturnToService=2",
            // A job whose dependency can never be met (a shard failed) is cancelled instead of pending forever.
            "DependencyParameters=kill_invalid_depend",
            $"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN",
            $"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP",
        })
            conf.Append(line).Append('\n');
        File.WriteAllText(ConfigFile, conf.ToString());
    }

    private static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    private void Launch()
    {
        StartDaemon("munged", ["-F", "--force", $"--socket={File_("munge.sock")}", $"--key-file={File_("munge.key")}",
            $"--pid-file={File_("munged.pid")}", $"--log-file={File_("munged.log")}", $"--seed-file={File_("munged.seed")}"]);
        WaitFor(() => File.Exists(File_("munge.sock")), TimeSpan.FromSeconds(20), "munged did not create its socket");
        StartDaemon("slurmctld", ["-D", "-c", "-f", ConfigFile]);
        StartDaemon("slurmd", ["-D", "-f", ConfigFile]);
        WaitFor(() => Client("sinfo", "-h", "-o", "%T").Out.Trim() == "idle", TimeSpan.FromSeconds(60), "the node did not become idle");
    }

    private void StartDaemon(string name, string[] args)
    {
        var info = new ProcessStartInfo(Locate(name) ?? name)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = _directory,
        };
        foreach (string a in args) info.ArgumentList.Add(a);
        info.Environment["SLURM_CONF"] = ConfigFile;
        var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {name}");
        // The daemons' own console output goes to a file beside their logs; read for failure messages.
        var sink = new StreamWriter(File_(name + ".out")) { AutoFlush = true };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (sink) sink.WriteLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (sink) sink.WriteLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _daemons.Add(process);
    }

    private void WaitFor(Func<bool> condition, TimeSpan timeout, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (_daemons.FirstOrDefault(d => d.HasExited) is { } dead)
                throw new InvalidOperationException($"{what}: {dead.StartInfo.FileName} exited with code {dead.ExitCode}.\n{Logs()}");
            if (clock.Elapsed > timeout)
                throw new InvalidOperationException($"{what} within {timeout.TotalSeconds:0} s.\n{Logs()}");
            Thread.Sleep(250);
        }
    }

    /// <summary>A Slurm client command against this cluster.</summary>
    public (int Exit, string Out, string Err) Client(string program, params string[] args) =>
        HostRunner.Run(program, args, _directory, Environment, TimeSpan.FromSeconds(30));

    /// <summary>The daemons' logs, the last lines of each, for a failure message.</summary>
    public string Logs()
    {
        var s = new StringBuilder();
        foreach (string name in new[] { "munged.out", "munged.log", "slurmctld.out", "slurmctld.log", "slurmd.out", "slurmd.log" })
        {
            string path = File_(name);
            if (!File.Exists(path)) continue;
            string[] lines;
            try
            {
                using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
                lines = new StreamReader(stream).ReadToEnd().Split('\n');
            }
            catch (IOException e)
            {
                lines = [e.Message];
            }
            s.Append("--- ").Append(name).Append('\n').AppendJoin('\n', lines.TakeLast(30)).Append('\n');
        }
        return s.ToString();
    }

    public void Dispose()
    {
        // Jobs still queued or running (a failed or timed-out test) are cancelled while the controller is up.
        try
        {
            string[] jobs = Client("squeue", "-h", "-o", "%A").Out.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            if (jobs.Length > 0)
            {
                Client("scancel", jobs.Distinct().ToArray());
                WaitFor(() => Client("squeue", "-h").Out.Trim().Length == 0, TimeSpan.FromSeconds(20), "jobs still listed after scancel");
            }
        }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException or System.ComponentModel.Win32Exception)
        {
        }
        // slurmd first, so no job step outlives it; then the controller, then munge.
        foreach (var daemon in Enumerable.Reverse(_daemons))
        {
            try
            {
                if (!daemon.HasExited)
                {
                    daemon.Kill(entireProcessTree: true);
                    daemon.WaitForExit(10_000);
                }
            }
            catch (InvalidOperationException)
            {
            }
            daemon.Dispose();
        }
    }
}
