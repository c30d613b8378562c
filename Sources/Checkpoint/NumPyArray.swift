import Foundation
import TensorModule

/// An array in NumPy's `.npy` format (versions 1–3, C order, little-endian or single-byte elements).
public struct NumPyArray: Equatable {
    /// Element types this reader accepts, by their NumPy `descr`.
    public enum ElementType: String, Sendable {
        case float32 = "<f4"
        case float64 = "<f8"
        case uint8 = "|u1"
        case int64 = "<i8"
        case int32 = "<i4"

        var size: Int {
            switch self {
            case .float32, .int32: return 4
            case .float64, .int64: return 8
            case .uint8: return 1
            }
        }
    }

    /// The extents.
    public let shape: [Int]
    /// The element type.
    public let elementType: ElementType
    /// The raw little-endian elements in C order.
    public let payload: Data

    /// Reads a `.npy` file.
    ///
    /// - Throws: `CheckpointError.unreadable` or `.malformedArray` naming the file.
    public init(contentsOf path: String) throws {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw CheckpointError.unreadable(path: path, reason: (error as NSError).localizedDescription)
        }
        try self.init(data: data, path: path)
    }

    /// Parses `.npy` bytes; `path` only names the data in errors.
    public init(data: Data, path: String) throws {
        func malformed(_ detail: String) -> CheckpointError {
            .malformedArray(path: path, detail: "not a valid .npy file: \(detail)")
        }
        let bytes = [UInt8](data.prefix(12))
        guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1...5]) == Array("NUMPY".utf8) else {
            throw malformed("missing the \\x93NUMPY magic")
        }
        let major = bytes[6]
        let headerLength: Int
        let headerStart: Int
        switch major {
        case 1:
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        case 2, 3:
            guard bytes.count >= 12 else { throw malformed("truncated header") }
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            headerStart = 12
        default:
            throw malformed("format version \(major) is not supported")
        }
        guard headerStart + headerLength <= data.count else { throw malformed("header runs past the end") }
        let header = String(decoding: data.subdata(in: headerStart..<(headerStart + headerLength)), as: UTF8.self)
        guard let descr = NumPyArray.field("descr", in: header),
            let fortran = NumPyArray.field("fortran_order", in: header),
            let shapeText = NumPyArray.field("shape", in: header)
        else { throw malformed("header lacks descr, fortran_order or shape: \(header)") }
        let typeName = descr.trimmingCharacters(in: CharacterSet(charactersIn: "'\""))
        guard let type = ElementType(rawValue: typeName == "<u1" ? "|u1" : typeName) else {
            throw CheckpointError.malformedArray(
                path: path,
                detail: "element type \(typeName) is not supported (use float32, float64, uint8, int32 or int64)")
        }
        guard fortran == "False" else {
            throw CheckpointError.malformedArray(
                path: path,
                detail: "Fortran-ordered arrays are not supported; save it C-ordered (numpy.ascontiguousarray)")
        }
        let dims = shapeText.trimmingCharacters(in: CharacterSet(charactersIn: "()")).split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        var shape: [Int] = []
        var count = 1
        for dim in dims {
            guard let n = Int(dim), n >= 0 else { throw malformed("bad shape \(shapeText)") }
            let (product, overflow) = count.multipliedReportingOverflow(by: n)
            guard !overflow else { throw malformed("shape \(shapeText) is too large") }
            shape.append(n)
            count = product
        }
        let start = headerStart + headerLength
        let (byteCount, overflow) = count.multipliedReportingOverflow(by: type.size)
        guard !overflow, data.count - start == byteCount else {
            throw CheckpointError.malformedArray(
                path: path,
                detail:
                    "shape \(shape) of \(typeName) needs \(byteCount) bytes of data, the file has \(data.count - start)"
            )
        }
        self.shape = shape
        elementType = type
        payload = data.subdata(in: start..<data.count)
    }

    /// Wraps float32 values of the given shape.
    public init(_ tensor: Tensor) {
        shape = tensor.shape
        elementType = .float32
        payload = tensor.scalars.withUnsafeBytes { Data($0) }
    }

    /// Wraps bytes of the given shape.
    public init(shape: [Int], bytes: [UInt8]) {
        precondition(shape.reduce(1, *) == bytes.count)
        self.shape = shape
        elementType = .uint8
        payload = Data(bytes)
    }

    /// Finds `'name': value` in a Python dict literal, where value is a quoted string, a word or a tuple.
    private static func field(_ name: String, in header: String) -> String? {
        guard let key = header.range(of: "'\(name)'") ?? header.range(of: "\"\(name)\"") else { return nil }
        var rest = header[key.upperBound...].drop { $0 == " " || $0 == ":" }
        if rest.first == "(" {
            guard let close = rest.firstIndex(of: ")") else { return nil }
            return String(rest[...close])
        }
        if let q = rest.first, q == "'" || q == "\"" {
            rest = rest.dropFirst()
            guard let close = rest.firstIndex(of: q) else { return nil }
            return "'" + rest[..<close] + "'"
        }
        return String(rest.prefix { $0 != "," && $0 != "}" }).trimmingCharacters(in: .whitespaces)
    }

    /// The elements as float32 (integers converted by value).
    public var scalars: [Float] {
        payload.withUnsafeBytes { raw in
            let count = shape.reduce(1, *)
            return (0..<count).map { i in
                switch elementType {
                case .float32:
                    return Float(bitPattern: raw.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self).littleEndian)
                case .float64:
                    return Float(
                        Double(bitPattern: raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self).littleEndian))
                case .uint8: return Float(raw[i])
                case .int32: return Float(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: i * 4, as: Int32.self)))
                case .int64: return Float(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: i * 8, as: Int64.self)))
                }
            }
        }
    }

    /// The array as a float32 tensor.
    public var tensor: Tensor { Tensor(shape: shape, scalars: scalars) }

    /// The `.npy` version 1.0 encoding (header padded to a multiple of 64 bytes, as NumPy writes it).
    public var encoded: Data {
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(elementType.rawValue)', 'fortran_order': False, 'shape': \(shapeText), }"
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var data = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
        let length = UInt16(header.utf8.count)
        data.append(contentsOf: [UInt8(length & 0xFF), UInt8(length >> 8)])
        data.append(contentsOf: Array(header.utf8))
        data.append(payload)
        return data
    }

    /// Writes the array atomically to `path`.
    public func write(to path: String) throws {
        try AtomicFile.write(encoded, to: path)
    }
}
