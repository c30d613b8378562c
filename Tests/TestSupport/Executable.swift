import Foundation

/// The result of running a program.
public struct ProcessResult {
    /// Exit status.
    public let status: Int32
    /// Standard output.
    public let output: String
    /// Standard error.
    public let error: String
}

/// Runs the built `qmamba` binary, and `mpirun` jobs of it.
public enum QMambaExecutable {
    /// The binary beside the test runner (SwiftPM puts products and the test bundle in one directory).
    public static var path: String {
        let runner = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var directory = runner.deletingLastPathComponent()
        if directory.lastPathComponent.hasSuffix(".xctest") { directory = directory.deletingLastPathComponent() }
        let candidate = directory.appendingPathComponent("qmamba").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        return Fixtures.repositoryRoot.appendingPathComponent(".build/debug/qmamba").path
    }

    /// Runs `qmamba arguments…` as a single process.
    public static func run(_ arguments: [String]) throws -> ProcessResult {
        try runProcess(path, arguments)
    }

    /// The `mpirun` program, or nil (after saying so) when Open MPI's launcher is not installed.
    public static var mpirun: String? {
        for directory in ["/usr/bin", "/usr/local/bin"]
        where FileManager.default.isExecutableFile(atPath: directory + "/mpirun") {
            return directory + "/mpirun"
        }
        print("SKIPPED: mpirun is not installed; the multi-rank part of this test did not run")
        return nil
    }

    /// Runs `mpirun -np ranks qmamba arguments…` (oversubscribed, allowed as root, one BLAS thread).
    public static func runMPI(ranks: Int, _ arguments: [String]) throws -> ProcessResult? {
        guard let mpirun else { return nil }
        return try runProcess(mpirun, ["--oversubscribe", "-np", String(ranks), path] + arguments)
    }

    /// Runs a program to its end; `whileRunning`, given the child's process id, runs on another
    /// thread meanwhile (to interfere with the job, as a fault-injection test does).
    public static func runProcess(
        _ program: String, _ arguments: [String], whileRunning: (@Sendable (Int32) -> Void)? = nil
    ) throws -> ProcessResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        environment["OPENBLAS_NUM_THREADS"] = "1"
        process.environment = environment
        let output = Pipe()
        let error = Pipe()
        process.standardOutput = output
        process.standardError = error
        try process.run()
        let group = DispatchGroup()
        if let whileRunning {
            let pid = process.processIdentifier
            DispatchQueue.global().async(group: group) { whileRunning(pid) }
        }
        // Drain standard error on another thread while standard output is read here, so neither pipe
        // can fill up and block the child before it exits.
        let errorBox = DataBox()
        group.enter()
        DispatchQueue.global().async {
            errorBox.data = error.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        return ProcessResult(
            status: process.terminationStatus, output: String(decoding: outputData, as: UTF8.self),
            error: String(decoding: errorBox.data, as: UTF8.self))
    }
}

/// Processes of a running job, read from `/proc`.
public enum ProcessTable {
    /// The process ids below `ancestor` (children, grandchildren, …).
    public static func descendants(of ancestor: Int32) -> [Int32] {
        let all = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }
        var parents: [Int32: Int32] = [:]
        for pid in all {
            // /proc/<pid>/stat is "pid (name) state ppid …"; the name may hold spaces, so split after ')'.
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, let parent = Int32(fields[1]) { parents[pid] = parent }
        }
        return all.filter { pid in
            var current = parents[pid]
            while let parent = current, parent > 1 {
                if parent == ancestor { return true }
                current = parents[parent]
            }
            return false
        }
    }

    /// The value of an environment variable of a running process, if readable.
    public static func environmentValue(_ name: String, of pid: Int32) -> String? {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { return nil }
        let prefix = name + "="
        return data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }.first { $0.hasPrefix(prefix) }
            .map { String($0.dropFirst(prefix.count)) }
    }
}

private final class DataBox: @unchecked Sendable {
    var data = Data()
}
