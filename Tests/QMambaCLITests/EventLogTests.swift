import Foundation
import TestSupport
import Testing

@Suite("--log-json")
struct EventLogTests {
    /// The log's lines, each parsed as a JSON object.
    static func events(_ path: String) throws -> [[String: Any]] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        return try text.split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
    }

    @Test("an evaluation on 2 ranks logs start, progress, its result and end, one object per line, from rank 0")
    func evaluationEvents() throws {
        let directory = Fixtures.temporaryDirectory()
        let log = directory + "/log.jsonl"
        guard
            let result = try QMambaExecutable.runMPI(
                ranks: 2,
                [
                    "evaluate", "--checkpoint",
                    Fixtures.repositoryRoot.appendingPathComponent("demo/vim_digits.pth").path,
                    "--data", Fixtures.repositoryRoot.appendingPathComponent("demo/data/val").path, "--log-json", log,
                ])
        else { return }
        #expect(result.status == 0, "\(result.error)")
        let events = try Self.events(log)
        let names = events.map { $0["event"] as! String }
        #expect(names.first == "start" && names.last == "end", "\(names)")
        #expect(names.filter { $0 == "start" }.count == 1, "only rank 0 logs")
        #expect(names.contains("progress"))
        let evaluation = try #require(
            events.first { $0["event"] as? String == "result" }?["evaluation"] as? [String: Any])
        #expect(evaluation["top1_correct"] as? Int == 483)
        #expect(
            events.allSatisfy {
                $0["command"] as? String == "evaluate" && $0["ranks"] as? Int == 2 && $0["time"] != nil
            })
        #expect(!result.output.contains("{\""), "human output stays free of JSON")
    }

    @Test("every command accepts it; a failure is logged with its message")
    func everyCommand() throws {
        let directory = Fixtures.temporaryDirectory()
        let log = directory + "/log.jsonl"
        #expect(try QMambaExecutable.run(["models", "--log-json", log]).status == 0)
        let failed = try QMambaExecutable.run(["inspect", "--checkpoint", directory + "/absent.pth", "--log-json", log])
        #expect(failed.status == 1)
        let events = try Self.events(log)
        #expect(events.map { $0["command"] as! String }.contains("models"))
        let error = try #require(events.last)
        #expect(error["event"] as? String == "error" && (error["message"] as? String ?? "").contains("absent.pth"))
        #expect(try QMambaExecutable.run(["help", "calibrate"]).output.contains("--log-json"))
    }
}
