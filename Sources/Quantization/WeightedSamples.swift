import TensorModule

/// Histogram bins as weighted samples (bin centre, count), pooled from one or more histograms that
/// may have different grids (h's per-step histograms). Fitters evaluate candidate quantizers on them.
struct WeightedSamples {
    var values: [Float] = []
    var weights: [Double] = []
    var minimum: Float = .infinity
    var maximum: Float = -.infinity

    init<S: Sequence>(_ histograms: S) where S.Element == Histogram {
        for histogram in histograms {
            guard let occupied = histogram.occupiedBins else { continue }
            minimum = min(minimum, histogram.lower)
            maximum = max(maximum, histogram.upper)
            for bin in occupied where histogram.counts[bin] > 0 {
                values.append(histogram.center(bin))
                weights.append(Double(histogram.counts[bin]))
            }
        }
    }

    /// Range statistics as samples without values: enough for min–max fitting. Steps whose range is
    /// empty (no value seen, or only NaN) are left out.
    init(minima: [Float], maxima: [Float]) {
        for (low, high) in zip(minima, maxima) where low <= high {
            minimum = min(minimum, low)
            maximum = max(maximum, high)
        }
    }

    /// No value was seen: from histograms, none was counted; from ranges, every step saw only NaN or nothing.
    var isEmpty: Bool { !(minimum <= maximum) }

    var total: Double { weights.reduce(0, +) }

    /// Σ weight · (v − Q(v))² for the uniform quantizer `quantizer`.
    func squaredError(_ quantizer: UniformQuantizer) -> Double {
        values.withUnsafeBufferPointer { v in
            weights.withUnsafeBufferPointer { w in quantizer.grid.squaredError(v, weights: w) }
        }
    }

    /// The value below which `fraction` of the weight lies (bin centres, sorted).
    func quantile(_ fraction: Double) -> Float {
        let order = values.indices.sorted { values[$0] < values[$1] }
        let target = fraction * total
        var cumulative = 0.0
        for i in order {
            cumulative += weights[i]
            if cumulative >= target { return values[i] }
        }
        return order.last.map { values[$0] } ?? 0
    }
}
