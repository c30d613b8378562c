extension Tensor {
    /// Columns `range` of the last dimension, as a new contiguous tensor.
    public func columns(_ range: Range<Int>) -> Tensor {
        let width = shape.last ?? 0
        precondition(range.lowerBound >= 0 && range.upperBound <= width)
        let rows = count / max(width, 1)
        var out = [Float](repeating: 0, count: rows * range.count)
        scalars.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for r in 0..<rows {
                    for j in 0..<range.count { dst[r * range.count + j] = src[r * width + range.lowerBound + j] }
                }
            }
        }
        return Tensor(shape: Array(shape.dropLast()) + [range.count], scalars: out)
    }

    /// The tensor with dimension 1 (time, in [B, L, …]) in reverse order.
    public func reversingTime() -> Tensor {
        precondition(rank >= 2)
        let (batch, length) = (shape[0], shape[1])
        let inner = count / max(batch * length, 1)
        var out = [Float](repeating: 0, count: count)
        scalars.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for b in 0..<batch {
                    for t in 0..<length {
                        let from = (b * length + t) * inner
                        let to = (b * length + length - 1 - t) * inner
                        for i in 0..<inner { dst[to + i] = src[from + i] }
                    }
                }
            }
        }
        return Tensor(shape: shape, scalars: out)
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

    /// Every element multiplied by `factor`.
    public static func * (lhs: Tensor, factor: Float) -> Tensor {
        Tensor(shape: lhs.shape, scalars: lhs.scalars.map { $0 * factor })
    }
}
