import Foundation
import TestSupport
import Testing

/// The counts of an R.json, the part that must not depend on ranks or interruptions.
func resultCounts(_ path: String) throws -> [String: Double] {
    let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
    var counts: [String: Double] = [:]
    for key in ["images", "skipped", "top1_correct", "top5_correct", "loss"] {
        counts[key] = (object[key] as! NSNumber).doubleValue
    }
    return counts
}

func savedBlocks(_ directory: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasPrefix("block-") }
}

@Suite("Faults: killed ranks, interrupted runs, unwritable outputs")
struct ReliabilityTests {
    static let demoModel = Fixtures.repositoryRoot.appendingPathComponent("demo/vim_digits.pth").path
    static let demoImages = Fixtures.repositoryRoot.appendingPathComponent("demo/data/val").path

    /// The whole demo validation set: a shorter run can finish between two looks of the test that
    /// waits for saved blocks to kill a rank, when the machine is busy with the rest of the suite.
    static let imageCount = 500

    static func evaluation(json: String) -> [String] {
        [
            "evaluate", "--checkpoint", demoModel, "--data", demoImages, "--num-images", "\(imageCount)", "--json",
            json, "--batch-size", "1",
        ]
    }

    @Test("a killed rank ends the job in seconds naming the rank; --resume on 3 ranks then gives 1 rank's counts")
    func killedRankThenResume() throws {
        guard let mpirun = QMambaExecutable.mpirun else { return }
        let directory = Fixtures.temporaryDirectory()
        let json = directory + "/R.json"
        let progress = json + ".progress"
        let killedAt = LockedValue<Date?>(nil)
        let interrupted = try QMambaExecutable.runProcess(
            mpirun, ["--oversubscribe", "-np", "2", QMambaExecutable.path] + Self.evaluation(json: json)
        ) { launcher in
            let deadline = Date().addingTimeInterval(120)
            while savedBlocks(progress).count < 4 && Date() < deadline { usleep(10_000) }
            for pid in ProcessTable.descendants(of: launcher)
            where ProcessTable.environmentValue("OMPI_COMM_WORLD_RANK", of: pid) == "1" {
                kill(pid, SIGKILL)
                killedAt.value = Date()
            }
        }
        let ended = Date()
        let killed = try #require(killedAt.value, "rank 1 was never found to kill: \(interrupted.error)")
        #expect(ended.timeIntervalSince(killed) < 30)
        #expect(interrupted.status != 0)
        #expect((interrupted.output + interrupted.error).contains("rank 1"), "\(interrupted.error)")
        #expect(!FileManager.default.fileExists(atPath: json), "no result may be left after a failed run")
        let saved = savedBlocks(progress).count
        #expect(saved >= 4 && saved < Self.imageCount, "saved \(saved) of \(Self.imageCount) one-image blocks")
        print(
            "killed rank 1 after \(saved) of \(Self.imageCount) blocks; mpirun ended \(String(format: "%.2f", ended.timeIntervalSince(killed))) s later"
        )

        let again = try #require(try QMambaExecutable.runMPI(ranks: 2, Self.evaluation(json: json)))
        #expect(again.status != 0 && again.error.contains("--resume"), "starting over saved progress is refused")

        let resumed = try #require(try QMambaExecutable.runMPI(ranks: 3, Self.evaluation(json: json) + ["--resume"]))
        #expect(resumed.status == 0, "\(resumed.error)")
        #expect(resumed.output.contains("resuming: "))
        #expect(!FileManager.default.fileExists(atPath: progress), "progress is removed once R.json is written")

        let reference = directory + "/uninterrupted.json"
        let uninterrupted = try QMambaExecutable.run(Self.evaluation(json: reference))
        #expect(uninterrupted.status == 0, "\(uninterrupted.error)")
        #expect(try resultCounts(json) == resultCounts(reference))
        #expect(try resultCounts(reference)["images"] == Double(Self.imageCount))
    }

