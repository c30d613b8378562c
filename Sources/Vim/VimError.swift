/// Why a Vim model could not be configured or loaded.
public enum VimError: Error, CustomStringConvertible, Equatable {
    /// A configuration is impossible or unsupported.
    case invalidConfiguration(String)
    /// A model name is not in the registry.
    case unknownModel(name: String, known: [String])
    /// A configuration file could not be read or decoded.
    case unreadableConfiguration(path: String, reason: String)
    /// The checkpoint's tensors do not describe a supported Vim model.
    case unsupportedCheckpoint(path: String, reason: String)
    /// A tensor the configuration needs is missing.
    case missingTensor(path: String, key: String, expectedShape: [Int])
    /// A tensor has a different shape than the configuration needs.
    case shapeMismatch(path: String, key: String, expected: [Int], found: [Int])
    /// The checkpoint has tensors that the configuration does not use.
    case unexpectedTensors(path: String, keys: [String])
    /// An input array does not fit the model.
    case invalidInput(String)

    /// A message that names the file or setting and what is wrong.
    public var description: String {
        switch self {
        case .invalidConfiguration(let detail):
            return "invalid Vim configuration: \(detail)"
        case .unknownModel(let name, let known):
            return "unknown model '\(name)'; known models: \(known.joined(separator: ", "))"
        case .unreadableConfiguration(let path, let reason):
            return "\(path): cannot use this configuration file: \(reason)"
        case .unsupportedCheckpoint(let path, let reason):
            return "\(path): not a supported Vim checkpoint: \(reason)"
        case .missingTensor(let path, let key, let shape):
            return "\(path): missing tensor '\(key)' (expected shape \(shape))"
        case .shapeMismatch(let path, let key, let expected, let found):
            return "\(path): tensor '\(key)' has shape \(found), expected \(expected)"
        case .unexpectedTensors(let path, let keys):
            let shown = keys.prefix(5).joined(separator: ", ") + (keys.count > 5 ? ", … (\(keys.count) in all)" : "")
            return "\(path): tensors not used by this configuration: \(shown)"
        case .invalidInput(let detail):
            return "invalid input: \(detail)"
        }
    }
}
