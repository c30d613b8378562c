import Foundation
import TensorModule

/// A safetensors file: an 8-byte little-endian header length, a JSON header naming each tensor's
/// dtype, shape and byte range, then the raw data.
public struct SafetensorsFile: TensorSource {
    /// The path the file was opened from.
    public let path: String
    /// Tensor names in file order.
    public let tensorNames: [String]
    /// The free-form `__metadata__` strings of the header.
    public let metadata: [String: String]
    private let entries: [String: (type: StorageElementType, shape: [Int], range: Range<Int>)]
    private let data: Data
    private let dataStart: Int

    private static let typeNames: [String: StorageElementType] = [
        "F32": .float32, "F16": .float16, "BF16": .bfloat16, "F64": .float64,
        "I64": .int64, "I32": .int32, "I16": .int16, "I8": .int8, "U8": .uint8, "BOOL": .bool,
    ]

    /// Opens and validates a safetensors file: every byte range must lie in the data section and
    /// match its dtype and shape.
    public init(path: String) throws {
        func malformed(_ detail: String) -> CheckpointError {
            .malformedArray(path: path, detail: "not a valid safetensors file: \(detail)")
        }
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        } catch {
            throw CheckpointError.unreadable(path: path, reason: (error as NSError).localizedDescription)
        }
        self.path = path
        guard data.count >= 8 else { throw malformed("shorter than its 8-byte header length") }
        let length = data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard length <= UInt64(data.count - 8) else { throw malformed("header length \(length) exceeds the file") }
        dataStart = 8 + Int(length)
        guard let header = try? JSONSerialization.jsonObject(with: data.subdata(in: 8..<dataStart)) as? [String: Any]
        else {
            throw malformed("the header is not a JSON object")
        }
        var entries: [String: (StorageElementType, [Int], Range<Int>)] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in header {
            if name == "__metadata__" {
                for (k, v) in value as? [String: Any] ?? [:] { metadata[k] = v as? String ?? "\(v)" }
                continue
            }
            guard let info = value as? [String: Any], let dtype = info["dtype"] as? String,
                let type = SafetensorsFile.typeNames[dtype], let shape = info["shape"] as? [Int],
                let offsets = info["data_offsets"] as? [Int], offsets.count == 2
            else { throw malformed("entry '\(name)' lacks a known dtype, a shape or data_offsets") }
            let count = shape.reduce(Optional(1)) { total, size in
                total.flatMap { t in size < 0 ? nil : t.multipliedReportingOverflow(by: size).overflow ? nil : t * size
                }
            }
            let bytes = count.flatMap { c in c.multipliedReportingOverflow(by: type.size).overflow ? nil : c * type.size
            }
            guard let bytes, offsets[0] >= 0, offsets[1] >= offsets[0],
                offsets[1] <= data.count - dataStart, offsets[1] - offsets[0] == bytes
            else { throw malformed("entry '\(name)' has a byte range that does not fit its shape or the file") }
            entries[name] = (type, shape, offsets[0]..<offsets[1])
        }
        self.entries = entries
        self.metadata = metadata
        tensorNames = entries.keys.sorted { entries[$0]!.2.lowerBound < entries[$1]!.2.lowerBound }
    }

    /// The shape of a tensor, or nil if there is no tensor of that name.
    public func shape(of name: String) -> [Int]? { entries[name]?.shape }

    /// Reads a tensor, converted to float32.
    public func tensor(named name: String) throws -> Tensor {
        guard let entry = entries[name] else { throw CheckpointError.missingTensor(path: path, key: name) }
        guard [.float32, .float16, .bfloat16, .float64].contains(entry.type) else {
            throw CheckpointError.unsupportedElementType(path: path, tensor: name, type: "\(entry.type)")
        }
        let count = entry.shape.reduce(1, *)
        let scalars = data.withUnsafeBytes { raw in
            let slice = UnsafeRawBufferPointer(
                rebasing: raw[(dataStart + entry.range.lowerBound)..<(dataStart + entry.range.upperBound)])
            return (0..<count).map { ElementConversion.element(slice, $0, entry.type)! }
        }
        return Tensor(shape: entry.shape, scalars: scalars)
    }

    /// A tensor's element type name (`F32`, `I8`, …), shape and raw little-endian bytes.
    public func rawTensor(named name: String) throws -> RawTensor {
        guard let entry = entries[name] else { throw CheckpointError.missingTensor(path: path, key: name) }
        let bytes = data.withUnsafeBytes { raw in
            [UInt8](raw[(dataStart + entry.range.lowerBound)..<(dataStart + entry.range.upperBound)])
        }
        let dtype = Self.typeNames.first { $0.value == entry.type }!.key
        return RawTensor(name: name, dtype: dtype, shape: entry.shape, bytes: bytes)
    }

    /// Writes float32 tensors (in the given order) with optional metadata, atomically.
    public static func write(
        _ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:], to path: String
    ) throws {
        try write(tensors.map { RawTensor(name: $0.name, $0.tensor) }, metadata: metadata, to: path)
    }

    /// Writes tensors of any element type (in the given order) with optional metadata, atomically.
    public static func write(_ tensors: [RawTensor], metadata: [String: String] = [:], to path: String) throws {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for tensor in tensors {
            header[tensor.name] = [
                "dtype": tensor.dtype, "shape": tensor.shape, "data_offsets": [offset, offset + tensor.bytes.count],
            ]
            offset += tensor.bytes.count
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad the header with spaces so the data section starts 8-byte aligned, as the reference writer does.
        json.append(contentsOf: [UInt8](repeating: 0x20, count: (8 - json.count % 8) % 8))
        var file = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { file.append(contentsOf: $0) }
        file.append(json)
        for tensor in tensors { file.append(contentsOf: tensor.bytes) }
        try AtomicFile.write(file, to: path)
    }
}

/// One safetensors entry as stored: name, element type name, shape and little-endian bytes.
public struct RawTensor: Equatable, Sendable {
    /// The key.
    public var name: String
    /// `F32`, `I32`, `I16`, `I8`, `U8`, …
    public var dtype: String
    /// The shape.
    public var shape: [Int]
    /// The elements, little-endian, row-major.
    public var bytes: [UInt8]

    /// An entry from its parts.
    public init(name: String, dtype: String, shape: [Int], bytes: [UInt8]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }

    /// A float32 entry.
    public init(name: String, _ tensor: Tensor) {
        self.init(name: name, dtype: "F32", shape: tensor.shape, bytes: tensor.scalars.withUnsafeBytes { Array($0) })
    }

    /// An int32 entry.
    public init(name: String, int32 values: [Int32], shape: [Int]) {
        self.init(
            name: name, dtype: "I32", shape: shape,
            bytes: values.flatMap { withUnsafeBytes(of: $0.littleEndian) { Array($0) } })
    }

    /// The elements of an `I32` entry.
    public var int32Values: [Int32] {
        stride(from: 0, to: bytes.count, by: 4).map { i in
            Int32(
                bitPattern: UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(
                    bytes[i + 3]) << 24)
        }
    }
}
