import CIntrinsics

/// Equal bins over [lower, upper], and the counting of values into them.
///
/// The bin of v is ⌊(v − lower) · s⌋ in single precision, with s = bins / (upper − lower) rounded to
/// single precision, clamped to 0 … bins − 1, with NaN in bin 0. Histograms of calibration and the
/// scan's counting kernel both bin through this type, so a value lands in the same bin whichever path
/// counted it.
///
/// Single precision moves a value into the neighbouring bin only within a few 10⁻⁴ of a bin's width
/// of an edge (2048 bins), where no fitted quantizer can tell. (v − lower) overflows to +∞, and so
/// into the last bin, only on grids spanning more than the largest float. The double-precision definition it
/// replaced widened every value, and that arithmetic was a third of the time of counting
/// (0.87 → 0.56 ns per value; Docs/PERFORMANCE.md, sixth session).
public struct BinGrid: Sendable, Equatable {
    /// Left edge of the first bin.
    public let lower: Float
    /// Right edge of the last bin.
    public let upper: Float
    /// Number of bins.
    public let bins: Int
    private let scale: Float
    /// The position of the last bin, bins − 1, where positions are clamped.
    private let lastPosition: Float

    /// The grid of `bins` equal bins over [lower, upper]; at most 2²² bins.
    public init(lower: Float, upper: Float, bins: Int) {
        precondition(bins > 0 && bins <= 1 << 22)
        self.lower = lower
        self.upper = upper
        self.bins = bins
        scale = Float(Double(bins) / (Double(upper) - Double(lower)))
        lastPosition = Float(bins - 1)
    }

    /// The bin of `value`.
    public func bin(_ value: Float) -> Int { Int(binIndices(Lanes(repeating: value))[0]) }

    /// Adds one to `counts[bin]` for every element of `values`.
    ///
    /// The bins of sixteen registers are computed first and the counters incremented after, reading the
    /// bins back from memory: taking them out of the registers lane by lane cost more than the loads
    /// (0.87 against 1.09 ns per value).
    public func count(_ values: UnsafeBufferPointer<Float>, into counts: UnsafeMutableBufferPointer<Int64>) {
        precondition(counts.count == bins)
        let (source, counters) = (values.baseAddress!, counts.baseAddress!)
        let blockCount = 16
        let blocked = values.count / (8 * blockCount) * (8 * blockCount)
        withUnsafeTemporaryAllocation(of: SIMD8<UInt32>.self, capacity: blockCount) { block in
            for start in stride(from: 0, to: blocked, by: 8 * blockCount) {
                for r in 0..<blockCount { block[r] = binIndices(loadLanes(source + start + r * 8)) }
                for r in 0..<blockCount { Self.increment(counters, bins: block[r]) }
            }
        }
        forEachLanes(count: values.count - blocked) { i, width in
            increment(counters, lanes: loadPartial(source + blocked + i, width), width: width)
        }
    }

    /// Adds one to the count of each of the first `width` lanes of `values`.
    ///
    /// Four interleaved copies of the counters, so that runs of equal values (Ā piles up just below 1)
    /// would not wait on the previous store to the same counter, made no measurable difference to
    /// counting whole tensors here (the scan's counting alternates two copies, `increment(_:alternate:bins:)`).
    @_transparent func increment(_ counts: UnsafeMutablePointer<Int64>, lanes values: Lanes, width: Int) {
        Self.increment(counts, bins: binIndices(values), width: width)
    }

    /// Adds one to the count of each of the first `width` of eight bins (from `binIndices`, of any grid
    /// with these counters). The eight lanes are unrolled: taken out of the register in a loop over a
    /// variable width, they were stored and reloaded one by one.
    @_transparent static func increment(
        _ counts: UnsafeMutablePointer<Int64>, bins indices: SIMD8<UInt32>, width: Int = 8
    ) {
        if width == 8 {
            increment(counts, alternate: counts, bins: indices)
        } else {
            for j in 0..<width { counts[Int(truncatingIfNeeded: indices[j])] &+= 1 }
        }
    }

    /// Adds one to the count of each of eight bins, the even lanes' in `counts` and the odd lanes' in
    /// `alternate` (a second copy of the counters, or the same).
    ///
    /// Neighbouring channels often share a bin (h piles up around 0 in its steps' histograms: the
    /// fullest of 256 bins holds 29 % of Vim-T's values), and an increment of the counter that the
    /// previous one has just stored waits for that store; alternating two copies halves those waits
    /// (Vim-T histogram pass at K = 1: 5.28–5.55 → 5.81–5.97 images/s; four copies did no better).
    @_transparent static func increment(
        _ counts: UnsafeMutablePointer<Int64>, alternate: UnsafeMutablePointer<Int64>, bins indices: SIMD8<UInt32>
    ) {
        // Two bins per 64-bit load, since each increment also loads its counter (harness at K = 1:
        // histogram observers 30.1–30.8 → 29.0–29.4 ms).
        let pairs = unsafeBitCast(indices, to: SIMD4<UInt64>.self)
        for j in 0..<4 {
            let pair = pairs[j]
            counts[Int(truncatingIfNeeded: pair & 0xFFFF_FFFF)] &+= 1
            alternate[Int(truncatingIfNeeded: pair &>> 32)] &+= 1
        }
    }

    /// The bins of eight values: the position clamped with x86's min and max and truncated, five
    /// instructions where Swift's comparisons, blends and a floor on the mantissa bits took nine
    /// (Vim-T histogram pass 5.34 → 5.60 images/s, Docs/PERFORMANCE.md).
    @_transparent func binIndices(_ values: Lanes) -> SIMD8<UInt32> {
        cintrinsics_clamped_floor((values - Lanes(repeating: lower)) * scale, lastPosition)
    }
}
