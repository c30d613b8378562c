import Checkpoint
import Foundation
import Quantization

/// `qmamba export`: the calibrated model as integer weights and quantizer parameters.
enum ExportCommand: Command {
    static let name = "export"
    static let abstract = "Write the calibrated model as a safetensors file of integer weights and quantizer parameters"
    static let discussion = """
        Block weights become int4 (two per byte) or int8 codes with one scale per output channel; every activation \
        quantizer is stored as tensors (uniform: scale and zero point; LtSQ: log2 scale and the value of each code; \
        TGQ: group boundaries, scales and zero points); the remaining parameters are copied in float32 under their \
        checkpoint keys. The layout is in Docs/FORMAT.md; 'forward' and 'evaluate' take the file as --checkpoint and \
        give exactly the results of the checkpoint with --quant.
        """
    static let options =
        ModelOptions.specs + [
            .value("quant", "FILE", "calibration file (Q.json) to export", required: true),
            .value("output", "FILE", "the .safetensors file to write", required: true),
        ]
    static let usesCluster = false

    static func run(_ arguments: ParsedArguments, context: CommandContext) throws {
        let out = context.console
        let output = try arguments.required("output")
        let checkpoint = try arguments.required("checkpoint")
        let quant = try arguments.required("quant")
        try OutputPath.check(output, inputs: [checkpoint, quant])
        let (source, model) = try ModelOptions.load(arguments)
        let plan = try QuantizationOptions.plan(arguments, model: model, console: out)!
        try QuantizedModelFile.write(
            plan: plan, source: source, configuration: model.configuration, weights: model.weights, to: output)
        let size = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        let floatBytes = model.weights.parameterCount * 4
        out.line(
            String(
                format: "wrote %@: %@ %@, %.1f MB (float32 weights: %.1f MB)", output, plan.method.name,
                plan.settings.name, Double(size) / 1e6, Double(floatBytes) / 1e6))
        out.event("result", ["export": .object(["output": .string(output), "bytes": .integer(size)])])
    }
}
