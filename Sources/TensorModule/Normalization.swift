/// Root-mean-square layer normalisation as Vim uses it (no mean subtraction, no bias).
public enum RMSNorm {
    /// Normalises each row of `input` (last dimension = width) and scales it by `weight`:
    /// `y = x / sqrt(mean(x²) + epsilon) · weight`, accumulated in float32 as the official Triton kernel;
    /// with a grid, each row is snapped to it once written.
    public static func apply(
        _ input: Tensor, weight: [Float], epsilon: Float, snappedTo grid: UniformGrid? = nil
    ) -> Tensor {
        let width = weight.count
        precondition(input.shape.last == width, "RMSNorm width \(width) vs input \(input.shape)")
        var out = [Float](repeating: 0, count: input.count)
        let rows = input.count / max(width, 1)
        input.scalars.withUnsafeBufferPointer { src in
            weight.withUnsafeBufferPointer { w in
                out.withUnsafeMutableBufferPointer { dst in
                    for row in 0..<rows {
                        let x = src.baseAddress! + row * width
                        let y = dst.baseAddress! + row * width
                        var sum = Lanes(repeating: 0)
                        forEachLanes(count: width) { i, n in
                            let v = loadPartial(x + i, n)
                            sum.addProduct(v, v)
                        }
                        let meanSquare = sum.sum() / Float(width)
                        let scale = 1 / (meanSquare + epsilon).squareRoot()
                        forEachLanes(count: width) { i, n in
                            storePartial(loadPartial(x + i, n) * scale * loadPartial(w.baseAddress! + i, n), y + i, n)
                        }
                        grid?.snap(y, count: width)
                    }
                }
            }
        }
        return Tensor(shape: input.shape, scalars: out)
    }
}
