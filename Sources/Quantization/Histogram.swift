import TensorModule

/// Integer counts of values on a fixed grid of equal bins over [lower, upper].
///
/// Counts are integers so that histograms from different ranks merge exactly and in any order.
/// Values outside the grid fall into the first or last bin (the grid comes from the observed range,
/// so this only happens for values that were not seen when the range was fixed).
public struct Histogram: Equatable, Sendable {
    /// Left edge of the first bin.
    public let lower: Float
    /// Right edge of the last bin.
    public let upper: Float
    /// Count per bin.
    public var counts: [Int64]

    /// An empty histogram of `bins` bins; a degenerate range is widened by a tiny amount.
    public init(lower: Float, upper: Float, bins: Int) {
        precondition(bins > 0)
        self.lower = lower
        self.upper = upper > lower ? upper : lower + max(abs(lower) * 1e-6, 1e-12)
        counts = [Int64](repeating: 0, count: bins)
    }

    /// Width of one bin.
    public var binWidth: Double { (Double(upper) - Double(lower)) / Double(counts.count) }

    /// The centre of bin `i`.
    @inline(__always) public func center(_ i: Int) -> Float {
        Float(Double(lower) + (Double(i) + 0.5) * binWidth)
    }

    /// The number of values counted.
    public var total: Int64 { counts.reduce(0, +) }

    /// The grid the counts are on.
    public var grid: BinGrid { BinGrid(lower: lower, upper: upper, bins: counts.count) }

    /// Counts every element of `values` (see `BinGrid` for the bin of a value).
    public mutating func add(_ values: [Float]) {
        let grid = grid
        values.withUnsafeBufferPointer { values in
            counts.withUnsafeMutableBufferPointer { grid.count(values, into: $0) }
        }
    }

    /// Adds counts made on this histogram's grid (by the scan's counting kernel, or another rank).
    public mutating func add(counts other: [Int64]) {
        precondition(other.count == counts.count)
        for i in counts.indices { counts[i] += other[i] }
    }

    /// The value below which `fraction` of the counts lie, interpolated within its bin.
    public func quantile(_ fraction: Double) -> Float {
        let target = fraction * Double(total)
        var cumulative = 0.0
        for (i, count) in counts.enumerated() {
            let next = cumulative + Double(count)
            if next >= target && count > 0 {
                let within = (target - cumulative) / Double(count)
                return Float(Double(lower) + (Double(i) + within) * binWidth)
            }
            cumulative = next
        }
        return upper
    }

    /// Σ count · (centre − Q(centre))²: the expected squared error of `quantize` on these values,
    /// each bin represented by its centre.
    public func squaredError(_ quantize: (Float) -> Float) -> Double {
        var error = 0.0
        for (i, count) in counts.enumerated() where count > 0 {
            let c = center(i)
            let d = Double(c - quantize(c))
            error += Double(count) * d * d
        }
        return error
    }

    /// The lowest and highest bins with a count, as a range of bin indices (nil if empty).
    public var occupiedBins: ClosedRange<Int>? {
        guard let first = counts.firstIndex(where: { $0 > 0 }), let last = counts.lastIndex(where: { $0 > 0 }) else {
            return nil
        }
        return first...last
    }
}
