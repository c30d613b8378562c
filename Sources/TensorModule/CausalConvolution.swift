/// The mixer's depthwise causal 1-D convolution over time.
public enum CausalConvolution {
    /// For every sequence in `input` [B, L, E] and channel e:
    /// `out[t, e] = bias[e] + Σ_k weight[e, k] · input[t − (K−1) + k, e]` with zeros before t = 0,
    /// accumulated from the bias and the oldest tap first, as the official kernel does.
    ///
    /// - Parameters:
    ///   - weight: [E, K] (PyTorch's [E, 1, K] with the middle extent dropped).
    ///   - bias: [E].
    public static func apply(_ input: Tensor, weight: Tensor, bias: [Float]) -> Tensor {
        precondition(input.rank == 3 && weight.rank == 2)
        let (batch, length, channels) = (input.shape[0], input.shape[1], input.shape[2])
        let taps = weight.shape[1]
        precondition(weight.shape[0] == channels && bias.count == channels)
        // Taps transposed to [K, E] so the inner loop runs over contiguous channels.
        var tapsByChannel = [Float](repeating: 0, count: taps * channels)
        for e in 0..<channels {
            for k in 0..<taps { tapsByChannel[k * channels + e] = weight.scalars[e * taps + k] }
        }
        var out = [Float](overwrittenCount: input.count)
        input.scalars.withUnsafeBufferPointer { x in
            tapsByChannel.withUnsafeBufferPointer { w in
                bias.withUnsafeBufferPointer { b in
                    out.withUnsafeMutableBufferPointer { y in
                        for s in 0..<batch {
                            let xs = x.baseAddress! + s * length * channels
                            let ys = y.baseAddress! + s * length * channels
                            for t in 0..<length {
                                forEachLanes(count: channels) { e, n in
                                    var acc = loadPartial(b.baseAddress! + e, n)
                                    for k in 0..<taps {
                                        let source = t - (taps - 1) + k
                                        if source < 0 { continue }
                                        acc = acc.addingProduct(
                                            loadPartial(w.baseAddress! + k * channels + e, n),
                                            loadPartial(xs + source * channels + e, n))
                                    }
                                    storePartial(acc, ys + t * channels + e, n)
                                }
                            }
                        }
                    }
                }
            }
        }
        return Tensor(shape: input.shape, scalars: out)
    }
}
