import Foundation
import TensorModule

/// A batch of transformed images ready for the model.
public struct ImageBatch: Sendable {
    /// [B, 3, size, size]; B may be smaller than the batch size when files were skipped.
    public let images: Tensor
    /// The class index of each image.
    public let labels: [Int]
    /// The dataset index of each image.
    public let indices: [Int]
    /// Files of this batch that could not be used, with the reason; they are not in `images`.
    public let skipped: [(index: Int, error: ImageError)]
}

/// Decodes and transforms a range of a dataset in batches, on a background thread that stays up to
/// `prefetch` batches ahead of the consumer, so decoding overlaps with the model.
public final class BatchLoader: @unchecked Sendable {
    private let dataset: ImageDataset
    private let indices: [Int]
    private let batchSize: Int
    private let transform: EvaluationTransform
    private let strict: Bool
    private let condition = NSCondition()
    private var ready: [Result<ImageBatch, ImageError>] = []
    private var produced = 0
    private var consumed = 0
    private let batchCount: Int
    private let prefetch: Int
    private var cancelled = false

    /// Starts decoding `indices` of `dataset` in batches of `batchSize`.
    ///
    /// - Parameter strict: when true, the first unusable file ends the loading with its error;
    ///   otherwise unusable files are reported in `ImageBatch.skipped` and left out.
    public init(
        dataset: ImageDataset, indices: [Int], batchSize: Int, transform: EvaluationTransform, strict: Bool,
        prefetch: Int = 2
    ) {
        precondition(batchSize > 0 && prefetch > 0)
        self.dataset = dataset
        self.indices = indices
        self.batchSize = batchSize
        self.transform = transform
        self.strict = strict
        self.prefetch = prefetch
        batchCount = (indices.count + batchSize - 1) / batchSize
        let thread = Thread { [self] in produce() }
        thread.stackSize = 1 << 22
        thread.start()
    }

    /// Stops the background thread after the batch it is working on; call it when abandoning the
    /// loader before its last batch (the thread keeps the loader alive until it ends).
    public func cancel() {
        condition.lock()
        cancelled = true
        condition.broadcast()
        condition.unlock()
    }

    /// The next batch, or nil after the last one.
    ///
    /// - Throws: in strict mode, the `ImageError` of the first unusable file.
    public func next() throws -> ImageBatch? {
        condition.lock()
        defer { condition.unlock() }
        guard consumed < batchCount else { return nil }
        while ready.isEmpty { condition.wait() }
        let result = ready.removeFirst()
        consumed += 1
        condition.broadcast()
        switch result {
        case .success(let batch): return batch
        case .failure(let error):
            consumed = batchCount
            throw error
        }
    }

    private func produce() {
        let size = transform.inputSize
        for batch in 0..<batchCount {
            condition.lock()
            while produced - consumed >= prefetch && !cancelled { condition.wait() }
            let stop = cancelled
            condition.unlock()
            if stop { return }
            let members = indices[(batch * batchSize)..<min((batch + 1) * batchSize, indices.count)]
            var scalars: [Float] = []
            scalars.reserveCapacity(members.count * 3 * size * size)
            var labels: [Int] = []
            var kept: [Int] = []
            var skipped: [(Int, ImageError)] = []
            var failure: ImageError?
            for index in members {
                let sample = dataset.samples[index]
                do {
                    scalars += try transform(contentsOf: sample.path).scalars
                    labels.append(sample.label)
                    kept.append(index)
                } catch let error as ImageError {
                    if strict {
                        failure = error
                        break
                    }
                    skipped.append((index, error))
                } catch {
                    failure = .unreadable(path: sample.path, reason: "\(error)")
                    break
                }
            }
            let result: Result<ImageBatch, ImageError> =
                failure.map { .failure($0) }
                ?? .success(
                    ImageBatch(
                        images: Tensor(shape: [labels.count, 3, size, size], scalars: scalars), labels: labels,
                        indices: kept, skipped: skipped))
            condition.lock()
            ready.append(result)
            produced += 1
            condition.broadcast()
            condition.unlock()
            if failure != nil { return }
        }
    }
}
