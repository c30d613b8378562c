/// Element-wise activations of the Mamba mixer.
///
/// Those that take their input as `consuming` work in its storage: the model passes temporaries, so
/// no copy is made (the copies were 3 % of a Vim-T forward profile).
public enum Activation {
    /// `softplus(v + bias[column])` over rows of `input`, with PyTorch's threshold: v for v > 20, else
    /// log1p(e^v). This is the step size Δ = softplus(dt_low · dt_projᵀ + dt_proj.bias).
    ///
    /// Each row is done in two passes, e^−|v| first: one pass was a long chain per register, and the
    /// split took a Vim-T batch's step sizes from 0.80 to 0.55 ms (harness, copy of the input included).
    public static func softplus(_ input: consuming Tensor, columnBias bias: [Float]) -> Tensor {
        let width = bias.count
        precondition(input.shape.last == width)
        var out = consume input
        let rows = out.count / max(width, 1)
        var exponentials = [Float](repeating: 0, count: width)
        out.scalars.withUnsafeMutableBufferPointer { p in
            bias.withUnsafeBufferPointer { b in
                exponentials.withUnsafeMutableBufferPointer { e in
                    for row in 0..<rows {
                        let values = p.baseAddress! + row * width
                        forEachLanes(count: width) { j, n in
                            let v = loadPartial(values + j, n) + loadPartial(b.baseAddress! + j, n)
                            storePartial(v, values + j, n)
                            storePartial(negatedMagnitudeExponential(v), e.baseAddress! + j, n)
                        }
                        forEachLanes(count: width) { j, n in
                            let t = loadPartial(e.baseAddress! + j, n)
                            storePartial(
                                TensorModule.softplus(loadPartial(values + j, n), negatedMagnitudeExponential: t),
                                values + j, n)
                        }
                    }
                }
            }
        }
        return out
    }

    /// SiLU(v) = v / (1 + e^−v) of `columns` of `source` (the last dimension): the mixer's gate
    /// activation SiLU(z), read from its half of the input projection without a copy.
    public static func silu(_ source: Tensor, columns: Range<Int>) -> Tensor {
        let width = source.shape.last ?? 0
        precondition(columns.lowerBound >= 0 && columns.upperBound <= width)
        let rows = source.count / max(width, 1)
        var out = [Float](overwrittenCount: rows * columns.count)
        source.scalars.withUnsafeBufferPointer { x in
            out.withUnsafeMutableBufferPointer { y in
                for row in 0..<rows {
                    let from = x.baseAddress! + row * width + columns.lowerBound
                    let to = y.baseAddress! + row * columns.count
                    forEachLanes(count: columns.count) { j, n in
                        storePartial(TensorModule.silu(loadPartial(from + j, n)), to + j, n)
                    }
                }
            }
        }
        return Tensor(shape: Array(source.shape.dropLast()) + [columns.count], scalars: out)
    }

    /// `y ⊙ SiLU(z)`, the mixer's output gate, from `gateActivation` = SiLU(z) [B, L, E]; with
    /// `timeReversed`, y is in reverse time order (the backward direction) and step t of y is gated
    /// by step L − 1 − t of SiLU(z).
    public static func gate(_ y: consuming Tensor, by gateActivation: Tensor, timeReversed: Bool = false) -> Tensor {
        precondition(y.shape == gateActivation.shape && y.rank >= 2)
        var out = consume y
        let shape = out.shape
        out.scalars.withUnsafeMutableBufferPointer { p in
            gateActivation.scalars.withUnsafeBufferPointer { s in
                forEachTimeStepPair(shape, reversed: timeReversed) { row, gateRow, width in
                    forEachLanes(count: width) { j, n in
                        let gated =
                            loadPartial(p.baseAddress! + row + j, n) * loadPartial(s.baseAddress! + gateRow + j, n)
                        storePartial(gated, p.baseAddress! + row + j, n)
                    }
                }
            }
        }
        return out
    }

    /// Both directions gated and averaged in one pass: `(yF[t] ⊙ s[t] + yB[L − 1 − t] ⊙ s[t]) · ½`
    /// with s = SiLU(z) and z = `columns` of `gateSource`, which is what `silu`, `gate` of each
    /// direction and `averaged(withTimeReversed:)` compute, operation for operation (so bit for bit),
    /// without writing SiLU(z) out. Grids, when given, snap yF and yB before the gate and the average
    /// after it, row by row.
    ///
    /// - Parameters:
    ///   - forward: the forward scan's output y [B, L, E].
    ///   - backward: the backward scan's output, in its own (reversed) time order.
    ///   - gateSource: [B, L, W] holding z in `columns` (the mixer's input projection).
    public static func gatedAverage(
        forward: consuming Tensor, backward: consuming Tensor, gateSource: Tensor, columns: Range<Int>,
        grids: (forward: UniformGrid?, backward: UniformGrid?, average: UniformGrid?) = (nil, nil, nil)
    ) -> Tensor {
        precondition(forward.shape == backward.shape && forward.rank == 3 && gateSource.rank == 3)
        precondition(forward.shape[2] == columns.count && gateSource.shape.prefix(2) == forward.shape.prefix(2))
        let width = gateSource.shape[2]
        precondition(columns.lowerBound >= 0 && columns.upperBound <= width)
        var out = consume forward
        var backward = backward
        let shape = out.shape
        out.scalars.withUnsafeMutableBufferPointer { p in
            backward.scalars.withUnsafeMutableBufferPointer { r in
                gateSource.scalars.withUnsafeBufferPointer { z in
                    forEachTimeStepPair(shape, reversed: true) { row, reversedRow, rowWidth in
                        let (outRow, backwardRow) = (p.baseAddress! + row, r.baseAddress! + reversedRow)
                        grids.forward?.snap(outRow, count: rowWidth)
                        grids.backward?.snap(backwardRow, count: rowWidth)
                        let gateRow = z.baseAddress! + row / rowWidth * width + columns.lowerBound
                        // The next step's z (a column range) and backward row (read in reverse time); at
                        // a sequence's last step the backward row is not the next one read, which costs
                        // only a wasted hint.
                        if reversedRow >= rowWidth && row + rowWidth < p.count {
                            prefetchForReading(gateRow + width, count: rowWidth)
                            prefetchForReading(backwardRow - rowWidth, count: rowWidth)
                        }
                        forEachLanes(count: rowWidth) { j, n in
                            let gate = TensorModule.silu(loadPartial(gateRow + j, n))
                            let forwardGated = loadPartial(outRow + j, n) * gate
                            let backwardGated = loadPartial(backwardRow + j, n) * gate
                            storePartial((forwardGated + backwardGated) * 0.5, outRow + j, n)
                        }
                        grids.average?.snap(outRow, count: rowWidth)
                    }
                }
            }
        }
        return out
    }
}
