/// Element-wise activations of the Mamba mixer.
///
/// Each takes its input as `consuming` and works in its storage: the model passes temporaries, so no
/// copy is made (the copies were 3 % of a Vim-T forward profile).
public enum Activation {
    /// `softplus(v + bias[column])` over rows of `input`, with PyTorch's threshold: v for v > 20, else
    /// log1p(e^v). This is the step size Δ = softplus(dt_low · dt_projᵀ + dt_proj.bias).
    public static func softplus(_ input: consuming Tensor, columnBias bias: [Float]) -> Tensor {
        let width = bias.count
        precondition(input.shape.last == width)
        var out = consume input
        let rows = out.count / max(width, 1)
        out.scalars.withUnsafeMutableBufferPointer { p in
            bias.withUnsafeBufferPointer { b in
                for row in 0..<rows {
                    let values = p.baseAddress! + row * width
                    forEachLanes(count: width) { j, n in
                        let v = loadPartial(values + j, n) + loadPartial(b.baseAddress! + j, n)
                        storePartial(TensorModule.softplus(v), values + j, n)
                    }
                }
            }
        }
        return out
    }

    /// SiLU(v) = v / (1 + e^−v) applied to every element.
    public static func silu(_ input: consuming Tensor) -> Tensor {
        var out = consume input
        out.scalars.withUnsafeMutableBufferPointer { p in
            forEachLanes(count: p.count) { i, n in
                let v = loadPartial(p.baseAddress! + i, n)
                storePartial(TensorModule.silu(v), p.baseAddress! + i, n)
            }
        }
        return out
    }

    /// `y ⊙ SiLU(z)`: the mixer's output gate, for tensors of the same shape.
    public static func gate(_ y: consuming Tensor, by z: Tensor) -> Tensor {
        precondition(y.shape == z.shape)
        var out = consume y
        out.scalars.withUnsafeMutableBufferPointer { p in
            z.scalars.withUnsafeBufferPointer { zp in
                forEachLanes(count: p.count) { i, n in
                    let zv = loadPartial(zp.baseAddress! + i, n)
                    let yv = loadPartial(p.baseAddress! + i, n)
                    storePartial(yv * zv / (1 + exponential(-zv)), p.baseAddress! + i, n)
                }
            }
        }
        return out
    }
}
