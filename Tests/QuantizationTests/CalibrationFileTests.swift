import Checkpoint
import Foundation
import TensorModule
import TestSupport
import Testing
import Vim

@testable import Quantization

/// Statistics of the micro fixture on its own four input images.
func microStatistics() throws -> (VimModel, CalibrationStatistics) {
    let model = try VimModel(loading: try CheckpointFile.open(Fixtures.bundled("vim-official-init/vim_micro.pth")))
    let input = try NumPyArray(contentsOf: Fixtures.bundled("vim-official-init/vim_micro_input.npy")).tensor
    return (model, try CalibrationStatistics.observe(model, on: input))
}

@Suite("Calibration files and fake quantization")
struct CalibrationFileTests {
    @Test(
        "every method's plan survives a write and a read unchanged, byte for byte",
        arguments: CalibrationMethod.table.map(\.name))
    func roundTrip(_ name: String) throws {
        let (model, statistics) = try microStatistics()
        let plan = try QuantizationPlan.fit(
            statistics: statistics, weights: model.weights, method: try CalibrationMethod.named(name),
            settings: QuantizationSettings(weightBits: 4, activationBits: 4))
        let provenance = CalibrationFile.Provenance(
            checkpointName: "vim_micro.pth", checkpointSHA256: "00", configuration: model.configuration, data: "inline",
            imageCount: 4, seed: 0, imageListSHA256: "11", tool: "test", scanSampling: ScanSampling(stride: 8))
        let file = CalibrationFile(plan: plan, provenance: provenance)
        let path = Fixtures.temporaryDirectory() + "/q.json"
        try AtomicFile.write(file.encoded, to: path)
        let read = try CalibrationFile(contentsOf: path)
        #expect(read.plan == plan)
        #expect(read.provenance == provenance)
        #expect(read.encoded == file.encoded)
        let text = String(decoding: file.encoded, as: UTF8.self)
        #expect(text.contains(#""scan_sampling": 8"#))
        let unsupported = Data(text.replacingOccurrences(of: #""scan_sampling": 8"#, with: #""scan_sampling": 3"#).utf8)
        try AtomicFile.write(unsupported, to: path)
        #expect {
            try CalibrationFile(contentsOf: path)
        } throws: { "\($0)".contains(path) && "\($0)".contains("scan_sampling must be one of 1, 2, 4, 8, 16") }
    }

    @Test("statistics merged from shards equal the statistics of the whole set")
    func shardedStatistics() throws {
        let (model, whole) = try microStatistics()
        let input = try NumPyArray(contentsOf: Fixtures.bundled("vim-official-init/vim_micro_input.npy")).tensor
        let c = model.configuration
        var minima: [Double]?
        var maxima: [Double]?
        for shard in [0..<1, 1..<4] {
            let observer = StatisticsObserver(
                statistics: CalibrationStatistics(depth: c.depth, length: c.tokenCount), pass: .ranges)
            _ = try model(input.slice(outer: shard), hooks: observer)
            let flat = observer.statistics.flatRanges
            minima = minima.map { zip($0, flat.minima).map { min($0, $1) } } ?? flat.minima
            maxima = maxima.map { zip($0, flat.maxima).map { max($0, $1) } } ?? flat.maxima
        }
        #expect(minima! == whole.flatRanges.minima && maxima! == whole.flatRanges.maxima)
        var counts: [Int64]?
        for shard in [0..<3, 3..<4] {
            var statistics = CalibrationStatistics(depth: c.depth, length: c.tokenCount)
            statistics.startHistograms(minima: minima!, maxima: maxima!)
            let observer = StatisticsObserver(statistics: statistics, pass: .histograms)
            _ = try model(input.slice(outer: shard), hooks: observer)
            observer.countImages(shard.count)
            let flat = observer.statistics.flatCounts
            counts = counts.map { zip($0, flat).map { $0 + $1 } } ?? flat
        }
        #expect(counts! == whole.flatCounts)
    }

    @Test("malformed calibration files are refused with the reason")
    func malformed() throws {
        let path = Fixtures.temporaryDirectory() + "/q.json"
        for (text, reason) in [
            ("[]", "not a JSON object"), (#"{"format": "other"}"#, "'format'"),
            (#"{"format": "qmamba-calibration", "format_version": 99}"#, "format_version 99"),
        ] {
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            #expect { try CalibrationFile(contentsOf: path) } throws: {
                "\($0)".contains(reason) && "\($0)".hasPrefix(path)
            }
        }
    }

    @Test("fake quantization at 16 bits changes the logits very little; the plan's weights lie on their grids")
    func sixteenBits() throws {
        let (model, statistics) = try microStatistics()
        var settings = QuantizationSettings(weightBits: 16, activationBits: 16)
        settings.edgeBits = 16
        let plan = try QuantizationPlan.fit(
            statistics: statistics, weights: model.weights, method: try CalibrationMethod.named("minmax"),
            settings: settings)
        let input = try NumPyArray(contentsOf: Fixtures.bundled("vim-official-init/vim_micro_input.npy")).tensor
        let reference = try model(input)
        let quantized = VimModel(configuration: model.configuration, weights: plan.quantizedWeights(model.weights))
        let logits = try quantized(input, hooks: FakeQuantizationHooks(plan: plan))
        #expect(relativeDifference(logits.scalars, reference: reference.scalars) < 2e-3)
        let (point, quantization) = plan.weights[3]
        let matrix = point.matrix(in: plan.quantizedWeights(model.weights))
        #expect(quantization.fakeQuantize(matrix) == matrix)
    }

    @Test(
        "quantization fused into the kernels gives the step-by-step hooks' logits bit for bit",
        arguments: ["qmamba", "mse", "mse+tgq-dp", "qmamba-search"])
    func fusedQuantization(_ name: String) throws {
        let (model, statistics) = try microStatistics()
        var settings = QuantizationSettings(weightBits: 4, activationBits: 4)
        settings.ltsqThreshold = 0
        let plan = try QuantizationPlan.fit(
            statistics: statistics, weights: model.weights, method: try CalibrationMethod.named(name),
            settings: settings)
        let kinds = Set(plan.activations.map(\.quantizer.kind))
        if name.hasPrefix("qmamba") { #expect(kinds.isSuperset(of: ["ltsq", "tgq"]), "\(kinds)") }
        let input = try NumPyArray(contentsOf: Fixtures.bundled("vim-official-init/vim_micro_input.npy")).tensor
        let quantized = VimModel(configuration: model.configuration, weights: plan.quantizedWeights(model.weights))
        let fused = try quantized(input, hooks: FakeQuantizationHooks(plan: plan))
        let stepwise = try quantized(input, hooks: FakeQuantizationHooks(plan: plan, fused: false))
        #expect(fused.scalars == stepwise.scalars)
        #expect(fused.scalars != (try model(input)).scalars)
    }
}
