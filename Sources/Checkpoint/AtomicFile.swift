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
        func failure(_ doing: String) -> CheckpointError {
            let reason = "\(doing): \(String(cString: strerror(errno)))"
            unlink(temporary)
            return .writeFailed(path: path, reason: reason)
        }
        // POSIX calls rather than FileHandle, so a full disk is reported as ENOSPC, not an opaque code.
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard descriptor >= 0 else { throw failure("cannot create a file in \(directory)") }
        let written = data.withUnsafeBytes { raw -> Bool in
            var offset = 0
            while offset < raw.count {
                let n = Foundation.write(descriptor, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return false }
                offset += n
            }
            return true
        }
        guard written, fsync(descriptor) == 0 else {
            let error = failure("writing failed")
            close(descriptor)
            throw error
        }
        guard close(descriptor) == 0 else { throw failure("writing failed") }
        guard rename(temporary, path) == 0 else { throw failure("cannot move the finished file into place") }
    }
}
