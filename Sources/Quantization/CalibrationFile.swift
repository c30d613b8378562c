import Foundation
import TensorModule
import Vim

/// The calibration file (`Q.json`): a versioned, canonical record of a fitted `QuantizationPlan` and
/// where it came from.
///
/// Format versions: 1 — first version (this tool 0.1).
///
/// The bytes depend only on the model, the calibration images, the method and the settings: nothing
/// about the run (rank count, timing, host) is written, so runs with 1, 2 or 3 ranks give identical
/// files.
public struct CalibrationFile: Sendable {
    /// The format's name in the file.
    public static let formatName = "qmamba-calibration"
    /// The current format version.
    public static let formatVersion = 1

    /// Where the calibration came from.
    public struct Provenance: Sendable, Equatable {
        /// The checkpoint's file name (not its directory, which differs between machines).
        public var checkpointName: String
        /// SHA-256 of the checkpoint file.
        public var checkpointSHA256: String
        /// The model's configuration.
        public var configuration: VimConfiguration
        /// The calibration data location as given.
        public var data: String
        /// Images that went through the model.
        public var imageCount: Int
        /// Seed of the image subset.
        public var seed: UInt64
        /// SHA-256 of the chosen image list (paths relative to the data folder and labels, one per line).
        public var imageListSHA256: String
        /// The tool that wrote the file.
        public var tool: String
        /// Which of the scan's Ā, B̄ and h values the histograms counted; written only when not every one.
        public var scanSampling: ScanSampling

        /// Creates a provenance record.
        public init(
            checkpointName: String, checkpointSHA256: String, configuration: VimConfiguration, data: String,
            imageCount: Int, seed: UInt64, imageListSHA256: String, tool: String,
            scanSampling: ScanSampling = .everyValue
        ) {
            self.scanSampling = scanSampling
            self.checkpointName = checkpointName
            self.checkpointSHA256 = checkpointSHA256
            self.configuration = configuration
            self.data = data
            self.imageCount = imageCount
            self.seed = seed
            self.imageListSHA256 = imageListSHA256
            self.tool = tool
        }
    }

    /// The fitted quantizers.
    public var plan: QuantizationPlan
    /// Where they came from.
    public var provenance: Provenance

    /// Wraps a plan and its provenance.
    public init(plan: QuantizationPlan, provenance: Provenance) {
        self.plan = plan
        self.provenance = provenance
    }

    // MARK: - Writing

