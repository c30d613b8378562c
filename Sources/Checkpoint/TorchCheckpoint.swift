import Foundation
import TensorModule

/// A PyTorch `torch.save` checkpoint (zip format), read without executing any of its pickle.
///
/// The weights are taken from the top-level `model` entry, else `model_ema`, else the top-level
/// dictionary itself (a bare state dict). Tensors are materialised on demand.
public struct TorchCheckpoint: TensorSource {
    /// The path the file was opened from.
    public let path: String
    /// Keys of the top-level dictionary (e.g. `model`, `epoch`, `args`); empty for a bare state dict.
    public let topLevelKeys: [String]
    /// Where the weights were found: `model`, `model_ema` or `top level`.
    public let stateDictLocation: String
    /// Class names of objects that were kept inert rather than rebuilt (e.g. `argparse.Namespace`).
    public let inertClasses: [String]
    /// Tensor names in file order.
    public let tensorNames: [String]
    private let tensors: [String: TensorReference]
    private let archive: ZipArchive
    private let prefix: String

    /// Opens a checkpoint and interprets its `data.pkl`.
    ///
    /// - Throws: `CheckpointError` naming the file and the problem.
    public init(path: String) throws {
        archive = try ZipArchive(path: path)
        guard let pickleEntry = archive.entries.first(where: { $0.name.hasSuffix("data.pkl") }) else {
            throw CheckpointError.missingEntry(path: path, entry: "<prefix>/data.pkl")
        }
        self.path = path
        prefix = String(pickleEntry.name.dropLast("data.pkl".count))
        if let order = archive.entry(named: prefix + "byteorder") {
            let text = String(decoding: try archive.contents(of: order), as: UTF8.self)
            guard text.trimmingCharacters(in: .whitespacesAndNewlines) == "little" else {
                throw CheckpointError.unrecognizedFormat(path: path, detail: "byte order '\(text)' is not supported")
            }
        }
        let pickle = try archive.contents(of: pickleEntry)
        let root = try pickle.withUnsafeBytes { bytes in
            var interpreter = PickleInterpreter(bytes: bytes, path: path)
            return try interpreter.run()
        }
        guard case .dict(let top) = root else { throw CheckpointError.noStateDict(path: path, topLevelKeys: []) }
        var inert = Set<String>()
        for entry in top.entries { if case .object(let object) = entry.value { inert.insert(object.className) } }
        inertClasses = inert.sorted()
        let containsTensors = top.entries.contains { if case .tensor = $0.value { return true } else { return false } }
        let stateDict: PickleDict
        if containsTensors {
            topLevelKeys = []
            stateDictLocation = "top level"
            stateDict = top
        } else {
            topLevelKeys = top.stringKeys
            if case .dict(let model)? = top["model"] {
                stateDictLocation = "model"
                stateDict = model
            } else if case .dict(let ema)? = top["model_ema"] {
                stateDictLocation = "model_ema"
                stateDict = ema
            } else {
                throw CheckpointError.noStateDict(path: path, topLevelKeys: top.stringKeys)
            }
        }
        var names: [String] = []
        var tensors: [String: TensorReference] = [:]
        for (key, value) in stateDict.entries {
            guard case .string(let name) = key else {
                throw CheckpointError.notATensor(path: path, key: key.description, found: "a non-string key")
            }
            guard case .tensor(let tensor) = value else {
                throw CheckpointError.notATensor(path: path, key: name, found: value.kind)
            }
            names.append(name)
            tensors[name] = tensor
        }
        guard !names.isEmpty else { throw CheckpointError.noStateDict(path: path, topLevelKeys: topLevelKeys) }
        tensorNames = names
        self.tensors = tensors
    }

    /// The shape of a tensor, or nil if there is no tensor of that name.
    public func shape(of name: String) -> [Int]? { tensors[name]?.shape }

    /// Reads a tensor, converted to float32.
    public func tensor(named name: String) throws -> Tensor {
        guard let reference = tensors[name] else { throw CheckpointError.missingTensor(path: path, key: name) }
        func invalid(_ detail: String) -> CheckpointError {
            .invalidTensorView(path: path, tensor: name, detail: detail)
        }
        let storage = reference.storage
        let type = storage.elementType
        guard [.float32, .float16, .bfloat16, .float64].contains(type) else {
            throw CheckpointError.unsupportedElementType(path: path, tensor: name, type: type.rawValue)
        }
        guard reference.shape.allSatisfy({ $0 >= 0 }), reference.strides.allSatisfy({ $0 >= 0 }), reference.offset >= 0
        else { throw invalid("negative size, stride or offset") }
        var count = 1
        var lastIndex = reference.offset
        for (size, stride) in zip(reference.shape, reference.strides) {
            let (c, o1) = count.multipliedReportingOverflow(by: size)
            let (reach, o2) = max(size - 1, 0).multipliedReportingOverflow(by: stride)
            let (sum, o3) = lastIndex.addingReportingOverflow(reach)
            guard !o1, !o2, !o3 else { throw invalid("size overflows") }
            count = c
            lastIndex = sum
        }
        guard count == 0 || lastIndex < storage.count else {
            throw invalid("view reaches element \(lastIndex) of a storage of \(storage.count) elements")
        }
        guard let entry = archive.entry(named: prefix + "data/" + storage.key) else {
            throw CheckpointError.missingEntry(path: path, entry: prefix + "data/" + storage.key)
        }
        // Weights never overlap themselves, so a view with more elements than its storage is hostile.
        guard count <= storage.count else {
            throw invalid("view has \(count) elements, more than its storage's \(storage.count)")
        }
        let (declaredBytes, overflow) = storage.count.multipliedReportingOverflow(by: type.size)
        guard !overflow, entry.size >= declaredBytes else {
            throw invalid(
                "storage '\(storage.key)' holds \(entry.size) bytes, \(storage.count) elements of \(type.size) bytes declared"
            )
        }
        let bytes = try archive.contents(of: entry)
        var scalars = [Float](repeating: 0, count: count)
        bytes.withUnsafeBytes { raw in
            if type == .float32 && reference.strides == Self.contiguousStrides(reference.shape) {
                scalars.withUnsafeMutableBytes { out in
                    out.copyMemory(
                        from: UnsafeRawBufferPointer(
                            rebasing: raw[(reference.offset * 4)..<((reference.offset + count) * 4)]))
                }
                return
            }
            let shape = reference.shape
            let strides = reference.strides
            var index = [Int](repeating: 0, count: shape.count)
            var source = reference.offset
            for i in 0..<count {
                scalars[i] = ElementConversion.element(raw, source, type)!
                var d = shape.count - 1
                while d >= 0 {
                    index[d] += 1
                    source += strides[d]
                    if index[d] < shape[d] { break }
                    source -= strides[d] * shape[d]
                    index[d] = 0
                    d -= 1
                }
            }
        }
        return Tensor(shape: reference.shape, scalars: scalars)
    }

    static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var step = 1
        for d in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[d] = step
            step *= shape[d]
        }
        return strides
    }
}
