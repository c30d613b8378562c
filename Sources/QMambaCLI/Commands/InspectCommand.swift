import Checkpoint
import Foundation
import Vim

/// `qmamba inspect`: what a checkpoint holds and the model it describes.
enum InspectCommand: Command {
    static let name = "inspect"
    static let abstract = "Show a checkpoint's contents, its model configuration and parameter count"
    static let discussion = """
        Reads the file without executing any of it, infers the configuration from the tensor shapes (or takes
        --config/--model), and loads every weight strictly, so a checkpoint that passes here will run. A file written
        by 'qmamba export' is described with its method and setting.
        """
    static let options = ModelOptions.specs
    static let usesCluster = false

    static func run(_ arguments: ParsedArguments, context: CommandContext) throws {
        let out = context.console
        let (source, model, plan, _) = try ModelOptions.loadRunnable(arguments, console: out)
        let c = model.configuration
        out.line("file: \(source.path)")
        if let torch = source as? TorchCheckpoint {
            let keys =
                torch.topLevelKeys.isEmpty ? "none (a bare state dict)" : torch.topLevelKeys.joined(separator: ", ")
            out.line(
                "format: PyTorch zip checkpoint; weights under '\(torch.stateDictLocation)'; top-level keys: \(keys)")
            if !torch.inertClasses.isEmpty {
                out.line("kept inert (not executed): \(torch.inertClasses.joined(separator: ", "))")
            }
        } else if let plan {
            out.line(
                "format: qmamba export (safetensors), \(plan.method.name) \(plan.settings.name): integer weights with "
                    + "their quantizers (Docs/FORMAT.md); forward and evaluate run it as it is")
        } else {
            out.line("format: safetensors")
        }
        if let entry = VimRegistry.entry(matching: c) {
            out.line("model: \(entry.alias) (\(entry.name))")
        } else {
            out.line("model: custom Vim configuration")
        }
        out.line(
            "configuration: img_size \(c.imageSize), patch_size \(c.patchSize), stride \(c.stride), "
                + "embed_dim \(c.embedDimension), depth \(c.depth), d_state \(c.stateSize), d_inner \(c.innerDimension), "
                + "dt_rank \(c.stepRank), d_conv \(c.convolutionWidth), channels \(c.channels), classes \(c.classCount)"
        )
        out.line(
            "tokens: \(c.tokenCount) (\(c.gridSize)x\(c.gridSize) patches, class token at index \(c.classTokenIndex))")
        out.line("parameters: \(grouped(model.weights.parameterCount)) in \(source.tensorNames.count) tensors")
        out.line(
            "multiply-accumulates per image: \(String(format: "%.3f", Double(c.multiplyAccumulatesPerImage) / 1e9)) G")
    }

    static func grouped(_ value: Int) -> String {
        let digits = Array(String(value))
        var out = ""
        for (i, digit) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(digit)
        }
        return out
    }
}
