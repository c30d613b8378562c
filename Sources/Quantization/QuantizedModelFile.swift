import Checkpoint
import Foundation
import TensorModule
import Vim

/// A calibrated model as one safetensors file (Docs/FORMAT.md): integer weights with per-channel
/// scales, every activation quantizer's parameters as tensors, the float parameters unchanged, and a
/// JSON description in the metadata under `qmamba`.
///
/// Weight codes are symmetric (zero point 0): `int4` packs two codes per byte (low nibble = even
/// column, two's complement), `int8` and `int16` store one code per element. Dequantized, a weight
/// is `scale[row] · code`, exactly the fake-quantized value the tool evaluates with.
public enum QuantizedModelFile {
    /// The format version written into the metadata.
    public static let formatVersion = 1
    /// The metadata key under which an export describes itself (what marks a safetensors file as one).
    public static let metadataKey = "qmamba"

    /// How a weight's codes are stored for a bit width.
    static func packing(bits: Int) -> String { bits <= 4 ? "int4x2" : bits <= 8 ? "int8" : "int16" }

    /// Writes `plan` applied to the model read from `source` (whose float tensors are copied as they are).
    public static func write(
        plan: QuantizationPlan, source: TensorSource, configuration: VimConfiguration, weights: VimWeights,
        to path: String
    ) throws {
        var tensors: [RawTensor] = []
        var weightInfo: [String: CanonicalJSON] = [:]
        let quantized = Set(plan.weights.map(\.point.description))
        for (point, quantization) in plan.weights {
            let key = point.description
            let matrix = point.matrix(in: weights)
            let (rows, columns) = (matrix.shape[0], matrix.shape[1])
            let codes = quantization.codes(matrix)
            let packing = packing(bits: quantization.bits)
            tensors.append(packed(codes, rows: rows, columns: columns, packing: packing, name: key + ".qweight"))
            tensors.append(RawTensor(name: key + ".scale", Tensor(shape: [rows], scalars: quantization.scales)))
            weightInfo[key] = .object([
                "bits": .integer(quantization.bits), "packing": .string(packing),
                "shape": .array((source.shape(of: key) ?? matrix.shape).map { .integer($0) }),
            ])
        }
        for name in source.tensorNames where !quantized.contains(name) {
            tensors.append(RawTensor(name: name, try source.tensor(named: name)))
        }
        var activationInfo: [String: CanonicalJSON] = [:]
        for (point, quantizer) in plan.activations {
            let prefix = "act.\(point)."
            switch quantizer {
            case .uniform(let q):
                tensors.append(RawTensor(name: prefix + "scale", Tensor(shape: [1], scalars: [q.scale])))
                tensors.append(RawTensor(name: prefix + "zero_point", int32: [Int32(q.zeroPoint)], shape: [1]))
                activationInfo["\(point)"] = .object([
                    "kind": .string("uniform"), "bits": .integer(q.bits), "symmetric": .bool(q.symmetric),
                ])
            case .longTailed(let q):
                let grid = q.grid
                tensors.append(RawTensor(name: prefix + "log_scale", Tensor(shape: [1], scalars: [q.logScale])))
                tensors.append(
                    RawTensor(
                        name: prefix + "values",
                        Tensor(shape: [1 << q.bits], scalars: (0..<(1 << q.bits)).map { grid.value(ofCode: $0) })))
                activationInfo["\(point)"] = .object(["kind": .string("ltsq"), "bits": .integer(q.bits)])
            case .temporalGroups(let tgq):
                let groups = tgq.groups
                let boundaries = [Int32(0)] + groups.map { Int32($0.steps.upperBound) }
                tensors.append(RawTensor(name: prefix + "boundaries", int32: boundaries, shape: [groups.count + 1]))
                tensors.append(
                    RawTensor(
                        name: prefix + "scale", Tensor(shape: [groups.count], scalars: groups.map(\.quantizer.scale))))
                tensors.append(
                    RawTensor(
                        name: prefix + "zero_point", int32: groups.map { Int32($0.quantizer.zeroPoint) },
                        shape: [groups.count]))
                activationInfo["\(point)"] = .object([
                    "kind": .string("tgq"), "bits": .integer(groups[0].quantizer.bits),
                    "symmetric": .bool(groups[0].quantizer.symmetric), "groups": .integer(groups.count),
                ])
            }
        }
        let description: CanonicalJSON = .object([
            "format": .integer(formatVersion),
            "method": .string(plan.method.name),
            "setting": .string(plan.settings.name),
            "weight_bits": .integer(plan.settings.weightBits),
            "activation_bits": .integer(plan.settings.activationBits),
            "edge_bits": .integer(plan.settings.edgeBits),
            "groups": .integer(plan.settings.groups),
            "ltsq_threshold": .float(plan.settings.ltsqThreshold),
            "weights": .object(weightInfo),
            "activations": .object(activationInfo),
        ])
        let configurationJSON = String(decoding: try JSONEncoder().encode(configuration), as: UTF8.self)
        try SafetensorsFile.write(
            tensors, metadata: [metadataKey: description.line, "configuration": configurationJSON], to: path)
    }

