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
        Int(binIndices(Lanes(repeating: discreteA), slices: Self.slices)[0])
    }

    /// Adds one to `counts[bin]` for the distance below 1 of every element of `values`.
    public func count(_ values: UnsafeBufferPointer<Float>, into counts: UnsafeMutableBufferPointer<Int64>) {
        precondition(counts.count == bins)
        let slices = Self.slices
        forEachLanes(count: values.count) { i, width in
            let lanes = loadPartial(values.baseAddress! + i, width)
            BinGrid.increment(counts.baseAddress!, bins: binIndices(lanes, slices: slices), width: width)
        }
    }

    /// The table `binIndices(_:slices:)` reads (allocated once, never freed).
    static let slices: UnsafePointer<UInt32> = {
        let table = UnsafeMutablePointer<UInt32>.allocate(capacity: octaveSlices.count)
        table.initialize(from: octaveSlices, count: octaveSlices.count)
        return UnsafePointer(table)
    }()

    /// The bins of eight Ā, with `slices` the table `slices` (held by the caller, so that a loop reads
    /// it without a check that it was made).
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
        // Blends with vectors on both sides: `pointwiseMin`/`pointwiseMax` stayed calls into the standard
        // library, and comparing with a scalar 0 built the mask lane by lane (harness K = 1: 32 → 93 ms).
        let zero = SIMD8<Int32>.zero
        bin.replace(with: last, where: bin .> last)
        bin.replace(with: last, where: gap .<= 0)
        bin.replace(with: zero, where: bin .< zero)
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

extension LogDistanceGrid {
    /// For every bin j, the smallest Ā whose bin is j or above (−∞ for bin 0): where the bins change.
    ///
    /// Each edge is found from 1 − 2^(−j/64) in double precision and then moved float by float until
    /// the grid's own bins change there, so the edges are exact whatever the rounding of 1 − Ā.
    func lowerEdges() -> [Float] {
        (0..<bins).map { j in
            guard j > 0 else { return -.infinity }
            func reaches(_ discreteA: Float) -> Bool { bin(discreteA) >= j }
            var edge = Float(1 - exp2(-Double(j) / Double(Self.binsPerOctave)))
            if reaches(edge) {
                while reaches(edge.nextDown) { edge = edge.nextDown }
            } else {
                repeat { edge = edge.nextUp } while !reaches(edge)
            }
            return edge
        }
    }
}

/// Counts of Ā on a value grid and on the log-distance grid kept as one count per cell of the two
/// grids' common refinement, so that the histogram pass increments one counter per Ā instead of two.
///
/// Both bins are non-decreasing functions of Ā, and NaN is in bin 0 of both, as the lowest Ā is. So the
/// sum of Ā's two bins names its cell: as Ā grows, the sum stays the same only while neither bin
/// changes. The scan counts that sum (4095 counters for two grids of 2048 bins), and `split` gives both
/// histograms back exactly.
struct DiscreteARefinement {
    /// Per cell (the sum of the two bins): the bin on the value grid, and on the log-distance grid; −1
    /// for a sum no Ā has.
    private var valueBins: [Int]
    private var logDistanceBins: [Int]

    /// The counters a refinement of grids of these numbers of bins needs: one per sum of two bins.
    static func cells(valueBins: Int, logDistanceBins: Int) -> Int { valueBins + logDistanceBins - 1 }

    /// The cells of `values` refined by the log-distance grid whose `lowerEdges()` are `edges`.
    init(values: BinGrid, logDistanceEdges edges: [Float]) {
        valueBins = [Int](repeating: -1, count: Self.cells(valueBins: values.bins, logDistanceBins: edges.count))
        logDistanceBins = valueBins
        // Log-distance bin j holds the Ā in [edges[j], edges[j + 1]), and the value bins of those Ā
        // run from that of the first to that of the last.
        for j in edges.indices {
            let end = j + 1 < edges.count ? edges[j + 1] : nil
            if let end, end == edges[j] { continue }
            let lastValue = end?.nextDown ?? .infinity
            for valueBin in values.bin(edges[j])...values.bin(lastValue) {
                valueBins[valueBin + j] = valueBin
                logDistanceBins[valueBin + j] = j
            }
        }
    }

    /// Adds the counts of `cells.count` cells to the value histogram and the log-distance histogram.
    func split(
        _ cells: UnsafeBufferPointer<Int64>, intoValues values: inout [Int64], logDistances: inout [Int64]
    ) {
        for (cell, count) in cells.enumerated() where count != 0 {
            guard valueBins[cell] >= 0 else {
                fatalError("Ā was counted in cell \(cell), which no Ā reaches: a bug in DiscreteARefinement")
            }
            values[valueBins[cell]] += count
            logDistances[logDistanceBins[cell]] += count
        }
    }
}
