import Cluster
import Foundation
import Quantization

/// What a command needs while it runs.
public final class CommandContext {
    /// The MPI job (one rank when started without mpirun); nil for commands that do not use it.
    public let cluster: Communicator?
    /// Where human-readable output goes (rank 0's standard output).
    public let console: Console

    init(cluster: Communicator?, console: Console) {
        self.cluster = cluster
        self.console = console
    }
}

/// A subcommand of `qmamba`: a name, help, declared options and a `run`.
public protocol Command {
    /// The word that selects it.
    static var name: String { get }
    /// One line of help.
    static var abstract: String { get }
    /// Further help shown by `qmamba help <command>`.
    static var discussion: String { get }
    /// The options it accepts.
    static var options: [OptionSpec] { get }
    /// Whether it runs as an MPI job (all ranks take part).
    static var usesCluster: Bool { get }
    /// Runs the command.
    static func run(_ arguments: ParsedArguments, context: CommandContext) throws
}

/// Writes human-readable output, and the JSON event log when one was asked for, only on rank 0.
public struct Console {
    let enabled: Bool
    let events: EventLog?

    init(enabled: Bool, events: EventLog? = nil) {
        self.enabled = enabled
        self.events = enabled ? events : nil
    }

    /// Prints a line on rank 0, logged as a `message` event unless `logged` is false (for lines a
    /// structured event already carries).
    public func line(_ text: String = "", logged: Bool = true) {
        guard enabled else { return }
        print(text)
        if logged && !text.isEmpty { event("message", ["text": .string(text)]) }
    }

    /// Prints `qmamba: warning: <text>` to standard error on rank 0, logged as a `warning` event.
    public func warning(_ text: String) {
        guard enabled else { return }
        FileHandle.standardError.write("qmamba: warning: \(text)\n".data(using: .utf8)!)
        event("warning", ["text": .string(text)])
    }

    /// Prints text without a newline on rank 0, flushing it at once (not logged: progress is
    /// logged by its own events).
    public func write(_ text: String) {
        guard enabled else { return }
        print(text, terminator: "")
        fflush(stdout)
    }

    /// Logs a structured event (progress, result, timing) when `--log-json` is on.
    func event(_ name: String, _ fields: [String: CanonicalJSON]) {
        events?.write(name, fields)
    }
}

/// `--log-json`: one JSON object per line, for cluster log collectors. Each line is written with one
/// `write(2)` call to a file opened for appending, so lines stay whole even if the file is shared.
final class EventLog {
    private let descriptor: Int32
    private let command: String
    private let ranks: Int
    private let start = Date()
    private let clock = ISO8601DateFormatter()

    init(path: String, command: String, ranks: Int) throws {
        descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        guard descriptor >= 0 else {
            throw CommandFailure("\(path): cannot open the JSON log (\(String(cString: strerror(errno))))")
        }
        self.command = command
        self.ranks = ranks
    }

    deinit { close(descriptor) }

    func write(_ name: String, _ fields: [String: CanonicalJSON]) {
        var object = fields
        object["event"] = .string(name)
        object["command"] = .string(command)
        object["ranks"] = .integer(ranks)
        let now = Date()
        object["time"] = .string(clock.string(from: now))
        object["elapsed_s"] = .double((now.timeIntervalSince(start) * 1000).rounded() / 1000)
        let bytes = Array((CanonicalJSON.object(object).line + "\n").utf8)
        _ = bytes.withUnsafeBytes { Foundation.write(descriptor, $0.baseAddress, $0.count) }
    }
}