    private static func packed(_ codes: [Int], rows: Int, columns: Int, packing: String, name: String) -> RawTensor {
        switch packing {
        case "int4x2":
            let width = (columns + 1) / 2
            var bytes = [UInt8](repeating: 0, count: rows * width)
            for row in 0..<rows {
                for column in 0..<columns {
                    let nibble = UInt8(truncatingIfNeeded: codes[row * columns + column]) & 0x0F
                    bytes[row * width + column / 2] |= column % 2 == 0 ? nibble : nibble << 4
                }
            }
            return RawTensor(name: name, dtype: "U8", shape: [rows, width], bytes: bytes)
        case "int8":
            return RawTensor(
                name: name, dtype: "I8", shape: [rows, columns], bytes: codes.map { UInt8(bitPattern: Int8($0)) })
        default:
            return RawTensor(
                name: name, dtype: "I16", shape: [rows, columns],
                bytes: codes.flatMap { withUnsafeBytes(of: Int16($0).littleEndian) { Array($0) } })
        }
    }

    /// Reads an exported file back: the model with dequantized weights and the plan of its activation
    /// and weight quantizers (Ā's threshold counts, which only explain the fit, are not exported).
    public static func read(_ path: String) throws -> (model: VimModel, plan: QuantizationPlan) {
        let file = try SafetensorsFile(path: path)
        func invalid(_ detail: String) -> QuantizationError {
            .invalidCalibrationFile(path: path, detail: "not a qmamba export: \(detail)")
        }
        guard let text = file.metadata[metadataKey], let configurationText = file.metadata["configuration"],
            let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
            object["format"] as? Int == formatVersion, let weightInfo = object["weights"] as? [String: [String: Any]],
            let activationInfo = object["activations"] as? [String: [String: Any]],
            let methodName = object["method"] as? String, let setting = object["setting"] as? String
        else { throw invalid("the 'qmamba' metadata is missing or of another version") }
        // Every layer has quantized weights, so the depth is bounded by the file's size before any
        // per-layer list is built.
        guard let configuration = try? JSONDecoder().decode(VimConfiguration.self, from: Data(configurationText.utf8)),
            (try? configuration.validate()) != nil, configuration.depth <= weightInfo.count
        else { throw invalid("the 'configuration' metadata is not a valid Vim configuration for its weights") }
        var settings = try QuantizationSettings(named: setting)
        settings.edgeBits = object["edge_bits"] as? Int ?? settings.edgeBits
        settings.groups = object["groups"] as? Int ?? settings.groups
        settings.ltsqThreshold = (object["ltsq_threshold"] as? NSNumber)?.floatValue ?? settings.ltsqThreshold

        /// The values of a parameter tensor, which must hold `count` of them (any count when nil).
        func floats(_ name: String, count: Int? = nil) throws -> [Float] {
            let values = try file.tensor(named: name).scalars
            guard count == nil || values.count == count else {
                throw invalid("'\(name)' holds \(values.count) values, expected \(count!)")
            }
            return values
        }
        func integers(_ name: String, count: Int) throws -> [Int] {
            let raw = try file.rawTensor(named: name)
            guard raw.dtype == "I32", raw.bytes.count == 4 * count else {
                throw invalid("'\(name)' is \(raw.dtype) of shape \(raw.shape), expected \(count) I32 values")
            }
            return raw.int32Values.map(Int.init)
        }

        var floatTensors: [String: Tensor] = [:]
        var weightPlan: [(WeightPoint, WeightQuantization)] = []
        for point in WeightPoint.all(depth: configuration.depth) {
            let key = point.description
            guard let info = weightInfo[key], let bits = info["bits"] as? Int, let shape = info["shape"] as? [Int],
                let packing = info["packing"] as? String
            else { throw invalid("no quantized weight '\(key)'") }
            let scales = try floats(key + ".scale")
            if let problem = WeightQuantization.problem(bits: bits, scales: scales) {
                throw invalid("\(key): \(problem)")
            }
            let expectedPacking = Self.packing(bits: bits)
            guard packing == expectedPacking else {
                throw invalid("\(key): packing '\(packing)' for \(bits) bits, expected '\(expectedPacking)'")
            }
            let rows = scales.count
            guard rows > 0, shape.allSatisfy({ $0 > 0 }), shape.reduce(1, *) % rows == 0 else {
                throw invalid("\(key): shape \(shape) does not have \(rows) rows")
            }
            let columns = shape.reduce(1, *) / rows
            let raw = try file.rawTensor(named: key + ".qweight")
            let (dtype, width) =
                switch packing {
                case "int4x2": ("U8", (columns + 1) / 2)
                case "int8": ("I8", columns)
                default: ("I16", columns)
                }
            let expected = [rows, width]
            guard raw.dtype == dtype, raw.shape == expected else {
                throw invalid(
                    "'\(key).qweight' is \(raw.dtype) of shape \(raw.shape), expected \(dtype) of \(expected)")
            }
            let quantization = WeightQuantization(bits: bits, scales: scales)
            let codes = unpacked(raw, packing: packing, rows: rows, columns: columns)
            floatTensors[key] = Tensor(shape: shape, scalars: quantization.values(ofCodes: codes, columns: columns))
            weightPlan.append((point, quantization))
        }
        let quantizedKeys = Set(weightInfo.keys)
        let auxiliary = Set(quantizedKeys.flatMap { [$0 + ".qweight", $0 + ".scale"] })
        for name in file.tensorNames where !name.hasPrefix("act.") && !auxiliary.contains(name) {
            floatTensors[name] = try file.tensor(named: name)
        }
        var activations: [(ObservationPoint, ActivationQuantizer)] = []
        for (point, _) in QuantizationPoints.activations(depth: configuration.depth) {
            // A plan quantizes every point, so an export without one is damaged, not partial.
            guard let info = activationInfo["\(point)"], let kind = info["kind"] as? String,
                let bits = info["bits"] as? Int
            else { throw invalid("no activation quantizer (kind and bits) for \(point)") }
            let prefix = "act.\(point)."
            let symmetric = info["symmetric"] as? Bool ?? false
            func uniform(scale: Float, zeroPoint: Int) throws -> UniformQuantizer {
                if let problem = UniformQuantizer.problem(
                    scale: scale, zeroPoint: zeroPoint, bits: bits, symmetric: symmetric)
                {
                    throw invalid("\(point): \(problem)")
                }
                return UniformQuantizer(scale: scale, zeroPoint: zeroPoint, bits: bits, symmetric: symmetric)
            }
            switch kind {
            case "uniform":
                let quantizer = try uniform(
                    scale: try floats(prefix + "scale", count: 1)[0],
                    zeroPoint: try integers(prefix + "zero_point", count: 1)[0])
                activations.append((point, .uniform(quantizer)))
            case "ltsq":
                let logScale = try floats(prefix + "log_scale", count: 1)[0]
                if let problem = LongTailedSkewnessQuantizer.problem(bits: bits, logScale: logScale) {
                    throw invalid("\(point): \(problem)")
                }
                activations.append((point, .longTailed(LongTailedSkewnessQuantizer(bits: bits, logScale: logScale))))
            case "tgq":
                let scales = try floats(prefix + "scale")
                let boundaries = try integers(prefix + "boundaries", count: scales.count + 1)
                let zeroPoints = try integers(prefix + "zero_point", count: scales.count)
                guard !scales.isEmpty, boundaries.first == 0, boundaries.last == configuration.tokenCount,
                    zip(boundaries, boundaries.dropFirst()).allSatisfy({ $0 < $1 })
                else {
                    throw invalid(
                        "\(point): TGQ boundaries \(boundaries) do not split the \(configuration.tokenCount) steps")
                }
                let groups = try scales.indices.map { g in
                    TemporalGroupQuantizer.Group(
                        steps: boundaries[g]..<boundaries[g + 1],
                        quantizer: try uniform(scale: scales[g], zeroPoint: zeroPoints[g]))
                }
                activations.append((point, .temporalGroups(TemporalGroupQuantizer(groups: groups))))
            default: throw invalid("unknown quantizer kind '\(kind)' at \(point)")
            }
        }
        let model = try VimModel(
            loading: InMemoryTensors(path: path, tensors: floatTensors, order: floatTensors.keys.sorted()),
            configuration: configuration)
        let plan = QuantizationPlan(
            method: try CalibrationMethod.named(methodName), settings: settings, activations: activations,
            weights: weightPlan, discreteAThresholdCounts: [:])
        return (model, plan)
    }

