import Foundation
import TestSupport
import Testing

@testable import TensorModule

func randomTensor(_ shape: [Int], in range: ClosedRange<Float> = -1...1, seed: UInt64) -> Tensor {
    var generator = SplitMix64(seed: seed)
    return Tensor(
        shape: shape, scalars: (0..<shape.reduce(1, *)).map { _ in Float.random(in: range, using: &generator) })
}

/// 11 channels: one full lane block and a partial one.
let scanSizes = (sequences: 2, length: 13, channels: 11, states: 5)

/// Random scan inputs of `scanSizes` (with `states` states), with Δ > 0 and A < 0 as in a model.
func scanInputs(
    states n: Int = scanSizes.states, channels e: Int = scanSizes.channels
) -> (x: Tensor, delta: Tensor, a: Tensor, b: Tensor, c: Tensor, d: [Float]) {
    let (s, l) = (scanSizes.sequences, scanSizes.length)
    return (
        randomTensor([s, l, e], seed: 1), randomTensor([s, l, e], in: 0.001...2, seed: 2),
        randomTensor([e, n], in: -8 ... -0.1, seed: 3), randomTensor([s, l, n], seed: 4),
        randomTensor([s, l, n], seed: 5), randomTensor([e], seed: 6).scalars
    )
}

@Suite("Kernels against naive double-precision references")
struct KernelTests {
    @Test("e^x for x ≤ 0 is within 2 ulp of exp down to −87, stays normal below, and keeps NaN")
    func exponentialAccuracy() {
        var worst: Double = 0
        var x: Float = -87
        while x <= 0 {
            let value = exponentialOfNonPositive(Lanes(repeating: x))[0]
            let reference = Foundation.exp(Double(x))
            worst = max(worst, abs(Double(value) - reference) / reference)
            x += 0.0137
        }
        #expect(worst < 2.5e-7, "worst relative error \(worst)")
        let floor = exponentialOfNonPositive(Lanes(repeating: -200))[0]
        #expect(floor.isNormal && floor < 1.2e-38)
        #expect(exponentialOfNonPositive(Lanes(repeating: 0))[0] == 1)
        #expect(exponentialOfNonPositive(Lanes(repeating: -0.0))[0] == 1)
        #expect(exponentialOfNonPositive(Lanes(repeating: .nan))[0].isNaN)
    }

    @Test("2^x for x ≤ 0 is within 1.8e−7 of exp2 down to −126, clamps below, and keeps NaN")
    func binaryExponentialAccuracy() {
        var worst: Double = 0
        var x: Float = -126
        while x <= 0 {
            let reference = Foundation.exp2(Double(x))
            let value = binaryExponentialOfNonPositive(Lanes(repeating: x))[0]
            worst = max(worst, abs(Double(value) - reference) / reference)
            x += 0.001_37
        }
        // Halfway points are where k = round(x) switches and r reaches ±½.
        for k in -126...0 {
            for x in [Float(k) - 0.5, Float(k) + 0.5, Float(k)] where x <= 0 && x >= -126 {
                let value = binaryExponentialOfNonPositive(Lanes(repeating: x))[0]
                let reference = Foundation.exp2(Double(x))
                worst = max(worst, abs(Double(value) - reference) / reference)
            }
        }
        // 1.7e−7 over every 13th float of r in [−½, ½] (where the error lies); 1.8e−7 is the documented bound.
        #expect(worst < 1.8e-7, "worst relative error \(worst)")
        #expect(binaryExponentialOfNonPositive(Lanes(repeating: -200))[0] == Float.leastNormalMagnitude)
        #expect(binaryExponentialOfNonPositive(Lanes(repeating: 0))[0] == 1)
        #expect(binaryExponentialOfNonPositive(Lanes(repeating: -1))[0] == 0.5)
        let payloadNaN = Float(nan: 0x1234, signaling: false)
        #expect(binaryExponentialOfNonPositive(canonicalisingNaN(Lanes(repeating: payloadNaN)))[0].isNaN)
        #expect(binaryExponentialOfNonPositive(canonicalisingNaN(Lanes(repeating: -payloadNaN)))[0].isNaN)
    }

