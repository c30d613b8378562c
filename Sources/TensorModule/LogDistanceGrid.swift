import Foundation

/// Bins of Ā's distance below 1 in octaves, u = −log2(1 − Ā) (LtSQ's coordinate), at 64 bins per
/// octave from u = 0: bin i holds u in [i/64, (i + 1)/64).
///
/// The bin of Ā is ⌊64·u⌋ for the exact u of the single-precision gap g = 1 − Ā (the float the model's
/// arithmetic gives), clamped to the grid; g ≤ 0 (Ā ≥ 1) goes to the last bin and NaN to bin 0, as in
/// `BinGrid`. It is read from g's bits, not from a rounded logarithm. With g = 2^E·m and m in [1, 2),
/// ⌊64·u⌋ = −64·E − ⌈64·log2 m⌉, and ⌈64·log2 m⌉ is the number of thresholds 2^(j/64) (j = 0 … 63)
/// that m exceeds. The thresholds are at least 0.0109 apart, so each of the 128 slices of [1, 2) that
/// the mantissa's top seven bits name holds at most one of them: one table entry and one comparison of
/// the remaining bits give the count.
///
/// The single-precision logarithm it replaces took 1.36 ns per value against 0.56 (binning alone,
/// Docs/PERFORMANCE.md), and a value within about 2 ulp of a bin edge could land in either bin.
public struct LogDistanceGrid: Sendable, Equatable {
    /// Bins per octave of u.
    public static let binsPerOctave = 64
    /// Octaves the grid spans, from u = 0.
    public let octaves: Int

    /// The grid over u in [0, `octaves`]; 1 … 64 octaves (single-precision gaps below 1 reach u = 24,
    /// and subnormal ones about 149).
    public init(octaves: Int) {
        precondition((1...64).contains(octaves))
        self.octaves = octaves
    }

    /// Number of bins.
    public var bins: Int { octaves * Self.binsPerOctave }

    /// The largest u the grid spans.
    public var upper: Float { Float(octaves) }

    /// The bin of Ā's distance below 1.
    public func bin(_ discreteA: Float) -> Int {
        Self.withSlices { Int(binIndices(Lanes(repeating: discreteA), slices: $0)[0]) }
    }

    /// Adds one to `counts[bin]` for the distance below 1 of every element of `values`.
    public func count(_ values: UnsafeBufferPointer<Float>, into counts: UnsafeMutableBufferPointer<Int64>) {
        precondition(counts.count == bins)
        Self.withSlices { slices in
            forEachLanes(count: values.count) { i, width in
                let lanes = loadPartial(values.baseAddress! + i, width)
                BinGrid.increment(counts.baseAddress!, bins: binIndices(lanes, slices: slices), width: width)
            }
        }
    }

    /// The table the vectorised kernels read (`binIndices(_:slices:)`), for `body`.
    static func withSlices<R>(_ body: (UnsafePointer<UInt32>) -> R) -> R {
        octaveSlices.withUnsafeBufferPointer { body($0.baseAddress!) }
    }

    /// The bins of eight Ā, with `slices` from `withSlices`.
    ///
    /// The entries are taken out of the table lane by lane: AVX2's gather was no faster (0.62 against
    /// 0.56 ns per value).
    @_transparent func binIndices(_ discreteA: Lanes, slices: UnsafePointer<UInt32>) -> SIMD8<UInt32> {
        let gap = 1 - discreteA
        let bits = unsafeBitCast(gap, to: SIMD8<Int32>.self)
        let slice = (bits &>> 16) & 0x7F
        var entry = SIMD8<Int32>.zero
        for lane in 0..<8 { entry[lane] = Int32(bitPattern: slices[Int(slice[lane])]) }
        var exceeded = entry &>> 17
        exceeded.replace(with: exceeded &+ 1, where: (bits & 0xFFFF) .>= (entry & 0x1_FFFF))
        // A NaN's exponent field (255, whatever its sign) makes the bin negative, so it lands in bin 0.
        let exponent = (bits &>> 23) & 0xFF
        var bin = (127 &* Int32(Self.binsPerOctave)) &- (exponent &<< 6) &- exceeded
        let last = SIMD8<Int32>(repeating: Int32(bins - 1))
        bin = pointwiseMax(pointwiseMin(bin, last), .zero)
        bin.replace(with: last, where: gap .<= 0)
        return unsafeBitCast(bin, to: SIMD8<UInt32>.self)
    }
}

/// Per slice k of [1, 2) (mantissas k·2^16 … (k + 1)·2^16 − 1): the number of thresholds below the
/// slice, shifted left by 17, or'ed with the offset in the slice of the threshold inside it (2^16 when
/// none). A threshold here is the smallest 23-bit mantissa M with 1 + M·2^−23 > 2^(j/64). Each 2^(j/64)
/// lies at least 0.004 of a mantissa step from the nearest one, so its double-precision value decides
/// that comparison correctly (a test checks the margin).
private let octaveSlices: [UInt32] = {
    let thresholds = LogDistanceGrid.mantissaThresholds
    return (0..<128).map { slice in
        let start = slice << 16
        let below = thresholds.filter { $0 < start }.count
        let inside = thresholds.first { $0 >= start && $0 < start + (1 << 16) }
        return UInt32(below << 17 | (inside.map { $0 - start } ?? 1 << 16))
    }
}()

extension LogDistanceGrid {
    /// For j = 0 … 63, the smallest 23-bit mantissa M with 1 + M·2^−23 > 2^(j/64).
    static var mantissaThresholds: [Int] {
        (0..<binsPerOctave).map { j in
            let threshold = exp2(Double(j) / Double(binsPerOctave))
            return Int(((threshold - 1) * 0x80_0000).rounded(.down)) + 1
        }
    }
}
