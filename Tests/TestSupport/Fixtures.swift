import Foundation

/// Locates test fixtures: small ones copied into this repository, large ones in `../shared` beside it.
public enum Fixtures {
    /// The repository's root directory.
    public static let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// A file under `Tests/Fixtures/` of this repository.
    public static func bundled(_ relative: String) -> String {
        repositoryRoot.appendingPathComponent("Tests/Fixtures/\(relative)").path
    }

    /// A file under `../shared/fixtures/`, or nil (after saying so on standard output) when the shared
    /// folder is not beside the checkout, as in a user's own clone.
    public static func shared(_ relative: String) -> String? {
        let path = repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared/fixtures/\(relative)").path
        if FileManager.default.fileExists(atPath: path) { return path }
        print("SKIPPED: shared fixture \(relative) is absent (expected at \(path)); the test using it did not run")
        return nil
    }

    /// A fresh empty directory under the system's temporary directory.
    public static func temporaryDirectory() -> String {
        let path = NSTemporaryDirectory() + "qmamba-test-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}
