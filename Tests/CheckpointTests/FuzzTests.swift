import Foundation
import TensorModule
import TestSupport
import Testing

@testable import Checkpoint

/// Mutation fuzzing of every weight-file reader. Each case must load or be refused with a
/// `CheckpointError` that names the file; a crash ends the test process, a hang fails the case.
/// `QMAMBA_FUZZ_CASES` raises the count for the long run (`launch/fuzz.sh`).
@Suite("Fuzzed weight files")
struct FuzzTests {
    static let micro = Fixtures.bundled("vim-official/vim_micro.pth")

    /// Opens a file as the tool does and reads every tensor in it.
    static func readEverything(_ path: String) throws {
        let source = try CheckpointFile.open(path)
        for name in source.tensorNames { _ = try source.tensor(named: name) }
    }

    static func namesFile(_ path: String) -> (Error) -> Bool {
        { error in error is CheckpointError && "\(error)".contains(path) }
    }

    /// Mutates `original`, writes it to `path` and reads it as the tool would.
    static func fuzzFile(
        _ original: [UInt8], cases: Int, seed: UInt64, path: String, tally: inout FuzzTally,
        focus: (inout Mutator) -> Range<Int>? = { _ in nil }
    ) throws {
        var mutator = Mutator(seed: seed)
        for index in 0..<cases {
            let region = focus(&mutator)
            let bytes = mutator.mutate(original, focus: region)
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            tally.run("case \(index) (seed \(seed))", { try readEverything(path) }, expected: namesFile(path))
        }
    }

