import Foundation
import TensorModule
import TestSupport
import Testing

@testable import Quantization

func gaussian(_ count: Int, seed: UInt64) -> [Float] {
    var generator = SplitMix64(seed: seed)
    return (0..<count).map { _ in
        let u = Float.random(in: Float.ulpOfOne...1, using: &generator)
        let v = Float.random(in: 0...1, using: &generator)
        return (-2 * log(u)).squareRoot() * cos(2 * .pi * v)
    }
}

func histogram(_ values: [Float], bins: Int = 2048) -> Histogram {
    var h = Histogram(lower: values.min()!, upper: values.max()!, bins: bins)
    h.add(values)
    return h
}

func rawError(_ values: [Float], _ quantize: (Float) -> Float) -> Double {
    values.reduce(0.0) { sum, v in
        let d = Double(v - quantize(v))
        return sum + d * d
    }
}

@Suite("Quantizers")
struct QuantizerTests {
    @Test("uniform quantizers: grids, clamping, and ties rounded to even")
    func uniform() {
        let asymmetric = UniformQuantizer(lower: 0, upper: 15, bits: 4)
        #expect(asymmetric.scale == 1 && asymmetric.zeroPoint == 0 && asymmetric.codeRange == 0...15)
        #expect(asymmetric.code(2.5) == 2 && asymmetric.code(3.5) == 4)  // half to even, as torch.round
        #expect(asymmetric.code(-3) == 0 && asymmetric.code(99) == 15 && asymmetric.code(.infinity) == 15)
        let symmetric = UniformQuantizer(absoluteMaximum: 7, bits: 4)
        #expect(symmetric.codeRange == -7...7 && symmetric.scale == 1)
        #expect(symmetric.fakeQuantize(-9) == -7 && symmetric.fakeQuantize(-0.5) == 0)
        let shifted = UniformQuantizer(lower: -1, upper: 2, bits: 2)
        #expect(shifted.scale == 1 && shifted.zeroPoint == 1)
        #expect([-1.2, -0.4, 0.6, 1.7, 5].map(shifted.fakeQuantize) == [-1, 0, 1, 2, 2])
        var values: [Float] = [-1.2, -0.4, 0.6, 1.7, 5]
        shifted.fakeQuantize(&values)
        #expect(values == [-1, 0, 1, 2, 2])
        #expect(UniformQuantizer(lower: 3, upper: 3, bits: 8).fakeQuantize(3).isFinite)
    }

    @Test("LtSQ codes the distance from 1 on a log2 grid, as its documented table says")
    func longTailedTable() {
        let ltsq = LongTailedSkewnessQuantizer(bits: 4)
        let cases: [(Float, Int, Float)] = [
            (0.3, 1, 0.5), (0.9, 3, 0.875), (0.999, 10, 1 - exp2(-10)), (1.0, 15, 1 - exp2(-15)),
        ]
        for (discreteA, code, value) in cases {
            #expect(ltsq.code(logDistance: Float(-log2(1 - Double(discreteA)))) == code)
            #expect(ltsq.fakeQuantize(discreteA) == value)
        }
    }

    @Test(
        "LtSQ's bit-level code equals round(−log2(1 − Ā) + log2 s) away from half-way points",
        arguments: [0, 0.3, -1.7])
    func longTailedCodes(logScale: Float) {
        var generator = SplitMix64(seed: 9)
        let grid = LongTailedSkewnessQuantizer(bits: 5, logScale: logScale).grid
        var checked = 0
        for _ in 0..<20_000 {
            let discreteA =
                1 - Float(sign: .plus, exponent: -Int(generator.next() % 26), significand: 1)
                * Float.random(in: 0.5..<1, using: &generator)
            let exact = -log2(Double(1 - discreteA)) + Double(logScale)
            guard abs(exact - exact.rounded(.down) - 0.5) > 1e-5 else { continue }
            #expect(grid.code(discreteA) == Int(min(max(exact.rounded(), 0), 31)), "\(discreteA)")
            checked += 1
        }
        #expect(checked > 19_000)
        #expect(grid.code(1) == 31 && grid.code(1.5) == 31)
    }

