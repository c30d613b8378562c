import Foundation
import TensorModule

/// Turns statistics and weights into quantizer parameters.
public enum Fitting {
    /// A uniform asymmetric quantizer for the pooled histograms.
    static func uniform(_ samples: WeightedSamples, bits: Int, fitter: RangeFitter) -> UniformQuantizer {
        guard !samples.isEmpty else { return UniformQuantizer(lower: 0, upper: 0, bits: bits) }
        switch fitter {
        case .minmax:
            return UniformQuantizer(lower: samples.minimum, upper: samples.maximum, bits: bits)
        case .percentile:
            return UniformQuantizer(lower: samples.quantile(1e-4), upper: samples.quantile(1 - 1e-4), bits: bits)
        case .mse:
            return leastSquaredError(samples, bits: bits)
        }
    }

    /// Searches the clipping range with the least expected squared error: each end moves towards the
    /// median geometrically (distance to the median times 0.9^k, k < 64), one end at a time, three rounds
    /// of coordinate descent. Geometric steps reach tight ranges even when a few outliers sit far out.
    static func leastSquaredError(_ samples: WeightedSamples, bits: Int) -> UniformQuantizer {
        let median = samples.quantile(0.5)
        let ratios = (0..<64).map { Float(pow(0.9, Double($0))) }
        var lower = samples.minimum
        var upper = samples.maximum
        var best = UniformQuantizer(lower: lower, upper: upper, bits: bits)
        var bestError = samples.squaredError(best)
        for _ in 0..<3 {
            for end in 0..<2 {
                for ratio in ratios {
                    let candidateLower = end == 0 ? median - (median - samples.minimum) * ratio : lower
                    let candidateUpper = end == 1 ? median + (samples.maximum - median) * ratio : upper
                    guard candidateUpper > candidateLower else { continue }
                    let candidate = UniformQuantizer(lower: candidateLower, upper: candidateUpper, bits: bits)
                    let error = samples.squaredError(candidate)
                    if error < bestError {
                        best = candidate
                        bestError = error
                        lower = candidateLower
                        upper = candidateUpper
                    }
                }
            }
        }
        return best
    }

    /// LtSQ for a histogram of −log2(1 − Ā) with log2 s searched over [−3, 3] in steps of 1/32 for the
    /// least squared error in Ā, starting from the published rule (log2 s = 0), which it keeps on ties.
    static func searchedLongTailed(_ logHistogram: Histogram, bits: Int) -> LongTailedSkewnessQuantizer {
        var best = LongTailedSkewnessQuantizer(bits: bits)
        var bestError = longTailedError(logHistogram, best)
        for k in -96...96 where k != 0 {
            let candidate = LongTailedSkewnessQuantizer(bits: bits, logScale: Float(k) / 32)
            let error = longTailedError(logHistogram, candidate)
            if error < bestError {
                best = candidate
                bestError = error
            }
        }
        return best
    }

    /// Σ count · (Ā − Ā̂)² over a histogram of u = −log2(1 − Ā), with Ā = 1 − 2^−u at bin centres.
    static func longTailedError(_ logHistogram: Histogram, _ quantizer: LongTailedSkewnessQuantizer) -> Double {
        let grid = quantizer.grid
        var error = 0.0
        for (i, count) in logHistogram.counts.enumerated() where count > 0 {
            let u = logHistogram.center(i)
            let d = Double(exp2(-u)) - Double(1 - grid.value(ofCode: quantizer.code(logDistance: u)))
            error += Double(count) * d * d
        }
        return error
    }

    /// TGQ for per-step histograms: boundaries equal or by dynamic programming, each group's
    /// quantizer fitted with `fitter` on the pooled histograms of its steps.
    static func temporalGroups(
        _ steps: [Histogram], bits: Int, groups: Int, fitter: RangeFitter, dynamic: Bool
    ) -> TemporalGroupQuantizer {
        let boundaries =
            dynamic
            ? optimalBoundaries(steps, bits: bits, groups: groups, fitter: fitter)
            : TemporalGroupQuantizer.equalBoundaries(length: steps.count, count: groups)
        return TemporalGroupQuantizer(
            groups: boundaries.map { range in
                .init(steps: range, quantizer: uniform(WeightedSamples(steps[range]), bits: bits, fitter: fitter))
            })
    }