    @Test("mutated .pth files, raw and with their zip rebuilt around a mutated pickle, load or are refused")
    func mutatedCheckpoints() throws {
        let cases = FuzzTally.caseCount(standard: 4000)
        let original = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Self.micro)))
        let archive = try ZipArchive(path: Self.micro)
        let pickleEntry = archive.entries.first { $0.name.hasSuffix("data.pkl") }!
        let pickle = [UInt8](try archive.contents(of: pickleEntry))
        let pickleStart = original.firstRange(of: pickle)!.lowerBound
        let directoryStart = original.count - 22 - 46 * archive.entries.count
        let path = Fixtures.temporaryDirectory() + "/fuzzed.pth"
        var tally = FuzzTally()

        // Raw mutations: half land in the pickle or the central directory, where structure is.
        try Self.fuzzFile(original, cases: cases / 3, seed: 1, path: path, tally: &tally) { mutator in
            switch mutator.below(3) {
            case 0: return pickleStart..<(pickleStart + pickle.count)
            case 1: return max(0, directoryStart - 4096)..<original.count
            default: return nil
            }
        }

        // Rebuilt archives with valid CRCs, so mutated pickles reach the interpreter and the views.
        var mutator = Mutator(seed: 2)
        for index in 0..<(cases - cases / 3) {
            var zip = ZipWriter()
            for entry in archive.entries {
                let contents = try archive.contents(of: entry)
                zip.add(entry.name, entry.name == pickleEntry.name ? Data(mutator.mutate(pickle)) : contents)
            }
            try zip.data.write(to: URL(fileURLWithPath: path))
            tally.run("rebuilt case \(index)", { try Self.readEverything(path) }, expected: Self.namesFile(path))
        }
        print(tally.summary(".pth"))
        #expect(tally.failures == [])
        #expect(tally.refused > 0 && tally.accepted > 0)
    }

    @Test("mutated safetensors and .npy files load or are refused")
    func mutatedArrayFiles() throws {
        let cases = FuzzTally.caseCount(standard: 1000)
        let directory = Fixtures.temporaryDirectory()
        let safetensors = directory + "/valid.safetensors"
        try SafetensorsFile.write(
            [
                ("a", Tensor(shape: [3, 4], scalars: (0..<12).map(Float.init))),
                ("b", Tensor(shape: [5], scalars: [1, 2, 3, 4, 5])),
            ],
            metadata: ["format": "pt"], to: safetensors)
        let original = [UInt8](try Data(contentsOf: URL(fileURLWithPath: safetensors)))
        let headerLength = 8 + Int(original[0]) + Int(original[1]) << 8
        var tally = FuzzTally()
        try Self.fuzzFile(
            original, cases: cases / 2, seed: 3, path: directory + "/fuzzed.safetensors", tally: &tally
        ) { _ in 0..<headerLength }

        let npy = [UInt8](
            try Data(contentsOf: URL(fileURLWithPath: Fixtures.bundled("vim-official/vim_micro_logits.npy"))))
        var mutator = Mutator(seed: 4)
        let npyPath = directory + "/fuzzed.npy"
        for index in 0..<(cases - cases / 2) {
            let bytes = Data(mutator.mutate(npy, focus: 0..<128))
            tally.run(
                "npy case \(index)", { _ = try NumPyArray(data: bytes, path: npyPath) },
                expected: Self.namesFile(npyPath))
        }
        print(tally.summary("safetensors and .npy"))
        #expect(tally.failures == [])
        #expect(tally.refused > 0 && tally.accepted > 0)
    }

    /// Opcodes with well-formed arguments, so random streams get past argument decoding and
    /// stress the stack, memo and container rules instead.
    static func randomPickle(_ mutator: inout Mutator) -> [UInt8] {
        var builder = PickleBuilder()
        for _ in 0..<(1 + mutator.below(300)) {
            switch mutator.below(22) {
            case 0: builder.mark()
            case 1: builder.emptyDict()
            case 2: builder.emptyTuple()
            case 3: builder.tuple()
            case 4: builder.setItems()
            case 5: builder.setItem()
            case 6: builder.reduce()
            case 7: builder.build()
            case 8: builder.persistentId()
            case 9: builder.none()
            case 10: builder.string(["storage", "model", "cpu", "0", "weight"][mutator.below(5)])
            case 11: builder.int(mutator.below(3) == 0 ? -1 : mutator.below(100))
            case 12: builder.global("torch._utils", "_rebuild_tensor_v2")
            case 13: builder.global("torch", "FloatStorage")
            case 14: builder.global("collections", "OrderedDict")
            case 15: builder.raw([[0x5D, 0x61, 0x65, 0x85, 0x86, 0x87, 0x32, 0x30, 0x94][mutator.below(9)]])
            case 16: builder.raw([0x71, UInt8(mutator.below(4))])  // BINPUT
            case 17: builder.raw([0x68, UInt8(mutator.below(4))])  // BINGET
            case 18: builder.raw([0x81])  // NEWOBJ
            case 19: builder.raw([0x8B] + [0x04, 0, 0, 0] + (0..<4).map { _ in mutator.byte() })  // LONG4
            case 20: builder.raw([0x31])  // POP_MARK
            default: builder.raw([mutator.byte()])
            }
        }
        builder.stop()
        return builder.bytes
    }

    /// Visits a value's children, to show every accepted value can be walked; the budget stops a
    /// shared-subtree blow-up without failing.
    static func walk(_ value: PickleValue, budget: inout Int) {
        guard budget > 0 else { return }
        budget -= 1
        switch value {
        case .tuple(let items): for item in items { walk(item, budget: &budget) }
        case .list(let list): for item in list.items { walk(item, budget: &budget) }
        case .dict(let dict):
            for (key, item) in dict.entries {
                walk(key, budget: &budget)
                walk(item, budget: &budget)
            }
        case .object(let object):
            for item in object.arguments { walk(item, budget: &budget) }
            if let state = object.state { walk(state, budget: &budget) }
        default: break
        }
    }

    @Test("random opcode streams are interpreted or refused, and what is accepted can be walked")
    func randomPickles() {
        let cases = FuzzTally.caseCount(standard: 4000)
        var mutator = Mutator(seed: 5)
        var tally = FuzzTally()
        for index in 0..<cases {
            let pickle = Self.randomPickle(&mutator)
            tally.run(
                "pickle \(index)",
                {
                    var budget = 100_000
                    Self.walk(try interpret(pickle), budget: &budget)
                }, expected: { $0 is CheckpointError && "\($0)".contains("test.pkl") })
        }
        print(tally.summary("random pickles"))
        #expect(tally.failures == [])
        #expect(tally.refused > 0 && tally.accepted > 0)
    }

    /// Hostile streams by name (the test log prints arguments, so the megabytes stay out of them),
    /// each with the words its refusal must contain.
    static let hostilePickles: [String: (bytes: () -> [UInt8], reason: String)] = [
        "a million nested tuples": (
            { [0x80, 0x02, 0x29] + [UInt8](repeating: 0x85, count: 1_000_000) + [0x2E] }, "nested"
        ),
        "a list appended to itself": ({ [0x80, 0x02, 0x5D, 0x32, 0x61, 0x2E] }, "changes after"),
        "a dict filled after it was nested": (
            { [0x80, 0x02, 0x7D, 0x32, 0x85, 0x30, 0x4E, 0x4E, 0x73, 0x2E] }, "changes after"
        ),
        "a 64 MiB integer": (
            { [0x80, 0x02, 0x8B, 0x00, 0x00, 0x00, 0x04] + [UInt8](repeating: 1, count: 1 << 26) + [0x2E] }, "wider"
        ),
        "a string longer than the stream": (
            { [0x80, 0x02, 0x58, 0xFF, 0xFF, 0xFF, 0x7F, 0x41, 0x2E] }, "past the end"
        ),
    ]

    @Test("hostile pickles are refused with the reason", arguments: hostilePickles.keys.sorted())
    func hostilePickle(_ name: String) {
        let (bytes, reason) = Self.hostilePickles[name]!
        #expect {
            try interpret(bytes())
        } throws: { error in
            error is CheckpointError && "\(error)".contains(reason)
        }
    }

    @Test("a value shared at every level of a deep chain is accepted: sharing is not nesting")
    func sharedSubtrees() throws {
        // t = (); then 90 times t = (t, t): 2^90 leaves if expanded, 91 values as built.
        let pickle: [UInt8] = [0x80, 0x02, 0x29] + (0..<90).flatMap { _ -> [UInt8] in [0x32, 0x86] } + [0x2E]
        guard case .tuple(let pair) = try interpret(pickle) else {
            Issue.record("the result is not a tuple")
            return
        }
        #expect(pair.count == 2)
    }
}
