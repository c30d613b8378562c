/// A mistake in the command line; reported with the offending argument and exit code 64 (EX_USAGE).
public enum CommandLineError: Error, CustomStringConvertible, Equatable {
    case unknownCommand(String, known: [String])
    case unknownOption(command: String, option: String)
    case missingValue(option: String)
    case missingOption(command: String, option: String)
    case invalidValue(option: String, value: String, reason: String)
    case unexpectedArgument(command: String, argument: String)

    /// A message that names the offending argument.
    public var description: String {
        switch self {
        case .unknownCommand(let name, let known):
            return "unknown command '\(name)'; commands: \(known.joined(separator: ", "))"
        case .unknownOption(let command, let option):
            return "'\(command)' has no option '\(option)' (see 'qmamba help \(command)')"
        case .missingValue(let option):
            return "option '--\(option)' needs a value"
        case .missingOption(let command, let option):
            return "'\(command)' needs '--\(option)' (see 'qmamba help \(command)')"
        case .invalidValue(let option, let value, let reason):
            return "invalid value '\(value)' for '--\(option)': \(reason)"
        case .unexpectedArgument(let command, let argument):
            return "'\(command)' takes no positional argument '\(argument)'"
        }
    }
}

/// A runtime failure that is not a library error (e.g. refusing to overwrite an input).
public struct CommandFailure: Error, CustomStringConvertible {
    /// A message that names the offending argument.
    public let description: String

    /// Creates a failure with its message.
    public init(_ description: String) { self.description = description }
}
