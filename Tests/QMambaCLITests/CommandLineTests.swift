import Checkpoint
import Foundation
import TensorModule
import TestSupport
import Testing

let microCheckpoint = Fixtures.bundled("vim-official/vim_micro.pth")
let microInput = Fixtures.bundled("vim-official/vim_micro_input.npy")

@Suite("The qmamba binary")
struct CommandLineTests {
    @Test("help lists every command; a command's help lists its options")
    func help() throws {
        let overview = try QMambaExecutable.run(["--help"])
        #expect(overview.status == 0)
        for command in ["models", "inspect", "forward"] { #expect(overview.output.contains("  \(command) ")) }
        let forward = try QMambaExecutable.run(["help", "forward"])
        #expect(forward.status == 0)
        #expect(forward.output.contains("--checkpoint FILE") && forward.output.contains("(default: 8)"))
    }

    @Test(
        "usage errors name the offending argument and exit with 64",
        arguments: [
            (["frobnicate"], "unknown command 'frobnicate'"),
            (["inspect", "--checkpoint", "x", "--colour", "red"], "'inspect' has no option '--colour'"),
            (["inspect"], "'inspect' needs '--checkpoint'"),
            (["forward", "--checkpoint", "a", "--input", "b", "--output"], "'--output' needs a value"),
            (
                ["forward", "--checkpoint", "a", "--input", "b", "--output", "c", "--batch-size", "0"],
                "invalid value '0' for '--batch-size'"
            ),
            (["inspect", "stray"], "no positional argument 'stray'"),
        ])
    func usageErrors(_ sample: ([String], String)) throws {
        let result = try QMambaExecutable.run(sample.0)
        #expect(result.status == 64)
        #expect(result.error.contains(sample.1), "stderr: \(result.error)")
    }

    @Test("inspect describes the micro fixture")
    func inspect() throws {
        let result = try QMambaExecutable.run(["inspect", "--checkpoint", microCheckpoint])
        #expect(result.status == 0, "\(result.error)")
        #expect(result.output.contains("img_size 32, patch_size 4, stride 4, embed_dim 48, depth 4"))
        #expect(result.output.contains("parameters: 108,394 in 75 tensors"))
        #expect(result.output.contains("kept inert (not executed): argparse.Namespace"))
    }

    @Test("forward writes the official logits")
    func forward() throws {
        let output = Fixtures.temporaryDirectory() + "/logits.npy"
        let result = try QMambaExecutable.run([
            "forward", "--checkpoint", microCheckpoint, "--input", microInput, "--output", output,
        ])
        #expect(result.status == 0, "\(result.error)")
        let logits = try NumPyArray(contentsOf: output).tensor
        let reference = try NumPyArray(contentsOf: Fixtures.bundled("vim-official/vim_micro_logits.npy")).tensor
        #expect(logits.shape == reference.shape)
        #expect(difference(logits.scalars, reference.scalars).maximumAbsolute < 1e-4)
    }

    @Test("forward names the images of its input that hold NaN; only their logits are affected")
    func forwardOfNonFiniteInput() throws {
        let directory = Fixtures.temporaryDirectory()
        let clean = try NumPyArray(contentsOf: microInput).tensor
        var scalars = clean.scalars
        scalars[clean.count / clean.shape[0] + 17] = .nan
        let damagedInput = "\(directory)/nan.npy"
        try NumPyArray(Tensor(shape: clean.shape, scalars: scalars)).write(to: damagedInput)
        var logits: [[Float]] = []
        for (input, name) in [(microInput, "clean"), (damagedInput, "damaged")] {
            let output = "\(directory)/\(name).npy"
            let result = try QMambaExecutable.run([
                "forward", "--checkpoint", microCheckpoint, "--input", input, "--output", output,
            ])
            #expect(result.status == 0, "\(result.error)")
            #expect(
                result.error.contains("warning: \(damagedInput): 1 of 4 images hold NaN or infinite values (image 1)")
                    == (input == damagedInput), "\(result.error)")
            logits.append(try NumPyArray(contentsOf: output).tensor.scalars)
        }
        let classes = logits[0].count / 4
        for image in 0..<4 {
            let (cleanRow, damagedRow) = (
                logits[0][(image * classes)..<((image + 1) * classes)],
                logits[1][(image * classes)..<((image + 1) * classes)]
            )
            if image == 1 {
                #expect(damagedRow.allSatisfy { $0.isNaN })
            } else {
                #expect(Array(cleanRow) == Array(damagedRow))
            }
        }
    }

