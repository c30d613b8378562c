import Checkpoint
import Cluster
import Foundation
import ImageData
import Quantization
import TensorModule
import Vim

/// Distributed evaluation in blocks of consecutive images. Ranks score whole blocks; after every
/// collective round the blocks finished in it travel to rank 0, which keeps them (and saves them,
/// when progress is kept, so an interrupted run can resume). The totals are integer sums over the
/// blocks, so they are identical for any number of ranks and across interruptions.
enum Evaluation {
    /// One image's outcome.
    struct Prediction: Codable, Equatable {
        var index: Int
        var label: Int
        var top5: [Int]
        var loss: Double
    }

    /// The outcome of one block of consecutive images: the unit of saved progress.
    struct Block: Codable, Equatable {
        /// Index of the block's first image; blocks start at multiples of the block size.
        var first: Int
        var count: Int
        var images = 0
        var top1 = 0
        var top5 = 0
        /// Σ cross-entropy in units of 1e-9, as an integer so the total is exact in any order.
        var lossNanounits: Int64 = 0
        var skipped = 0
        var predictions: [Prediction] = []

        init(first: Int, count: Int) {
            self.first = first
            self.count = count
        }

        var isComplete: Bool { images + skipped == count }
    }

    /// Totals over all blocks, on rank 0 (other ranks get empty counts).
    struct Result {
        var images = 0
        var top1 = 0
        var top5 = 0
        var lossNanounits: Int64 = 0
        var skipped = 0
        /// Wall time of this run's slowest rank.
        var seconds = 0.0
        /// Images scored and seconds taken by each rank in this run.
        var rankTimes: [(images: Int, seconds: Double)] = []
        var predictions: [Prediction] = []
        /// Images whose outcome was read from saved progress instead of computed in this run.
        var resumedImages = 0

        init(blocks: [Block]) {
            for block in blocks {
                images += block.images
                top1 += block.top1
                top5 += block.top5
                lossNanounits += block.lossNanounits
                skipped += block.skipped
                predictions += block.predictions
            }
        }

        var top1Percent: Double { images > 0 ? 100 * Double(top1) / Double(images) : 0 }
        var top5Percent: Double { images > 0 ? 100 * Double(top5) / Double(images) : 0 }
        var meanLoss: Double { images > 0 ? Double(lossNanounits) / 1e9 / Double(images) : 0 }
    }

