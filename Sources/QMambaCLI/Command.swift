import Cluster
import Foundation

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

/// Writes human-readable output, only on rank 0.
public struct Console {
    let enabled: Bool

    /// Prints a line on rank 0.
    public func line(_ text: String = "") {
        if enabled { print(text) }
    }

    /// Prints text without a newline on rank 0, flushing it at once.
    public func write(_ text: String) {
        guard enabled else { return }
        print(text, terminator: "")
        fflush(stdout)
    }
}
