/// One option of a command, declared once with its help text.
public struct OptionSpec: Sendable {
    /// The long name, without dashes.
    public let name: String
    /// What the value is (e.g. `FILE`); nil for a flag that takes no value.
    public let valueName: String?
    /// One line of help.
    public let help: String
    /// The value used when the option is not given, shown in help.
    public let defaultValue: String?
    /// Whether the command cannot run without it.
    public let isRequired: Bool

    /// An option that takes a value.
    public static func value(
        _ name: String, _ valueName: String, _ help: String, default defaultValue: String? = nil, required: Bool = false
    ) -> OptionSpec {
        OptionSpec(name: name, valueName: valueName, help: help, defaultValue: defaultValue, isRequired: required)
    }

    /// A flag that takes no value.
    public static func flag(_ name: String, _ help: String) -> OptionSpec {
        OptionSpec(name: name, valueName: nil, help: help, defaultValue: nil, isRequired: false)
    }
}

/// The options a command was given, checked against its declarations.
public struct ParsedArguments {
    let command: String
    private var values: [String: String] = [:]
    private var flags: Set<String> = []

    /// Parses `--name value`, `--name=value` and `--flag` against `specs`.
    ///
    /// - Throws: `CommandLineError` naming the unknown option, the missing value or required option.
    init(command: String, arguments: [String], specs: [OptionSpec]) throws {
        self.command = command
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            guard argument.hasPrefix("--") else {
                throw CommandLineError.unexpectedArgument(command: command, argument: argument)
            }
            var name = String(argument.dropFirst(2))
            var inlineValue: String?
            if let equals = name.firstIndex(of: "=") {
                inlineValue = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            guard let spec = specs.first(where: { $0.name == name }) else {
                throw CommandLineError.unknownOption(command: command, option: argument)
            }
            if spec.valueName == nil {
                guard inlineValue == nil else {
                    throw CommandLineError.invalidValue(option: name, value: inlineValue!, reason: "it is a flag")
                }
                flags.insert(name)
                continue
            }
            if let inlineValue {
                values[name] = inlineValue
            } else {
                guard index < arguments.count, !arguments[index].hasPrefix("--") else {
                    throw CommandLineError.missingValue(option: name)
                }
                values[name] = arguments[index]
                index += 1
            }
        }
        for spec in specs where spec.isRequired && values[spec.name] == nil {
            throw CommandLineError.missingOption(command: command, option: spec.name)
        }
        for spec in specs where values[spec.name] == nil {
            if let value = spec.defaultValue { values[spec.name] = value }
        }
    }

    /// The option's value (or its default), if any.
    public func string(_ name: String) -> String? { values[name] }

    /// The value of a required option.
    public func required(_ name: String) throws -> String {
        guard let value = values[name] else { throw CommandLineError.missingOption(command: command, option: name) }
        return value
    }

    /// The option's value as an integer in `range`, if given.
    public func integer(_ name: String, in range: ClosedRange<Int> = 1...Int.max) throws -> Int? {
        guard let text = values[name] else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw CommandLineError.invalidValue(
                option: name, value: text,
                reason: "expected a whole number in \(range.lowerBound)...\(range.upperBound)")
        }
        return value
    }

    /// Whether a flag was given.
    public func flag(_ name: String) -> Bool { flags.contains(name) }
}
