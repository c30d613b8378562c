/// A dense, row-major float32 array with an explicit shape.
///
/// `Tensor` is a value type: copies are cheap until one of them is written (the scalars are a Swift
/// array). Kernels that need raw pointers borrow them through `withUnsafeBufferPointer` inside this
/// module; callers outside see only shapes and scalars.
public struct Tensor: Equatable, Sendable {
    /// The extent of each dimension, outermost first.
    public private(set) var shape: [Int]
    /// The elements in row-major order; `scalars.count == shape.reduce(1, *)`.
    public var scalars: [Float]

    /// Creates a tensor from its shape and row-major elements.
    ///
    /// - Precondition: `scalars.count` equals the product of `shape`, and no extent is negative.
    public init(shape: [Int], scalars: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative extent in shape \(shape)")
        precondition(
            scalars.count == shape.reduce(1, *),
            "shape \(shape) needs \(shape.reduce(1, *)) scalars, got \(scalars.count)")
        self.shape = shape
        self.scalars = scalars
    }

    /// Creates a tensor of the given shape filled with `value` (zero by default).
    public init(shape: [Int], repeating value: Float = 0) {
        self.init(shape: shape, scalars: [Float](repeating: value, count: shape.reduce(1, *)))
    }

    /// The number of elements.
    public var count: Int { scalars.count }

    /// The number of dimensions.
    public var rank: Int { shape.count }

    /// The same elements under another shape with the same element count.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        Tensor(shape: newShape, scalars: scalars)
    }

    /// Rows `range` of the outermost dimension, as a new tensor.
    public func slice(outer range: Range<Int>) -> Tensor {
        precondition(rank >= 1 && range.lowerBound >= 0 && range.upperBound <= shape[0])
        let inner = shape.dropFirst().reduce(1, *)
        return Tensor(
            shape: [range.count] + shape.dropFirst(),
            scalars: Array(scalars[(range.lowerBound * inner)..<(range.upperBound * inner)]))
    }

    /// Swaps the last two dimensions (a batched matrix transpose).
    public func transposingLastTwo() -> Tensor {
        precondition(rank >= 2)
        let rows = shape[rank - 2]
        let cols = shape[rank - 1]
        let batch = count / max(rows * cols, 1)
        var out = [Float](repeating: 0, count: count)
        for b in 0..<batch {
            let base = b * rows * cols
            for r in 0..<rows {
                for c in 0..<cols { out[base + c * rows + r] = scalars[base + r * cols + c] }
            }
        }
        var newShape = shape
        newShape.swapAt(rank - 2, rank - 1)
        return Tensor(shape: newShape, scalars: out)
    }
}

extension Array where Element == Float {
    /// `count` floats left as the allocator gave them, for an output the kernel then writes in full.
    ///
    /// Zero-filling outputs that are overwritten anyway was 4 % of a Vim-T forward profile. Every bit
    /// pattern is a valid float, so this is memory-safe; a kernel that skipped an element would leave
    /// an arbitrary value there, which the kernels' tests would show.
    init(overwrittenCount count: Int) {
        self.init(unsafeUninitializedCapacity: count) { _, initialized in initialized = count }
    }
}