    /// The canonical encoding.
    public var encoded: Data {
        let c = provenance.configuration
        var activations: [String: CanonicalJSON] = [:]
        for (point, quantizer) in plan.activations {
            var entry: [String: CanonicalJSON] = ["quantizer": .string(quantizer.kind)]
            switch quantizer {
            case .uniform(let q):
                entry.merge(Self.uniformFields(q)) { $1 }
            case .longTailed(let q):
                entry["bits"] = .integer(q.bits)
                entry["log_scale"] = .float(q.logScale)
            case .temporalGroups(let tgq):
                entry["groups"] = .array(
                    tgq.groups.map { group in
                        .object(
                            Self.uniformFields(group.quantizer).merging([
                                "start": .integer(group.steps.lowerBound), "end": .integer(group.steps.upperBound),
                            ]) { $1 })
                    })
            }
            if let count = plan.discreteAThresholdCounts[point] {
                entry["values_above_threshold"] = .integer(Int(count.above))
                entry["values_counted"] = .integer(Int(count.total))
            }
            activations[point.description] = .object(entry)
        }
        var weights: [String: CanonicalJSON] = [:]
        for (point, quantization) in plan.weights {
            weights[point.description] = .object([
                "bits": .integer(quantization.bits), "scales": .array(quantization.scales.map { .float($0) }),
            ])
        }
        var calibration: [String: CanonicalJSON] = [
            "data": .string(provenance.data), "images": .integer(provenance.imageCount),
            "seed": .string(String(provenance.seed)), "image_list_sha256": .string(provenance.imageListSHA256),
        ]
        if provenance.scanSampling != .everyValue {
            calibration["scan_sampling"] = .integer(provenance.scanSampling.stride)
        }
        let document: CanonicalJSON = .object([
            "format": .string(Self.formatName),
            "format_version": .integer(Self.formatVersion),
            "tool": .string(provenance.tool),
            "model": .object([
                "checkpoint": .string(provenance.checkpointName),
                "sha256": .string(provenance.checkpointSHA256),
                "registered_name": .string(VimRegistry.entry(matching: c)?.name ?? "custom"),
                "configuration": .object([
                    "img_size": .integer(c.imageSize), "patch_size": .integer(c.patchSize),
                    "stride": .integer(c.stride),
                    "embed_dim": .integer(c.embedDimension), "depth": .integer(c.depth),
                    "d_state": .integer(c.stateSize),
                    "num_classes": .integer(c.classCount), "channels": .integer(c.channels),
                    "expand": .integer(c.expand),
                    "d_conv": .integer(c.convolutionWidth), "dt_rank": .integer(c.stepRank),
                    "norm_epsilon": .float(c.normEpsilon),
                ]),
            ]),
            "calibration": .object(calibration),
            "method": .string(plan.method.name),
            "settings": .object([
                "weight_bits": .integer(plan.settings.weightBits),
                "activation_bits": .integer(plan.settings.activationBits),
                "edge_bits": .integer(plan.settings.edgeBits), "groups": .integer(plan.settings.groups),
                "ltsq_threshold": .float(plan.settings.ltsqThreshold),
            ]),
            "activations": .object(activations),
            "weights": .object(weights),
        ])
        return Data(document.text.utf8)
    }

    private static func uniformFields(_ q: UniformQuantizer) -> [String: CanonicalJSON] {
        [
            "bits": .integer(q.bits), "scale": .float(q.scale), "zero_point": .integer(q.zeroPoint),
            "symmetric": .bool(q.symmetric),
        ]
    }

    // MARK: - Reading

