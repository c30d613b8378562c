import Foundation
import TestSupport
import Testing

@testable import ImageData

/// Builds `root/<class>/<file>` from (class, file, source photo or nil for junk bytes).
func makeImageFolder(_ entries: [(String, String, String?)]) throws -> String {
    let root = Fixtures.temporaryDirectory()
    for (folder, file, source) in entries {
        let directory = "\(root)/\(folder)"
        try FileManager.default.createDirectory(
            atPath: (("\(directory)/\(file)") as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let data =
            try source.map { try Data(contentsOf: URL(fileURLWithPath: Fixtures.bundled("photos/\($0)"))) }
            ?? Data("junk".utf8)
        try data.write(to: URL(fileURLWithPath: "\(directory)/\(file)"))
    }
    return root
}

@Suite("Datasets, shards and the loader")
struct DatasetTests {
    @Test("the ImageNet layout: classes by sorted folder name, files sorted, subfolders walked, other files ignored")
    func imageFolder() throws {
        let root = try makeImageFolder([
            ("n02", "b.JPEG", "chelsea.jpg"), ("n02", "a.jpg", "chelsea.jpg"), ("n01", "z.png", "rocket.png"),
            ("n01", "notes.txt", nil), ("n02", "sub/c.jpeg", "chelsea.jpg"), ("n10", "x.jpg", "chelsea.jpg"),
        ])
        let dataset = try ImageDataset(imageFolder: root)
        #expect(dataset.classNames == ["n01", "n02", "n10"])
        #expect(
            dataset.samples.map { String($0.path.dropFirst(root.count + 1)) } == [
                "n01/z.png", "n02/a.jpg", "n02/b.JPEG", "n02/sub/c.jpeg", "n10/x.jpg",
            ])
        #expect(dataset.samples.map(\.label) == [0, 1, 1, 1, 2])
    }

    @Test("a missing or empty dataset is an error naming the folder")
    func emptyDataset() throws {
        let empty = Fixtures.temporaryDirectory()
        #expect(
            throws: ImageError.invalidDataset(
                path: empty, detail: "no class folders (expected the ImageNet layout root/<class>/<image>)")
        ) {
            try ImageDataset(imageFolder: empty)
        }
        try FileManager.default.createDirectory(atPath: empty + "/n01", withIntermediateDirectories: true)
        #expect(throws: ImageError.self) { try ImageDataset(imageFolder: empty) }
        #expect(throws: ImageError.invalidDataset(path: empty + "/absent", detail: "no such directory")) {
            try ImageDataset(imageFolder: empty + "/absent")
        }
    }

    @Test("a flat folder with a label file keeps the file's order and rejects malformed lines")
    func labelFile() throws {
        let root = Fixtures.temporaryDirectory()
        let labels = root + "/labels.txt"
        try "# file label\nb.jpg 3\n\na.png 0\n".write(toFile: labels, atomically: true, encoding: .utf8)
        let dataset = try ImageDataset(folder: root, labelFile: labels)
        #expect(
            dataset.samples == [
                ImageSample(path: root + "/b.jpg", label: 3), ImageSample(path: root + "/a.png", label: 0),
            ])
        #expect(dataset.classNames.count == 4)
        try "b.jpg three\n".write(toFile: labels, atomically: true, encoding: .utf8)
        #expect { try ImageDataset(folder: root, labelFile: labels) } throws: { "\($0)".contains("line 1") }
    }

    @Test("shards over 1, 2 and 3 ranks cover every image exactly once", arguments: [0, 1, 2, 5, 7, 1000])
    func shards(_ count: Int) throws {
        let labels = Fixtures.temporaryDirectory() + "/labels.txt"
        try ((0..<max(count, 1)).map { "f\($0).jpg 0" }.joined(separator: "\n")).write(
            toFile: labels, atomically: true, encoding: .utf8)
        let dataset = try ImageDataset(folder: "/data", labelFile: labels).subset(count: count, seed: 1)
        for size in 1...3 {
            let ranges = (0..<size).map { dataset.shard(rank: $0, of: size) }
            #expect(ranges.flatMap { Array($0) } == Array(dataset.samples.indices))
            #expect(ranges.map(\.count).max()! - ranges.map(\.count).min()! <= 1)
        }
    }

    @Test("a seeded subset is reproducible, ordered, and changes with the seed")
    func seededSubset() throws {
        let labels = Fixtures.temporaryDirectory() + "/labels.txt"
        try ((0..<500).map { "f\($0).jpg \($0 % 10)" }.joined(separator: "\n")).write(
            toFile: labels, atomically: true, encoding: .utf8)
        let dataset = try ImageDataset(folder: "/data", labelFile: labels)
        let a = dataset.subset(count: 64, seed: 7)
        #expect(a.samples == dataset.subset(count: 64, seed: 7).samples)
        #expect(a.samples != dataset.subset(count: 64, seed: 8).samples)
        #expect(a.samples.count == 64)
        let positions = a.samples.map { s in dataset.samples.firstIndex(of: s)! }
        #expect(positions == positions.sorted() && Set(positions).count == 64)
        #expect(dataset.subset(count: 10_000, seed: 7).samples == dataset.samples)
    }

    @Test("the loader transforms every image, reports bad files and skips them, or stops on them when strict")
    func loader() throws {
        let root = try makeImageFolder([
            ("a", "1.jpg", "chelsea.jpg"), ("a", "2.jpg", nil), ("b", "3.png", "rocket.png"),
            ("b", "4.jpg", "camera_gray.jpg"),
        ])
        let dataset = try ImageDataset(imageFolder: root)
        let transform = EvaluationTransform()
        let loader = BatchLoader(
            dataset: dataset, indices: Array(0..<4), batchSize: 3, transform: transform, strict: false)
        var seen: [Int] = []
        var skipped: [String] = []
        while let batch = try loader.next() {
            seen += batch.indices
            skipped += batch.skipped.map { "\($0.error)" }
            for (row, index) in batch.indices.enumerated() {
                let expected = try transform(contentsOf: dataset.samples[index].path)
                #expect(
                    Array(batch.images.scalars[(row * expected.count)..<((row + 1) * expected.count)])
                        == expected.scalars)
            }
        }
        #expect(seen == [0, 2, 3])
        #expect(skipped.count == 1 && skipped[0].hasPrefix("\(root)/a/2.jpg"))
        let strict = BatchLoader(
            dataset: dataset, indices: Array(0..<4), batchSize: 3, transform: transform, strict: true)
        #expect { _ = try strict.next() } throws: { "\($0)".hasPrefix("\(root)/a/2.jpg") }
        #expect(try strict.next() == nil)
    }
}