    private static func unpacked(_ raw: RawTensor, packing: String, rows: Int, columns: Int) -> [Int] {
        switch packing {
        case "int4x2":
            let width = (columns + 1) / 2
            var codes = [Int](repeating: 0, count: rows * columns)
            for row in 0..<rows {
                for column in 0..<columns {
                    let byte = raw.bytes[row * width + column / 2]
                    let nibble = column % 2 == 0 ? byte & 0x0F : byte >> 4
                    codes[row * columns + column] = Int(Int8(bitPattern: nibble << 4) >> 4)
                }
            }
            return codes
        case "int8": return raw.bytes.map { Int(Int8(bitPattern: $0)) }
        default:
            return stride(from: 0, to: raw.bytes.count, by: 2).map {
                Int(Int16(bitPattern: UInt16(raw.bytes[$0]) | UInt16(raw.bytes[$0 + 1]) << 8))
            }
        }
    }
}

/// Named tensors held in memory, read like a file.
struct InMemoryTensors: TensorSource {
    let path: String
    let tensors: [String: Tensor]
    let order: [String]

    var tensorNames: [String] { order }
    func shape(of name: String) -> [Int]? { tensors[name]?.shape }
    func tensor(named name: String) throws -> Tensor {
        guard let tensor = tensors[name] else { throw CheckpointError.missingTensor(path: path, key: name) }
        return tensor
    }
}
