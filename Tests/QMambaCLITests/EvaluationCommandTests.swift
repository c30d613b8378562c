import Checkpoint
import Foundation
import TensorModule
import TestSupport
import Testing

/// Images run through `qmamba preprocess` one by one and stacked into one N × 3 × size × size array.
func preprocessedBatch(images: [String], inputSize: Int) throws -> String {
    let directory = Fixtures.temporaryDirectory()
    var scalars: [Float] = []
    for image in images {
        let output = "\(directory)/one.npy"
        let result = try QMambaExecutable.run([
            "preprocess", "--image", image, "--output", output, "--input-size", String(inputSize),
        ])
        #expect(result.status == 0, "\(result.error)")
        scalars += try NumPyArray(contentsOf: output).tensor.scalars
    }
    let path = "\(directory)/batch.npy"
    try NumPyArray(Tensor(shape: [images.count, 3, inputSize, inputSize], scalars: scalars)).write(to: path)
    return path
}

/// The images of `images32` as one normalised N × 3 × 32 × 32 array.
func images32Array() throws -> String {
    let files = try ["class0", "class1", "class2"].flatMap { folder in
        try FileManager.default.contentsOfDirectory(atPath: "\(images32)/\(folder)").sorted().map {
            "\(images32)/\(folder)/\($0)"
        }
    }
    return try preprocessedBatch(images: files, inputSize: 32)
}

/// Logits of `checkpoint` on `input`, fake-quantized with a fresh calibration of `method` at `bits` if given.
func logits(_ checkpoint: String, _ input: String, method: String? = nil, bits: Int = 8) throws -> [Float] {
    let directory = Fixtures.temporaryDirectory()
    var extra: [String] = []
    if let method {
        let calibration = try QMambaExecutable.run(
            calibrateArguments("\(directory)/q.json", checkpoint: checkpoint, method: method, bits: bits))
        #expect(calibration.status == 0, "\(calibration.error)")
        extra = ["--quant", "\(directory)/q.json"]
    }
    let result = try QMambaExecutable.run(
        ["forward", "--checkpoint", checkpoint, "--input", input, "--output", "\(directory)/logits.npy"] + extra)
    #expect(result.status == 0, "\(result.error)")
    return try NumPyArray(contentsOf: "\(directory)/logits.npy").tensor.scalars
}

func signalToNoise(_ reference: [Float], _ other: [Float]) -> Double {
    let signal = reference.reduce(0.0) { $0 + Double($1) * Double($1) }
    let noise = zip(reference, other).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }
    return 10 * log10(signal / max(noise, 1e-30))
}