    @Test("every 2^(j/64) lies far enough from single-precision mantissas for doubles to place it")
    func logDistanceThresholdMargins() {
        for j in 1..<LogDistanceGrid.binsPerOctave {
            let position = (exp2(Double(j) / 64) - 1) * 0x80_0000
            let margin = min(position - position.rounded(.down), position.rounded(.up) - position)
            #expect(margin > 1e-3, "2^(\(j)/64) is \(margin) of a mantissa step from one")
        }
        #expect(LogDistanceGrid.mantissaThresholds.first == 1)
    }

    @Test("the log-distance bin is ⌊64·(−log2(1 − Ā))⌋ of the float gap at every bin edge, with the specials")
    func logDistanceBins() {
        let grid = LogDistanceGrid(octaves: 32)
        func expected(_ discreteA: Float) -> Int {
            let gap = 1 - discreteA
            guard gap > 0 else { return gap.isNaN ? 0 : grid.bins - 1 }
            return min(max(Int((-64 * log2(Double(gap))).rounded(.down)), 0), grid.bins - 1)
        }
        // Around the Ā of every edge i/64 up to the last float below 1 (u = 24).
        var values: [Float] = []
        for edge in 0...(24 * 64) {
            var discreteA = Float(1 - exp2(-Double(edge) / 64))
            discreteA = discreteA.nextDown.nextDown
            for _ in 0..<5 {
                values.append(discreteA)
                discreteA = discreteA.nextUp
            }
        }
        for value in values where value <= 1 {
            #expect(grid.bin(value) == expected(value), "Ā = \(value)")
        }
        let specials: [(Float, Int)] = [
            (1, 2047), (1.5, 2047), (.infinity, 2047), (0, 0), (-3, 0), (-.infinity, 0), (.nan, 0), (-.nan, 0),
            (1 - exp2(-24), 1536), (0.75, 128), (0.5, 64),
        ]
        for (value, bin) in specials { #expect(grid.bin(value) == bin, "Ā = \(value)") }
        // Counting through the vectorised path, with a partial lane group, gives the same bins.
        let sample = Array(values.prefix(1001)) + specials.map(\.0)
        var counts = [Int64](repeating: 0, count: grid.bins)
        sample.withUnsafeBufferPointer { v in counts.withUnsafeMutableBufferPointer { grid.count(v, into: $0) } }
        var reference = [Int64](repeating: 0, count: grid.bins)
        for value in sample { reference[grid.bin(value)] += 1 }
        #expect(counts == reference)
    }

    @Test(
        "one count per Ā in the refinement of its value grid by the log-distance grid splits into both histograms",
        arguments: [(Float(0.3), Float(0.9999), 2048), (0.99, 0.990001, 64), (-10, 10, 16), (0.5, 1, 2048)])
    func discreteARefinement(lower: Float, upper: Float, bins: Int) {
        let values = BinGrid(lower: lower, upper: upper, bins: bins)
        let logDistance = LogDistanceGrid(octaves: 32)
        // Every edge of either grid, a float on each side, random Ā, and the specials.
        var samples: [Float] = [.nan, -.nan, .infinity, -.infinity, 0, -0.0, 1, 1.5, -3, Float(1).nextDown]
        let width = (Double(upper) - Double(lower)) / Double(bins)
        for edge in logDistance.lowerEdges().dropFirst() + (0...bins).map({ Float(Double(lower) + Double($0) * width) })
        {
            samples += [edge.nextDown, edge, edge.nextUp]
        }
        var generator = SplitMix64(seed: 41)
        samples += (0..<5000).map { _ in 1 - exp2(-Float.random(in: 0...25, using: &generator)) }
        let cells = DiscreteARefinement.cells(valueBins: values.bins, logDistanceBins: logDistance.bins)
        var cellCounts = [Int64](repeating: 0, count: cells)
        var valueCounts = [Int64](repeating: 0, count: values.bins)
        var logDistanceCounts = [Int64](repeating: 0, count: logDistance.bins)
        for sample in samples {
            cellCounts[values.bin(sample) + logDistance.bin(sample)] += 1
            valueCounts[values.bin(sample)] += 1
            logDistanceCounts[logDistance.bin(sample)] += 1
        }
        var splitValues = [Int64](repeating: 0, count: values.bins)
        var splitLogDistances = [Int64](repeating: 0, count: logDistance.bins)
        cellCounts.withUnsafeBufferPointer {
            DiscreteARefinement(values: values, logDistanceEdges: logDistance.lowerEdges()).split(
                $0, intoValues: &splitValues, logDistances: &splitLogDistances)
        }
        #expect(splitValues == valueCounts)
        #expect(splitLogDistances == logDistanceCounts)
    }

    @Test("softplus is within a few ulp of log1p(exp(v)) from -80 to 30, including the threshold at 20")
    func softplusAccuracy() {
        var values: [Float] = [20.5, .nan]
        var v: Float = -80
        while v < 30 {
            values.append(v)
            v += 0.0093
        }
        // Two rows of an odd width, so both passes over a row meet a partial register.
        if values.count % 2 == 1 { values.append(0) }
        let width = values.count / 2
        let out = Activation.softplus(
            Tensor(shape: [2, width], scalars: values), columnBias: [Float](repeating: 0, count: width)
        ).scalars
        var worst: Double = 0
        for (v, y) in zip(values, out) where !v.isNaN {
            let reference = v > 20 ? Double(v) : Foundation.log1p(Foundation.exp(Double(v)))
            worst = max(worst, abs(Double(y) - reference) / reference)
        }
        #expect(width % 8 != 0, "width \(width)")
        #expect(worst < 4e-7, "worst relative error \(worst)")
        #expect(out[0] == 20.5 && out[1].isNaN)
    }

    @Test("SiLU is within a few ulp of v / (1 + exp(−v)) from -90 to 90")
    func siluAccuracy() {
        var worst: Double = 0
        var v: Float = -90
        while v < 90 {
            let reference = Double(v) / (1 + Foundation.exp(-Double(v)))
            if reference != 0 {
                let value = Double(silu(Lanes(repeating: v))[0])
                // Below −87 e^v leaves the normal floats: only the absolute error can stay small there.
                let error = v < -87 ? abs(value - reference) : abs(value - reference) / abs(reference)
                worst = max(worst, error)
            }
            v += 0.0071
        }
        #expect(worst < 4e-7, "worst error \(worst)")
        #expect(silu(Lanes(repeating: 0))[0] == 0)
        #expect(silu(Lanes(repeating: .nan))[0].isNaN)
    }

    @Test("the vectorised uniform snap gives the scalar form's bits: half-integers, signed zeros and specials")
    func uniformSnapMatchesDivision() {
        var generator = SplitMix64(seed: 28)
        for _ in 0..<200 {
            let scale = Float(Foundation.exp2(Double.random(in: -30...10, using: &generator)))
            let grid = UniformGrid(scale: scale, zeroPoint: Int.random(in: -8...8, using: &generator), codes: 0...15)
            var values: [Float] = [0, -0.0, .nan, .infinity, -.infinity, scale * 3e6, -scale * 3e6]
            for _ in 0..<64 {
                // Products of the scale with half-integers, and their neighbours a few ulp away.
                var v = scale * (Float(Int.random(in: -40...40, using: &generator)) + 0.5)
                for _ in 0..<Int.random(in: 0...4, using: &generator) {
                    v = Bool.random(using: &generator) ? v.nextUp : v.nextDown
                }
                values.append(v)
                values.append(scale * Float.random(in: -50...50, using: &generator))
            }
            var snapped = values
            grid.snap(&snapped)
            for (v, vector) in zip(values, snapped) {
                let scalar = grid.snap(v)
                #expect(
                    vector.bitPattern == scalar.bitPattern || (vector.isNaN && scalar.isNaN),
                    "scale \(scale): \(v) snapped to \(vector), the division gives \(scalar)")
            }
        }
    }

