import Foundation
import TensorModule

/// A file of named tensors that can be listed and read one at a time.
public protocol TensorSource {
    /// The path the tensors are read from.
    var path: String { get }
    /// Tensor names in file order.
    var tensorNames: [String] { get }
    /// The shape of a tensor, or nil if there is no tensor of that name.
    func shape(of name: String) -> [Int]?
    /// Reads a tensor, converted to float32.
    func tensor(named name: String) throws -> Tensor
}

/// Opens weight files of every supported format.
public enum CheckpointFile {
    /// Opens a PyTorch `.pth` (zip) or safetensors file, chosen by the file's first bytes.
    public static func open(_ path: String) throws -> TensorSource {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            let reason = FileManager.default.fileExists(atPath: path) ? "permission denied" : "no such file"
            throw CheckpointError.unreadable(path: path, reason: reason)
        }
        let head = (try? handle.read(upToCount: 9)) ?? Data()
        try? handle.close()
        if head.count >= 9, head[head.startIndex + 8] == UInt8(ascii: "{") {
            return try SafetensorsFile(path: path)
        }
        return try TorchCheckpoint(path: path)
    }
}

/// Converts raw little-endian elements to float32.
enum ElementConversion {
    static func float32(fromHalf bits: UInt16) -> Float {
        let sign = UInt32(bits & 0x8000) << 16
        let exponent = Int(bits >> 10) & 0x1F
        let mantissa = UInt32(bits & 0x3FF)
        if exponent == 0 {
            // Zero or subnormal: value = mantissa · 2^−24.
            let magnitude = Float(mantissa) * Float(sign: .plus, exponent: -24, significand: 1)
            return sign != 0 ? -magnitude : magnitude
        }
        if exponent == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13)) }
        return Float(bitPattern: sign | UInt32(exponent - 15 + 127) << 23 | (mantissa << 13))
    }

    static func float32(fromBFloat16 bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// Reads element `index` of a little-endian buffer of floating-point type `type`.
    static func element(
        _ raw: UnsafeRawBufferPointer, _ index: Int, _ type: StorageElementType
    ) -> Float? {
        switch type {
        case .float32:
            return Float(bitPattern: raw.loadUnaligned(fromByteOffset: index * 4, as: UInt32.self).littleEndian)
        case .float64:
            return Float(Double(bitPattern: raw.loadUnaligned(fromByteOffset: index * 8, as: UInt64.self).littleEndian))
        case .float16:
            return float32(fromHalf: raw.loadUnaligned(fromByteOffset: index * 2, as: UInt16.self).littleEndian)
        case .bfloat16:
            return float32(fromBFloat16: raw.loadUnaligned(fromByteOffset: index * 2, as: UInt16.self).littleEndian)
        default: return nil
        }
    }
}