    @Test("LtSQ keeps the relative precision of 1 − A_bar that uniform grids lose", arguments: [4, 5])
    func longTailedKeepsDecay(_ bits: Int) {
        // Piled near 1 (gaps 1 − A_bar log-uniform in [2^-14, 2^-4]) with a long tail towards 0 (2 %).
        var generator = SplitMix64(seed: UInt64(bits))
        let samples: [Float] = (0..<200_000).map { i in
            i % 50 == 0
                ? Float.random(in: 0...0.9, using: &generator)
                : 1 - exp2(Float.random(in: -14 ... -4, using: &generator))
        }
        let logGrid = CalibrationStatistics.logDistanceGrid
        var logCounts = [Int64](repeating: 0, count: logGrid.bins)
        samples.withUnsafeBufferPointer { v in logCounts.withUnsafeMutableBufferPointer { logGrid.count(v, into: $0) } }
        var logHistogram = Histogram(lower: 0, upper: logGrid.upper, bins: logGrid.bins)
        logHistogram.add(counts: logCounts)
        let linear = WeightedSamples([histogram(samples)])
        let ltsq = LongTailedSkewnessQuantizer(bits: bits)
        let searched = Fitting.searchedLongTailed(logHistogram, bits: bits)
        let minmax = Fitting.uniform(linear, bits: bits, fitter: .minmax)
        let mse = Fitting.uniform(linear, bits: bits, fitter: .mse)
        let quantizers: [(String, (Float) -> Float)] = [
            ("ltsq", ltsq.fakeQuantize), ("ltsq-search", searched.fakeQuantize), ("minmax", minmax.fakeQuantize),
            ("mse", mse.fakeQuantize),
        ]
        // Mean relative error of the gap 1 − A_bar over the pile, where the decay rate lives.
        let pile = samples.filter { $0 > 0.9 }
        var relative: [String: Double] = [:]
        for (name, quantize) in quantizers {
            relative[name] =
                pile.reduce(0.0) { sum, a in
                    let gap = Double(1 - a)
                    return sum + abs(Double(1 - quantize(a)) - gap) / gap
                } / Double(pile.count)
            print(
                "\(bits) bits, \(name): mean relative error of 1 - A_bar \(relative[name]!), squared error \(rawError(samples, quantize))"
            )
        }
        #expect(relative["ltsq"]! < 0.25)
        #expect(relative["ltsq"]! < relative["minmax"]! && relative["ltsq"]! < relative["mse"]!)
        #expect(Fitting.longTailedError(logHistogram, searched) <= Fitting.longTailedError(logHistogram, ltsq))
        // The histogram's estimate of LtSQ's squared error agrees with the error on the raw values.
        let estimate = Fitting.longTailedError(logHistogram, ltsq)
        let measured = rawError(samples, ltsq.fakeQuantize)
        #expect(abs(estimate - measured) / measured < 0.05, "estimate \(estimate) vs measured \(measured)")
    }

