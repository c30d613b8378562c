import Vim

/// `qmamba models`: the registered Vim models.
enum ModelsCommand: Command {
    static let name = "models"
    static let abstract = "List the registered Vim models, their aliases and published accuracy"
    static let discussion = "Any of these names or aliases can be given to --model."
    static let options: [OptionSpec] = []
    static let usesCluster = false

    static func run(_ arguments: ParsedArguments, context: CommandContext) throws {
        for entry in VimRegistry.entries {
            let c = entry.configuration
            context.console.line(
                "\(entry.alias.padding(toLength: 14, withPad: " ", startingAt: 0))D \(c.embedDimension), depth \(c.depth), "
                    + "stride \(c.stride), \(c.tokenCount) tokens, ImageNet top-1 \(entry.publishedTop1)%")
            context.console.line("    \(entry.name)")
        }
    }
}
