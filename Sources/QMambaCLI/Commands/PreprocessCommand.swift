import Checkpoint
import ImageData
import TensorModule

/// `qmamba preprocess`: one image through the official evaluation transform.
enum PreprocessCommand: Command {
    static let name = "preprocess"
    static let abstract =
        "Turn an image into the normalised 1 x 3 x H x W tensor the official evaluation feeds the model"
    static let discussion = """
        Decodes a JPEG or PNG as PIL's convert('RGB') does, resizes the shorter side to int(size / crop-ratio) with
        PIL's bicubic filter, centre-crops, scales to [0, 1] and normalises with the ImageNet mean and std. For an
        input size of 32 px or less there is no resize or crop (as in the official code).
        """
    static let options: [OptionSpec] = [
        .value("image", "FILE", "a JPEG or PNG image", required: true),
        .value("output", "FILE", "where to write the tensor (.npy, float32)", required: true),
        .value("input-size", "PIXELS", "the model's input size", default: "224"),
        .value("crop-ratio", "RATIO", "centre-crop ratio", default: "0.875"),
    ]
    static let usesCluster = false

    static func run(_ arguments: ParsedArguments, context: CommandContext) throws {
        let image = try arguments.required("image")
        let output = try arguments.required("output")
        try OutputPath.check(output, inputs: [image])
        let transform = try TransformOptions.transform(arguments)
        let tensor = try transform(contentsOf: image)
        try NumPyArray(tensor.reshaped([1] + tensor.shape)).write(to: output)
        context.console.line("wrote \(output): 1 x \(tensor.shape.map(String.init).joined(separator: " x "))")
    }
}

/// The options that define the evaluation transform.
enum TransformOptions {
    /// Reads `--input-size` and `--crop-ratio`.
    static func transform(_ arguments: ParsedArguments) throws -> EvaluationTransform {
        EvaluationTransform(
            inputSize: try arguments.integer("input-size", in: 1...4096)!, cropRatio: try cropRatio(arguments))
    }

    /// Reads `--crop-ratio`, a number in (0, 1].
    static func cropRatio(_ arguments: ParsedArguments) throws -> Double {
        let text = arguments.string("crop-ratio")!
        guard let ratio = Double(text), ratio > 0, ratio <= 1 else {
            throw CommandLineError.invalidValue(
                option: "crop-ratio", value: text, reason: "expected a number in (0, 1]")
        }
        return ratio
    }
}
