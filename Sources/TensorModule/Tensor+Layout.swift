extension Tensor {
    /// Columns `range` of the last dimension, as a new contiguous tensor; with `timeReversed`, of a
    /// [B, L, W] tensor with its time steps in reverse order (the backward scan's view, in one copy);
    /// with a grid, snapped to it as they are copied.
    public func columns(_ range: Range<Int>, timeReversed: Bool = false, snappedTo grid: UniformGrid? = nil) -> Tensor {
        let width = shape.last ?? 0
        precondition(range.lowerBound >= 0 && range.upperBound <= width)
        precondition(!timeReversed || rank == 3, "time reversal needs a [B, L, W] tensor, not \(shape)")
        let rows = count / max(width, 1)
        let length = timeReversed ? shape[1] : 1
        var out = [Float](overwrittenCount: rows * range.count)
        scalars.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for r in 0..<rows {
                    let (sequence, step) = r.quotientAndRemainder(dividingBy: length)
                    let source = timeReversed ? sequence * length + length - 1 - step : r
                    for j in 0..<range.count { dst[r * range.count + j] = src[source * width + range.lowerBound + j] }
                    grid?.snap(dst.baseAddress! + r * range.count, count: range.count)
                }
            }
        }
        return Tensor(shape: Array(shape.dropLast()) + [range.count], scalars: out)
    }

    /// Element-wise sum of two tensors of the same shape.
    public static func + (lhs: Tensor, rhs: Tensor) -> Tensor {
        precondition(lhs.shape == rhs.shape, "cannot add \(lhs.shape) and \(rhs.shape)")
        var out = lhs.scalars
        out.withUnsafeMutableBufferPointer { p in
            rhs.scalars.withUnsafeBufferPointer { r in
                for i in 0..<p.count { p[i] += r[i] }
            }
        }
        return Tensor(shape: lhs.shape, scalars: out)
    }

    /// (self + other with dimension 1 reversed) · ½, in one pass: the bidirectional mixer's average of
    /// its forward output and its backward output, which was computed in reversed time.
    /// It works in `self`'s storage, which the caller gives up.
    public consuming func averaged(withTimeReversed other: Tensor) -> Tensor {
        precondition(shape == other.shape && rank >= 2, "cannot average \(shape) with \(other.shape)")
        var out = consume self
        let shape = out.shape
        out.scalars.withUnsafeMutableBufferPointer { p in
            other.scalars.withUnsafeBufferPointer { r in
                forEachTimeStepPair(shape, reversed: true) { row, reversedRow, width in
                    for i in 0..<width { p[row + i] = (p[row + i] + r[reversedRow + i]) * 0.5 }
                }
            }
        }
        return out
    }
}

/// Calls `body` with the offsets of step t and of step t (or L − 1 − t when `reversed`) of every
/// sequence of a [B, L, …] shape, and the row width.
@inline(__always) func forEachTimeStepPair(
    _ shape: [Int], reversed: Bool, _ body: (_ row: Int, _ pairedRow: Int, _ width: Int) -> Void
) {
    let (batch, length) = (shape[0], shape[1])
    let width = shape.dropFirst(2).reduce(1, *)
    for b in 0..<batch {
        for t in 0..<length {
            body((b * length + t) * width, (b * length + (reversed ? length - 1 - t : t)) * width, width)
        }
    }
}