    @Test("a killed table resumes where it stopped, and gives the uninterrupted table")
    func interruptedTable() throws {
        let directory = Fixtures.temporaryDirectory()
        let calibration = Fixtures.repositoryRoot.appendingPathComponent("demo/data/calib").path
        func table(_ prefix: String, _ extra: [String] = []) -> [String] {
            [
                "table", "--checkpoint", Self.demoModel, "--calib", calibration, "--num-images", "32", "--val",
                Self.demoImages, "--settings", "W8A8", "--methods", "minmax", "--output", prefix, "--batch-size", "1",
                "--save-every", "1",
            ] + extra
        }
        let prefix = directory + "/killed"
        let cell = prefix + ".progress/minmax-W8A8"
        let interrupted = try QMambaExecutable.runProcess(QMambaExecutable.path, table(prefix)) { pid in
            let deadline = Date().addingTimeInterval(120)
            while savedBlocks(cell).count < 4 && Date() < deadline { usleep(5_000) }
            kill(pid, SIGKILL)
        }
        #expect(interrupted.status != 0)
        #expect(!FileManager.default.fileExists(atPath: prefix + ".json"))
        let saved = savedBlocks(cell).count
        #expect(saved >= 4 && saved < Self.imageCount, "saved \(saved) blocks of the quantized cell")
        #expect(savedBlocks(prefix + ".progress/fp32").count == Self.imageCount)

        let again = try QMambaExecutable.run(table(prefix))
        #expect(again.status == 1 && again.error.contains("--resume"), "starting over saved progress is refused")
        let resumed = try QMambaExecutable.run(table(prefix, ["--resume"]))
        #expect(resumed.status == 0, "\(resumed.error)")
        #expect(resumed.output.contains("resuming: \(Self.imageCount) of \(Self.imageCount) images"))
        #expect(!FileManager.default.fileExists(atPath: prefix + ".progress"), "progress is removed with the table")

        let reference = directory + "/uninterrupted"
        #expect(try QMambaExecutable.run(table(reference)).status == 0)
        func counts(_ prefix: String) throws -> String {
            let object =
                try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: prefix + ".json")))
                as! [String: Any]
            let parts = ["fp32", "results"].map { object[$0]! }
            return String(
                decoding: try JSONSerialization.data(withJSONObject: parts, options: .sortedKeys), as: UTF8.self)
        }
        #expect(try counts(prefix) == counts(reference))
        #expect(try counts(reference).contains("\"images\":\(Self.imageCount)"))
    }

    @Test("saved progress of a different evaluation is not resumed")
    func foreignProgress() throws {
        let directory = Fixtures.temporaryDirectory()
        let json = directory + "/R.json"
        try FileManager.default.createDirectory(atPath: json + ".progress", withIntermediateDirectories: false)
        try Data(#"{"fingerprint":"0","blockSize":8,"images":500}"#.utf8).write(
            to: URL(fileURLWithPath: json + ".progress/run.json"))
        let result = try QMambaExecutable.run(Self.evaluation(json: json) + ["--resume"])
        #expect(result.status == 1)
        #expect(result.error.contains("different evaluation"), "\(result.error)")
    }

    @Test("an output the file system refuses, or a write cut short, fails before or without a partial file")
    func unwritableOutputs() throws {
        let directory = Fixtures.temporaryDirectory()
        // Root may write anywhere except a read-only file system: /proc is one for every user.
        let readOnly = try QMambaExecutable.run(
            ["evaluate", "--checkpoint", Self.demoModel, "--data", Self.demoImages, "--json", "/proc/R.json"])
        #expect(readOnly.status == 1)
        #expect(
            readOnly.error.contains("/proc/R.json") && readOnly.error.contains("cannot be written"), "\(readOnly.error)"
        )
        #expect(!readOnly.output.contains("evaluating"), "refused before any work")
        let missing = directory + "/missing"
        let table = try QMambaExecutable.run([
            "table", "--checkpoint", Self.demoModel, "--calib", Self.demoImages, "--val", Self.demoImages,
            "--settings", "W8A8", "--methods", "minmax", "--output", directory + "/table",
            "--save-calibrations", missing,
        ])
        #expect(table.status == 1)
        #expect(table.error.contains("\(missing)/minmax-W8A8.json: the directory"), "\(table.error)")
        #expect(!table.output.contains("calibrating"), "refused before any work")

        // A file-size limit makes the write fail part-way, as a full disk does.
        let big = directory + "/big.npy"
        let tooLarge = try QMambaExecutable.runProcess(
            "/bin/sh",
            [
                "-c", "ulimit -f 8; exec \"$0\" preprocess --image \"$1\" --output \"$2\" --input-size 224",
                QMambaExecutable.path, Fixtures.bundled("photos/chelsea.jpg"), big,
            ])
        #expect(tooLarge.status == 1, "\(tooLarge.error)")
        #expect(tooLarge.error.contains(big), "\(tooLarge.error)")
        let left = try FileManager.default.contentsOfDirectory(atPath: directory)
        #expect(!left.contains("big.npy") && !left.contains { $0.hasSuffix(".partial") }, "\(left)")
    }
}

extension ReliabilityTests {
    @Test("a full file system: refused before work when the result cannot fit, and a write cut short leaves nothing")
    func fullDisk() throws {
        let mountPoint = Fixtures.temporaryDirectory() + "/small"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: false)
        let mounted = try QMambaExecutable.runProcess(
            "/bin/mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", mountPoint])
        guard mounted.status == 0 else {
            print(
                "SKIPPED: cannot mount a 2 MiB tmpfs here (\(mounted.error.trimmingCharacters(in: .newlines))); full-disk test did not run"
            )
            return
        }
        defer { _ = try? QMambaExecutable.runProcess("/bin/umount", [mountPoint]) }
        // Leave about 300 KiB free.
        try Data(count: 2 * 1024 * 1024 - 300 * 1024).write(to: URL(fileURLWithPath: mountPoint + "/filler"))

        let refused = try QMambaExecutable.run([
            "forward", "--checkpoint", Fixtures.bundled("vim-official/vim_micro.pth"), "--input",
            Fixtures.bundled("vim-official/vim_micro_input.npy"), "--output", mountPoint + "/logits.npy",
        ])
        #expect(refused.status == 1)
        #expect(refused.error.contains("MiB free"), "\(refused.error)")

        let cut = try QMambaExecutable.run([
            "preprocess", "--image", Fixtures.bundled("photos/chelsea.jpg"), "--output", mountPoint + "/big.npy",
        ])
        #expect(cut.status == 1)
        #expect(cut.error.contains("No space left on device"), "\(cut.error)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: mountPoint) == ["filler"])
    }
}

/// A value shared between the test and the thread that injects the fault.
final class LockedValue<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value

    init(_ value: Value) { stored = value }

    var value: Value {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}