    @Test("histogram error estimates agree with the error measured on raw values", arguments: [2, 4, 8])
    func histogramEstimates(_ bits: Int) {
        let values = gaussian(100_000, seed: UInt64(bits))
        let h = histogram(values)
        for quantizer in [
            UniformQuantizer(lower: -3, upper: 3, bits: bits), UniformQuantizer(lower: -1, upper: 2.5, bits: bits),
        ] {
            let estimate = h.squaredError(quantizer.fakeQuantize)
            let measured = rawError(values, quantizer.fakeQuantize)
            #expect(
                abs(estimate - measured) / measured < 0.03, "\(bits) bits: estimate \(estimate) vs measured \(measured)"
            )
        }
    }

    @Test("the MSE fit is never worse than min-max, and clips outliers")
    func mseClipping() {
        var values = gaussian(50_000, seed: 5)
        values += [40, -35]  // two outliers stretch the min-max range
        let samples = WeightedSamples([histogram(values)])
        let minmax = Fitting.uniform(samples, bits: 4, fitter: .minmax)
        let mse = Fitting.uniform(samples, bits: 4, fitter: .mse)
        let percentile = Fitting.uniform(samples, bits: 4, fitter: .percentile)
        #expect(rawError(values, mse.fakeQuantize) < rawError(values, minmax.fakeQuantize) / 4)
        #expect(percentile.scale < minmax.scale)
        #expect(samples.squaredError(mse) <= samples.squaredError(minmax))
    }

    @Test(
        "TGQ's dynamic programme finds the optimum that exhaustive search finds",
        arguments: [(9, 3), (10, 4), (7, 1), (6, 6)])
    func dynamicProgramme(_ size: (length: Int, groups: Int)) {
        var generator = SplitMix64(seed: UInt64(size.length * 31 + size.groups))
        let ranges: [(Float, Float, Double)] = (0..<size.length).map { _ in
            let centre = Float.random(in: -5...5, using: &generator)
            let width = Float.random(in: 0.1...8, using: &generator)
            return (centre - width, centre + width, Double(Int.random(in: 1...100, using: &generator)))
        }
        func cost(_ boundaries: [Range<Int>]) -> Double {
            boundaries.reduce(0) { total, r in
                let low = r.map { ranges[$0].0 }.min()!
                let high = r.map { ranges[$0].1 }.max()!
                let count = r.map { ranges[$0].2 }.reduce(0, +)
                let step = Double(high - low) / 15
                return total + count * step * step / 12
            }
        }
        var best = Double.infinity
        func search(_ start: Int, _ left: Int, _ groups: [Range<Int>]) {
            if left == 1 {
                best = min(best, cost(groups + [start..<size.length]))
                return
            }
            guard start + 1 <= size.length - left + 1 else { return }
            for end in (start + 1)...(size.length - left + 1) { search(end, left - 1, groups + [start..<end]) }
        }
        search(0, size.groups, [])
        let found = Fitting.optimalBoundaries(stepRanges: ranges, bits: 4, groups: size.groups)
        #expect(found.count == size.groups && found.first?.lowerBound == 0 && found.last?.upperBound == size.length)
        #expect(abs(cost(found) - best) <= 1e-9 * max(best, 1))
    }

    @Test("equal TGQ groups tile the steps", arguments: [(197, 8), (65, 8), (5, 8), (10, 3)])
    func equalGroups(_ size: (length: Int, groups: Int)) {
        let groups = TemporalGroupQuantizer.equalBoundaries(length: size.length, count: size.groups)
        #expect(groups.count == min(size.length, size.groups))
        #expect(groups.flatMap { Array($0) } == Array(0..<size.length))
        #expect(groups.map(\.count).max()! - groups.map(\.count).min()! <= 1)
    }

    @Test("per-channel weight clipping: each channel's error is the least over the 100-ratio grid")
    func weightClipping() {
        var values = gaussian(4 * 64, seed: 9)
        values[5] = 12  // an outlier in channel 0
        let matrix = Tensor(shape: [4, 64], scalars: values)
        let scales = Fitting.weightScales(matrix, bits: 4)
        #expect(scales.count == 4)
        for row in 0..<4 {
            let channel = Array(values[(row * 64)..<((row + 1) * 64)])
            let maximum = channel.map(abs).max()!
            let errors = (0..<100).map { k in
                rawError(
                    channel, UniformQuantizer(absoluteMaximum: maximum * (1 - Float(k) / 100), bits: 4).fakeQuantize)
            }
            let chosen = rawError(
                channel, UniformQuantizer(scale: scales[row], zeroPoint: 0, bits: 4, symmetric: true).fakeQuantize)
            #expect(abs(chosen - errors.min()!) <= 1e-4 * errors.min()!)
        }
        #expect(scales[0] < UniformQuantizer(absoluteMaximum: 12, bits: 4).scale)
    }
}

@Suite("Histogram")
struct HistogramTests {
    /// The bin of the definition, one value at a time.
    func definitionBin(_ v: Float, _ h: Histogram) -> Int {
        let scale = Float(Double(h.counts.count) / (Double(h.upper) - Double(h.lower)))
        let position = (v - h.lower) * scale
        return position.isNaN ? 0 : Int(min(max(position, 0), Float(h.counts.count - 1)).rounded(.down))
    }

    /// A general grid, and grids from 0 (scale 64, as LtSQ's log distances, and ½). Counts of 131 and 300
    /// values take `BinGrid.count` through its blocks of 128 and the registers and lanes after them.
    @Test(
        "vectorised binning equals the element-wise definition, edges, specials and tails included",
        arguments: [(Float(-2), Float(2.5), 97), (0, 32, 2048), (0, 4096, 2048)])
    func binsMatchDefinition(lower: Float, upper: Float, bins: Int) {
        var values = gaussian(4099, seed: 11).map { $0 * 3 * upper }
        values += [.nan, .infinity, -.infinity, -1e30, 1e30, 3e38, 0, -0.0, .leastNonzeroMagnitude]
        values += [-.leastNonzeroMagnitude, .leastNormalMagnitude, Float.leastNormalMagnitude.nextDown]
        var h = Histogram(lower: lower, upper: upper, bins: bins)
        // Exact bin edges, and their float neighbours, are where a rounding slip would show.
        for i in 0...bins {
            let edge = Float(Double(lower) + Double(i) * h.binWidth)
            values += [edge, edge.nextUp, edge.nextDown]
        }
        for count in [values.count, 1, 2, 3, 5, 131, 300] {
            h.counts = [Int64](repeating: 0, count: bins)
            h.add(Array(values.prefix(count)))
            var expected = [Int64](repeating: 0, count: bins)
            for v in values.prefix(count) { expected[definitionBin(v, h)] += 1 }
            #expect(h.counts == expected, "first \(count) values")
        }
    }
}