    /// The group boundaries that minimise Σ_groups n · (range / (2^b − 1))² / 12, the expected squared
    /// error of uniform rounding over each group's range (per-step ranges: min/max for `minmax`, the
    /// 0.01 %–99.99 % quantiles otherwise). Exact dynamic programme, O(G · L²).
    static func optimalBoundaries(_ steps: [Histogram], bits: Int, groups: Int, fitter: RangeFitter) -> [Range<Int>] {
        let ranges: [(Float, Float, Double)] = steps.map { h in
            let count = Double(h.total)
            guard count > 0 else { return (Float.infinity, -Float.infinity, 0) }
            return fitter == .minmax
                ? (h.lower, h.upper, count) : (h.quantile(1e-4), h.quantile(1 - 1e-4), count)
        }
        return optimalBoundaries(stepRanges: ranges, bits: bits, groups: groups)
    }

    /// The dynamic programme over per-step (low, high, count).
    public static func optimalBoundaries(stepRanges: [(Float, Float, Double)], bits: Int, groups: Int) -> [Range<Int>] {
        let length = stepRanges.count
        let g = min(groups, length)
        let levels = Double((1 << bits) - 1)
        // cost[a][b]: one group over steps a ..< b.
        var cost = [[Double]](repeating: [Double](repeating: 0, count: length + 1), count: length + 1)
        for a in 0..<length {
            var low = Float.infinity
            var high = -Float.infinity
            var count = 0.0
            for b in (a + 1)...length {
                low = min(low, stepRanges[b - 1].0)
                high = max(high, stepRanges[b - 1].1)
                count += stepRanges[b - 1].2
                let step = high > low ? Double(high - low) / levels : 0
                cost[a][b] = count * step * step / 12
            }
        }
        var best = [[Double]](repeating: [Double](repeating: .infinity, count: length + 1), count: g + 1)
        var split = [[Int]](repeating: [Int](repeating: 0, count: length + 1), count: g + 1)
        best[0][0] = 0
        for k in 1...g {
            for b in k...length {
                for a in (k - 1)..<b where best[k - 1][a] < .infinity {
                    let total = best[k - 1][a] + cost[a][b]
                    if total < best[k][b] {
                        best[k][b] = total
                        split[k][b] = a
                    }
                }
            }
        }
        var boundaries: [Range<Int>] = []
        var end = length
        for k in stride(from: g, through: 1, by: -1) {
            let start = split[k][end]
            boundaries.insert(start..<end, at: 0)
            end = start
        }
        return boundaries
    }

    /// Per-output-channel symmetric quantizers for a weight matrix [channels, inputs]: for each channel
    /// the clipping ratio r ∈ {1, 0.99, …, 0.01} (100 values) with the least squared error.
    public static func weightScales(_ matrix: Tensor, bits: Int) -> [Float] {
        let (rows, columns) = (matrix.shape[0], matrix.shape[1])
        var scales = [Float](repeating: 0, count: rows)
        matrix.scalars.withUnsafeBufferPointer { w in
            for row in 0..<rows {
                let values = UnsafeBufferPointer(rebasing: w[(row * columns)..<((row + 1) * columns)])
                let absoluteMaximum = values.reduce(Float(0)) { max($0, abs($1)) }
                var bestScale = UniformQuantizer(absoluteMaximum: absoluteMaximum, bits: bits).scale
                var bestError = Double.infinity
                for k in 0..<100 {
                    let quantizer = UniformQuantizer(
                        absoluteMaximum: absoluteMaximum * (1 - Float(k) / 100), bits: bits)
                    let error = quantizer.grid.squaredError(values)
                    if Double(error) < bestError {
                        bestError = Double(error)
                        bestScale = quantizer.scale
                    }
                }
                scales[row] = bestScale
            }
        }
        return scales
    }
}
