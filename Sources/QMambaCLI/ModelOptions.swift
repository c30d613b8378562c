import Checkpoint
import Vim

/// The options shared by every command that loads a model.
enum ModelOptions {
    static let specs: [OptionSpec] = [
        .value(
            "checkpoint", "FILE", "weights: a PyTorch .pth (official layout) or a .safetensors file", required: true),
        .value("config", "FILE", "configuration JSON (official constructor names) instead of inferring it from shapes"),
        .value(
            "model", "NAME", "take the configuration of a registered model (e.g. vim-t-stride8; see 'qmamba models')"),
    ]

    /// Opens the checkpoint and builds the model, strictly checked against its configuration.
    static func load(_ arguments: ParsedArguments) throws -> (source: TensorSource, model: VimModel) {
        let source = try CheckpointFile.open(try arguments.required("checkpoint"))
        var configuration: VimConfiguration?
        if let path = arguments.string("config") {
            configuration = try VimConfiguration.load(contentsOf: path)
        }
        if let name = arguments.string("model") {
            guard configuration == nil else {
                throw CommandLineError.invalidValue(
                    option: "model", value: name, reason: "give either --model or --config")
            }
            configuration = try VimRegistry.entry(named: name).configuration
        }
        return (source, try VimModel(loading: source, configuration: configuration))
    }
}