    /// JSON coding of blocks; a label outside the model's classes has an infinite loss.
    static let blockEncoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return encoder
    }()

    /// Reads what `blockEncoder` writes.
    static let blockDecoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return decoder
    }()

    /// The model with `plan` applied (weights snapped to their grids, activations through hooks).
    static func quantized(_ model: VimModel, plan: QuantizationPlan?) -> (VimModel, ForwardHooks?) {
        guard let plan else { return (model, nil) }
        return (
            VimModel(configuration: model.configuration, weights: plan.quantizedWeights(model.weights)),
            FakeQuantizationHooks(plan: plan)
        )
    }

    /// Scores one batch's logits into the blocks that hold its images.
    private static func score(
        _ logits: Tensor, _ batch: ImageBatch, into blocks: inout [Int: Block], blockSize: Int, keepsPredictions: Bool
    ) {
        let classes = logits.shape[1]
        for (row, label) in batch.labels.enumerated() {
            let scores = logits.scalars[(row * classes)..<((row + 1) * classes)]
            let ranked = scores.indices.sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
                .prefix(5).map { $0 - row * classes }
            let largest = scores.max()!
            let logSum = Double(largest) + log(scores.reduce(0.0) { $0 + exp(Double($1 - largest)) })
            let loss = label < classes ? logSum - Double(scores[scores.startIndex + label]) : .infinity
            let index = batch.indices[row]
            let first = index / blockSize * blockSize
            blocks[first]!.images += 1
            if ranked.first == label { blocks[first]!.top1 += 1 }
            if ranked.contains(label) { blocks[first]!.top5 += 1 }
            blocks[first]!.lossNanounits += loss.isFinite ? Int64((loss * 1e9).rounded()) : 0
            guard keepsPredictions else { continue }
            blocks[first]!.predictions.append(
                Prediction(
                    index: index, label: label, top5: ranked + [Int](repeating: -1, count: 5 - ranked.count),
                    loss: loss))
        }
        for (index, _) in batch.skipped { blocks[index / blockSize * blockSize]!.skipped += 1 }
    }

    /// The images per block of a set of `images`: at most `saveEvery`, and small enough that up to 1024
    /// ranks share the set, since blocks are also the unit of work. It depends on the set alone, so a
    /// run may resume on another number of ranks.
    static func blockSize(images: Int, saveEvery: Int) -> Int { max(1, min(saveEvery, (images + 1023) / 1024)) }

    /// Evaluates the blocks not already in `progress`, this rank taking a contiguous share of them.
    /// Rank 0 returns the totals over every block; `progress` (rank 0 only) saves each finished block.
    /// Without a `blockSize`, each rank's shard is one block. Without `keepsPredictions`, blocks hold
    /// only their counts (a table's cells: about 100 bytes a saved block, where each image's prediction
    /// adds about 70).
    static func run(
        model: VimModel, plan: QuantizationPlan?, runner: ShardRunner, label: String,
        progress: EvaluationProgress? = nil, blockSize: Int? = nil, keepsPredictions: Bool = true
    ) throws -> Result {
        let cluster = runner.cluster
        let count = runner.dataset.samples.count
        let blockSize = blockSize ?? max(1, (count + cluster.size - 1) / cluster.size)
        var kept = progress?.savedBlocks ?? [:]
        var doneFirsts: [UInt8] = Array(kept.keys.sorted().map(String.init).joined(separator: ",").utf8)
        cluster.broadcast(&doneFirsts)
        let done = Set(String(decoding: doneFirsts, as: UTF8.self).split(separator: ",").compactMap { Int($0) })
        func length(ofBlockAt first: Int) -> Int { min(blockSize, count - first) }
        let resumed = done.reduce(0) { $0 + length(ofBlockAt: $1) }
        let remaining = stride(from: 0, to: count, by: blockSize).filter { !done.contains($0) }
        let share = remaining[
            (cluster.rank * remaining.count / cluster.size)..<((cluster.rank + 1) * remaining.count / cluster.size)]
        var open: [Int: Block] = [:]
        for first in share { open[first] = Block(first: first, count: length(ofBlockAt: first)) }

        let (network, hooks) = quantized(model, plan: plan)
        let started = Date()
        var scored = 0
        _ = try runner.run(
            label: label, indices: share.flatMap { $0..<($0 + length(ofBlockAt: $0)) }, alreadyDone: resumed,
            afterRound: {
                let finished = open.values.filter(\.isComplete).sorted { $0.first < $1.first }
                for block in finished { open[block.first] = nil }
                let sent = finished.isEmpty ? [] : [UInt8](try blockEncoder.encode(finished))
                guard let received = cluster.gather(bytes: sent) else { return }
                for bytes in received where !bytes.isEmpty {
                    for block in try blockDecoder.decode([Block].self, from: Data(bytes)) {
                        try progress?.save(block)
                        kept[block.first] = block
                    }
                }
            }
        ) { batch in
            let logits = try network(batch.images, hooks: hooks)
            score(logits, batch, into: &open, blockSize: blockSize, keepsPredictions: keepsPredictions)
            scored += batch.indices.count
        }
        let seconds = Date().timeIntervalSince(started)
        var longest = [seconds]
        cluster.allReduce(&longest, .maximum)
        let times = cluster.gather([Float(scored), Float(seconds)])
        guard let times else { return Result(blocks: []) }
        var result = Result(blocks: kept.keys.sorted().map { kept[$0]! })
        result.seconds = longest[0]
        result.rankTimes = stride(from: 0, to: times.count, by: 2).map { (Int(times[$0]), Double(times[$0 + 1])) }
        result.resumedImages = resumed
        return result
    }
}

