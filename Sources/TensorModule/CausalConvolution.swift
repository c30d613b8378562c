/// The Mamba mixer's depthwise causal convolution over time, followed by its SiLU.
public enum CausalConvolution {
    /// `SiLU(conv(x))` for x = `columns` of `source` [B, L, W], read in reverse time order when
    /// `timeReversed`; the result [B, L, columns.count] is in x's order. For every sequence and
    /// channel e: `conv(x)[t, e] = bias[e] + Σ_k weight[e, k] · x[t − (K−1) + k, e]` with zeros before
    /// t = 0, accumulated from the bias and the oldest tap first, as the official kernel does.
    ///
    /// With `inputGrid`, x is snapped to it first: each row once, into a ring of the last K rows,
    /// so the snapped x is never written out. With `outputGrid`, the result is snapped to it, row by
    /// row as it is written.
    ///
    /// Reading x in place lets the mixer skip the copies of its x half and of the reversed sequence;
    /// the arithmetic is the same either way, so the results are identical.
    ///
    /// - Parameters:
    ///   - weight: [E, K] (PyTorch's [E, 1, K] with the middle extent dropped), E = `columns.count`.
    ///   - bias: [E].
    public static func applyThenSiLU(
        _ source: Tensor, columns: Range<Int>, timeReversed: Bool = false, weight: Tensor, bias: [Float],
        inputGrid: UniformGrid? = nil, outputGrid: UniformGrid? = nil
    ) -> Tensor {
        precondition(source.rank == 3 && weight.rank == 2)
        let (batch, length, width) = (source.shape[0], source.shape[1], source.shape[2])
        let channels = columns.count
        let taps = weight.shape[1]
        precondition(columns.lowerBound >= 0 && columns.upperBound <= width)
        precondition(weight.shape[0] == channels && bias.count == channels && taps >= 1)
        // Taps transposed to [K, E] so the inner loop runs over contiguous channels.
        var tapsByChannel = [Float](repeating: 0, count: taps * channels)
        for e in 0..<channels {
            for k in 0..<taps { tapsByChannel[k * channels + e] = weight.scalars[e * taps + k] }
        }
        var out = [Float](overwrittenCount: batch * length * channels)
        // The snapped rows of the last K steps, step i in slot i mod K.
        var ring = [Float](overwrittenCount: inputGrid == nil ? 0 : taps * channels)
        // The row each tap reads at the current step; taps before t = 0 are skipped.
        var tapRows = [UnsafePointer<Float>?](repeating: nil, count: taps)
        source.scalars.withUnsafeBufferPointer { x in
            tapsByChannel.withUnsafeBufferPointer { w in
                bias.withUnsafeBufferPointer { b in
                    out.withUnsafeMutableBufferPointer { y in
                        ring.withUnsafeMutableBufferPointer { ring in
                            tapRows.withUnsafeMutableBufferPointer { rows in
                                for s in 0..<batch {
                                    let xs = x.baseAddress! + s * length * width + columns.lowerBound
                                    func sourceRow(_ step: Int) -> UnsafePointer<Float> {
                                        xs + (timeReversed ? length - 1 - step : step) * width
                                    }
                                    let ys = y.baseAddress! + s * length * channels
                                    for t in 0..<length {
                                        // The newest tap's row is read for the first time here.
                                        if t + 1 < length { prefetchForReading(sourceRow(t + 1), count: channels) }
                                        if let inputGrid {
                                            let slot = ring.baseAddress! + t % taps * channels
                                            inputGrid.snap(sourceRow(t), count: channels, into: slot)
                                        }
                                        let firstTap = max(0, taps - 1 - t)
                                        for k in firstTap..<taps {
                                            let step = t - (taps - 1) + k
                                            rows[k] =
                                                inputGrid == nil
                                                ? sourceRow(step)
                                                : UnsafePointer(ring.baseAddress! + step % taps * channels)
                                        }
                                        let outRow = ys + t * channels
                                        convolveRow(
                                            rows, from: firstTap, weights: w.baseAddress!, bias: b.baseAddress!,
                                            channels: channels, into: outRow)
                                        // SiLU in a second pass over the row, still in the L1 cache: in
                                        // the same loop, its constants and the taps did not fit in registers.
                                        forEachLanes(count: channels) { e, n in
                                            storePartial(silu(loadPartial(outRow + e, n)), outRow + e, n)
                                        }
                                        outputGrid?.snap(outRow, count: channels)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return Tensor(shape: [batch, length, channels], scalars: out)
    }

    /// One output row: the bias plus taps `firstTap ..< K` of `rows` (oldest first) times their weights.
    @inline(__always) private static func convolveRow(
        _ rows: UnsafeMutableBufferPointer<UnsafePointer<Float>?>, from firstTap: Int,
        weights w: UnsafePointer<Float>, bias b: UnsafePointer<Float>, channels: Int,
        into outRow: UnsafeMutablePointer<Float>
    ) {
        if rows.count == 4 && firstTap == 0 {
            // Every Vim model has four taps: unrolled, they keep the sums in registers.
            let (x0, x1, x2, x3) = (rows[0]!, rows[1]!, rows[2]!, rows[3]!)
            let (w0, w1, w2, w3) = (w, w + channels, w + 2 * channels, w + 3 * channels)
            forEachLanes(count: channels) { e, n in
                let acc = loadPartial(b + e, n)
                    .addingProduct(loadPartial(w0 + e, n), loadPartial(x0 + e, n))
                    .addingProduct(loadPartial(w1 + e, n), loadPartial(x1 + e, n))
                    .addingProduct(loadPartial(w2 + e, n), loadPartial(x2 + e, n))
                    .addingProduct(loadPartial(w3 + e, n), loadPartial(x3 + e, n))
                storePartial(acc, outRow + e, n)
            }
        } else {
            forEachLanes(count: channels) { e, n in
                var acc = loadPartial(b + e, n)
                for k in firstTap..<rows.count {
                    acc = acc.addingProduct(loadPartial(w + k * channels + e, n), loadPartial(rows[k]! + e, n))
                }
                storePartial(acc, outRow + e, n)
            }
        }
    }
}
