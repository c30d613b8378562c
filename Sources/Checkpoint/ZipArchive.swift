import CZlib
import Foundation

/// A read-only PKZIP archive, as `torch.save` writes them.
///
/// Sizes come from the central directory (PyTorch sets the data-descriptor flag, which zeroes them
/// in the local headers); zip64 records are honoured; entries may be stored or deflated. The file is
/// memory-mapped, so stored entries are not copied until a tensor is materialised.
public struct ZipArchive {
    /// One file inside the archive.
    public struct Entry: Sendable {
        /// The entry's full name, e.g. `vim_tiny/data/12`.
        public let name: String
        let method: UInt16
        let crc32: UInt32
        let compressedSize: Int
        /// The size of the entry's contents once extracted.
        public let size: Int
        let localHeaderOffset: Int
    }

    /// The path the archive was opened from (used in error messages).
    public let path: String
    /// The entries in central-directory order.
    public let entries: [Entry]
    private let data: Data
    private let index: [String: Int]

    /// A deflated entry may expand at most this much; deflate's own limit is about 1032:1, so a larger
    /// declared size is a zip bomb or a lie.
    static let maximumExpansion = 1100

    /// Opens and indexes the archive at `path`.
    ///
    /// - Throws: `CheckpointError.unreadable`, `.unrecognizedFormat` (not a zip file) or
    ///   `.corruptArchive`.
    public init(path: String) throws {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        } catch {
            throw CheckpointError.unreadable(path: path, reason: (error as NSError).localizedDescription)
        }
        try self.init(data: data, path: path)
    }

    /// Indexes an archive held in memory; `path` only names it in errors.
    public init(data: Data, path: String) throws {
        self.path = path
        self.data = data
        let entries = try data.withUnsafeBytes { try ZipArchive.readCentralDirectory($0, path: path) }
        self.entries = entries
        var index: [String: Int] = [:]
        for (i, entry) in entries.enumerated() where index[entry.name] == nil { index[entry.name] = i }
        self.index = index
    }

    /// The entry with this exact name, if present.
    public func entry(named name: String) -> Entry? {
        index[name].map { entries[$0] }
    }

    /// The extracted contents of `entry`, checked against its CRC-32.
    public func contents(of entry: Entry) throws -> Data {
        let path = self.path
        return try data.withUnsafeBytes { raw -> Data in
            var reader = ByteReader(raw, at: entry.localHeaderOffset)
            guard reader.read(UInt32.self) == 0x0403_4B50, reader.skip(22),
                let nameLength = reader.read(UInt16.self), let extraLength = reader.read(UInt16.self),
                reader.skip(Int(nameLength) + Int(extraLength)),
                let payload = reader.readBytes(entry.compressedSize)
            else {
                throw CheckpointError.corruptArchive(
                    path: path, detail: "entry '\(entry.name)' runs past the end of the file")
            }
            let contents: Data
            switch entry.method {
            case 0:
                guard entry.compressedSize == entry.size else {
                    throw CheckpointError.corruptArchive(
                        path: path, detail: "stored entry '\(entry.name)' has two different sizes")
                }
                contents = Data(payload)
            case 8:
                contents = try ZipArchive.inflate(payload, size: entry.size, entry: entry.name, path: path)
            default:
                throw CheckpointError.corruptArchive(
                    path: path,
                    detail: "entry '\(entry.name)' uses compression method \(entry.method); "
                        + "only stored (0) and deflated (8) are supported")
            }
            let crc = contents.withUnsafeBytes { buffer -> UInt32 in
                var crc: uLong = 0
                var offset = 0
                while offset < buffer.count {
                    let chunk = min(buffer.count - offset, Int(Int32.max))
                    crc = CZlib.crc32(
                        crc, buffer.baseAddress!.assumingMemoryBound(to: Bytef.self) + offset, uInt(chunk))
                    offset += chunk
                }
                return UInt32(truncatingIfNeeded: crc)
            }
            guard crc == entry.crc32 else {
                throw CheckpointError.corruptArchive(
                    path: path, detail: "entry '\(entry.name)' fails its CRC-32 check (damaged file)")
            }
            return contents
        }
    }

    private static func inflate(
        _ payload: UnsafeRawBufferPointer, size: Int, entry: String, path: String
    ) throws -> Data {
        var output = Data(count: size)
        var stream = z_stream()
        guard inflateInit2_(&stream, -MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw CheckpointError.corruptArchive(path: path, detail: "cannot start zlib for '\(entry)'")
        }
        defer { inflateEnd(&stream) }
        let status = output.withUnsafeMutableBytes { out -> Int32 in
            stream.next_in = UnsafeMutablePointer(mutating: payload.baseAddress?.assumingMemoryBound(to: Bytef.self))
            stream.avail_in = uInt(payload.count)
            stream.next_out = out.baseAddress?.assumingMemoryBound(to: Bytef.self)
            stream.avail_out = uInt(size)
            return CZlib.inflate(&stream, Z_FINISH)
        }
        guard status == Z_STREAM_END, Int(stream.total_out) == size else {
            throw CheckpointError.corruptArchive(
                path: path, detail: "entry '\(entry)' does not inflate to its declared \(size) bytes")
        }
        return output
    }

    private static func readCentralDirectory(_ raw: UnsafeRawBufferPointer, path: String) throws -> [Entry] {
        func corrupt(_ detail: String) -> CheckpointError { .corruptArchive(path: path, detail: detail) }
        guard raw.count >= 4 else {
            throw CheckpointError.unrecognizedFormat(path: path, detail: "the file is \(raw.count) bytes long")
        }
        let magic = raw.loadUnaligned(as: UInt32.self)
        if magic != 0x0403_4B50 && magic != 0x0605_4B50 {
            let legacy = raw.count >= 2 && raw[0] == 0x80 && raw[1] <= 5
            throw CheckpointError.unrecognizedFormat(
                path: path,
                detail: legacy
                    ? "this is a legacy (pre-1.6, non-zip) torch.save file; re-save it with a current PyTorch"
                    : "it is not a zip archive (PyTorch .pth), safetensors or .npy file")
        }
        // The end-of-central-directory record is in the last 22 + 65535 bytes.
        var endRecord = -1
        var position = raw.count - 22
        let lowest = max(0, raw.count - 22 - 65_535)
        while position >= lowest {
            if raw.loadUnaligned(fromByteOffset: position, as: UInt32.self) == 0x0605_4B50 {
                endRecord = position
                break
            }
            position -= 1
        }
        guard endRecord >= 0 else { throw corrupt("no end-of-central-directory record (truncated file?)") }
        var end = ByteReader(raw, at: endRecord + 10)
        guard let count16 = end.read(UInt16.self), let size32 = end.read(UInt32.self),
            let offset32 = end.read(UInt32.self)
        else { throw corrupt("truncated end record") }
        var entryCount = Int(count16)
        var directorySize = Int(size32)
        var directoryOffset = Int(offset32)
        if count16 == 0xFFFF || size32 == 0xFFFF_FFFF || offset32 == 0xFFFF_FFFF {
            var locator = ByteReader(raw, at: endRecord - 20)
            guard locator.read(UInt32.self) == 0x0706_4B50, locator.skip(4),
                let recordOffset = locator.read(UInt64.self), recordOffset < UInt64(raw.count)
            else { throw corrupt("zip64 end record locator missing or out of range") }
            var record = ByteReader(raw, at: Int(recordOffset))
            guard record.read(UInt32.self) == 0x0606_4B50, record.skip(28),
                let count64 = record.read(UInt64.self), let size64 = record.read(UInt64.self),
                let offset64 = record.read(UInt64.self),
                count64 < UInt64(raw.count), size64 < UInt64(raw.count), offset64 < UInt64(raw.count)
            else { throw corrupt("zip64 end record damaged") }
            entryCount = Int(count64)
            directorySize = Int(size64)
            directoryOffset = Int(offset64)
        }
        guard directoryOffset + directorySize <= raw.count, entryCount <= directorySize / 46 + 1 else {
            throw corrupt("central directory lies outside the file")
        }
        var reader = ByteReader(raw, at: directoryOffset)
        var entries: [Entry] = []
        entries.reserveCapacity(entryCount)
        for _ in 0..<entryCount {
            guard reader.read(UInt32.self) == 0x0201_4B50, reader.skip(6),
                let method = reader.read(UInt16.self), reader.skip(4), let crc = reader.read(UInt32.self),
                let compressed32 = reader.read(UInt32.self), let size32 = reader.read(UInt32.self),
                let nameLength = reader.read(UInt16.self), let extraLength = reader.read(UInt16.self),
                let commentLength = reader.read(UInt16.self), reader.skip(8),
                let local32 = reader.read(UInt32.self),
                let nameBytes = reader.readBytes(Int(nameLength)),
                let extra = reader.readBytes(Int(extraLength)), reader.skip(Int(commentLength))
            else { throw corrupt("central directory entry \(entries.count) is truncated") }
            var compressed = UInt64(compressed32)
            var size = UInt64(size32)
            var local = UInt64(local32)
            var extras = ByteReader(extra)
            while extras.remaining >= 4 {
                guard let id = extras.read(UInt16.self), let length = extras.read(UInt16.self),
                    let field = extras.readBytes(Int(length))
                else { throw corrupt("bad extra field in central directory") }
                guard id == 0x0001 else { continue }
                var zip64 = ByteReader(field)
                if size32 == 0xFFFF_FFFF { size = zip64.read(UInt64.self) ?? .max }
                if compressed32 == 0xFFFF_FFFF { compressed = zip64.read(UInt64.self) ?? .max }
                if local32 == 0xFFFF_FFFF { local = zip64.read(UInt64.self) ?? .max }
            }
            let name = String(decoding: nameBytes, as: UTF8.self)
            guard compressed <= UInt64(raw.count), local < UInt64(raw.count) else {
                throw corrupt("entry '\(name)' claims data beyond the end of the file")
            }
            guard size <= compressed * UInt64(maximumExpansion) + 65_536 else {
                throw corrupt("entry '\(name)' claims to expand to \(size) bytes from \(compressed) (zip bomb?)")
            }
            entries.append(
                Entry(
                    name: name, method: method, crc32: crc, compressedSize: Int(compressed), size: Int(size),
                    localHeaderOffset: Int(local)))
        }
        return entries
    }
}