/// Saved progress of an evaluation: a directory of finished blocks (`block-<first>.json`) and a
/// `run.json` whose fingerprint ties them to one checkpoint, quantization, image list and transform.
/// Only rank 0 reads and writes it; every file is written atomically.
struct EvaluationProgress {
    let directory: String
    let fingerprint: String
    /// Blocks read from an earlier run, by first image.
    private(set) var savedBlocks: [Int: Evaluation.Block] = [:]

    private struct RunRecord: Codable, Equatable {
        var fingerprint: String
        var blockSize: Int
        var images: Int
    }

    /// Opens (resume) or creates the progress directory.
    ///
    /// Refuses to start over an earlier run's progress without `resume`, and to resume progress
    /// made by a different evaluation.
    init(directory: String, fingerprint: String, blockSize: Int, images: Int, resume: Bool, console: Console) throws {
        self.directory = directory
        self.fingerprint = fingerprint
        let record = RunRecord(fingerprint: fingerprint, blockSize: blockSize, images: images)
        let recordPath = directory + "/run.json"
        let manager = FileManager.default
        guard manager.fileExists(atPath: directory) else {
            if resume { console.line("no saved progress in \(directory); starting from the first image") }
            do {
                try manager.createDirectory(atPath: directory, withIntermediateDirectories: false)
            } catch {
                throw CommandFailure(
                    "\(directory): cannot create the progress directory (\(error.localizedDescription))")
            }
            try AtomicFile.write(try JSONEncoder().encode(record), to: recordPath)
            return
        }
        guard resume else { throw Self.startingOver(directory, of: "evaluation") }
        guard let data = manager.contents(atPath: recordPath),
            let saved = try? JSONDecoder().decode(RunRecord.self, from: data)
        else { throw CommandFailure("\(recordPath): missing or damaged; delete \(directory) to start again") }
        guard saved == record else {
            throw CommandFailure(
                "\(directory) was made by a different evaluation (checkpoint, quantization, images, transform or "
                    + "--save-every differ): delete it to start again, or run the same evaluation")
        }
        for name in try manager.contentsOfDirectory(atPath: directory) where name.hasPrefix("block-") {
            let path = directory + "/" + name
            guard let data = manager.contents(atPath: path),
                let block = try? Evaluation.blockDecoder.decode(Evaluation.Block.self, from: data),
                block.first % blockSize == 0, block.first < images, block.count == min(blockSize, images - block.first),
                block.isComplete, name == Self.fileName(block.first)
            else { throw CommandFailure("\(path): damaged progress file; delete it to recompute its images") }
            savedBlocks[block.first] = block
        }
        let resumed = savedBlocks.values.reduce(0) { $0 + $1.count }
        console.line("resuming: \(resumed) of \(images) images already evaluated (\(directory))")
    }

    private static func fileName(_ first: Int) -> String { "block-\(first).json" }

    /// The refusal to start an `interrupted` job (an evaluation, a table) again over its saved progress
    /// in `directory` without `--resume`.
    static func startingOver(_ directory: String, of interrupted: String) -> CommandFailure {
        CommandFailure(
            "\(directory) holds the progress of an interrupted \(interrupted): add --resume to continue it, "
                + "or delete the directory to start again")
    }

    /// What saved progress must match to be resumed: the SHA-256 `digests` of the model's files (the
    /// checkpoint, and the Q.json or its bytes), the image list with its labels, and the transform.
    static func fingerprint(digests: [String], dataset: ImageDataset, transform: EvaluationTransform, strict: Bool)
        -> String
    {
        var hash = SHA256()
        for digest in digests { hash.update(Array(digest.utf8)) }
        let description = [
            dataset.classNames.joined(separator: "\t"), dataset.listing, "\(transform.inputSize)",
            "\(transform.cropRatio)", "\(strict)",
        ]
        hash.update(Array(description.joined(separator: "\n").utf8))
        return hash.hexDigest()
    }

    func save(_ block: Evaluation.Block) throws {
        try AtomicFile.write(
            try Evaluation.blockEncoder.encode(block), to: directory + "/" + Self.fileName(block.first))
    }

    /// Deletes the directory once the final result is safely written.
    func remove() {
        try? FileManager.default.removeItem(atPath: directory)
    }
}
