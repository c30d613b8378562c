import Foundation

/// Emits protocol-2 pickle opcodes, to build checkpoints (well-formed or hostile) inside tests.
public struct PickleBuilder {
    /// The bytes so far.
    public private(set) var bytes: [UInt8] = [0x80, 0x02]

    public init() {}

    public mutating func raw(_ b: [UInt8]) { bytes += b }
    public mutating func mark() { bytes.append(0x28) }
    public mutating func emptyDict() { bytes.append(0x7D) }
    public mutating func emptyTuple() { bytes.append(0x29) }
    public mutating func tuple() { bytes.append(0x74) }
    public mutating func setItems() { bytes.append(0x75) }
    public mutating func setItem() { bytes.append(0x73) }
    public mutating func reduce() { bytes.append(0x52) }
    public mutating func build() { bytes.append(0x62) }
    public mutating func persistentId() { bytes.append(0x51) }
    public mutating func none() { bytes.append(0x4E) }
    public mutating func bool(_ v: Bool) { bytes.append(v ? 0x88 : 0x89) }
    public mutating func stop() { bytes.append(0x2E) }

    public mutating func string(_ s: String) {
        let utf8 = Array(s.utf8)
        bytes.append(0x58)
        bytes += withUnsafeBytes(of: UInt32(utf8.count).littleEndian) { Array($0) }
        bytes += utf8
    }

    public mutating func int(_ v: Int) {
        bytes.append(0x4A)
        bytes += withUnsafeBytes(of: Int32(v).littleEndian) { Array($0) }
    }

    public mutating func global(_ module: String, _ name: String) {
        bytes.append(0x63)
        bytes += Array("\(module)\n\(name)\n".utf8)
    }

    public mutating func intTuple(_ values: [Int]) {
        mark()
        for v in values { int(v) }
        tuple()
    }

    /// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`.
    public mutating func tensor(
        storageKey: String, storageClass: String = "FloatStorage", numel: Int, offset: Int = 0, shape: [Int],
        strides: [Int]
    ) {
        global("torch._utils", "_rebuild_tensor_v2")
        mark()
        mark()
        string("storage")
        global("torch", storageClass)
        string(storageKey)
        string("cpu")
        int(numel)
        tuple()
        persistentId()
        int(offset)
        intTuple(shape)
        intTuple(strides)
        bool(false)
        global("collections", "OrderedDict")
        emptyTuple()
        reduce()
        tuple()
        reduce()
    }

    /// Starts an `OrderedDict()` (followed by MARK, key/value pairs, SETITEMS).
    public mutating func orderedDict() {
        global("collections", "OrderedDict")
        emptyTuple()
        reduce()
    }
}

/// Float32 values as little-endian bytes.
public func littleEndianBytes(_ values: [Float]) -> Data {
    values.withUnsafeBytes { Data($0) }
}

/// Writes a `torch.save`-layout archive: `<prefix>/data.pkl`, storages under `<prefix>/data/`, and
/// `byteorder`; returns its path in a fresh temporary directory.
public func writeTorchArchive(
    pickle: [UInt8], storages: [String: Data], prefix: String = "archive", deflate: Bool = false, zip64: Bool = false,
    name: String = "model.pth"
) throws -> String {
    var zip = ZipWriter(zip64: zip64)
    zip.add("\(prefix)/data.pkl", Data(pickle), deflate: deflate)
    zip.add("\(prefix)/byteorder", Data("little".utf8))
    for key in storages.keys.sorted() { zip.add("\(prefix)/data/\(key)", storages[key]!, deflate: deflate) }
    zip.add("\(prefix)/version", Data("3\n".utf8))
    let path = Fixtures.temporaryDirectory() + "/" + name
    try zip.data.write(to: URL(fileURLWithPath: path))
    return path
}
