import CZlib
import Foundation

/// Writes small zip archives for tests: stored or deflated entries, optionally with zip64 records,
/// in the layout `torch.save` uses (sizes in the central directory).
public struct ZipWriter {
    private var body = Data()
    private var directory = Data()
    private var count = 0
    private let zip64: Bool

    /// - Parameter zip64: write zip64 end records and 0xFFFFFFFF placeholders in the central directory.
    public init(zip64: Bool = false) { self.zip64 = zip64 }

    /// Adds an entry.
    public mutating func add(_ name: String, _ contents: Data, deflate: Bool = false) {
        let payload = deflate ? ZipWriter.rawDeflate(contents) : contents
        let crc = contents.withUnsafeBytes {
            UInt32(crc32(0, $0.baseAddress?.assumingMemoryBound(to: Bytef.self), uInt($0.count)))
        }
        let nameBytes = Data(name.utf8)
        let offset = body.count
        body.append(le32(0x0403_4B50))
        body.append(le16(20) + le16(0) + le16(deflate ? 8 : 0) + le16(0) + le16(0))
        body.append(le32(crc) + le32(UInt32(payload.count)) + le32(UInt32(contents.count)))
        body.append(le16(UInt16(nameBytes.count)) + le16(0) + nameBytes)
        body.append(payload)
        var extra = Data()
        if zip64 {
            extra =
                le16(1) + le16(24) + le64(UInt64(contents.count)) + le64(UInt64(payload.count)) + le64(UInt64(offset))
        }
        let big: UInt32 = 0xFFFF_FFFF
        directory.append(le32(0x0201_4B50) + le16(45) + le16(45) + le16(0) + le16(deflate ? 8 : 0) + le16(0) + le16(0))
        directory.append(le32(crc))
        directory.append(zip64 ? le32(big) + le32(big) : le32(UInt32(payload.count)) + le32(UInt32(contents.count)))
        directory.append(
            le16(UInt16(nameBytes.count)) + le16(UInt16(extra.count)) + le16(0) + le16(0) + le16(0) + le32(0))
        directory.append(zip64 ? le32(big) : le32(UInt32(offset)))
        directory.append(nameBytes + extra)
        count += 1
    }

    /// The archive's bytes.
    public var data: Data {
        var out = body
        let directoryOffset = out.count
        out.append(directory)
        if zip64 {
            let recordOffset = out.count
            out.append(le32(0x0606_4B50) + le64(44) + le16(45) + le16(45) + le32(0) + le32(0))
            out.append(
                le64(UInt64(count)) + le64(UInt64(count)) + le64(UInt64(directory.count))
                    + le64(UInt64(directoryOffset)))
            out.append(le32(0x0706_4B50) + le32(0) + le64(UInt64(recordOffset)) + le32(1))
            out.append(le32(0x0605_4B50) + le16(0) + le16(0) + le16(0xFFFF) + le16(0xFFFF))
            out.append(le32(0xFFFF_FFFF) + le32(0xFFFF_FFFF) + le16(0))
        } else {
            out.append(le32(0x0605_4B50) + le16(0) + le16(0) + le16(UInt16(count)) + le16(UInt16(count)))
            out.append(le32(UInt32(directory.count)) + le32(UInt32(directoryOffset)) + le16(0))
        }
        return out
    }

    private static func rawDeflate(_ input: Data) -> Data {
        var stream = z_stream()
        deflateInit2_(
            &stream, 6, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        defer { deflateEnd(&stream) }
        var output = Data(count: Int(deflateBound(&stream, uLong(input.count))))
        let produced = input.withUnsafeBytes { inBytes in
            output.withUnsafeMutableBytes { outBytes -> Int in
                stream.next_in = UnsafeMutablePointer(
                    mutating: inBytes.baseAddress?.assumingMemoryBound(to: Bytef.self))
                stream.avail_in = uInt(inBytes.count)
                stream.next_out = outBytes.baseAddress?.assumingMemoryBound(to: Bytef.self)
                stream.avail_out = uInt(outBytes.count)
                deflate(&stream, Z_FINISH)
                return Int(stream.total_out)
            }
        }
        return output.prefix(produced)
    }
}

func le16(_ v: UInt16) -> Data { withUnsafeBytes(of: v.littleEndian) { Data($0) } }
func le32(_ v: UInt32) -> Data { withUnsafeBytes(of: v.littleEndian) { Data($0) } }
func le64(_ v: UInt64) -> Data { withUnsafeBytes(of: v.littleEndian) { Data($0) } }
