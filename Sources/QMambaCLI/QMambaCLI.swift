import CMalloc
import Checkpoint
import Cluster
import Foundation
import TensorModule
import Vim

/// The `qmamba` command line: parses arguments, runs a command and maps failures to exit codes.
public enum QMambaCLI {
    /// The tool's version.
    public static let version = "0.1.0"

    /// Every command, in the order help lists them.
    static let commands: [Command.Type] = [
        ModelsCommand.self, InspectCommand.self, PreprocessCommand.self, ForwardCommand.self, CalibrateCommand.self,
        EvaluateCommand.self, TableCommand.self, ExportCommand.self, ReportCommand.self,
        BenchCommand.self,
    ]

    /// Options every command accepts.
    static let commonOptions: [OptionSpec] = [
        .value(
            "log-json", "FILE",
            "also append progress, timings and results to FILE as one JSON object per line (rank 0)")
    ]

    /// Exit code of a usage error (BSD `EX_USAGE`).
    public static let usageExitCode: Int32 = 64

    /// Runs the tool with `arguments` (without the program name) and returns the process exit code.
    public static func main(_ arguments: [String]) -> Int32 {
        guard let first = arguments.first, first != "--help", first != "-h" else {
            print(Help.overview(commands))
            return arguments.isEmpty ? usageExitCode : 0
        }
        if first == "--version" {
            print("qmamba \(version)")
            return 0
        }
        if first == "help" {
            guard let name = arguments.dropFirst().first else {
                print(Help.overview(commands))
                return 0
            }
            guard let command = commands.first(where: { $0.name == name }) else {
                return usageFailure(CommandLineError.unknownCommand(name, known: commands.map { $0.name }))
            }
            print(Help.text(for: command))
            return 0
        }
        guard let command = commands.first(where: { $0.name == first }) else {
            return usageFailure(CommandLineError.unknownCommand(first, known: commands.map { $0.name }))
        }
        let rest = Array(arguments.dropFirst())
        if rest.contains("--help") || rest.contains("-h") {
            print(Help.text(for: command))
            return 0
        }
        let parsed: ParsedArguments
        do {
            parsed = try ParsedArguments(
                command: command.name, arguments: rest, specs: command.options + commonOptions)
        } catch {
            return usageFailure(error)
        }
        Linear.useSingleThreadedBLAS()
        // Every layer allocates tensors of megabytes. By default glibc serves those with fresh mmap()s
        // and returns freed memory to the system, so each layer page-faults its buffers in again
        // (about 10 % of the Vim-T forward pass); keeping them in the heap reuses the pages.
        cmalloc_keep_large_blocks_in_heap(1 << 30)
        // A file-size limit would otherwise kill the process mid-write; ignored, the write fails
        // with EFBIG and is reported like a full disk.
        signal(SIGXFSZ, SIG_IGN)
        let cluster = command.usesCluster ? Communicator() : nil
        let isRoot = cluster?.isRoot ?? true
        var events: EventLog?
        do {
            if isRoot, let path = parsed.string("log-json") {
                events = try EventLog(path: path, command: command.name, ranks: cluster?.size ?? 1)
            }
        } catch {
            if let cluster { cluster.abort("error: \(error)") }
            FileHandle.standardError.write("qmamba: error: \(error)\n".data(using: .utf8)!)
            return 1
        }
        let context = CommandContext(cluster: cluster, console: Console(enabled: isRoot, events: events))
        context.console.event("start", ["arguments": .array(rest.map { .string($0) }), "version": .string(version)])
        do {
            try command.run(parsed, context: context)
        } catch let error as CommandLineError {
            context.console.event("error", ["message": .string("\(error)"), "status": .integer(Int(usageExitCode))])
            if let cluster, cluster.size > 1 { cluster.abort("error: \(error)", code: usageExitCode) }
            return usageFailure(error)
        } catch {
            context.console.event("error", ["message": .string("\(error)"), "status": .integer(1)])
            if let cluster { cluster.abort("error: \(error)") }
            FileHandle.standardError.write("qmamba: error: \(error)\n".data(using: .utf8)!)
            return 1
        }
        context.console.event("end", ["status": .integer(0)])
        cluster?.finalize()
        return 0
    }

    private static func usageFailure(_ error: Error) -> Int32 {
        FileHandle.standardError.write("qmamba: \(error)\n".data(using: .utf8)!)
        return usageExitCode
    }
}

/// Help text generated from the command declarations.
enum Help {
    static func overview(_ commands: [Command.Type]) -> String {
        var lines = [
            "qmamba \(QMambaCLI.version): post-training quantization of Vision Mamba (QMamba: LtSQ + TGQ) over MPI",
            "",
            "USAGE: qmamba <command> [options]     (under MPI: mpirun -np K qmamba <command> ...)",
            "",
            "COMMANDS:",
        ]
        let width = commands.map { $0.name.count }.max() ?? 0
        for command in commands {
            lines.append(
                "  " + command.name.padding(toLength: width + 2, withPad: " ", startingAt: 0) + command.abstract)
        }
        lines += ["", "Run 'qmamba help <command>' for a command's options."]
        return lines.joined(separator: "\n")
    }

    static func text(for command: Command.Type) -> String {
        var lines = ["qmamba \(command.name): \(command.abstract)", ""]
        if !command.discussion.isEmpty { lines += [command.discussion, ""] }
        lines.append("OPTIONS:")
        let options = command.options + QMambaCLI.commonOptions
        let labels = options.map { spec in "--\(spec.name)" + (spec.valueName.map { " \($0)" } ?? "") }
        let width = labels.map(\.count).max() ?? 0
        for (spec, label) in zip(options, labels) {
            var help = spec.help
            if spec.isRequired { help += " (required)" }
            if let value = spec.defaultValue { help += " (default: \(value))" }
            lines.append("  " + label.padding(toLength: width + 2, withPad: " ", startingAt: 0) + help)
        }
        return lines.joined(separator: "\n")
    }
}
