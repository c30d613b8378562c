import Foundation
import TensorModule

/// Deterministic byte-level mutations of a valid file, as a fuzzer makes them.
public struct Mutator {
    private var generator: SplitMix64

    /// A mutator whose stream is fixed by `seed` plus `QMAMBA_FUZZ_SEED` (0 unless set), so the
    /// long run can explore new cases while CI repeats the same ones.
    public init(seed: UInt64) {
        let offset = ProcessInfo.processInfo.environment["QMAMBA_FUZZ_SEED"].flatMap(UInt64.init) ?? 0
        generator = SplitMix64(seed: seed &+ offset &* 1000)
    }

    /// A uniformly chosen integer in `0..<bound` (bound > 0).
    public mutating func below(_ bound: Int) -> Int { Int(generator.next() % UInt64(bound)) }

    /// A random byte.
    public mutating func byte() -> UInt8 { UInt8(truncatingIfNeeded: generator.next()) }

    /// Little-endian 32-bit values that sit on boundaries sizes and offsets are checked against.
    private static let boundaryWords: [UInt32] = [
        0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF,
    ]

    /// Applies one to four mutations; positions fall inside `focus` when it is given and non-empty.
    public mutating func mutate(_ original: [UInt8], focus: Range<Int>? = nil) -> [UInt8] {
        var bytes = original
        for _ in 0..<(1 + below(4)) {
            guard !bytes.isEmpty else { break }
            let region = focus.map { $0.clamped(to: 0..<bytes.count) } ?? (0..<bytes.count)
            let span = region.isEmpty ? 0..<bytes.count : region
            let at = span.lowerBound + below(span.count)
            switch below(7) {
            case 0: bytes[at] ^= 1 << UInt8(below(8))
            case 1: bytes[at] = [0, 1, 0x7F, 0x80, 0xFF, byte()][below(6)]
            case 2:
                let word = Self.boundaryWords[below(Self.boundaryWords.count)]
                for k in 0..<min(4, bytes.count - at) {
                    bytes[at + k] = UInt8(truncatingIfNeeded: word >> (8 * UInt32(k)))
                }
            case 3: bytes.removeSubrange(at...)
            case 4: bytes.removeSubrange(at..<min(bytes.count, at + 1 + below(64)))
            case 5:
                let end = min(bytes.count, at + 1 + below(256))
                let slice = bytes[at..<end]
                bytes.insert(contentsOf: slice, at: below(bytes.count + 1))
            default: bytes.insert(contentsOf: (0..<(1 + below(16))).map { _ in byte() }, at: at)
            }
        }
        return bytes
    }
}

/// Runs fuzz cases and tallies their outcomes: accepted, refused with an expected error, or
/// anything else (an unexpected error type, or a case too slow to be anything but a hang).
public struct FuzzTally {
    public private(set) var cases = 0
    public private(set) var accepted = 0
    public private(set) var refused = 0
    public private(set) var failures: [String] = []
    public private(set) var slowestSeconds = 0.0
    private let slowLimitSeconds: Double

    public init(slowLimitSeconds: Double = 10) { self.slowLimitSeconds = slowLimitSeconds }

    /// How many cases to run: `QMAMBA_FUZZ_CASES` when set (the long run), else `standard`.
    public static func caseCount(standard: Int) -> Int {
        ProcessInfo.processInfo.environment["QMAMBA_FUZZ_CASES"].flatMap(Int.init) ?? standard
    }

    public mutating func run(_ label: String, _ body: () throws -> Void, expected: (Error) -> Bool) {
        cases += 1
        let start = DispatchTime.now().uptimeNanoseconds
        do {
            try body()
            accepted += 1
        } catch {
            if expected(error) {
                refused += 1
            } else {
                failures.append("\(label): unexpected \(type(of: error)): \(error)")
            }
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        slowestSeconds = max(slowestSeconds, seconds)
        if seconds > slowLimitSeconds { failures.append("\(label): took \(seconds) s") }
    }

    /// One line for the test log: counts, slowest case and the process's peak memory.
    public func summary(_ title: String) -> String {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return "fuzz \(title): \(cases) cases, \(accepted) accepted, \(refused) refused with a clear error, "
            + "\(failures.count) failures; slowest case \(String(format: "%.3f", slowestSeconds)) s; "
            + "peak memory of the test process \(usage.ru_maxrss / 1024) MiB"
    }
}
