#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Starting node and balancer processes with `posix_spawn` directly.
///
/// A load test restarts nodes while it holds thousands of sockets. Foundation's `Process`
/// crashed inside `run()` in that state (about 2,000 descriptors open, 605 s into the
/// certification run), and it keeps a monitoring thread and handles per child. One
/// `posix_spawn` call with explicit file actions does only what is needed: the log file as
/// stdout and stderr, /dev/null as stdin, every other descriptor closed in the child, a process
/// group of its own (Ctrl-C in the terminal does not reach the nodes), default signal
/// dispositions and an empty signal mask.
public enum Spawn {
    /// Starts `executable` and returns its pid without waiting for it. `log` is created if
    /// missing and appended to.
    public static func detached(executable: String, arguments: [String], environment: [String: String], log: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }

        try check(posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0), "redirect stdin")
        try check(posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644), "open \(log)")
        try check(posix_spawn_file_actions_adddup2(&actions, 1, 2), "redirect stderr")
        if let closeFrom = closeFrom {
            try check(closeFrom(&actions, 3), "close inherited descriptors")
        }

        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        try check(posix_spawnattr_setsigmask(&attributes, &noSignals), "signal mask")
        try check(posix_spawnattr_setsigdefault(&attributes, &allSignals), "signal defaults")
        try check(posix_spawnattr_setpgroup(&attributes, 0), "process group")
        let flags = Int32(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP)
        try check(posix_spawnattr_setflags(&attributes, Int16(flags)), "spawn flags")

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard status == 0 else {
            throw LocalClusterError("cannot start \(executable): \(String(cString: strerror(status)))")
        }
        return pid
    }

    /// Reaps `pid` if it is an exited child of this process; true when it was. Returns false at
    /// once for a child still running or a pid that is not our child.
    @discardableResult
    public static func reap(_ pid: pid_t) -> Bool {
        var status: Int32 = 0
        return waitpid(pid, &status, WNOHANG) == pid
    }

    /// Whether `pid` is a live process: it exists and is not a zombie. An exited member that is
    /// not our child stays a zombie until its parent (often init, which may take seconds)
    /// reaps it, and a zombie still answers `kill(pid, 0)`.
    public static func isAlive(_ pid: pid_t) -> Bool {
        reap(pid)
        guard kill(pid, 0) == 0 else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")")
        else { return true }
        // `pid (comm) S ...`: the state follows the command name, which may hold spaces.
        return stat[stat.index(after: close)...].split(separator: " ").first != "Z"
    }

    /// glibc 2.34's `posix_spawn_file_actions_addclosefrom_np`, looked up at run time because
    /// the Glibc module does not export it; without it, children rely on descriptors being
    /// close-on-exec (NIO's are).
    private static let closeFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
        #if canImport(Glibc)
        guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
        #else
        return nil
        #endif
    }()

    private static func check(_ status: Int32, _ what: String) throws {
        guard status == 0 else { throw LocalClusterError("cannot start a process: \(what): \(String(cString: strerror(status)))") }
    }
}
