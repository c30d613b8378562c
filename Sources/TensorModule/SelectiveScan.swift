/// A quantity inside the selective scan that can be observed or replaced at each time step.
public enum ScanQuantity: Sendable {
    /// Ā_t = exp(Δ_t ⊗ A), E×N.
    case discreteA
    /// B̄_t = Δ_t ⊗ B_t, E×N (before it multiplies x_t).
    case discreteB
    /// h_t = Ā_t ⊙ h_{t−1} + B̄_t ⊙ x_t, E×N; the value stored is the one carried to step t + 1.
    case hiddenState
}

/// Sees, and may replace, the scan's internal quantities one time step at a time.
///
/// The buffers are E×N row-major (`values[e * N + n]`) and are reused between calls: a conformer
/// must not keep them.
public protocol ScanStepHook: AnyObject {
    /// Called for each quantity in the order Ā_t, B̄_t, h_t at every step of every sequence.
    func process(_ quantity: ScanQuantity, sequence: Int, timeStep: Int, values: inout [Float])
}

/// The selective state-space scan of Mamba (S6), one direction.
public enum SelectiveScan {
    /// Runs `h_t = exp(Δ_t A) ⊙ h_{t−1} + (Δ_t B_t) ⊙ x_t`, `y_t = h_t · C_t + D ⊙ x_t` from h = 0.
    ///
    /// - Parameters:
    ///   - x: [S, L, E] the scan input (the conv output after SiLU).
    ///   - delta: [S, L, E] the step sizes Δ.
    ///   - a: [E, N], A = −exp(A_log).
    ///   - b: [S, L, N] and `c`: [S, L, N], the input-dependent B_t and C_t.
    ///   - d: [E], the skip connection.
    ///   - hook: when given, Ā_t, B̄_t and h_t are materialised at every step and passed through it
    ///     (a slower path); without it the scan runs the vectorised kernel. Both paths round identically.
    /// - Returns: y, [S, L, E].
    public static func apply(
        x: Tensor, delta: Tensor, a: Tensor, b: Tensor, c: Tensor, d: [Float],
        hook: ScanStepHook? = nil
    ) -> Tensor {
        precondition(x.rank == 3 && x.shape == delta.shape && a.rank == 2)
        let (sequences, length, channels) = (x.shape[0], x.shape[1], x.shape[2])
        let states = a.shape[1]
        precondition(a.shape[0] == channels && d.count == channels)
        precondition(b.shape == [sequences, length, states] && c.shape == b.shape)
        if let hook {
            return stepwise(
                x: x, delta: delta, a: a, b: b, c: c, d: d, hook: hook,
                sizes: (sequences, length, channels, states))
        }
        var y = [Float](repeating: 0, count: x.count)
        let aByState = a.transposingLastTwo()
        let hidden = UnsafeMutablePointer<Lanes>.allocate(capacity: states)
        defer { hidden.deallocate() }
        x.scalars.withUnsafeBufferPointer { xp in
            delta.scalars.withUnsafeBufferPointer { dp in
                aByState.scalars.withUnsafeBufferPointer { ap in
                    b.scalars.withUnsafeBufferPointer { bp in
                        c.scalars.withUnsafeBufferPointer { cp in
                            d.withUnsafeBufferPointer { skip in
                                y.withUnsafeMutableBufferPointer { yp in
                                    for s in 0..<sequences {
                                        let base = s * length * channels
                                        let stateBase = s * length * states
                                        forEachLanes(count: channels) { e, n in
                                            for k in 0..<states { hidden[k] = Lanes(repeating: 0) }
                                            let skipLanes = loadPartial(skip.baseAddress! + e, n)
                                            for t in 0..<length {
                                                let offset = base + t * channels + e
                                                let dt = loadPartial(dp.baseAddress! + offset, n)
                                                let u = loadPartial(xp.baseAddress! + offset, n)
                                                var acc = skipLanes * u
                                                let bRow = bp.baseAddress! + stateBase + t * states
                                                let cRow = cp.baseAddress! + stateBase + t * states
                                                for k in 0..<states {
                                                    let discreteA = exponential(
                                                        dt * loadPartial(ap.baseAddress! + k * channels + e, n))
                                                    let discreteB = dt * bRow[k]
                                                    let h = (discreteB * u).addingProduct(discreteA, hidden[k])
                                                    hidden[k] = h
                                                    acc = acc.addingProduct(h, Lanes(repeating: cRow[k]))
                                                }
                                                storePartial(acc, yp.baseAddress! + offset, n)
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return Tensor(shape: x.shape, scalars: y)
    }

    /// The definitional scan with every Ā_t, B̄_t and h_t materialised and handed to `hook`.
    private static func stepwise(
        x: Tensor, delta: Tensor, a: Tensor, b: Tensor, c: Tensor, d: [Float], hook: ScanStepHook,
        sizes: (sequences: Int, length: Int, channels: Int, states: Int)
    ) -> Tensor {
        let (sequences, length, channels, states) = sizes
        var y = [Float](repeating: 0, count: x.count)
        var discreteA = [Float](repeating: 0, count: channels * states)
        var discreteB = discreteA
        var hidden = discreteA
        for s in 0..<sequences {
            for i in hidden.indices { hidden[i] = 0 }
            for t in 0..<length {
                let row = (s * length + t) * channels
                let stateRow = (s * length + t) * states
                for e in 0..<channels {
                    let dt = delta.scalars[row + e]
                    for k in 0..<states {
                        var lanes = Lanes(repeating: 0)
                        lanes[0] = dt * a.scalars[e * states + k]
                        discreteA[e * states + k] = exponential(lanes)[0]
                        discreteB[e * states + k] = dt * b.scalars[stateRow + k]
                    }
                }
                hook.process(.discreteA, sequence: s, timeStep: t, values: &discreteA)
                hook.process(.discreteB, sequence: s, timeStep: t, values: &discreteB)
                for e in 0..<channels {
                    let u = x.scalars[row + e]
                    for k in 0..<states {
                        let i = e * states + k
                        hidden[i] = (discreteB[i] * u).addingProduct(discreteA[i], hidden[i])
                    }
                }
                hook.process(.hiddenState, sequence: s, timeStep: t, values: &hidden)
                for e in 0..<channels {
                    let u = x.scalars[row + e]
                    var acc = d[e] * u
                    for k in 0..<states {
                        acc = acc.addingProduct(hidden[e * states + k], c.scalars[stateRow + k])
                    }
                    y[row + e] = acc
                }
            }
        }
        return Tensor(shape: x.shape, scalars: y)
    }
}
