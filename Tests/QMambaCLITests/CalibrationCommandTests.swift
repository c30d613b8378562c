import Foundation
import TestSupport
import Testing

let images32 = Fixtures.bundled("images32")

func calibrateArguments(
    _ output: String, checkpoint: String = microCheckpoint, data: String = images32, method: String = "qmamba",
    bits: Int = 4
) -> [String] {
    [
        "calibrate", "--checkpoint", checkpoint, "--data", data, "--method", method, "--w-bits", String(bits),
        "--a-bits", String(bits), "--batch-size", "5", "--output", output,
    ]
}

@Suite("qmamba calibrate")
struct CalibrationCommandTests {
    @Test("Q.json is byte-identical for 1, 2 and 3 ranks")
    func rankIndependent() throws {
        let directory = Fixtures.temporaryDirectory()
        var files: [Data] = []
        let single = try QMambaExecutable.run(calibrateArguments("\(directory)/single.json"))
        #expect(single.status == 0, "\(single.error)")
        files.append(try Data(contentsOf: URL(fileURLWithPath: "\(directory)/single.json")))
        for ranks in 1...3 {
            let output = "\(directory)/q\(ranks).json"
            guard let result = try QMambaExecutable.runMPI(ranks: ranks, calibrateArguments(output)) else { return }
            #expect(result.status == 0, "\(ranks) ranks: \(result.error)")
            files.append(try Data(contentsOf: URL(fileURLWithPath: output)))
        }
        #expect(files.allSatisfy { $0 == files[0] })
        let text = String(decoding: files[0], as: UTF8.self)
        #expect(text.contains(#""format": "qmamba-calibration""#) && text.contains(#""images": 24"#))
        // Ā's threshold counts, merged across ranks: every Ā value of 24 images (65 tokens, E 96, N 16).
        #expect(text.components(separatedBy: #""values_counted": 2396160"#).count == 1 + 8)
        #expect(single.output.contains("the histogram pass counts A_bar at 4 of 8 points"))
    }

    @Test("minmax runs the range pass alone; Q.json is byte-identical for 1 and 2 ranks and counts every image")
    func rangesOnly() throws {
        let directory = Fixtures.temporaryDirectory()
        var files: [Data] = []
        for ranks in 1...2 {
            let output = "\(directory)/q\(ranks).json"
            let arguments = calibrateArguments(output, method: "minmax")
            guard let result = try QMambaExecutable.runMPI(ranks: ranks, arguments) else { return }
            #expect(result.status == 0, "\(ranks) ranks: \(result.error)")
            #expect(result.output.contains("ranges (no histograms needed)") && !result.output.contains("pass 2/2"))
            files.append(try Data(contentsOf: URL(fileURLWithPath: output)))
        }
        #expect(files[0] == files[1])
        let text = String(decoding: files[0], as: UTF8.self)
        #expect(text.contains(#""method": "minmax""#) && text.contains(#""images": 24"#))
        // A method that never chooses LtSQ does not count Ā against its threshold.
        #expect(!text.contains("values_above_threshold"))
    }

    @Test("sampled scan histograms: Q.json is byte-identical for 1 and 2 ranks, records the sampling, differs")
    func sampledRankIndependent() throws {
        let directory = Fixtures.temporaryDirectory()
        let exact = try QMambaExecutable.run(calibrateArguments("\(directory)/exact.json"))
        #expect(exact.status == 0, "\(exact.error)")
        var files: [Data] = []
        for ranks in 1...2 {
            let output = "\(directory)/q\(ranks).json"
            let arguments = calibrateArguments(output) + ["--scan-sampling", "4"]
            guard let result = try QMambaExecutable.runMPI(ranks: ranks, arguments) else { return }
            #expect(result.status == 0, "\(ranks) ranks: \(result.error)")
            #expect(result.output.contains("histograms count 1 in 4 scan values"))
            files.append(try Data(contentsOf: URL(fileURLWithPath: output)))
        }
        #expect(files[0] == files[1])
        #expect(String(decoding: files[0], as: UTF8.self).contains(#""scan_sampling": 4"#))
        let exactFile = try Data(contentsOf: URL(fileURLWithPath: "\(directory)/exact.json"))
        #expect(!String(decoding: exactFile, as: UTF8.self).contains("scan_sampling"))
        #expect(exactFile != files[0])
    }

    @Test("a scan sampling the kernel cannot take is a usage error naming the choices")
    func badScanSampling() throws {
        let output = Fixtures.temporaryDirectory() + "/q.json"
        let result = try QMambaExecutable.run(calibrateArguments(output) + ["--scan-sampling", "3"])
        #expect(result.status == 64)
        #expect(result.error.contains("scan-sampling") && result.error.contains("1, 2, 4, 8, 16"))
        #expect(!FileManager.default.fileExists(atPath: output))
    }

    @Test("a bad image is skipped with a warning, or ends a strict run on every rank with no Q.json")
    func badImage() throws {
        let data = Fixtures.temporaryDirectory() + "/data"
        try FileManager.default.copyItem(atPath: images32, toPath: data)
        try Data("not an image".utf8).write(to: URL(fileURLWithPath: data + "/class1/05b.png"))
        let lenient = Fixtures.temporaryDirectory() + "/q.json"
        let result = try QMambaExecutable.run(calibrateArguments(lenient, data: data))
        #expect(result.status == 0)
        #expect(result.error.contains("\(data)/class1/05b.png: unsupported image format"))
        #expect(result.output.contains("1 unreadable images were skipped"))
        let strict = Fixtures.temporaryDirectory() + "/q.json"
        guard let failed = try QMambaExecutable.runMPI(ranks: 2, calibrateArguments(strict, data: data) + ["--strict"])
        else {
            return
        }
        #expect(failed.status != 0)
        #expect(failed.error.contains("05b.png"))
        #expect(!FileManager.default.fileExists(atPath: strict))
    }

    @Test("a checkpoint missing on one rank ends the whole job with that rank's message and no Q.json")
    func missingOnOneRank() throws {
        guard let mpirun = QMambaExecutable.mpirun else { return }
        let output = Fixtures.temporaryDirectory() + "/q.json"
        let started = Date()
        let result = try QMambaExecutable.runProcess(
            mpirun,
            ["-np", "1", QMambaExecutable.path] + calibrateArguments(output) + [":", "-np", "1", QMambaExecutable.path]
                + calibrateArguments(output, checkpoint: "/nowhere/vim_micro.pth"))
        #expect(result.status != 0)
        #expect(result.error.contains("rank 1 of 2") && result.error.contains("/nowhere/vim_micro.pth"))
        #expect(!FileManager.default.fileExists(atPath: output))
        #expect(Date().timeIntervalSince(started) < 30)
    }

    @Test("an unknown method is a usage error listing the methods")
    func unknownMethod() throws {
        let result = try QMambaExecutable.run(calibrateArguments("/tmp/x.json") + ["--method", "magic"])
        #expect(result.status == 64)
        #expect(result.error.contains("unknown method 'magic'") && result.error.contains("qmamba-search"))
    }
}