@Suite("qmamba evaluate and table")
struct EvaluationCommandTests {
    @Test("counts, accuracy and loss are identical for 1, 2 and 3 ranks, fp32 and quantized")
    func rankIndependent() throws {
        let directory = Fixtures.temporaryDirectory()
        let quant = "\(directory)/q.json"
        #expect(try QMambaExecutable.run(calibrateArguments(quant)).status == 0)
        for extra in [[], ["--quant", quant]] {
            var results: [[String: Any]] = []
            for ranks in 1...3 {
                let output = "\(directory)/r\(ranks).json"
                guard
                    let result = try QMambaExecutable.runMPI(
                        ranks: ranks,
                        [
                            "evaluate", "--checkpoint", microCheckpoint, "--data", images32, "--batch-size", "5",
                            "--json", output,
                        ] + extra)
                else { return }
                #expect(result.status == 0, "\(result.error)")
                results.append(
                    try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: output)))
                        as! [String: Any])
            }
            for key in ["images", "top1_correct", "top5_correct", "top1", "top5", "loss"] {
                let values = results.map { "\($0[key]!)" }
                #expect(Set(values).count == 1, "\(key) differs across rank counts: \(values)")
            }
            #expect(results[0]["images"] as? Int == 24)
            #expect((results[2]["per_rank"] as? [Any])?.count == 3)
        }
    }

    @Test("fp32 evaluation predicts exactly what the official logits rank first, on real photos")
    func predictionsMatchFixture() throws {
        guard let tiny = Fixtures.shared("vim-official/vim_tiny.pth"),
            let logitsPath = Fixtures.shared("photos/vim_tiny_photos_logits.npy")
        else { return }
        let data = Fixtures.temporaryDirectory() + "/photos"
        for (i, name) in ["chelsea.jpg", "camera_gray.jpg", "astronaut_cmyk.jpg"].enumerated() {
            try FileManager.default.createDirectory(atPath: "\(data)/c\(i)", withIntermediateDirectories: true)
            try FileManager.default.copyItem(
                atPath: Fixtures.bundled("photos/\(name)"), toPath: "\(data)/c\(i)/\(name)")
        }
        let predictions = Fixtures.temporaryDirectory() + "/p.tsv"
        let result = try QMambaExecutable.run(
            ["evaluate", "--checkpoint", tiny, "--data", data, "--predictions", predictions])
        #expect(result.status == 0, "\(result.error)")
        let rows = try String(contentsOfFile: predictions, encoding: .utf8).split(separator: "\n").dropFirst()
        let reference = try NumPyArray(contentsOf: logitsPath).tensor
        for (i, row) in rows.enumerated() {
            let scores = Array(reference.scalars[(i * 1000)..<((i + 1) * 1000)])
            let expected = scores.indices.sorted { scores[$0] > scores[$1] }.prefix(5).map(String.init).joined(
                separator: ",")
            #expect(row.split(separator: "\t")[2] == expected)
        }
        #expect(rows.count == 3)
    }

    @Test(
        "W8A8 stays close to fp32; at W4A4 qmamba's output error is below minmax's",
        arguments: ["vim-official", "vim-official-init"])
    func quantizedOutputError(_ set: String) throws {
        let checkpoint = Fixtures.bundled("\(set)/vim_micro.pth")
        let input = try images32Array()
        let reference = try logits(checkpoint, input)
        let w8a8 = signalToNoise(reference, try logits(checkpoint, input, method: "qmamba", bits: 8))
        let minmax = signalToNoise(reference, try logits(checkpoint, input, method: "minmax", bits: 4))
        let qmamba = signalToNoise(reference, try logits(checkpoint, input, method: "qmamba", bits: 4))
        print("\(set): logit SQNR W8A8 qmamba \(w8a8) dB; W4A4 minmax \(minmax) dB, qmamba \(qmamba) dB")
        #expect(w8a8 > 25)
        #expect(qmamba > minmax)
    }

    @Test(
        "a set with class indices the model cannot output is refused before anything runs; fewer class folders than classes is a warning"
    )
    func labelsOutsideTheModel() throws {
        let directory = Fixtures.temporaryDirectory()
        let manager = FileManager.default
        // The micro model has 10 classes: index 10 of a label file is one too many.
        let flat = "\(directory)/flat"
        try manager.createDirectory(atPath: flat, withIntermediateDirectories: true)
        for name in ["00.png", "01.png"] {
            try manager.copyItem(atPath: "\(images32)/class0/\(name)", toPath: "\(flat)/\(name)")
        }
        let labels = "\(directory)/labels.txt"
        try "00.png 3\n01.png 10\n".write(toFile: labels, atomically: true, encoding: .utf8)
        let output = "\(directory)/r.json"
        let fromFile = try QMambaExecutable.run([
            "evaluate", "--checkpoint", microCheckpoint, "--data", flat, "--labels", labels, "--json", output,
        ])
        #expect(fromFile.status == 1)
        #expect(
            fromFile.error.contains("\(labels): 1 image has a class index the model cannot output (it has 10 classes"))
        #expect(fromFile.error.contains("01.png, labelled 10"))
        #expect(!fromFile.output.contains("evaluating"))
        #expect(!manager.fileExists(atPath: output) && !manager.fileExists(atPath: output + ".progress"))

        // Eleven class folders: the last in sorted order has index 10.
        let eleven = "\(directory)/eleven"
        for index in 0..<11 {
            try manager.createDirectory(atPath: "\(eleven)/c\(index)", withIntermediateDirectories: true)
            try manager.copyItem(atPath: "\(images32)/class1/00.png", toPath: "\(eleven)/c\(index)/00.png")
        }
        let fromFolders = try QMambaExecutable.run(["evaluate", "--checkpoint", microCheckpoint, "--data", eleven])
        #expect(fromFolders.status == 1)
        #expect(fromFolders.error.contains("\(eleven): 11 class folders, but the model has 10 classes"))
        #expect(fromFolders.error.contains("folder 'c9'"))

        // The table checks its validation set before it calibrates.
        let table = try QMambaExecutable.run([
            "table", "--checkpoint", microCheckpoint, "--calib", images32, "--val", flat, "--val-labels", labels,
            "--settings", "W8A8", "--methods", "minmax", "--output", "\(directory)/table",
        ])
        #expect(table.status == 1)
        #expect(table.error.contains("\(labels): 1 image has a class index"))
        #expect(!table.output.contains("pass 1/2"))

        let fewer = try QMambaExecutable.run(["evaluate", "--checkpoint", microCheckpoint, "--data", images32])
        #expect(fewer.status == 0, "\(fewer.error)")
        #expect(fewer.error.contains("warning: \(images32): 3 class folders for a model of 10 classes"))
    }

    @Test("a Q.json fitted on another checkpoint's bytes is used with a warning that names both files")
    func calibrationOfOtherWeights() throws {
        let directory = Fixtures.temporaryDirectory()
        let quant = "\(directory)/q.json"
        #expect(try QMambaExecutable.run(calibrateArguments(quant)).status == 0)
        let otherWeights = Fixtures.bundled("vim-official-init/vim_micro.pth")
        for (checkpoint, warned) in [(microCheckpoint, false), (otherWeights, true)] {
            for command in [
                [
                    "forward", "--input", "\(Fixtures.bundled("vim-official"))/vim_micro_input.npy",
                    "--output", "\(directory)/logits.npy",
                ],
                ["export", "--output", "\(directory)/q.safetensors"],
            ] {
                let result = try QMambaExecutable.run(command + ["--checkpoint", checkpoint, "--quant", quant])
                #expect(result.status == 0, "\(result.error)")
                #expect(
                    result.error.contains("warning: \(quant) was fitted on vim_micro.pth (SHA-256 ") == warned,
                    "\(command[0]) \(checkpoint): \(result.error)")
                #expect(result.error.contains("not on the bytes of \(checkpoint)") == warned)
            }
        }
    }

    @Test("table writes the paper-style table with an fp32 row and every cell, under 2 ranks")
    func table() throws {
        let prefix = Fixtures.temporaryDirectory() + "/table"
        guard
            let result = try QMambaExecutable.runMPI(
                ranks: 2,
                [
                    "table", "--checkpoint", microCheckpoint, "--calib", images32, "--val", images32, "--settings",
                    "W8A8,W4A4",
                    "--methods", "minmax,qmamba", "--output", prefix,
                ])
        else { return }
        #expect(result.status == 0, "\(result.error)")
        let markdown = try String(contentsOfFile: prefix + ".md", encoding: .utf8)
        #expect(markdown.contains("| method | W8A8 | W4A4 |"))
        for row in ["| fp32 |", "| minmax |", "| qmamba |"] { #expect(markdown.contains(row)) }
        let json =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: prefix + ".json")))
            as! [String: Any]
        let results = json["results"] as! [String: [String: Any]]
        #expect(results["qmamba"]?["W4A4"] != nil && results["minmax"]?["W8A8"] != nil)
    }
}

@Suite("The demo model")
struct DemoModelTests {
    @Test("qmamba's fp32 evaluation of the demo model equals the training script's own: 483 of 500 (96.60 %)")
    func demoAccuracy() throws {
        let output = Fixtures.temporaryDirectory() + "/r.json"
        let result = try QMambaExecutable.run([
            "evaluate", "--checkpoint", Fixtures.repositoryRoot.appendingPathComponent("demo/vim_digits.pth").path,
            "--data", Fixtures.repositoryRoot.appendingPathComponent("demo/data/val").path, "--json", output,
        ])
        #expect(result.status == 0, "\(result.error)")
        let json =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: output))) as! [String: Any]
        #expect(json["images"] as? Int == 500)
        #expect(json["top1_correct"] as? Int == 483)
    }
}
