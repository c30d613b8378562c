import Foundation
import TensorModule

/// One labelled image file.
public struct ImageSample: Sendable, Equatable {
    /// The file's path.
    public let path: String
    /// The class index.
    public let label: Int
}

/// A labelled set of image files in a fixed, reproducible order.
public struct ImageDataset: Sendable {
    /// Where the dataset was read from.
    public let root: String
    /// Class names by index (folder names, or the label numbers of a label file).
    public let classNames: [String]
    /// The images in order.
    public let samples: [ImageSample]

    /// The extensions torchvision's `ImageFolder` accepts (compared case-insensitively). Files with
    /// other extensions are not part of the dataset; JPEG and PNG content is decoded whatever the
    /// extension says, other formats are reported as unsupported when read.
    public static let extensions: Set<String> = ["jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp"]

    /// The ImageNet layout `root/<class folder>/…/<image>`: classes indexed by sorted folder name, files
    /// in sorted order within a class (subfolders walked in sorted order), as torchvision's `ImageFolder`.
    ///
    /// - Throws: `ImageError.invalidDataset` when the folder is missing or holds no images.
    public init(imageFolder root: String) throws {
        let manager = FileManager.default
        var isDirectory: ObjCBool = false
        guard manager.fileExists(atPath: root, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ImageError.invalidDataset(path: root, detail: "no such directory")
        }
        let classes = try ImageDataset.sortedEntries(root).filter { ImageDataset.isDirectory("\(root)/\($0)") }
        guard !classes.isEmpty else {
            throw ImageError.invalidDataset(
                path: root, detail: "no class folders (expected the ImageNet layout root/<class>/<image>)")
        }
        var samples: [ImageSample] = []
        for (label, name) in classes.enumerated() {
            for path in try ImageDataset.imageFiles(under: "\(root)/\(name)") {
                samples.append(ImageSample(path: path, label: label))
            }
        }
        guard !samples.isEmpty else {
            throw ImageError.invalidDataset(path: root, detail: "the class folders hold no images")
        }
        self.root = root
        self.classNames = classes
        self.samples = samples
    }

    /// A flat folder of images with a label file of lines `<file name> <class index>` (paths relative to
    /// the folder; blank lines and lines starting with `#` are ignored). Order is the label file's.
    ///
    /// - Throws: `ImageError.invalidDataset` naming the label file and line of a malformed entry.
    public init(folder root: String, labelFile: String) throws {
        let text: String
        do {
            text = try String(contentsOfFile: labelFile, encoding: .utf8)
        } catch {
            throw ImageError.invalidDataset(path: labelFile, detail: "cannot read the label file")
        }
        var samples: [ImageSample] = []
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let fields = trimmed.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count == 2, let label = Int(fields[1]), label >= 0 else {
                throw ImageError.invalidDataset(
                    path: labelFile, detail: "line \(number + 1) is not '<file> <class index>': \(trimmed)")
            }
            samples.append(ImageSample(path: "\(root)/\(fields[0])", label: label))
        }
        guard let largest = samples.map(\.label).max() else {
            throw ImageError.invalidDataset(path: labelFile, detail: "the label file lists no images")
        }
        self.root = root
        self.classNames = (0...largest).map(String.init)
        self.samples = samples
    }

    /// The images whose class index is `classes` or more, in dataset order: those a classifier of
    /// `classes` classes can never predict.
    public func samples(outside classes: Int) -> [ImageSample] { samples.filter { $0.label >= classes } }

    /// A dataset from its parts (e.g. a list received from another rank).
    public init(root: String, classNames: [String], samples: [ImageSample]) {
        self.root = root
        self.classNames = classNames
        self.samples = samples
    }

    /// `count` images chosen with `seed`, kept in dataset order. The choice depends only on the
    /// dataset, the count and the seed (never on the number of ranks); a count of at least the
    /// dataset's size keeps every image.
    public func subset(count: Int, seed: UInt64) -> ImageDataset {
        guard count < samples.count else { return self }
        var generator = SplitMix64(seed: seed)
        var order = Array(samples.indices)
        for i in 0..<count {
            let j = i + Int(generator.next() % UInt64(order.count - i))
            order.swapAt(i, j)
        }
        let chosen = order.prefix(count).sorted()
        return ImageDataset(root: root, classNames: classNames, samples: chosen.map { samples[$0] })
    }

    /// The list as text, one `label<TAB>path` line per image with paths relative to the root: what ranks
    /// exchange, and what the calibration file's image-list hash covers.
    public var listing: String {
        samples.map { sample in
            let relative =
                sample.path.hasPrefix(root + "/") ? String(sample.path.dropFirst(root.count + 1)) : sample.path
            return "\(sample.label)\t\(relative)\n"
        }.joined()
    }

    /// Rebuilds a dataset from `listing` text.
    public init(root: String, classNames: [String], listing: String) throws {
        var samples: [ImageSample] = []
        for line in listing.split(separator: "\n") {
            let fields = line.split(separator: "\t", maxSplits: 1)
            guard fields.count == 2, let label = Int(fields[0]) else {
                throw ImageError.invalidDataset(path: root, detail: "malformed image list line: \(line)")
            }
            let path = String(fields[1])
            samples.append(ImageSample(path: path.hasPrefix("/") ? path : "\(root)/\(path)", label: label))
        }
        self.init(root: root, classNames: classNames, samples: samples)
    }

    /// The contiguous block of sample indices rank `rank` of `size` processes: every sample belongs
    /// to exactly one rank, and block sizes differ by at most one.
    public func shard(rank: Int, of size: Int) -> Range<Int> {
        precondition(size > 0 && rank >= 0 && rank < size)
        return (samples.count * rank / size)..<(samples.count * (rank + 1) / size)
    }

    private static func isDirectory(_ path: String) -> Bool {
        var flag: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &flag) && flag.boolValue
    }

    /// Entry names sorted by code point, as Python's `sorted` orders them.
    private static func sortedEntries(_ directory: String) throws -> [String] {
        do {
            return try FileManager.default.contentsOfDirectory(atPath: directory)
                .sorted { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) }
        } catch {
            throw ImageError.invalidDataset(path: directory, detail: "cannot list the directory")
        }
    }

    private static func imageFiles(under directory: String) throws -> [String] {
        var files: [String] = []
        var subdirectories: [String] = []
        for name in try sortedEntries(directory) {
            let path = "\(directory)/\(name)"
            if isDirectory(path) {
                subdirectories.append(path)
            } else if extensions.contains((name as NSString).pathExtension.lowercased()) {
                files.append(path)
            }
        }
        for subdirectory in subdirectories { files += try imageFiles(under: subdirectory) }
        return files
    }
}
