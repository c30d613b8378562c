/// Why a checkpoint, array or tensor file could not be read or written.
///
/// Every case names the file and says what was wrong in terms a user can act on.
public enum CheckpointError: Error, CustomStringConvertible, Equatable {
    /// The file could not be opened or read at all.
    case unreadable(path: String, reason: String)
    /// The file is not in any format this reader knows.
    case unrecognizedFormat(path: String, detail: String)
    /// The zip container is damaged or truncated.
    case corruptArchive(path: String, detail: String)
    /// A required record is missing from the archive.
    case missingEntry(path: String, entry: String)
    /// The pickle inside a PyTorch checkpoint is malformed, or uses something this reader refuses.
    case malformedPickle(path: String, offset: Int, detail: String)
    /// A storage has an element type that cannot be converted to float32.
    case unsupportedElementType(path: String, tensor: String, type: String)
    /// A tensor view reaches outside its storage, or its storage is shorter than declared.
    case invalidTensorView(path: String, tensor: String, detail: String)
    /// The file holds no dictionary of tensors where weights were expected.
    case noStateDict(path: String, topLevelKeys: [String])
    /// An entry of the state dict is not a tensor (for example an object of an unknown class).
    case notATensor(path: String, key: String, found: String)
    /// A tensor that was asked for is not in the file.
    case missingTensor(path: String, key: String)
    /// A `.npy` or safetensors file is malformed.
    case malformedArray(path: String, detail: String)
    /// Writing an output file failed; nothing was left at the destination.
    case writeFailed(path: String, reason: String)

    /// A message that names the file and what is wrong with it.
    public var description: String {
        switch self {
        case .unreadable(let path, let reason):
            return "\(path): cannot read the file (\(reason))"
        case .unrecognizedFormat(let path, let detail):
            return "\(path): not a checkpoint this tool can read: \(detail)"
        case .corruptArchive(let path, let detail):
            return "\(path): damaged or truncated zip archive: \(detail)"
        case .missingEntry(let path, let entry):
            return "\(path): the archive has no record '\(entry)'"
        case .malformedPickle(let path, let offset, let detail):
            return "\(path): cannot interpret data.pkl at byte \(offset): \(detail)"
        case .unsupportedElementType(let path, let tensor, let type):
            return "\(path): tensor '\(tensor)' has element type \(type), which cannot be used as float32 weights"
        case .invalidTensorView(let path, let tensor, let detail):
            return "\(path): tensor '\(tensor)' is inconsistent with its storage: \(detail)"
        case .noStateDict(let path, let keys):
            return "\(path): no dictionary of tensors found (looked under 'model', 'model_ema' and the top level; "
                + "top-level keys: \(keys.isEmpty ? "none" : keys.joined(separator: ", ")))"
        case .notATensor(let path, let key, let found):
            return "\(path): '\(key)' should be a tensor but is \(found)"
        case .missingTensor(let path, let key):
            return "\(path): no tensor named '\(key)'"
        case .malformedArray(let path, let detail):
            return "\(path): \(detail)"
        case .writeFailed(let path, let reason):
            return "\(path): could not write the file (\(reason)); nothing was written there"
        }
    }
}
