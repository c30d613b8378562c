import Checkpoint
import Quantization
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

    /// Opens the checkpoint and builds the model, strictly checked against its configuration. An export
    /// of `qmamba export` is refused with what to do instead: it holds integer weights, not a checkpoint.
    static func load(_ arguments: ParsedArguments) throws -> (source: TensorSource, model: VimModel) {
        let source = try openCheckpoint(try arguments.required("checkpoint"))
        return (source, try model(from: source, arguments))
    }

    /// Opens a checkpoint, refusing an export of `qmamba export` with what to do instead.
    static func openCheckpoint(_ path: String) throws -> TensorSource {
        let source = try CheckpointFile.open(path)
        guard !isExport(source) else {
            throw CommandFailure(
                "\(path) is an export of 'qmamba export' (integer weights and their quantizers): 'forward' and "
                    + "'evaluate' run it as it is; this command needs the checkpoint it was exported from")
        }
        return source
    }

    /// The model to run and its quantization: an export of `qmamba export` carries both (its weights
    /// dequantized, its quantizers as a plan); a checkpoint runs in fp32, or with the plan of `--quant`.
    /// `planFile` names where the plan came from.
    static func loadRunnable(_ arguments: ParsedArguments, console: Console) throws -> (
        source: TensorSource, model: VimModel, plan: QuantizationPlan?, planFile: String?
    ) {
        let path = try arguments.required("checkpoint")
        let source = try CheckpointFile.open(path)
        guard isExport(source) else {
            let model = try model(from: source, arguments)
            let plan = try QuantizationOptions.plan(arguments, model: model, console: console)
            return (source, model, plan, arguments.string("quant"))
        }
        for option in ["quant", "config", "model"] {
            if let value = arguments.string(option) {
                throw CommandLineError.invalidValue(
                    option: option, value: value,
                    reason: "\(path) is an export of 'qmamba export', which carries its configuration and quantizers")
            }
        }
        let (model, plan) = try QuantizedModelFile.read(path)
        return (source, model, plan, path)
    }

    /// Whether `source` is an export of `qmamba export` (a safetensors file with its metadata).
    private static func isExport(_ source: TensorSource) -> Bool {
        (source as? SafetensorsFile)?.metadata[QuantizedModelFile.metadataKey] != nil
    }

    /// The model of a checkpoint, with the configuration of `--config` or `--model` if given.
    private static func model(from source: TensorSource, _ arguments: ParsedArguments) throws -> VimModel {
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
        return try VimModel(loading: source, configuration: configuration)
    }
}
