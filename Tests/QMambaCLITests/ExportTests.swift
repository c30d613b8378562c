import Checkpoint
import Foundation
import Quantization
import TensorModule
import TestSupport
import Testing

@Suite("qmamba export")
struct ExportTests {
    @Test(
        "the exported file, read back and dequantized, reproduces the fake-quantized logits bit for bit",
        arguments: [4, 8])
    func roundTrip(bits: Int) throws {
        let directory = Fixtures.temporaryDirectory()
        let checkpoint = microCheckpoint
        let input = Fixtures.bundled("vim-official/vim_micro_input.npy")
        let calibration = try QMambaExecutable.run(
            calibrateArguments(directory + "/q.json", bits: bits))
        #expect(calibration.status == 0, "\(calibration.error)")
        let export = try QMambaExecutable.run([
            "export", "--checkpoint", checkpoint, "--quant", directory + "/q.json", "--output",
            directory + "/m.safetensors",
        ])
        #expect(export.status == 0, "\(export.error)")
        let forward = try QMambaExecutable.run([
            "forward", "--checkpoint", checkpoint, "--input", input, "--quant", directory + "/q.json", "--output",
            directory + "/logits.npy",
        ])
        #expect(forward.status == 0, "\(forward.error)")

        let (model, plan) = try QuantizedModelFile.read(directory + "/m.safetensors")
        #expect(plan.activations.contains { $0.quantizer.kind == "tgq" })
        let images = try NumPyArray(contentsOf: input).tensor
        let logits = try model(images, hooks: FakeQuantizationHooks(plan: plan))
        #expect(logits.scalars == (try NumPyArray(contentsOf: directory + "/logits.npy")).tensor.scalars)

        let file = try SafetensorsFile(path: directory + "/m.safetensors")
        let packed = try file.rawTensor(named: "layers.0.mixer.in_proj.weight.qweight")
        let original = try TorchCheckpoint(path: checkpoint).shape(of: "layers.0.mixer.in_proj.weight")!
        #expect(packed.dtype == (bits == 4 ? "U8" : "I8"))
        #expect(packed.shape == [original[0], bits == 4 ? original[1] / 2 : original[1]])
        #expect(file.metadata["qmamba"]?.contains("\"method\":\"qmamba\"") == true)
    }

    @Test("forward and evaluate run an export as it is, with exactly the results of its checkpoint and Q.json")
    func exportRuns() throws {
        let directory = Fixtures.temporaryDirectory()
        let (quant, export) = (directory + "/q.json", directory + "/m.safetensors")
        #expect(try QMambaExecutable.run(calibrateArguments(quant)).status == 0)
        #expect(
            try QMambaExecutable.run([
                "export", "--checkpoint", microCheckpoint, "--quant", quant, "--output", export,
            ]).status == 0)
        let input = Fixtures.bundled("vim-official/vim_micro_input.npy")
        var logits: [[Float]] = []
        var results: [[String: Any]] = []
        for (index, model) in [["--checkpoint", microCheckpoint, "--quant", quant], ["--checkpoint", export]]
            .enumerated()
        {
            let output = "\(directory)/logits\(index).npy"
            let forward = try QMambaExecutable.run(["forward", "--input", input, "--output", output] + model)
            #expect(forward.status == 0, "\(forward.error)")
            logits.append(try NumPyArray(contentsOf: output).tensor.scalars)
            let json = "\(directory)/r\(index).json"
            let evaluate = try QMambaExecutable.run(["evaluate", "--data", images32, "--json", json] + model)
            #expect(evaluate.status == 0, "\(evaluate.error)")
            #expect(evaluate.output.contains("evaluating qmamba W4A4 on 24 images"))
            results.append(
                try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as! [String: Any])
        }
        #expect(logits[0] == logits[1])
        for key in ["images", "top1_correct", "top5_correct", "loss"] {
            #expect("\(results[0][key]!)" == "\(results[1][key]!)", "\(key)")
        }

        let withQuant = try QMambaExecutable.run([
            "forward", "--checkpoint", export, "--quant", quant, "--input", input, "--output", directory + "/x.npy",
        ])
        #expect(withQuant.status != 0)
        #expect(withQuant.error.contains("which carries its configuration and quantizers"))
        let inspect = try QMambaExecutable.run(["inspect", "--checkpoint", export])
        #expect(inspect.status == 0, "\(inspect.error)")
        #expect(inspect.output.contains("format: qmamba export (safetensors), qmamba W4A4"))
        let calibrate = try QMambaExecutable.run(calibrateArguments(directory + "/again.json", checkpoint: export))
        #expect(calibrate.status == 1)
        #expect(calibrate.error.contains("\(export) is an export of 'qmamba export'"))
    }

    @Test("a file that is not an export is refused with the reason")
    func notAnExport() throws {
        let path = Fixtures.temporaryDirectory() + "/plain.safetensors"
        try SafetensorsFile.write([("a", Tensor(shape: [1], scalars: [1]))], to: path)
        #expect { try QuantizedModelFile.read(path) } throws: { "\($0)".contains("not a qmamba export") }
    }
}
