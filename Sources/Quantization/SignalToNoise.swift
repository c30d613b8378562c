import Foundation
import TensorModule
import Vim

extension QuantizationPlan {
    /// The signal-to-quantization-noise ratio, in dB, of each activation point's quantizer on the
    /// calibration histograms: 10 · log10(Σ v² / Σ (v − Q(v))²) over the bin centres, weighted by counts.
    ///
    /// h is measured step by step with each step's TGQ group quantizer; LtSQ points are measured on
    /// the histogram of −log2(1 − Ā), whose bins resolve the values near 1 that matter to LtSQ.
    /// Points without observed values or without error (a grid that holds every centre) are left out.
    public func signalToQuantizationNoise(_ statistics: CalibrationStatistics) -> [ObservationPoint: Double] {
        let quantizers = Dictionary(uniqueKeysWithValues: activations.map { ($0.point, $0.quantizer) })
        var result: [ObservationPoint: Double] = [:]
        for entry in statistics.points {
            guard let quantizer = quantizers[entry.point] else { continue }
            var signal = 0.0
            var noise = 0.0
            func add(_ value: Float, _ snapped: Float, _ count: Int64) {
                let (v, d) = (Double(value), Double(value) - Double(snapped))
                signal += Double(count) * v * v
                noise += Double(count) * d * d
            }
            func add(_ histogram: Histogram, snappedTo grid: UniformGrid) {
                for (bin, count) in histogram.counts.enumerated() where count > 0 {
                    add(histogram.center(bin), grid.snap(histogram.center(bin)), count)
                }
            }
            switch quantizer {
            case .uniform(let q):
                for histogram in entry.histograms { add(histogram, snappedTo: q.grid) }
            case .longTailed(let q):
                guard let log = entry.logHistogram else { continue }
                let grid = q.grid
                for (bin, count) in log.counts.enumerated() where count > 0 {
                    let discreteA = 1 - exp2(-log.center(bin))
                    add(discreteA, grid.snap(discreteA), count)
                }
            case .temporalGroups(let tgq):
                for (step, histogram) in entry.histograms.enumerated() where step < tgq.length {
                    add(histogram, snappedTo: tgq.quantizer(atStep: step).grid)
                }
            }
            if signal > 0 && noise > 0 { result[entry.point] = 10 * log10(signal / noise) }
        }
        return result
    }
}