    /// Reads and validates a calibration file.
    ///
    /// - Throws: `QuantizationError.invalidCalibrationFile` naming the file and the first problem.
    public init(contentsOf path: String) throws {
        func invalid(_ detail: String) -> QuantizationError { .invalidCalibrationFile(path: path, detail: detail) }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw invalid("cannot read it (\((error as NSError).localizedDescription))")
        }
        try self.init(data: data, path: path)
    }

    /// Parses calibration-file bytes; `path` only names them in errors.
    public init(data: Data, path: String) throws {
        func invalid(_ detail: String) -> QuantizationError { .invalidCalibrationFile(path: path, detail: detail) }
        guard let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw invalid("it is not a JSON object")
        }
        guard root["format"] as? String == Self.formatName else { throw invalid("'format' is not \(Self.formatName)") }
        guard let version = root["format_version"] as? Int, version == Self.formatVersion else {
            throw invalid(
                "format_version \(root["format_version"] ?? "missing") is not supported (this tool reads \(Self.formatVersion))"
            )
        }
        let reader = JSONReader(invalid: invalid)
        let model = try reader.object(root, "model")
        let configurationObject = try reader.object(model, "configuration")
        let configurationData = try JSONSerialization.data(withJSONObject: configurationObject)
        guard let configuration = try? JSONDecoder().decode(VimConfiguration.self, from: configurationData),
            (try? configuration.validate()) != nil
        else { throw invalid("model.configuration is not a valid Vim configuration") }
        let calibration = try reader.object(root, "calibration")
        let settingsObject = try reader.object(root, "settings")
        var settings = QuantizationSettings(
            weightBits: try reader.int(settingsObject, "weight_bits"),
            activationBits: try reader.int(settingsObject, "activation_bits"))
        settings.edgeBits = try reader.int(settingsObject, "edge_bits")
        settings.groups = try reader.int(settingsObject, "groups")
        settings.ltsqThreshold = try reader.float(settingsObject, "ltsq_threshold")
        if let problem = settings.problem { throw invalid("settings: \(problem)") }
        let method: CalibrationMethod
        do {
            method = try CalibrationMethod.named(try reader.string(root, "method"))
        } catch {
            throw invalid("\(error)")
        }
        let activationObject = try reader.object(root, "activations")
        // Every layer has activation entries, so this bounds the points listed below by the file's size.
        guard configuration.depth <= activationObject.count else {
            throw invalid(
                "model.configuration has depth \(configuration.depth) for \(activationObject.count) activations")
        }
        var activations: [(ObservationPoint, ActivationQuantizer)] = []
        var thresholdCounts: [ObservationPoint: ThresholdCount] = [:]
        for (point, _) in QuantizationPoints.activations(depth: configuration.depth) {
            let entry = try reader.object(activationObject, point.description)
            switch try reader.string(entry, "quantizer") {
            case "uniform": activations.append((point, .uniform(try reader.uniform(entry, point: point))))
            case "ltsq":
                activations.append(
                    (
                        point,
                        .longTailed(try reader.longTailed(entry, point: point))
                    ))
            case "tgq":
                guard let groups = entry["groups"] as? [[String: Any]], !groups.isEmpty else {
                    throw invalid("\(point): 'groups' is missing or empty")
                }
                var parsed: [TemporalGroupQuantizer.Group] = []
                for group in groups {
                    let (start, end) = (try reader.int(group, "start"), try reader.int(group, "end"))
                    guard start == (parsed.last?.steps.upperBound ?? 0), end > start else {
                        throw invalid("\(point): TGQ groups do not tile the time steps")
                    }
                    parsed.append(.init(steps: start..<end, quantizer: try reader.uniform(group, point: point)))
                }
                guard parsed.last!.steps.upperBound == configuration.tokenCount else {
                    throw invalid(
                        "\(point): TGQ groups cover \(parsed.last!.steps.upperBound) steps, the model has \(configuration.tokenCount)"
                    )
                }
                activations.append((point, .temporalGroups(TemporalGroupQuantizer(groups: parsed))))
            case let other:
                throw invalid("\(point): unknown quantizer '\(other)'")
            }
            if entry["values_above_threshold"] != nil || entry["values_counted"] != nil {
                let (above, total) = (
                    try reader.int(entry, "values_above_threshold"), try reader.int(entry, "values_counted")
                )
                guard 0 <= above, above <= total else {
                    throw invalid(
                        "\(point): values_above_threshold \(above) is not between 0 and values_counted \(total)")
                }
                thresholdCounts[point] = ThresholdCount(
                    threshold: settings.ltsqThreshold, above: Int64(above), total: Int64(total))
            }
        }
        // A point this model lacks (a mistyped override, or another depth's layer) would otherwise be ignored.
        try reader.refuseStrayKeys(
            in: activationObject, named: "activations", expected: activations.map(\.0.description))
        let weightObject = try reader.object(root, "weights")
        var weights: [(WeightPoint, WeightQuantization)] = []
        let weightPoints = WeightPoint.all(depth: configuration.depth)
        try reader.refuseStrayKeys(in: weightObject, named: "weights", expected: weightPoints.map(\.description))
        for point in weightPoints {
            let entry = try reader.object(weightObject, point.description)
            guard let numbers = entry["scales"] as? [NSNumber] else { throw invalid("\(point): 'scales' is missing") }
            let (bits, scales) = (try reader.int(entry, "bits"), numbers.map(\.floatValue))
            if let problem = WeightQuantization.problem(bits: bits, scales: scales) {
                throw invalid("\(point): \(problem)")
            }
            weights.append((point, WeightQuantization(bits: bits, scales: scales)))
        }
        plan = QuantizationPlan(
            method: method, settings: settings, activations: activations, weights: weights,
            discreteAThresholdCounts: thresholdCounts)
        guard let seed = UInt64(try reader.string(calibration, "seed")) else {
            throw invalid("calibration.seed is not a number")
        }
        let stride = calibration["scan_sampling"] == nil ? 1 : try reader.int(calibration, "scan_sampling")
        if let problem = ScanSampling.problem(stride: stride, states: configuration.stateSize) {
            throw invalid("calibration.scan_sampling \(stride): \(problem)")
        }
        provenance = Provenance(
            checkpointName: try reader.string(model, "checkpoint"),
            checkpointSHA256: try reader.string(model, "sha256"),
            configuration: configuration, data: try reader.string(calibration, "data"),
            imageCount: try reader.int(calibration, "images"), seed: seed,
            imageListSHA256: try reader.string(calibration, "image_list_sha256"), tool: try reader.string(root, "tool"),
            scanSampling: ScanSampling(stride: stride))
    }

    /// Checks that the plan fits `configuration` and has one weight scale per output channel.
    public func validate(against configuration: VimConfiguration, weights: VimWeights, path: String) throws {
        guard provenance.configuration == configuration else {
            throw QuantizationError.invalidCalibrationFile(
                path: path, detail: "it was made for another model configuration (\(provenance.checkpointName))")
        }
        for (point, quantization) in plan.weights where quantization.scales.count != point.matrix(in: weights).shape[0]
        {
            throw QuantizationError.invalidCalibrationFile(
                path: path,
                detail:
                    "\(point) has \(quantization.scales.count) scales for \(point.matrix(in: weights).shape[0]) channels"
            )
        }
    }
}

