import Checkpoint
import Foundation
import TensorModule
import TestSupport
import Testing
import Vim

@testable import Quantization

/// The micro fixture's own four input images.
func microInput() throws -> Tensor {
    try NumPyArray(contentsOf: Fixtures.bundled("vim-official-init/vim_micro_input.npy")).tensor
}

/// Statistics of the micro fixture on its own four input images, Ā counted against `discreteAThreshold`.
func microStatistics(
    discreteAThreshold: Float = QuantizationSettings.defaultLtsqThreshold
) throws -> (VimModel, CalibrationStatistics) {
    let model = try VimModel(loading: try CheckpointFile.open(Fixtures.bundled("vim-official-init/vim_micro.pth")))
    return (
        model, try CalibrationStatistics.observe(model, on: try microInput(), discreteAThreshold: discreteAThreshold)
    )
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
        let provenance = microProvenance(model, scanSampling: ScanSampling(stride: 8))
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
        } throws: { "\($0)".contains(path) && "\($0)".contains("scan_sampling 3: expected one of 1, 2, 4, 8") }
    }

    @Test("statistics merged from shards equal the statistics of the whole set")
    func shardedStatistics() throws {
        let (model, whole) = try microStatistics()
        let input = try microInput()
        let c = model.configuration
        var minima: [Double]?
        var maxima: [Double]?
        for shard in [0..<1, 1..<4] {
            let observer = StatisticsObserver(
                statistics: CalibrationStatistics(
                    depth: c.depth, length: c.tokenCount, discreteAThreshold: QuantizationSettings.defaultLtsqThreshold),
                pass: .ranges)
            _ = try model(input.slice(outer: shard), hooks: observer)
            let flat = observer.statistics.flatRanges
            minima = minima.map { zip($0, flat.minima).map { min($0, $1) } } ?? flat.minima
            maxima = maxima.map { zip($0, flat.maxima).map { max($0, $1) } } ?? flat.maxima
        }
        #expect(minima! == whole.flatRanges.minima && maxima! == whole.flatRanges.maxima)
        var thresholdCounts: [Int64]?
        for shard in [0..<2, 2..<4] {
            let flat = try CalibrationStatistics.observeRanges(model, on: input.slice(outer: shard)).flatThresholdCounts
            thresholdCounts = thresholdCounts.map { zip($0, flat).map { $0 + $1 } } ?? flat
        }
        #expect(thresholdCounts! == whole.flatThresholdCounts)
        // Two numbers per Ā point, the second every Ā value of the four images.
        let c0 = model.configuration
        let values = Int64(4 * c0.tokenCount * c0.innerDimension * c0.stateSize)
        #expect(thresholdCounts!.count == 2 * 2 * c0.depth)
        #expect(stride(from: 1, to: thresholdCounts!.count, by: 2).allSatisfy { thresholdCounts![$0] == values })
        var counts: [Int64]?
        for shard in [0..<3, 3..<4] {
            var statistics = CalibrationStatistics(depth: c.depth, length: c.tokenCount, discreteAThreshold: nil)
            statistics.startHistograms(minima: minima!, maxima: maxima!)
            let observer = StatisticsObserver(statistics: statistics, pass: .histograms)
            _ = try model(input.slice(outer: shard), hooks: observer)
            observer.countImages(shard.count)
            let flat = observer.statistics.flatCounts
            counts = counts.map { zip($0, flat).map { $0 + $1 } } ?? flat
        }
        #expect(counts! == whole.flatCounts)
    }

    @Test(
        "ranges alone fit the same plan as the full statistics where the method reads no histograms",
        arguments: CalibrationMethod.table.map(\.name))
    func rangesOnly(_ name: String) throws {
        let (model, complete) = try microStatistics()
        let ranges = try CalibrationStatistics.observeRanges(model, on: microInput())
        #expect(!ranges.hasHistograms && complete.hasHistograms)
        let method = try CalibrationMethod.named(name)
        #expect(method.readsHistograms == (name != "minmax"))
        func fit(_ statistics: CalibrationStatistics) throws -> QuantizationPlan {
            try QuantizationPlan.fit(
                statistics: statistics, weights: model.weights, method: method,
                settings: QuantizationSettings(weightBits: 4, activationBits: 4))
        }
        if method.readsHistograms {
            #expect(throws: QuantizationError.missingHistograms(method: name)) { try fit(ranges) }
        } else {
            // No threshold counts: the method never chooses LtSQ.
            let expected = try fit(complete)
            #expect(expected.discreteAThresholdCounts.isEmpty)
            #expect(try fit(ranges) == expected)
        }
    }

    @Test(
        "statistics collected for a method fit the same plan as complete ones, at any LtSQ threshold",
        arguments: CalibrationMethod.table.map(\.name))
    func histogramsOnlyWhereRead(_ name: String) throws {
        let method = try CalibrationMethod.named(name)
        #expect(method.readsLogDistances == name.hasSuffix("-search"))
        // α = 0: more than half of Ā is above it at every point (LtSQ everywhere for the LtSQ methods);
        // α = 1: nowhere; the default: the micro model's Ā points split (checked below).
        var majorities: [Float: Int] = [:]
        var depth = 0
        for threshold: Float in [0, 0.5, 1] {
            let (model, complete) = try microStatistics(discreteAThreshold: threshold)
            depth = model.configuration.depth
            let partial = try CalibrationStatistics.observe(
                model, on: microInput(), discreteAThreshold: threshold, reading: [method])
            var settings = QuantizationSettings(weightBits: 4, activationBits: 4)
            settings.ltsqThreshold = threshold
            func fit(_ statistics: CalibrationStatistics) throws -> QuantizationPlan {
                try QuantizationPlan.fit(
                    statistics: statistics, weights: model.weights, method: method, settings: settings)
            }
            #expect(try fit(partial) == fit(complete), "threshold \(threshold)")
            // The plan keeps the counts where they decided something.
            #expect(try fit(complete).discreteAThresholdCounts.count == (method.readsThresholdCounts ? 2 * depth : 0))
            let majority = complete.points.filter { $0.aboveThreshold?.isMajorityAbove == true }.count
            majorities[threshold] = majority
            // Ā's values are counted where the method fits a uniform quantizer on them, or searches LtSQ's scale.
            let counted: Int
            switch method.discreteA {
            case .uniform: counted = method.readsHistograms ? 2 * depth : 0
            case .ltsq: counted = 2 * depth - majority
            case .ltsqSearch: counted = 2 * depth
            }
            if method.readsHistograms { #expect(partial.countedDiscreteAPoints == counted, "threshold \(threshold)") }
            #expect(partial.points.filter { $0.logHistogram != nil }.count == (method.readsLogDistances ? majority : 0))
            #expect(
                partial.points.filter { $0.role != .discreteA }.map(\.histograms)
                    == complete.points.filter { $0.role != .discreteA }.map(\.histograms))
            // Another method on these statistics is refused where they lack what it reads, naming the point.
            if method.discreteA == .ltsq && majority > 0 {
                let uniform = try CalibrationMethod.named("mse")
                #expect {
                    try QuantizationPlan.fit(
                        statistics: partial, weights: model.weights, method: uniform, settings: settings)
                } throws: { "\($0)".contains("method mse fits a uniform quantizer at layers.") }
                let search = try CalibrationMethod.named("qmamba-search")
                #expect {
                    try QuantizationPlan.fit(
                        statistics: partial, weights: model.weights, method: search, settings: settings)
                } throws: { "\($0)".contains("method qmamba-search searches LtSQ's scale at layers.") }
            }
        }
        #expect(majorities[0] == 2 * depth && majorities[1] == 0)
        #expect(majorities[0.5]! > 0 && majorities[0.5]! < 2 * depth)
    }

    @Test("statistics counted against one LtSQ threshold are not fitted with another")
    func thresholdMismatch() throws {
        let (model, statistics) = try microStatistics()
        var settings = QuantizationSettings(weightBits: 4, activationBits: 4)
        settings.ltsqThreshold = 0.7
        #expect(throws: QuantizationError.thresholdMismatch(statistics: 0.5, settings: 0.7)) {
            try QuantizationPlan.fit(
                statistics: statistics, weights: model.weights, method: CalibrationMethod.named("qmamba"),
                settings: settings)
        }
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

    /// The micro model and the plan `method` fits to its statistics with `bits`-bit weights and
    /// activations (`edgeBits` at the edge layers, their default when nil), LtSQ on every Ā it allows.
    func microPlan(_ method: String = "qmamba", bits: Int = 4, edgeBits: Int? = nil) throws -> (
        VimModel, QuantizationPlan
    ) {
        let (model, statistics) = try microStatistics(discreteAThreshold: 0)
        var settings = QuantizationSettings(weightBits: bits, activationBits: bits)
        settings.ltsqThreshold = 0
        if let edgeBits { settings.edgeBits = edgeBits }
        let plan = try QuantizationPlan.fit(
            statistics: statistics, weights: model.weights, method: try CalibrationMethod.named(method),
            settings: settings)
        return (model, plan)
    }

    /// The provenance the tests write with a plan of the micro model.
    func microProvenance(_ model: VimModel, scanSampling: ScanSampling = .everyValue) -> CalibrationFile.Provenance {
        CalibrationFile.Provenance(
            checkpointName: "vim_micro.pth", checkpointSHA256: "00", configuration: model.configuration, data: "inline",
            imageCount: 4, seed: 0, imageListSHA256: "11", tool: "test", scanSampling: scanSampling)
    }

    /// `microPlan()`'s plan, and its calibration file's bytes.
    func encodedMicroPlan() throws -> (plan: QuantizationPlan, encoded: Data) {
        let (model, plan) = try microPlan()
        return (plan, CalibrationFile(plan: plan, provenance: microProvenance(model)).encoded)
    }

    /// The first activation point with a quantizer of `kind`.
    func firstPoint(of kind: String, in plan: QuantizationPlan) -> String {
        "\(plan.activations.first { $0.quantizer.kind == kind }!.point)"
    }

    @Test("quantizer parameters no grid can take are refused, naming the point and the accepted range")
    func outOfRangeParameters() throws {
        let (plan, encoded) = try encodedMicroPlan()
        let (ltsq, uniform, tgq) = (
            firstPoint(of: "ltsq", in: plan), firstPoint(of: "uniform", in: plan), firstPoint(of: "tgq", in: plan)
        )
        let weight = plan.weights[0].0.description
        let path = Fixtures.temporaryDirectory() + "/q.json"
        let cases: [(String, (inout [String: Any]) -> Void, String)] = [
            (ltsq, { $0["bits"] = 40 }, "40 bits (LtSQ takes 1 to 16)"),
            (ltsq, { $0["log_scale"] = 1e30 }, "log2 scale 1e+30 (must be within ±64)"),
            (uniform, { $0["zero_point"] = 1 << 30 }, "zero point 1073741824"),
            (uniform, { $0["scale"] = 0 }, "scale 0.0 (must be a positive number)"),
            (
                tgq,
                {
                    $0["groups"] = [
                        ["start": 0, "end": 5, "bits": 17, "scale": 1, "zero_point": 0, "symmetric": false]
                    ]
                },
                "17 bits"
            ),
            (weight, { $0["bits"] = 1 }, "1 bits (weights take 2 to 16)"),
        ]
        for (point, change, reason) in cases {
            var root = try JSONSerialization.jsonObject(with: encoded) as! [String: Any]
            let section = point == weight ? "weights" : "activations"
            var entries = root[section] as! [String: Any]
            var entry = entries[point] as! [String: Any]
            change(&entry)
            entries[point] = entry
            root[section] = entries
            try JSONSerialization.data(withJSONObject: root).write(to: URL(fileURLWithPath: path))
            #expect { try CalibrationFile(contentsOf: path) } throws: {
                "\($0)".hasPrefix(path) && "\($0)".contains("\(point): ") && "\($0)".contains(reason)
            }
        }
        // A depth that no model has, or one that would list a trillion layers' points.
        for (depth, reason) in [(-1, "not a valid Vim configuration"), (1_000_000_000_000, "has depth 1000000000000")] {
            var root = try JSONSerialization.jsonObject(with: encoded) as! [String: Any]
            var modelObject = root["model"] as! [String: Any]
            var configuration = modelObject["configuration"] as! [String: Any]
            configuration["depth"] = depth
            modelObject["configuration"] = configuration
            root["model"] = modelObject
            try JSONSerialization.data(withJSONObject: root).write(to: URL(fileURLWithPath: path))
            #expect { try CalibrationFile(contentsOf: path) } throws: { "\($0)".contains(reason) }
        }
    }

    @Test("a point the model lacks, or settings out of their range, are refused rather than ignored")
    func strayPointsAndSettings() throws {
        let encoded = try encodedMicroPlan().encoded
        let path = Fixtures.temporaryDirectory() + "/q.json"
        // (section, the change, what the error must say)
        let cases: [(String, (inout [String: Any]) -> Void, String)] = [
            ("activations", { $0["layers.9.fwd.h"] = $0["layers.0.fwd.h"] }, "'layers.9.fwd.h'"),
            ("activations", { $0["layers.0.fwd.hidden"] = $0["layers.0.fwd.h"] }, "hidden"),
            (
                "weights",
                { $0["layers.4.mixer.in_proj.weight"] = $0["layers.0.mixer.in_proj.weight"] }, "layers.4"
            ),
            ("settings", { $0["groups"] = 0 }, "settings: groups 0 (takes 1 to 100000)"),
            ("settings", { $0["edge_bits"] = 1 }, "settings: edge_bits 1 (takes 2 to 16)"),
            ("settings", { $0["ltsq_threshold"] = 1.5 }, "settings: ltsq_threshold 1.5"),
        ]
        for (section, change, reason) in cases {
            var root = try JSONSerialization.jsonObject(with: encoded) as! [String: Any]
            var object = root[section] as! [String: Any]
            change(&object)
            root[section] = object
            try JSONSerialization.data(withJSONObject: root).write(to: URL(fileURLWithPath: path))
            #expect { try CalibrationFile(contentsOf: path) } throws: {
                "\($0)".hasPrefix(path) && "\($0)".contains(reason)
                    && (section == "settings" || "\($0)".contains("which is not a quantization point of this model"))
            }
        }
    }

    @Test("a damaged export is refused with the reason, whichever parameter is damaged")
    func damagedExport() throws {
        let (model, plan) = try microPlan()
        let directory = Fixtures.temporaryDirectory()
        try QuantizedModelFile.write(
            plan: plan, source: try CheckpointFile.open(Fixtures.bundled("vim-official-init/vim_micro.pth")),
            configuration: model.configuration, weights: model.weights, to: directory + "/m.safetensors")
        let file = try SafetensorsFile(path: directory + "/m.safetensors")
        let tensors = try file.tensorNames.map { try file.rawTensor(named: $0) }
        _ = try QuantizedModelFile.read(directory + "/m.safetensors")
        let (ltsq, uniform, tgq) = (
            firstPoint(of: "ltsq", in: plan), firstPoint(of: "uniform", in: plan), firstPoint(of: "tgq", in: plan)
        )
        let weight = plan.weights.first { $0.1.bits == 4 }!.0.description
        func weightInfo(_ change: @escaping (inout [String: Any]) -> Void) -> (inout [String: Any]) -> Void {
            { description in
                var weights = description["weights"] as! [String: Any]
                var info = weights[weight] as! [String: Any]
                change(&info)
                weights[weight] = info
                description["weights"] = weights
            }
        }
        let tokens = model.configuration.tokenCount
        let cases: [(String, RawTensor?, ((inout [String: Any]) -> Void)?, String)] = [
            ("act.\(ltsq).log_scale", RawTensor(name: "", Tensor(shape: [1], scalars: [1e30])), nil, "log2 scale"),
            ("act.\(uniform).scale", RawTensor(name: "", Tensor(shape: [0], scalars: [])), nil, "holds 0 values"),
            ("act.\(uniform).zero_point", RawTensor(name: "", Tensor(shape: [1], scalars: [0])), nil, "expected 1 I32"),
            (
                "act.\(tgq).boundaries",
                RawTensor(
                    name: "", int32: [0] + (1..<plan.settings.groups).map { Int32(tokens - $0) } + [Int32(tokens)],
                    shape: [plan.settings.groups + 1]), nil, "do not split"
            ),
            ("", nil, weightInfo { $0["bits"] = 1 }, "\(weight): 1 bits"),
            ("", nil, weightInfo { $0["packing"] = "int16" }, "packing 'int16' for 4 bits"),
            ("", nil, weightInfo { $0["shape"] = [0, 4] }, "does not have"),
            (
                "", nil,
                { description in
                    var activations = description["activations"] as! [String: Any]
                    activations[uniform] = ["kind": "uniform"]
                    description["activations"] = activations
                }, "no activation quantizer (kind and bits) for \(uniform)"
            ),
        ]
        for (name, replacement, change, reason) in cases {
            var metadata = file.metadata
            if let change {
                var description =
                    try JSONSerialization.jsonObject(with: Data(metadata["qmamba"]!.utf8)) as! [String: Any]
                change(&description)
                metadata["qmamba"] = String(
                    decoding: try JSONSerialization.data(withJSONObject: description), as: UTF8.self)
            }
            let damaged = tensors.map { tensor in
                guard tensor.name == name, var replacement else { return tensor }
                replacement.name = name
                return replacement
            }
            #expect(replacement == nil || damaged != tensors, "\(name) is not in the export")
            let path = directory + "/damaged.safetensors"
            try SafetensorsFile.write(damaged, metadata: metadata, to: path)
            #expect { try QuantizedModelFile.read(path) } throws: {
                "\($0)".contains(path) && "\($0)".contains(reason)
            }
        }
        for depth in [-1, 1_000_000_000_000] {
            var metadata = file.metadata
            var configuration =
                try JSONSerialization.jsonObject(with: Data(metadata["configuration"]!.utf8)) as! [String: Any]
            configuration["depth"] = depth
            metadata["configuration"] = String(
                decoding: try JSONSerialization.data(withJSONObject: configuration), as: UTF8.self)
            let path = directory + "/damaged.safetensors"
            try SafetensorsFile.write(tensors, metadata: metadata, to: path)
            #expect { try QuantizedModelFile.read(path) } throws: {
                "\($0)".contains("not a valid Vim configuration for its weights")
            }
        }
    }

    @Test("fake quantization at 16 bits changes the logits very little; the plan's weights lie on their grids")
    func sixteenBits() throws {
        let (model, plan) = try microPlan("minmax", bits: 16, edgeBits: 16)
        let input = try microInput()
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
        let (model, plan) = try microPlan(name)
        let kinds = Set(plan.activations.map(\.quantizer.kind))
        if name.hasPrefix("qmamba") { #expect(kinds.isSuperset(of: ["ltsq", "tgq"]), "\(kinds)") }
        let input = try microInput()
        let quantized = VimModel(configuration: model.configuration, weights: plan.quantizedWeights(model.weights))
        let fused = try quantized(input, hooks: FakeQuantizationHooks(plan: plan))
        let stepwise = try quantized(input, hooks: FakeQuantizationHooks(plan: plan, fused: false))
        #expect(fused.scalars == stepwise.scalars)
        #expect(fused.scalars != (try model(input)).scalars)
    }
}
