import Foundation

/// Writes files so that a reader never sees a partial one.
public enum AtomicFile {
    /// Writes `data` to a temporary file beside `path`, flushes it, then renames it over `path`.
    ///
    /// - Throws: `CheckpointError.writeFailed` naming `path`; the temporary file is removed.
    public static func write(_ data: Data, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        let directory = url.deletingLastPathComponent().path
        let temporary = "\(directory)/.\(url.lastPathComponent).\(ProcessInfo.processInfo.processIdentifier).partial"
        guard FileManager.default.createFile(atPath: temporary, contents: nil) else {
            throw CheckpointError.writeFailed(path: path, reason: "cannot create a file in \(directory)")
        }
        do {
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: temporary))
            try handle.write(contentsOf: data)
            try handle.synchronize()
            try handle.close()
            if rename(temporary, path) != 0 {
                throw CheckpointError.writeFailed(path: path, reason: String(cString: strerror(errno)))
            }
        } catch let error as CheckpointError {
            try? FileManager.default.removeItem(atPath: temporary)
            throw error
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw CheckpointError.writeFailed(path: path, reason: "\(error.localizedDescription)")
        }
    }
}