    @Test(
        "the vectorised LtSQ snap gives the scalar form's bits at every threshold edge and for specials",
        arguments: [1, 4, 16])
    func logarithmicSnapMatchesScalar(bits: Int) {
        var generator = SplitMix64(seed: 29)
        // log2 s = −½ puts the threshold 2^r at 1, and just below ½ rounds it to 2 (no f exceeds it).
        var logScales: [Float] = [0, 0.3, -1.7, 3, -3, -0.5, Float(0.5).nextDown, 64, -64]
        logScales += (0..<8).map { _ in Float.random(in: -64...64, using: &generator) }
        for logScale in logScales {
            let grid = LogarithmicGrid(bits: bits, logScale: logScale)
            var values: [Float] = [
                0, -0.0, 1, 1.5, -0.5, Float(1).nextDown, Float(1).nextUp, .leastNonzeroMagnitude, .nan,
                Float(bitPattern: 0xFFC0_0000), Float(bitPattern: 0x7F80_0001), .infinity, -.infinity, -3e38,
            ]
            // Ā = 1 − g for g whose mantissa bits are the threshold's ± 2, at every octave of g.
            let thresholdBits = Int(grid.fractionThreshold.bitPattern & 0x7F_FFFF)
            for exponent in -24...0 {
                for offset in -2...2 {
                    let mantissa = UInt32(min(max(thresholdBits + offset, 0), 0x7F_FFFF))
                    let gap = Float(bitPattern: UInt32(exponent + 127) << 23 | mantissa)
                    values += [1 - gap, (1 - gap).nextUp, (1 - gap).nextDown]
                }
            }
            values += (0..<64).map { _ in Float.random(in: 0...1, using: &generator) }
            var snapped = values
            grid.snap(&snapped)
            for (v, vector) in zip(values, snapped) {
                #expect(
                    vector.bitPattern == grid.snap(v).bitPattern,
                    "log2 s \(logScale): \(v) snapped to \(vector), the scalar form gives \(grid.snap(v))")
            }
        }
    }

    @Test("the weighted squared snapping error equals a double-precision sum, partial lane group included")
    func weightedSquaredError() {
        let grid = UniformGrid(scale: 0.37, zeroPoint: 2, codes: 0...7)
        for count in [0, 5, 8, 21] {
            let values = randomTensor([count], in: -3...3, seed: UInt64(30 + count)).scalars
            let weights = randomTensor([count], in: 0...1000, seed: UInt64(40 + count)).scalars.map(Double.init)
            let reference = zip(values, weights).reduce(0.0) { sum, pair in
                let d = Double(pair.0 - grid.snap(pair.0))
                return sum + pair.1 * d * d
            }
            let error = values.withUnsafeBufferPointer { v in
                weights.withUnsafeBufferPointer { w in grid.squaredError(v, weights: w) }
            }
            #expect(abs(error - reference) <= 1e-12 * max(1, reference), "\(count) values: \(error) vs \(reference)")
        }
    }

    @Test("the selective scan matches a sequential double-precision scan")
    func selectiveScan() {
        let (s, l, e, n) = scanSizes
        let (x, delta, a, b, c, d) = scanInputs()
        let y = SelectiveScan.apply(x: x, delta: delta, a: a, b: b, c: c, d: d)
        var reference = [Float](repeating: 0, count: s * l * e)
        for seq in 0..<s {
            for ch in 0..<e {
                var h = [Double](repeating: 0, count: n)
                for t in 0..<l {
                    let i = (seq * l + t) * e + ch
                    let dt = Double(delta.scalars[i])
                    let u = Double(x.scalars[i])
                    var out = Double(d[ch]) * u
                    for k in 0..<n {
                        h[k] =
                            Foundation.exp(dt * Double(a.scalars[ch * n + k])) * h[k] + dt
                            * Double(b.scalars[(seq * l + t) * n + k]) * u
                        out += h[k] * Double(c.scalars[(seq * l + t) * n + k])
                    }
                    reference[i] = Float(out)
                }
            }
        }
        #expect(relativeDifference(y.scalars, reference: reference) < 1e-6)
    }

    @Test("the scan's recorded extremes equal those of every materialised step, partial lane group included")
    func scanExtremes() {
        let l = scanSizes.length
        let (x, delta, a, b, c, d) = scanInputs()
        /// Extremes over the E×N values the step-by-step path hands out.
        final class Extremes: ScanStepHook {
            var minima: [ScanQuantity: [Float]] = [:]
            var maxima: [ScanQuantity: [Float]] = [:]
            let length: Int
            init(length: Int) { self.length = length }
            func process(_ quantity: ScanQuantity, sequence: Int, timeStep: Int, values: inout [Float]) {
                let slot = quantity == .hiddenState ? timeStep : 0
                let count = quantity == .hiddenState ? length : 1
                let (low, high) = values.withUnsafeBufferPointer(extremaIgnoringNaN)
                var (lows, highs) = (
                    minima[quantity] ?? [Float](repeating: .infinity, count: count),
                    maxima[quantity] ?? [Float](repeating: -.infinity, count: count)
                )
                lows[slot] = min(lows[slot], low)
                highs[slot] = max(highs[slot], high)
                (minima[quantity], maxima[quantity]) = (lows, highs)
            }
        }
        let reference = Extremes(length: l)
        let stepwise = SelectiveScan.apply(x: x, delta: delta, a: a, b: b, c: c, d: d, hook: reference)
        let recorded = SelectiveScan.applyRecordingExtremes(x: x, delta: delta, a: a, b: b, c: c, d: d)
        #expect(recorded.y == SelectiveScan.apply(x: x, delta: delta, a: a, b: b, c: c, d: d))
        #expect(relativeDifference(recorded.y.scalars, reference: stepwise.scalars) < 1e-6)
        let pairs: [(ScanQuantity, ScanExtremes)] = [
            (.discreteA, recorded.discreteA), (.discreteB, recorded.discreteB), (.hiddenState, recorded.hiddenState),
        ]
        for (quantity, extremes) in pairs {
            #expect(extremes.minima == reference.minima[quantity], "\(quantity) minima")
            #expect(extremes.maxima == reference.maxima[quantity], "\(quantity) maxima")
        }
        // Ā = exp(Δ A) < 1 in every real channel: the padded lanes (Δ = 0, so Ā = 1) were not counted.
        #expect(recorded.discreteA.maxima[0] < 1)
        #expect(recorded.hiddenState.minima.count == l)
        #expect(recorded.discreteA.aboveThreshold == nil)
    }

    @Test(
        "the range pass's count of Ā above a threshold equals that over every materialised step, padded lanes left out",
        arguments: [11, 16])
    func discreteAThresholdCount(channels: Int) {
        let (x, delta, a, b, c, d) = scanInputs(channels: channels)
        /// Every Ā value the step-by-step path hands out.
        final class DiscreteA: ScanStepHook {
            var values: [Float] = []
            func process(_ quantity: ScanQuantity, sequence: Int, timeStep: Int, values: inout [Float]) {
                if quantity == .discreteA { self.values += values }
            }
        }
        let reference = DiscreteA()
        _ = SelectiveScan.apply(x: x, delta: delta, a: a, b: b, c: c, d: d, hook: reference)
        let plain = SelectiveScan.applyRecordingExtremes(x: x, delta: delta, a: a, b: b, c: c, d: d)
        let sorted = reference.values.sorted()
        // The median, a value Ā takes (ties with it are not above), its extremes, and bounds outside its range.
        for threshold in [sorted[sorted.count / 2], sorted[sorted.count / 3], sorted.first!, sorted.last!, 0, 1] {
            let counted = SelectiveScan.applyRecordingExtremes(
                x: x, delta: delta, a: a, b: b, c: c, d: d, discreteAThreshold: threshold)
            let expected = ThresholdCount(
                threshold: threshold, above: Int64(reference.values.filter { $0 > threshold }.count),
                total: Int64(reference.values.count))
            #expect(counted.discreteA.aboveThreshold == expected, "threshold \(threshold)")
            #expect(counted.y == plain.y)
            #expect(
                counted.discreteA.minima == plain.discreteA.minima && counted.discreteA.maxima == plain.discreteA.maxima
            )
            #expect(counted.discreteB == plain.discreteB && counted.hiddenState == plain.hiddenState)
        }
        // Exactly half above is not a majority: the median (the lower one, for an even count) is not above.
        #expect(!ThresholdCount(threshold: 0, above: 2, total: 4).isMajorityAbove)
        #expect(ThresholdCount(threshold: 0, above: 3, total: 5).isMajorityAbove)
    }

    /// 75 channels: more bins in a step than the kernel queues (128 registers) before counting them.
    @Test(
        "the scan's bin counts equal those of the picked values of every materialised step, partial lane group included",
        arguments: [(5, 1, 11), (16, 1, 11), (16, 2, 11), (16, 8, 11), (16, 16, 11), (16, 1, 75), (16, 4, 75)])
    func scanBinCounts(states: Int, stride: Int, channels: Int) {
        let l = scanSizes.length
        let sampling = ScanSampling(stride: stride)
        let (x, delta, a, b, c, d) = scanInputs(states: states, channels: channels)
        let extremes = SelectiveScan.applyRecordingExtremes(x: x, delta: delta, a: a, b: b, c: c, d: d)
        // Grids a little narrower than the ranges, so that the first and last bins also take clamped values.
        func grids(_ e: ScanExtremes, bins: Int) -> [BinGrid] {
            zip(e.minima, e.maxima).map { low, high in
                let margin = (high - low) / 20
                return BinGrid(lower: low + margin, upper: high - margin, bins: bins)
            }
        }
        let logGrid = LogDistanceGrid(octaves: 32)
        let binning = ScanBinning(
            discreteA: QuantityBinning(
                grids: grids(extremes.discreteA, bins: 64), logDistance: logGrid, sampling: sampling),
            discreteB: QuantityBinning(grids: grids(extremes.discreteB, bins: 64), sampling: sampling),
            // With 75 channels h is also counted by log distance: per-step grids, each with its refinement.
            hiddenState: QuantityBinning(
                grids: grids(extremes.hiddenState, bins: 16), logDistance: channels > 11 ? logGrid : nil,
                sampling: sampling))
        /// Counts of the picked ones of the E×N values the step-by-step path hands out, through `BinGrid.count`.
        final class Counts: ScanStepHook {
            let binning: ScanBinning
            let states: Int
            var counts: [ScanQuantity: QuantityCounts] = [:]
            init(binning: ScanBinning, states: Int) {
                self.binning = binning
                self.states = states
                for quantity in [ScanQuantity.discreteA, .discreteB, .hiddenState] {
                    let grids = binning[quantity]!
                    counts[quantity] = QuantityCounts(
                        counts: grids.grids.map { [Int64](repeating: 0, count: $0.bins) },
                        logDistanceCounts: grids.logDistance.map { [Int64](repeating: 0, count: $0.bins) })
                }
            }
            func process(_ quantity: ScanQuantity, sequence: Int, timeStep: Int, values: inout [Float]) {
                let quantityBinning = binning[quantity]!
                let slot = quantityBinning.grids.count > 1 ? timeStep : 0
                let values = values.indices.filter {
                    quantityBinning.sampling.counts(step: timeStep, channel: $0 / states, state: $0 % states)
                }
                .map { values[$0] }
                values.withUnsafeBufferPointer { v in
                    counts[quantity]!.counts[slot].withUnsafeMutableBufferPointer {
                        quantityBinning.grids[slot].count(v, into: $0)
                    }
                }
                if let logGrid = quantityBinning.logDistance {
                    values.withUnsafeBufferPointer { v in
                        counts[quantity]!.logDistanceCounts!.withUnsafeMutableBufferPointer {
                            logGrid.count(v, into: $0)
                        }
                    }
                }
            }
        }
        let reference = Counts(binning: binning, states: states)
        _ = SelectiveScan.apply(x: x, delta: delta, a: a, b: b, c: c, d: d, hook: reference)
        let counted = SelectiveScan.applyCountingBins(x: x, delta: delta, a: a, b: b, c: c, d: d, binning: binning)
        #expect(counted.y == SelectiveScan.apply(x: x, delta: delta, a: a, b: b, c: c, d: d))
        // Every channel has states / stride of its values counted at every step.
        let picked = Int64(scanSizes.sequences * l * channels * states / stride)
        for (quantity, counts) in [
            (ScanQuantity.discreteA, counted.discreteA), (.discreteB, counted.discreteB),
            (.hiddenState, counted.hiddenState),
        ] {
            #expect(counts == reference.counts[quantity], "\(quantity)")
            // Every picked update of the real channels was counted once, none of the padded lanes'.
            let total = counts!.counts.reduce(0) { $0 + $1.reduce(0, +) }
            #expect(total == picked, "\(quantity)")
        }
        #expect(counted.discreteA!.logDistanceCounts!.reduce(0, +) == picked)
        #expect(counted.hiddenState!.counts.count == l)
        // A quantity without binning is not counted, and the others' counts do not change.
        for skipped in [ScanQuantity.discreteA, .discreteB, .hiddenState] {
            var partial = binning
            switch skipped {
            case .discreteA: partial.discreteA = nil
            case .discreteB: partial.discreteB = nil
            case .hiddenState: partial.hiddenState = nil
            }
            let recounted = SelectiveScan.applyCountingBins(
                x: x, delta: delta, a: a, b: b, c: c, d: d, binning: partial)
            #expect(recounted.y == counted.y)
            let pairs: [(ScanQuantity, QuantityCounts?, QuantityCounts?)] = [
                (.discreteA, recounted.discreteA, counted.discreteA),
                (.discreteB, recounted.discreteB, counted.discreteB),
                (.hiddenState, recounted.hiddenState, counted.hiddenState),
            ]
            for (quantity, new, old) in pairs {
                #expect(new == (quantity == skipped ? nil : old), "\(quantity) with \(skipped) skipped")
            }
        }
    }

    @Test("causal convolution uses only current and past steps, with zero padding, then SiLU")
    func causalConvolution() {
        let (s, l, e, k) = (2, 7, 10, 4)
        let x = randomTensor([s, l, e], seed: 7)
        let w = randomTensor([e, k], seed: 8)
        let bias = randomTensor([e], seed: 9).scalars
        let y = CausalConvolution.applyThenSiLU(x, columns: 0..<e, weight: w, bias: bias)
        var reference = [Float](repeating: 0, count: x.count)
        for seq in 0..<s {
            for t in 0..<l {
                for ch in 0..<e {
                    var acc = Double(bias[ch])
                    for tap in 0..<k where t - (k - 1) + tap >= 0 {
                        acc +=
                            Double(w.scalars[ch * k + tap]) * Double(x.scalars[(seq * l + t - (k - 1) + tap) * e + ch])
                    }
                    reference[(seq * l + t) * e + ch] = Float(acc / (1 + Foundation.exp(-acc)))
                }
            }
        }
        #expect(difference(y.scalars, reference).maximumAbsolute < 1e-6)
    }

    @Test("the convolution reads a column range in either time order as it reads a reversed copy, grids included")
    func convolutionInPlace() {
        let (e, k) = (11, 4)
        let source = randomTensor([2, 9, 3 * e], seed: 22)
        let w = randomTensor([e, k], seed: 23)
        let bias = randomTensor([e], seed: 24).scalars
        let columns = e..<(2 * e)
        let copy = source.columns(columns)
        #expect(
            CausalConvolution.applyThenSiLU(source, columns: columns, weight: w, bias: bias)
                == CausalConvolution.applyThenSiLU(copy, columns: 0..<e, weight: w, bias: bias))
        #expect(
            CausalConvolution.applyThenSiLU(source, columns: columns, timeReversed: true, weight: w, bias: bias)
                == CausalConvolution.applyThenSiLU(
                    source.columns(columns, timeReversed: true), columns: 0..<e, weight: w, bias: bias))
        // Grids on the input (snapped once per row, in a ring) and on the output, in both time orders,
        // with two and with three taps (the general loop).
        let (inputGrid, outputGrid) = (
            UniformGrid(scale: 0.125, zeroPoint: 3, codes: 0...15),
            UniformGrid(scale: 0.05, zeroPoint: 0, codes: -7...7)
        )
        for reversed in [false, true] {
            for taps in [k, 3] {
                let weights = randomTensor([e, taps], seed: 29)
                var expected = CausalConvolution.applyThenSiLU(
                    source.columns(columns, timeReversed: reversed, snappedTo: inputGrid), columns: 0..<e,
                    weight: weights, bias: bias)
                outputGrid.snap(&expected.scalars)
                #expect(
                    CausalConvolution.applyThenSiLU(
                        source, columns: columns, timeReversed: reversed, weight: weights, bias: bias,
                        inputGrid: inputGrid, outputGrid: outputGrid) == expected)
            }
        }
    }

    @Test("patch embedding with overlapping patches equals a direct convolution")
    func overlappingPatches() {
        let images = randomTensor([2, 3, 12, 12], seed: 10)
        let weight = randomTensor([5, 3, 4, 4], seed: 11)
        let bias = randomTensor([5], seed: 12).scalars
        let stride = 2
        let tokens = PatchEmbedding.apply(images, weight: weight, bias: bias, stride: stride)
        let grid = (12 - 4) / stride + 1
        #expect(tokens.shape == [2, grid * grid, 5])
        var reference: [Float] = []
        for b in 0..<2 {
            for gy in 0..<grid {
                for gx in 0..<grid {
                    for o in 0..<5 {
                        var acc = Double(bias[o])
                        for ch in 0..<3 {
                            for ky in 0..<4 {
                                for kx in 0..<4 {
                                    acc +=
                                        Double(weight.scalars[((o * 3 + ch) * 4 + ky) * 4 + kx])
                                        * Double(
                                            images.scalars[
                                                ((b * 3 + ch) * 12 + gy * stride + ky) * 12 + gx * stride + kx])
                                }
                            }
                        }
                        reference.append(Float(acc))
                    }
                }
            }
        }
        #expect(difference(tokens.scalars, reference).maximumAbsolute < 1e-5)
    }

    @Test("a row's matrix product does not depend on the batch it is computed in")
    func batchIndependence() {
        let x = randomTensor([6, 37, 24], seed: 13)
        let w = randomTensor([19, 24], seed: 14)
        let all = Linear.apply(x, weight: w)
        let some = Linear.apply(x.slice(outer: 2..<5), weight: w)
        #expect(Array(all.scalars[(2 * 37 * 19)..<(5 * 37 * 19)]) == some.scalars)
    }

    @Test("the bidirectional average pairs step t of one output with step L − 1 − t of the other")
    func averageWithTimeReversed() {
        let forward = randomTensor([2, 5, 3], in: -3...3, seed: 20)
        let backward = randomTensor([2, 5, 3], in: -3...3, seed: 21)
        let average = forward.averaged(withTimeReversed: backward)
        for s in 0..<2 {
            for t in 0..<5 {
                for j in 0..<3 {
                    let expected =
                        (forward.scalars[(s * 5 + t) * 3 + j] + backward.scalars[(s * 5 + 4 - t) * 3 + j]) * 0.5
                    #expect(average.scalars[(s * 5 + t) * 3 + j] == expected)
                }
            }
        }
    }

    @Test("RMSNorm, softplus, SiLU and the gate match their formulas")
    func elementwise() {
        let x = randomTensor([3, 21], in: -30...30, seed: 15)
        let weight = randomTensor([21], seed: 16).scalars
        let normed = RMSNorm.apply(x, weight: weight, epsilon: 1e-5)
        for row in 0..<3 {
            let values = x.scalars[(row * 21)..<((row + 1) * 21)].map(Double.init)
            let scale = 1 / (values.map { $0 * $0 }.reduce(0, +) / 21 + 1e-5).squareRoot()
            for j in 0..<21 {
                #expect(abs(Double(normed.scalars[row * 21 + j]) - values[j] * scale * Double(weight[j])) < 1e-5)
            }
        }
        let bias = [Float](repeating: 0.5, count: 21)
        let soft = Activation.softplus(x, columnBias: bias)
        for (i, v) in x.scalars.enumerated() {
            let a = Double(v) + 0.5
            let expected = a > 20 ? a : Foundation.log1p(Foundation.exp(a))
            #expect(abs(Double(soft.scalars[i]) - expected) <= 1e-6 * max(1, abs(expected)))
        }
        let z = randomTensor([3, 21], in: -10...10, seed: 17)
        let activation = Activation.silu(z, columns: 0..<21)
        let gated = Activation.gate(x, by: activation)
        for i in 0..<x.count {
            let sigmoid = 1 / (1 + Foundation.exp(-Double(z.scalars[i])))
            #expect(abs(Double(activation.scalars[i]) - Double(z.scalars[i]) * sigmoid) <= 1e-6)
            let expected = Double(x.scalars[i]) * Double(z.scalars[i]) * sigmoid
            #expect(abs(Double(gated.scalars[i]) - expected) <= 2e-6 * max(1, abs(expected)))
        }
    }

    @Test("SiLU of a column range, the reversed gate, and the fused gated average agree with their parts")
    func gatedAverage() {
        let projected = randomTensor([2, 6, 10], in: -6...6, seed: 25)
        let activation = Activation.silu(projected, columns: 5..<10)
        #expect(activation == Activation.silu(projected.columns(5..<10), columns: 0..<5))
        let forward = randomTensor([2, 6, 5], in: -3...3, seed: 26)
        let backward = randomTensor([2, 6, 5], in: -3...3, seed: 27)
        let gatedBackward = Activation.gate(backward, by: activation, timeReversed: true)
        #expect(gatedBackward == Activation.gate(backward, by: activation.columns(0..<5, timeReversed: true)))
        let separate = Activation.gate(forward, by: activation).averaged(withTimeReversed: gatedBackward)
        #expect(
            Activation.gatedAverage(forward: forward, backward: backward, gateSource: projected, columns: 5..<10)
                == separate)
    }
}