    @Test("forward under mpirun gives byte-identical logits for 1, 2 and 3 ranks")
    func forwardUnderMPI() throws {
        let directory = Fixtures.temporaryDirectory()
        var files: [Data] = []
        for ranks in 1...3 {
            let output = "\(directory)/logits-\(ranks).npy"
            guard
                let result = try QMambaExecutable.runMPI(
                    ranks: ranks,
                    [
                        "forward", "--checkpoint", microCheckpoint, "--input", microInput, "--output", output,
                        "--batch-size", "3",
                    ])
            else { return }
            #expect(result.status == 0, "\(ranks) ranks: \(result.error)")
            #expect(result.output.contains("(\(ranks) rank"))
            files.append(try Data(contentsOf: URL(fileURLWithPath: output)))
        }
        #expect(files.count == 3 && files.allSatisfy { $0 == files[0] })
    }

    @Test(
        "a bad checkpoint fails with exit 1, names the file, and leaves no output",
        arguments: ["truncated", "not-a-zip", "wrong-shape"])
    func badCheckpoint(_ kind: String) throws {
        let directory = Fixtures.temporaryDirectory()
        let bad = "\(directory)/\(kind).pth"
        let original = try Data(contentsOf: URL(fileURLWithPath: microCheckpoint))
        switch kind {
        case "truncated": try original.prefix(100_000).write(to: URL(fileURLWithPath: bad))
        case "not-a-zip": try Data(repeating: 0x41, count: 4096).write(to: URL(fileURLWithPath: bad))
        default:
            let source = try CheckpointFile.open(microCheckpoint)
            var tensors = try source.tensorNames.map { (name: $0, tensor: try source.tensor(named: $0)) }
            let i = tensors.firstIndex { $0.name == "layers.0.mixer.out_proj.weight" }!
            tensors[i].tensor = tensors[i].tensor.transposingLastTwo()
            try SafetensorsFile.write(tensors, to: bad)
        }
        let output = "\(directory)/logits.npy"
        let result = try QMambaExecutable.run([
            "forward", "--checkpoint", bad, "--input", microInput, "--output", output,
        ])
        #expect(result.status == 1)
        #expect(result.error.contains(bad), "stderr: \(result.error)")
        if kind == "wrong-shape" {
            #expect(result.error.contains("'layers.0.mixer.out_proj.weight' has shape [96, 48], expected [48, 96]"))
        }
        #expect(!FileManager.default.fileExists(atPath: output))
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).count == 1)
    }

    @Test("a failure on a multi-rank job ends every rank with exit 1 and the message")
    func failureUnderMPI() throws {
        let output = Fixtures.temporaryDirectory() + "/logits.npy"
        guard
            let result = try QMambaExecutable.runMPI(
                ranks: 2,
                ["forward", "--checkpoint", "/nonexistent/model.pth", "--input", microInput, "--output", output])
        else { return }
        #expect(result.status != 0)
        #expect(result.error.contains("/nonexistent/model.pth: cannot read the file (no such file)"))
        #expect(!FileManager.default.fileExists(atPath: output))
    }

    @Test("bench writes its figures as JSON, with the micro model's matrix work counted by hand")
    func bench() throws {
        let json = Fixtures.temporaryDirectory() + "/B.json"
        let result = try QMambaExecutable.run([
            "bench", "--checkpoint", microCheckpoint, "--batch", "2", "--repeat", "1", "--json", json,
        ])
        #expect(result.status == 0, "\(result.error)")
        let figures =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as! [String: Any]
        #expect(figures["batch"] as? Int == 2 && figures["threads"] as? Int == 1)
        for key in ["fp32_images_per_s", "quant_images_per_s", "observe_images_per_s", "sgemm_gflops"] {
            let value = figures[key] as? Double
            #expect(value.map { $0.isFinite && $0 > 0 } == true, "\(key): \(String(describing: value))")
        }
        // Patch embedding 64 patches × 48 × 3·4·4; per layer, 65 tokens × (in_proj 48·192 + out_proj 96·48 +
        // both directions' conv 96·4, x_proj 96·(3 + 2·16) and dt_proj 3·96); head 48 × 10.
        let multiplyAccumulates = 64 * 48 * 48 + 4 * 65 * (48 * 192 + 96 * 48 + 2 * (96 * 4 + 96 * 35 + 3 * 96)) + 480
        #expect(figures["model_gflop_per_image"] as? Double == 2 * Double(multiplyAccumulates) / 1e9)
    }

    @Test("bench refuses a calibration file made for another model before it times anything")
    func benchWithForeignPlan() throws {
        let directory = Fixtures.temporaryDirectory()
        let plan = directory + "/Q.json"
        let calibrate = try QMambaExecutable.run([
            "calibrate", "--checkpoint", ReliabilityTests.demoModel, "--data", ReliabilityTests.demoImages,
            "--num-images", "2", "--output", plan,
        ])
        #expect(calibrate.status == 0, "\(calibrate.error)")
        let result = try QMambaExecutable.run(["bench", "--checkpoint", microCheckpoint, "--quant", plan])
        #expect(result.status == 1)
        #expect(result.error.contains("\(plan): not a usable calibration file: it was made for another model"))
        #expect(!result.output.contains("fp32 forward"), "\(result.output)")
    }

    @Test("the output may not overwrite an input")
    func outputOverInput() throws {
        let directory = Fixtures.temporaryDirectory()
        let input = directory + "/input.npy"
        try FileManager.default.copyItem(atPath: microInput, toPath: input)
        let result = try QMambaExecutable.run([
            "forward", "--checkpoint", microCheckpoint, "--input", input, "--output", input,
        ])
        #expect(result.status == 1)
        #expect(result.error.contains("refusing to write the output over the input"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: input)) == Data(contentsOf: URL(fileURLWithPath: microInput)))
    }
}

