import Cluster
import Foundation
import ImageData
import Vim

/// The options that choose images: a folder, an optional label file, a seeded subset.
enum DataOptions {
    static func specs(folderName: String, help: String) -> [OptionSpec] {
        [
            .value(folderName, "DIR", help, required: true),
            .value(
                "labels", "FILE", "label file of '<file> <class>' lines for a flat folder (default: ImageNet layout)"),
            .value("num-images", "N", "use N images chosen with --seed (default: all)"),
            .value("seed", "S", "seed of the image choice", default: "0"),
            .value("batch-size", "N", "images per forward pass on each rank", default: "8"),
            .value("crop-ratio", "RATIO", "centre-crop ratio of the evaluation transform", default: "0.875"),
            .flag("strict", "stop at the first unreadable image instead of reporting and skipping it"),
        ]
    }

    /// Builds the dataset on rank 0 and sends its list to every rank, so all ranks agree on it even if
    /// their views of the file system differ. With `classes` (a set to score), its labels are checked
    /// against the model's classes first (`checkLabels`).
    static func dataset(
        _ arguments: ParsedArguments, folderOption: String, labelOption: String = "labels", cluster: Communicator,
        subset: Bool = true, scoredWith classes: Int? = nil, console: Console
    ) throws -> ImageDataset {
        let folder = try arguments.required(folderOption)
        var header: [UInt8] = []
        var dataset: ImageDataset?
        if cluster.isRoot {
            var full: ImageDataset
            let labels = arguments.string(labelOption)
            if let labels {
                full = try ImageDataset(folder: folder, labelFile: labels)
            } else {
                full = try ImageDataset(imageFolder: folder)
            }
            if let classes {
                try checkLabels(
                    full, classes: classes, labelFile: labels, labelOption: labelOption, console: console)
            }
            if subset, let count = try arguments.integer("num-images") {
                full = full.subset(count: count, seed: try seed(arguments))
            }
            dataset = full
            header = Array((full.classNames.joined(separator: "\t") + "\n" + full.listing).utf8)
        }
        cluster.broadcast(&header)
        if let dataset { return dataset }
        let text = String(decoding: header, as: UTF8.self)
        let newline = text.firstIndex(of: "\n")!
        return try ImageDataset(
            root: folder, classNames: text[..<newline].split(separator: "\t").map(String.init),
            listing: String(text[text.index(after: newline)...]))
    }

    /// Refuses a set to score whose class indices reach past the model's classes: each such image
    /// would count as wrong with an infinite loss, left out of the mean, so the figures would mislead
    /// rather than fail (a 1-based label file, or a folder of another dataset). Warns when an ImageNet
    /// layout has fewer class folders than the model has classes: labels are the folders' positions in
    /// sorted order, as torchvision's `ImageFolder` gives them, which are the model's class indices only
    /// when every class has its folder.
    static func checkLabels(
        _ dataset: ImageDataset, classes: Int, labelFile: String?, labelOption: String, console: Console
    ) throws {
        let outside = dataset.samples(outside: classes)
        if let first = outside.first {
            let images = outside.count == 1 ? "1 image has" : "\(outside.count) images have"
            if let labelFile {
                throw ImageError.invalidDataset(
                    path: labelFile,
                    detail: "\(images) a class index the model cannot output (it has \(classes) classes, 0 to "
                        + "\(classes - 1)): the first is \(first.path), labelled \(first.label); are the indices 1-based, or "
                        + "for another model?")
            }
            throw ImageError.invalidDataset(
                path: dataset.root,
                detail: "\(dataset.classNames.count) class folders, but the model has \(classes) classes: \(images) "
                    + "a class index it cannot output (folder '\(dataset.classNames[first.label])' and the ones sorted "
                    + "after it); use the model's own classes, or give --\(labelOption) with its class indices")
        }
        if labelFile == nil && dataset.classNames.count < classes {
            console.warning(
                "\(dataset.root): \(dataset.classNames.count) class folders for a model of \(classes) classes; labels "
                    + "are the folders' positions in sorted order (as torchvision's ImageFolder), which are the model's "
                    + "class indices only if every class has its folder (for a subset of the classes, give "
                    + "--\(labelOption) with the model's class indices)")
        }
    }

    static func seed(_ arguments: ParsedArguments) throws -> UInt64 {
        let text = arguments.string("seed")!
        guard let seed = UInt64(text) else {
            throw CommandLineError.invalidValue(
                option: "seed", value: text, reason: "expected a non-negative whole number")
        }
        return seed
    }