/// Typed access to `JSONSerialization` output with errors naming the key.
private struct JSONReader {
    let invalid: (String) -> QuantizationError

    func object(_ parent: [String: Any], _ key: String) throws -> [String: Any] {
        guard let value = parent[key] as? [String: Any] else { throw invalid("'\(key)' is missing or not an object") }
        return value
    }

    /// Throws for the first key of `object` (in sorted order) that is not among `expected`.
    func refuseStrayKeys(in object: [String: Any], named section: String, expected: [String]) throws {
        let known = Set(expected)
        if let stray = object.keys.sorted().first(where: { !known.contains($0) }) {
            throw invalid("\(section) lists '\(stray)', which is not a quantization point of this model")
        }
    }

    func string(_ parent: [String: Any], _ key: String) throws -> String {
        guard let value = parent[key] as? String else { throw invalid("'\(key)' is missing or not a string") }
        return value
    }

    func int(_ parent: [String: Any], _ key: String) throws -> Int {
        guard let number = parent[key] as? NSNumber, let value = Int(exactly: number.doubleValue) else {
            throw invalid("'\(key)' is missing or not an integer")
        }
        return value
    }

    func float(_ parent: [String: Any], _ key: String) throws -> Float {
        guard let number = parent[key] as? NSNumber, number.floatValue.isFinite else {
            throw invalid("'\(key)' is missing or not a finite number")
        }
        return number.floatValue
    }

    func uniform(_ entry: [String: Any], point: ObservationPoint) throws -> UniformQuantizer {
        let (bits, scale, zeroPoint) = (try int(entry, "bits"), try float(entry, "scale"), try int(entry, "zero_point"))
        guard let symmetric = entry["symmetric"] as? Bool else { throw invalid("\(point): 'symmetric' is missing") }
        if let problem = UniformQuantizer.problem(scale: scale, zeroPoint: zeroPoint, bits: bits, symmetric: symmetric)
        {
            throw invalid("\(point): \(problem)")
        }
        return UniformQuantizer(scale: scale, zeroPoint: zeroPoint, bits: bits, symmetric: symmetric)
    }

    func longTailed(_ entry: [String: Any], point: ObservationPoint) throws -> LongTailedSkewnessQuantizer {
        let (bits, logScale) = (try int(entry, "bits"), try float(entry, "log_scale"))
        if let problem = LongTailedSkewnessQuantizer.problem(bits: bits, logScale: logScale) {
            throw invalid("\(point): \(problem)")
        }
        return LongTailedSkewnessQuantizer(bits: bits, logScale: logScale)
    }
}
