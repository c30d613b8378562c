/// Why an image or a dataset could not be used.
public enum ImageError: Error, CustomStringConvertible, Equatable {
    /// The file could not be read.
    case unreadable(path: String, reason: String)
    /// The file is not a JPEG or PNG image.
    case unsupportedFormat(path: String, detail: String)
    /// The decoder rejected the file (truncated, corrupt).
    case corrupt(path: String, detail: String)
    /// The dataset location is missing, empty or malformed.
    case invalidDataset(path: String, detail: String)
    /// The image does not fit the transform (e.g. wrong size for a model of 32 px or less).
    case unsuitable(path: String, detail: String)

    /// A message that names the file and the problem.
    public var description: String {
        switch self {
        case .unreadable(let path, let reason): return "\(path): cannot read the image (\(reason))"
        case .unsupportedFormat(let path, let detail): return "\(path): unsupported image format: \(detail)"
        case .corrupt(let path, let detail): return "\(path): damaged image: \(detail)"
        case .invalidDataset(let path, let detail): return "\(path): \(detail)"
        case .unsuitable(let path, let detail): return "\(path): \(detail)"
        }
    }
}
