/// Equal bins over [lower, upper], and the counting of values into them.
///
/// The bin of v is ⌊(v − lower) · bins / (upper − lower)⌋ computed in double precision, clamped to
/// 0 … bins − 1, with NaN in bin 0. Histograms of calibration and the scan's counting kernel both
/// bin through this type, so a value lands in the same bin whichever path counted it.
public struct BinGrid: Sendable, Equatable {
    /// Left edge of the first bin.
    public let lower: Float
    /// Right edge of the last bin.
    public let upper: Float
    /// Number of bins.
    public let bins: Int
    private let scale: Double
    /// The scale in single precision when lower is 0 and the scale a power of two, as on LtSQ's
    /// log-distance grid: v · scale is then exact in single precision as in double, and so is the bin.
    private let exactSingleScale: Float?

    /// The grid of `bins` equal bins over [lower, upper].
    public init(lower: Float, upper: Float, bins: Int) {
        precondition(bins > 0 && bins < 1 << 32)
        self.lower = lower
        self.upper = upper
        self.bins = bins
        scale = Double(bins) / (Double(upper) - Double(lower))
        let single = Float(scale)
        let isPowerOfTwo = single.isNormal && single.significandBitPattern == 0 && Double(single) == scale
        exactSingleScale = lower == 0 && isPowerOfTwo && bins <= 1 << 22 ? single : nil
    }

    /// Adds one to `counts[bin]` for every element of `values`.
    public func count(_ values: UnsafeBufferPointer<Float>, into counts: UnsafeMutableBufferPointer<Int64>) {
        precondition(counts.count == bins)
        forEachLanes(count: values.count) { i, width in
            increment(counts.baseAddress!, lanes: loadPartial(values.baseAddress! + i, width), width: width)
        }
    }

    /// Adds one to the count of each of the first `width` lanes of `values`.
    ///
    /// Four interleaved copies of the counters, so that runs of equal values (Ā piles up just below 1)
    /// do not wait on the previous store to the same counter, made no measurable difference. On general
    /// grids, a single-precision bin with a double-precision fallback near bin edges was slower.
    @_transparent func increment(_ counts: UnsafeMutablePointer<Int64>, lanes values: Lanes, width: Int) {
        if let exactSingleScale {
            // Products with a power of two round only on overflow (to +∞, the last bin either way) or
            // in the subnormal range (positions below 1, bin 0 either way).
            let last = Lanes(repeating: Float(bins - 1))
            var position = values * exactSingleScale
            position = position.replacing(with: 0, where: .!(position .>= 0))
            position = position.replacing(with: last, where: position .> last)
            // ⌊position⌋ + 2^23 holds the bin in its low mantissa bits (bins ≤ 2^22).
            let biased = unsafeBitCast(position.rounded(.down) + 8_388_608, to: SIMD8<UInt32>.self)
            let indices = biased & 0x7F_FFFF
            for j in 0..<width { counts[Int(truncatingIfNeeded: indices[j])] &+= 1 }
            return
        }
        // Halves and widening written lane by lane: the generic `lowHalf` and `SIMD4<Double>(_:)` stayed
        // calls in the kernel (a tenth of the histogram pass).
        let low = binIndices(SIMD4(Double(values[0]), Double(values[1]), Double(values[2]), Double(values[3])))
        let high = binIndices(SIMD4(Double(values[4]), Double(values[5]), Double(values[6]), Double(values[7])))
        if width == 8 {
            for j in 0..<4 { counts[Int(truncatingIfNeeded: low[j])] &+= 1 }
            for j in 0..<4 { counts[Int(truncatingIfNeeded: high[j])] &+= 1 }
        } else {
            for j in 0..<width { counts[Int(truncatingIfNeeded: j < 4 ? low[j] : high[j - 4])] &+= 1 }
        }
    }

    /// The bins of four values (widened to double); the integer is read from the low mantissa bits of
    /// ⌊position⌋ + 2^52 rather than converted lane by lane.
    @_transparent func binIndices(_ values: SIMD4<Double>) -> SIMD4<UInt64> {
        typealias Positions = SIMD4<Double>
        let last = Positions(repeating: Double(bins - 1))
        var position = (values - Positions(repeating: Double(lower))) * scale
        position = position.replacing(with: 0, where: .!(position .>= 0))
        position = position.replacing(with: last, where: position .> last)
        let biased = unsafeBitCast(position.rounded(.down) + 4_503_599_627_370_496, to: SIMD4<UInt64>.self)
        return biased & 0xFFFF_FFFF
    }
}