    static func transform(_ arguments: ParsedArguments, model: VimModel) throws -> EvaluationTransform {
        EvaluationTransform(
            inputSize: model.configuration.imageSize, cropRatio: try TransformOptions.cropRatio(arguments))
    }
}

/// Streams a rank's shard through the model in collective rounds, reporting progress over all ranks
/// on rank 0. Every rank runs the same number of rounds, so the per-round reductions always match up.
struct ShardRunner {
    let dataset: ImageDataset
    let cluster: Communicator
    let batchSize: Int
    let transform: EvaluationTransform
    let strict: Bool
    let console: Console

    /// Runs `body` on every batch of `indices` (default: this rank's shard), then `afterRound` on
    /// every rank after each collective round. Returns the number of images skipped on all ranks.
    func run(
        label: String, indices: [Int]? = nil, alreadyDone: Int = 0, afterRound: () throws -> Void = {},
        _ body: (ImageBatch) throws -> Void
    ) throws -> Int {
        let mine = indices ?? Array(dataset.shard(rank: cluster.rank, of: cluster.size))
        var largestShare = [Int64(mine.count)]
        cluster.allReduce(&largestShare, .maximum)
        let rounds = (Int(largestShare[0]) + batchSize - 1) / batchSize
        let loader = BatchLoader(
            dataset: dataset, indices: mine, batchSize: batchSize, transform: transform, strict: strict)
        defer { loader.cancel() }
        let progress = Progress(label: label, total: dataset.samples.count, alreadyDone: alreadyDone, console: console)
        var done: Int64 = 0
        var skipped: Int64 = 0
        var totals = [Int64(0), 0]
        for _ in 0..<max(rounds, 1) {
            if let batch = try loader.next() {
                for (index, error) in batch.skipped {
                    FileHandle.standardError.write(
                        "qmamba: warning: \(error) (image \(index) skipped)\n".data(using: .utf8)!)
                }
                try body(batch)
                done += Int64(batch.indices.count + batch.skipped.count)
                skipped += Int64(batch.skipped.count)
            }
            try afterRound()
            totals = [done, skipped]
            cluster.allReduce(&totals, .sum)
            progress.update(alreadyDone + Int(totals[0]), skipped: Int(totals[1]))
        }
        progress.finish()
        return Int(totals[1])
    }
}

/// Progress of a pass on rank 0: a line that updates in place on a terminal, a line per ~10 % in logs.
final class Progress {
    private let label: String
    private let total: Int
    /// Images done before this run (resumed), left out of the rate.
    private let alreadyDone: Int
    private let console: Console
    private let start = Date()
    /// In-place updates only on a real terminal: Open MPI hands every rank a pseudo-terminal even
    /// when mpirun's output goes to a log, so under mpirun progress is a line per ~10 %.
    private let interactive =
        isatty(STDOUT_FILENO) != 0 && ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] == nil
    private var lastReported = -1
    private var lastLogged = -1

    init(label: String, total: Int, alreadyDone: Int = 0, console: Console) {
        self.label = label
        self.total = total
        self.alreadyDone = alreadyDone
        self.console = console
    }

    func update(_ done: Int, skipped: Int) {
        let tenth = total > 0 ? done * 10 / total : 10
        guard interactive || tenth > lastReported else { return }
        lastReported = tenth
        let elapsed = Date().timeIntervalSince(start)
        let rate = Double(done - alreadyDone) / max(elapsed, 1e-9)
        let left = rate > 0 ? Double(total - done) / rate : 0
        let text = String(
            format: "%@: %d/%d images, %.1f images/s, %@ left%@", label, done, total, rate, Self.clock(left),
            skipped > 0 ? ", \(skipped) skipped" : "")
        if interactive {
            console.write("\r" + text)
        } else {
            console.line(text, logged: false)
        }
        guard tenth > lastLogged else { return }
        lastLogged = tenth
        console.event(
            "progress",
            [
                "label": .string(label), "done": .integer(done), "total": .integer(total),
                "skipped": .integer(skipped), "images_per_s": .double((rate * 100).rounded() / 100),
                "remaining_s": .double(left.rounded()),
            ])
    }

    func finish() {
        if interactive { console.write("\n") }
    }

    static func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600
            ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}