@Suite("Images through the binary")
struct ImageCommandTests {
    @Test("JPEGs through preprocess and forward give the official Vim-T photo logits")
    func photosEndToEnd() throws {
        guard let tiny = Fixtures.shared("vim-official/vim_tiny.pth"),
            let referencePath = Fixtures.shared("photos/vim_tiny_photos_logits.npy")
        else { return }
        let batch = try preprocessedBatch(
            images: ["chelsea", "camera_gray", "astronaut_cmyk"].map { Fixtures.bundled("photos/\($0).jpg") },
            inputSize: 224)
        let directory = Fixtures.temporaryDirectory()
        let logits = "\(directory)/logits.npy"
        let result = try QMambaExecutable.run(["forward", "--checkpoint", tiny, "--input", batch, "--output", logits])
        #expect(result.status == 0, "\(result.error)")
        let error = difference(
            try NumPyArray(contentsOf: logits).tensor.scalars, try NumPyArray(contentsOf: referencePath).tensor.scalars)
        print("photo logits: \(error)")
        #expect(error.maximumAbsolute <= 1e-2)
    }

    @Test("preprocess names a bad image and exits 1")
    func badImage() throws {
        let directory = Fixtures.temporaryDirectory()
        let bad = "\(directory)/bad.jpg"
        try Data([0xFF, 0xD8, 0xFF, 0xE0, 0x00]).write(to: URL(fileURLWithPath: bad))
        let result = try QMambaExecutable.run(["preprocess", "--image", bad, "--output", "\(directory)/x.npy"])
        #expect(result.status == 1)
        #expect(result.error.contains("\(bad): damaged image"))
    }
}
