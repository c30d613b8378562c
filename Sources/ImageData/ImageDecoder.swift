import Foundation

/// Decodes image files to RGB exactly as PIL's `Image.open(path).convert('RGB')` does.
public enum ImageDecoder {
    /// Decodes a JPEG or PNG file, chosen by its first bytes (not its extension: ImageNet holds a PNG
    /// named `.JPEG`).
    ///
    /// - Throws: `ImageError` naming the file.
    public static func decode(contentsOf path: String) throws -> RGBImage {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ImageError.unreadable(path: path, reason: (error as NSError).localizedDescription)
        }
        return try decode(data, path: path)
    }

    /// Decodes JPEG or PNG bytes; `path` only names them in errors.
    public static func decode(_ data: Data, path: String) throws -> RGBImage {
        let bytes = [UInt8](data.prefix(8))
        if bytes.starts(with: [0xFF, 0xD8, 0xFF]) { return try JPEGDecoder.decode(data, path: path) }
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) {
            return try PNGDecoder.decode(data, path: path)
        }
        if data.isEmpty { throw ImageError.corrupt(path: path, detail: "the file is empty") }
        throw ImageError.unsupportedFormat(path: path, detail: "not a JPEG or PNG file (only these two are supported)")
    }
}
