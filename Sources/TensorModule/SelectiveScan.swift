/// A quantity inside the selective scan that can be observed or replaced at each time step.
public enum ScanQuantity: Sendable {
    /// Ā_t = exp(Δ_t ⊗ A), E×N.
    case discreteA
    /// B̄_t = Δ_t ⊗ B_t, E×N (before it multiplies x_t).
    case discreteB
    /// h_t = Ā_t ⊙ h_{t−1} + B̄_t ⊙ x_t, E×N; the value stored is the one carried to step t + 1.
    case hiddenState
}

/// The smallest and largest values a scan quantity took, NaN ignored (+∞ and −∞ where it took none).
public struct ScanExtremes: Sendable, Equatable {
    /// Per time step for h_t; one entry for Ā_t and B̄_t.
    public var minima: [Float]
    /// Per time step for h_t; one entry for Ā_t and B̄_t.
    public var maxima: [Float]
    /// How many values exceeded a threshold, when one was given.
    public var aboveThreshold: ThresholdCount?

    /// Extremes from their values.
    public init(minima: [Float], maxima: [Float], aboveThreshold: ThresholdCount? = nil) {
        precondition(minima.count == maxima.count)
        self.minima = minima
        self.maxima = maxima
        self.aboveThreshold = aboveThreshold
    }
}

/// How many of a quantity's values exceeded a threshold, of how many (a NaN never exceeds it). Counts
/// are integers, so that ranks merge them exactly with a SUM.
public struct ThresholdCount: Sendable, Equatable {
    /// The threshold.
    public var threshold: Float
    /// Values greater than `threshold`.
    public var above: Int64
    /// Values seen.
    public var total: Int64

    /// A count from its values.
    public init(threshold: Float, above: Int64, total: Int64) {
        self.threshold = threshold
        self.above = above
        self.total = total
    }

    /// Whether more than half of the values exceeded the threshold: whether their median does.
    public var isMajorityAbove: Bool { 2 * above > total }
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
    ///   - quantization: grids Ā_t, B̄_t and h_t are snapped to inside the vectorised kernel.
    ///   - hook: when given, Ā_t, B̄_t and h_t are materialised at every step and passed through it
    ///     (a slower path, for observers). All paths round identically: a hook that snaps to the
    ///     grids of `quantization` gives the same bits as the kernel.
    /// - Returns: y, [S, L, E].
    public static func apply(
        x: Tensor, delta: Tensor, a: Tensor, b: Tensor, c: Tensor, d: [Float],
        quantization: ScanQuantization? = nil, hook: ScanStepHook? = nil
    ) -> Tensor {
        checkShapes(x: x, delta: delta, a: a, b: b, c: c, d: d)
        let (sequences, length, channels) = (x.shape[0], x.shape[1], x.shape[2])
        let states = a.shape[1]
        if let hook {
            return stepwise(
                x: x, delta: delta, a: a, b: b, c: c, d: d, hook: hook,
                sizes: (sequences, length, channels, states))
        }
        let operands = ScanOperands(x: x, delta: delta, a: a, b: b, c: c, d: d)
        let grids = quantization ?? ScanQuantization(discreteA: .none, discreteB: .none, hiddenState: .none)
        if case .perTimeStep(let steps) = grids.hiddenState { precondition(steps.count >= length) }
        return Tensor(shape: x.shape, scalars: runKernel(operands, grids, states: states).y)
    }

    /// The unquantized scan (as `apply`), also returning the smallest and largest Ā_t and B̄_t over
    /// all steps, channels and states and of h_t per step, NaN ignored: what calibration's range pass
    /// needs, found in the vectorised kernel instead of over materialised steps. With a threshold, the
    /// Ā_t above it are counted too (what decides between LtSQ and a uniform quantizer for Ā).
    public static func applyRecordingExtremes(
        x: Tensor, delta: Tensor, a: Tensor, b: Tensor, c: Tensor, d: [Float], discreteAThreshold: Float? = nil
    ) -> (y: Tensor, discreteA: ScanExtremes, discreteB: ScanExtremes, hiddenState: ScanExtremes) {
        checkShapes(x: x, delta: delta, a: a, b: b, c: c, d: d)
        let operands = ScanOperands(x: x, delta: delta, a: a, b: b, c: c, d: d)
        func extremes(_ r: ExtremesRecorder) -> ScanExtremes { ScanExtremes(minima: r.minima, maxima: r.maxima) }
        guard let threshold = discreteAThreshold else {
            let (y, (recordedA, recordedB, recordedH)) = scanKernel(
                operands, ExtremesRecorder(slots: 1), ExtremesRecorder(slots: 1), ExtremesRecorder(slots: x.shape[1]))
            return (Tensor(shape: x.shape, scalars: y), extremes(recordedA), extremes(recordedB), extremes(recordedH))
        }
        let (y, (recordedA, recordedB, recordedH)) = scanKernel(
            operands, ThresholdExtremesRecorder(threshold: threshold), ExtremesRecorder(slots: 1),
            ExtremesRecorder(slots: x.shape[1]))
        var discreteA = extremes(recordedA.extremes)
        discreteA.aboveThreshold = ThresholdCount(
            threshold: threshold, above: recordedA.above,
            total: Int64(x.shape[0] * x.shape[1] * a.shape[0] * a.shape[1]))
        return (Tensor(shape: x.shape, scalars: y), discreteA, extremes(recordedB), extremes(recordedH))
    }

    /// The unquantized scan (as `apply`), also counting the Ā_t, B̄_t and h_t of the real channels that
    /// each quantity's `sampling` picks (every one by default) on the grids of `binning`: what
    /// calibration's histogram pass needs, found in the vectorised kernel instead of over materialised
    /// steps. The counts are those `BinGrid.count` gives over the picked values a `ScanStepHook` sees;
    /// a quantity without binning is not counted (nil).
    public static func applyCountingBins(
        x: Tensor, delta: Tensor, a: Tensor, b: Tensor, c: Tensor, d: [Float], binning: ScanBinning
    ) -> (y: Tensor, discreteA: QuantityCounts?, discreteB: QuantityCounts?, hiddenState: QuantityCounts?) {
        checkShapes(x: x, delta: delta, a: a, b: b, c: c, d: d)
        for case let quantity? in [binning.discreteA, binning.discreteB, binning.hiddenState] {
            precondition(quantity.grids.count == 1 || quantity.grids.count >= x.shape[1])
            precondition(a.shape[1] % quantity.sampling.stride == 0)
        }
        let operands = ScanOperands(x: x, delta: delta, a: a, b: b, c: c, d: d)
        let counted = runKernel(operands, binning, states: a.shape[1])
        return (Tensor(shape: x.shape, scalars: counted.y), counted.discreteA, counted.discreteB, counted.hiddenState)
    }

    /// x and Δ [S, L, E], A [E, N], B and C [S, L, N], D [E]: the shapes every entry point requires.
    private static func checkShapes(x: Tensor, delta: Tensor, a: Tensor, b: Tensor, c: Tensor, d: [Float]) {
        precondition(x.rank == 3 && x.shape == delta.shape && a.rank == 2 && a.shape[0] == x.shape[2])
        precondition(d.count == x.shape[2] && b.shape == [x.shape[0], x.shape[1], a.shape[1]] && c.shape == b.shape)
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
        let rates = a.scalars.map(binaryRate)
        for s in 0..<sequences {
            for i in hidden.indices { hidden[i] = 0 }
            for t in 0..<length {
                let row = (s * length + t) * channels
                let stateRow = (s * length + t) * states
                // Eight states at a time, each lane computed exactly as the vectorised kernel does.
                rates.withUnsafeBufferPointer { ap in
                    b.scalars.withUnsafeBufferPointer { bp in
                        discreteA.withUnsafeMutableBufferPointer { da in
                            discreteB.withUnsafeMutableBufferPointer { db in
                                for e in 0..<channels {
                                    let dt = canonicalisingNaN(Lanes(repeating: delta.scalars[row + e]))
                                    forEachLanes(count: states) { k, n in
                                        let i = e * states + k
                                        storePartial(
                                            binaryExponentialOfNonPositive(dt * loadPartial(ap.baseAddress! + i, n)),
                                            da.baseAddress! + i, n)
                                        storePartial(
                                            dt * loadPartial(bp.baseAddress! + stateRow + k, n), db.baseAddress! + i, n)
                                    }
                                }
                            }
                        }
                    }
                }
                hook.process(.discreteA, sequence: s, timeStep: t, values: &discreteA)
                hook.process(.discreteB, sequence: s, timeStep: t, values: &discreteB)
                discreteA.withUnsafeBufferPointer { da in
                    discreteB.withUnsafeBufferPointer { db in
                        hidden.withUnsafeMutableBufferPointer { hp in
                            for e in 0..<channels {
                                let u = Lanes(repeating: x.scalars[row + e])
                                forEachLanes(count: states) { k, n in
                                    let i = e * states + k
                                    let h = (loadPartial(db.baseAddress! + i, n) * u).addingProduct(
                                        loadPartial(da.baseAddress! + i, n), loadPartial(hp.baseAddress! + i, n))
                                    storePartial(h, hp.baseAddress! + i, n)
                                }
                            }
                        }
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

/// A·log2(e), the exponent of Ā = 2^(Δ·A·log2 e) per unit of Δ; a NaN becomes one without payload
/// (see `binaryExponentialOfNonPositive`).
private func binaryRate(_ a: Float) -> Float {
    a.isNaN ? .nan : a * binaryLogarithmOfE
}

/// The inputs of one scan, as the kernel reads them.
private struct ScanOperands {
    let x: Tensor
    let delta: Tensor
    /// `binaryRate(A)` in lane groups: `ratesByLaneGroup[(g · N + n) · 8 + j]` for A[8g + j, n],
    /// channels past E zero, so the kernel reads it front to back.
    let ratesByLaneGroup: [Float]
    let b: Tensor
    let c: Tensor
    /// D, one register per lane group (zero past E).
    let skipByLaneGroup: [Lanes]

    init(x: Tensor, delta: Tensor, a: Tensor, b: Tensor, c: Tensor, d: [Float]) {
        let (channels, states) = (a.shape[0], a.shape[1])
        let groups = (channels + 7) / 8
        var grouped = [Float](repeating: 0, count: groups * states * 8)
        var skip = [Lanes](repeating: Lanes(repeating: 0), count: groups)
        for e in 0..<channels {
            for n in 0..<states { grouped[((e / 8) * states + n) * 8 + e % 8] = binaryRate(a.scalars[e * states + n]) }
            skip[e / 8][e % 8] = d[e]
        }
        (self.x, self.delta, ratesByLaneGroup, self.b, self.c, skipByLaneGroup) = (x, delta, grouped, b, c, skip)
    }
}

/// What the kernel does with one quantity, eight channels at a time: snap it to a grid, or leave it
/// and observe it (record its extremes or its bins, or nothing). `enter` is called at each time step and
/// before each channel group, `snap` at each state, `leaveGroup` after each group.
///
/// `snap` may gather what it observes of a group's states in a `GroupRecord`, which the kernel keeps
/// as a local variable, and so in registers, until `leaveGroup` takes it. Observers that kept their
/// running extremes in their own storage instead made every state's update wait on memory.
///
/// The snaps are `@_transparent`: `@inline(__always)` left LtSQ's out of line in the specialised
/// kernel (a call per state update, with the SIMD8 argument split across two registers), which cost
/// a fifth of the quantized pass.
private protocol LaneSnap {
    /// What `snap` gathers over one channel group's states.
    associatedtype GroupRecord = Void
    /// Whether `snap` returns its values unchanged. When all three quantities' snaps do, the kernel
    /// runs its fused loop.
    static var isObserver: Bool { get }
    /// Whether the kernel may compute a channel group's Ā (its exp2) for every state in a loop of its
    /// own before snapping or observing it: it does when all three quantities' snaps allow it.
    static var exponentialsFirst: Bool { get }
    mutating func enter(step: Int)
    /// Called before each channel group with its number of real channels (8 but for a last partial group).
    mutating func enter(laneCount: Int)
    /// The record a channel group starts with.
    func startGroup() -> GroupRecord
    /// `values` belong to state `state` (0 ..< N) of the current channel group.
    mutating func snap(_ values: Lanes, state: Int, recording record: inout GroupRecord) -> Lanes
    /// Called after each channel group with what `snap` recorded in it.
    mutating func leaveGroup(_ record: GroupRecord)
    /// Called once the scan is done.
    mutating func finish()
    /// What it counted, if it counts.
    var counts: QuantityCounts? { get }
}

extension LaneSnap {
    static var isObserver: Bool { false }
    static var exponentialsFirst: Bool { true }
    @inline(__always) mutating func enter(laneCount: Int) {}
    @inline(__always) mutating func leaveGroup(_ record: GroupRecord) {}
    @inline(__always) mutating func finish() {}
    var counts: QuantityCounts? { nil }
}

extension LaneSnap where GroupRecord == Void {
    @inline(__always) func startGroup() {}
}

private struct Unquantized: LaneSnap {
    static var isObserver: Bool { true }
    @inline(__always) mutating func enter(step: Int) {}
    @inline(__always) mutating func snap(_ values: Lanes, state: Int, recording: inout Void) -> Lanes { values }
}

private struct UniformSnap: LaneSnap {
    let grid: UniformGrid
    @inline(__always) mutating func enter(step: Int) {}
    @_transparent mutating func snap(_ values: Lanes, state: Int, recording: inout Void) -> Lanes {
        grid.snap(values)
    }
}

private struct LogarithmicSnap: LaneSnap {
    let grid: LogarithmicGrid.LaneParameters
    @inline(__always) mutating func enter(step: Int) {}
    @_transparent mutating func snap(_ discreteA: Lanes, state: Int, recording: inout Void) -> Lanes {
        LogarithmicGrid.snap(discreteA, grid)
    }
}

/// Snaps to the grid of the current time step. The grids are borrowed, not held, so that copying the
/// snap (the kernel copies it for every channel group) costs no reference counting.
private struct PerStepSnap: LaneSnap {
    let grids: UnsafeBufferPointer<UniformGrid>
    var current: UniformGrid
    @inline(__always) mutating func enter(step: Int) { current = grids[step] }
    @_transparent mutating func snap(_ values: Lanes, state: Int, recording: inout Void) -> Lanes {
        current.snap(values)
    }
}

/// Leaves a quantity as it is and records its extremes, NaN ignored: over everything, or per time
/// step.
///
/// A channel group's extremes over its states stay in registers (the `GroupRecord`) and are merged
/// into eight-lane running extremes after the group, the lanes of a partial group's made-up channels
/// left out; those are reduced into `minima` and `maxima` when the step changes and at the end.
private struct ExtremesRecorder: LaneSnap {
    typealias GroupRecord = (lowest: Lanes, highest: Lanes)
    static var isObserver: Bool { true }
    var minima: [Float]
    var maxima: [Float]
    private var lowest = Lanes(repeating: .infinity)
    private var highest = Lanes(repeating: -.infinity)
    private let perStep: Bool
    private var slot = 0
    /// Lanes past the last real channel of a partial group carry made-up values.
    private(set) var real = Lanes(repeating: 0) .== 0

    init(slots: Int) {
        perStep = slots > 1
        minima = [Float](repeating: .infinity, count: slots)
        maxima = [Float](repeating: -.infinity, count: slots)
    }

    @inline(__always) mutating func enter(step: Int) {
        guard perStep, step != slot else { return }
        finish()
        slot = step
    }

    @inline(__always) mutating func enter(laneCount: Int) {
        real = Lanes(0, 1, 2, 3, 4, 5, 6, 7) .< Lanes(repeating: Float(laneCount))
    }

    @inline(__always) func startGroup() -> GroupRecord { (Lanes(repeating: .infinity), Lanes(repeating: -.infinity)) }

    @_transparent mutating func snap(_ values: Lanes, state: Int, recording record: inout GroupRecord) -> Lanes {
        record.lowest.replace(with: values, where: values .< record.lowest)
        record.highest.replace(with: values, where: values .> record.highest)
        return values
    }

    @inline(__always) mutating func leaveGroup(_ record: GroupRecord) {
        lowest.replace(with: record.lowest, where: (record.lowest .< lowest) .& real)
        highest.replace(with: record.highest, where: (record.highest .> highest) .& real)
    }

    @inline(__always) mutating func finish() {
        minima[slot] = Swift.min(minima[slot], lowest.min())
        maxima[slot] = Swift.max(maxima[slot], highest.max())
        lowest = Lanes(repeating: .infinity)
        highest = Lanes(repeating: -.infinity)
    }
}

/// Records Ā's extremes as `ExtremesRecorder` does, and counts the values above a threshold.
///
/// A channel group's counts stay in a register (at most N per lane) and are added up after the group,
/// the made-up lanes of a partial group left out.
private struct ThresholdExtremesRecorder: LaneSnap {
    typealias GroupRecord = (extremes: ExtremesRecorder.GroupRecord, above: SIMD8<Int32>)
    static var isObserver: Bool { true }
    private(set) var extremes = ExtremesRecorder(slots: 1)
    private let threshold: Lanes
    /// Values above the threshold so far.
    private(set) var above: Int64 = 0

    init(threshold: Float) { self.threshold = Lanes(repeating: threshold) }

    @inline(__always) mutating func enter(step: Int) { extremes.enter(step: step) }

    @inline(__always) mutating func enter(laneCount: Int) { extremes.enter(laneCount: laneCount) }

    @inline(__always) func startGroup() -> GroupRecord { (extremes.startGroup(), SIMD8(repeating: 0)) }

    /// A true lane of a comparison's mask is −1 in its bits, so subtracting the mask counts it.
    @_transparent mutating func snap(_ values: Lanes, state: Int, recording record: inout GroupRecord) -> Lanes {
        _ = extremes.snap(values, state: state, recording: &record.extremes)
        record.above &-= unsafeBitCast(values .> threshold, to: SIMD8<Int32>.self)
        return values
    }

    @inline(__always) mutating func leaveGroup(_ record: GroupRecord) {
        extremes.leaveGroup(record.extremes)
        above += Int64(record.above.replacing(with: 0, where: .!extremes.real).wrappedSum())
    }

    @inline(__always) mutating func finish() { extremes.finish() }
}

/// Leaves a quantity as it is and counts the values its sampling picks on its grid (that of the current
/// step, per step), and by their log distance below 1 when asked.
///
/// After each channel group it computes the bins of the picked values and queues them; the counters
/// are incremented from the queue at the end of each time step (or when it is full). Incremented
/// where the bins are computed, in the group's shadow, the increments held up the next group's scan
/// (histogram pass at stride 16: 6.9 → 7.2 images/s). With log distances, each value is counted once,
/// in its cell of the two grids' common refinement (`DiscreteARefinement`), and the two histograms are
/// separated when the counts are read.
private struct BinRecorder: LaneSnap {
    static var isObserver: Bool { true }
    /// The histogram pass is faster with exp2 in the fused loop (harness at stride 16: 7.5 against
    /// 7.9–8.5 ms), unlike every other kernel; also when only B̄ and h are counted (Ā left alone, as
    /// where LtSQ is chosen: 4.47–4.51 against 4.56–4.76 ms at stride 16, 5.14–5.17 against 5.42–5.48
    /// at stride 8).
    static var exponentialsFirst: Bool { false }
    /// Owns the counters, so that the copies the kernel makes of the recorder share them.
    private final class Counters {
        let storage: UnsafeMutablePointer<Int64>
        /// The current channel group's values, one register per state.
        let pending: UnsafeMutablePointer<Lanes>
        /// Bins (or refinement cells) waiting to be counted.
        let queued: UnsafeMutablePointer<SIMD8<UInt32>>
        let capacity: Int
        init(count: Int, states: Int) {
            storage = .allocate(capacity: count)
            storage.initialize(repeating: 0, count: count)
            pending = .allocate(capacity: states)
            pending.initialize(repeating: Lanes(repeating: 0), count: states)
            // 4 KiB: a step's bins at stride 16 for Vim-T, and well within the L1 cache.
            capacity = Swift.max(128, states)
            // One register past the end of the queue holds bits no bin has (every bit set), checked when
            // the counts are read: the kernel has no bounds checks, and an overflow would corrupt silently.
            queued = .allocate(capacity: capacity + 1)
            queued[capacity] = Self.guardValue
        }
        static let guardValue = SIMD8<UInt32>(repeating: .max)
        /// Stops the process if the kernel wrote past the queue.
        func checkQueue() {
            guard queued[capacity] == Self.guardValue else {
                fatalError("the scan's histogram queue overflowed: a bug in SelectiveScan's BinRecorder")
            }
        }
        deinit {
            storage.deallocate()
            pending.deallocate()
            queued.deallocate()
        }
    }

    private let binning: QuantityBinning
    private let counters: Counters
    /// Counters per grid: its bins, or the cells of its refinement by log distance.
    private let counterStride: Int
    /// Where the second copy of the counters starts (`BinGrid.increment(_:alternate:bins:)`).
    private let alternateOffset: Int
    private var grid: BinGrid
    private var gridCounts: UnsafeMutablePointer<Int64>
    private let logDistanceSlices = LogDistanceGrid.slices
    private var width = 8
    private let states: Int
    private var step = 0
    /// The channel group the kernel is in, counted from 0 at each step.
    private var group = 0
    /// How many registers of bins are queued.
    private var queuedCount = 0

    init(_ binning: QuantityBinning, states: Int) {
        let bins = binning.grids[0].bins
        precondition(binning.grids.allSatisfy { $0.bins == bins })
        counterStride =
            binning.logDistance.map { DiscreteARefinement.cells(valueBins: bins, logDistanceBins: $0.bins) } ?? bins
        self.binning = binning
        self.states = states
        alternateOffset = binning.grids.count * counterStride
        counters = Counters(count: 2 * alternateOffset, states: states)
        grid = binning.grids[0]
        gridCounts = counters.storage
    }

    @inline(__always) mutating func enter(step: Int) {
        countQueued(lanes: 8)
        self.step = step
        group = 0
        guard binning.grids.count > 1 else { return }
        grid = binning.grids[step]
        gridCounts = counters.storage + step * counterStride
    }

    @inline(__always) mutating func enter(laneCount: Int) { width = laneCount }

    /// Where the group's values go, one register per state. Handed to the kernel as the group's record,
    /// a local variable, so that it stays in a register: read from the recorder at each state, the
    /// pointer was loaded twice per store (the stores might have changed the recorder, for all the
    /// compiler knew).
    typealias GroupRecord = UnsafeMutablePointer<Lanes>

    @inline(__always) func startGroup() -> GroupRecord { counters.pending }

    @_transparent mutating func snap(_ values: Lanes, state: Int, recording pending: inout GroupRecord) -> Lanes {
        pending[state] = values
        return values
    }

    /// Queues the bins of the group's picked values, in short loops after the scan's own: binned where
    /// they are made, each state's values were one long chain (exp2, bins) and the processor's reorder
    /// window held too few of them to keep its units busy. (The values themselves stay in memory: eight
    /// registers per quantity would not fit beside the scan's.)
    ///
    /// With a sampling stride K, the group's picked states are those congruent to −(t + g) mod K
    /// (`ScanSampling.counts`), whole registers.
    ///
    /// `@_transparent`, as the snaps: `@inline(__always)` left it out of line, a call per group and
    /// quantity (histogram pass at stride 16: 7.7 → 8.4 images/s inlined).
    @_transparent mutating func leaveGroup(_ record: GroupRecord) {
        let stride = binning.sampling.stride
        let first = (stride - ((step + group) & (stride - 1))) & (stride - 1)
        group += 1
        let picked = states / stride
        // A partial group (the last, when E is not a multiple of 8) is counted on its own.
        if width < 8 || queuedCount + picked > counters.capacity { countQueued(lanes: 8) }
        let pending = record + first
        let queued = counters.queued + queuedCount
        // A local copy: read from the recorder, the grid's edge, scale and last bin were loaded again for
        // every register, as the stores to the queue might have changed them.
        let grid = self.grid
        if let logGrid = binning.logDistance {
            for m in 0..<picked {
                let values = pending[m &* stride]
                queued[m] = grid.binIndices(values) &+ logGrid.binIndices(values, slices: logDistanceSlices)
            }
        } else {
            for m in 0..<picked { queued[m] = grid.binIndices(pending[m &* stride]) }
        }
        queuedCount += picked
        if width < 8 { countQueued(lanes: width) }
    }

    @inline(__always) mutating func finish() { countQueued(lanes: 8) }

    /// Counts the first `lanes` bins of every queued register, and empties the queue.
    ///
    /// Inlined, so that the lane count is a constant where it is 8: left out of line (as the compiler
    /// chose once the log distances' binning was shorter), every increment took the variable-width loop
    /// (histogram observers at K = 1: 22.5 → 27 ms without log distances, in a harness).
    @inline(__always) private mutating func countQueued(lanes: Int) {
        if lanes == 8 {
            let alternate = gridCounts + alternateOffset
            for i in 0..<queuedCount { BinGrid.increment(gridCounts, alternate: alternate, bins: counters.queued[i]) }
        } else {
            for i in 0..<queuedCount { BinGrid.increment(gridCounts, bins: counters.queued[i], width: lanes) }
        }
        queuedCount = 0
    }

    /// The counts so far (the two copies added up).
    var counts: QuantityCounts? {
        counters.checkQueue()
        let perGrid = binning.grids.indices.map { g in
            let start = counters.storage + g * counterStride
            return (0..<counterStride).map { start[$0] + start[alternateOffset + $0] }
        }
        guard let logGrid = binning.logDistance else {
            return QuantityCounts(counts: perGrid, logDistanceCounts: nil)
        }
        var logDistanceCounts = [Int64](repeating: 0, count: logGrid.bins)
        let edges = logGrid.lowerEdges()
        let counts = zip(binning.grids, perGrid).map { grid, cells in
            var values = [Int64](repeating: 0, count: grid.bins)
            cells.withUnsafeBufferPointer {
                DiscreteARefinement(values: grid, logDistanceEdges: edges).split(
                    $0, intoValues: &values, logDistances: &logDistanceCounts)
            }
            return values
        }
        return QuantityCounts(counts: counts, logDistanceCounts: logDistanceCounts)
    }
}

/// What the kernel gives back: y, and the counts of each quantity whose snap counts (nil for the others).
private typealias ScanOutcome = (
    y: [Float], discreteA: QuantityCounts?, discreteB: QuantityCounts?, hiddenState: QuantityCounts?
)

/// Receives a quantity's snap as a concrete type, so each combination compiles to its own kernel.
private protocol SnapConsumer {
    func consume<S: LaneSnap>(_ snap: S) -> ScanOutcome
}

/// What is done with a quantity, chosen at run time, handing the matching snap to a consumer.
private protocol SnapChoice {
    func withSnap<C: SnapConsumer>(states: Int, _ consumer: C) -> ScanOutcome
}

extension ScanStepGrid: SnapChoice {
    fileprivate func withSnap<C: SnapConsumer>(states: Int, _ consumer: C) -> ScanOutcome {
        switch self {
        case .none: consumer.consume(Unquantized())
        case .uniform(let g): consumer.consume(UniformSnap(grid: g))
        case .logarithmic(let g): consumer.consume(LogarithmicSnap(grid: g.laneParameters))
        case .perTimeStep(let gs):
            gs.withUnsafeBufferPointer { consumer.consume(PerStepSnap(grids: $0, current: $0[0])) }
        }
    }
}

/// A quantity counted on its binning, or left alone (nil).
extension Optional: SnapChoice where Wrapped == QuantityBinning {
    fileprivate func withSnap<C: SnapConsumer>(states: Int, _ consumer: C) -> ScanOutcome {
        if let binning = self {
            consumer.consume(BinRecorder(binning, states: states))
        } else {
            consumer.consume(Unquantized())
        }
    }
}

/// The kernel specialised for the snaps that `choices` make.
private func runKernel<Choice: SnapChoice>(
    _ operands: ScanOperands, _ choices: ScanQuantities<Choice>, states: Int
) -> ScanOutcome {
    choices.discreteA.withSnap(states: states, SnapDiscreteA(operands: operands, choices: choices, states: states))
}

private struct SnapDiscreteA<Choice: SnapChoice>: SnapConsumer {
    let operands: ScanOperands
    let choices: ScanQuantities<Choice>
    let states: Int
    func consume<A: LaneSnap>(_ snapA: A) -> ScanOutcome {
        choices.discreteB.withSnap(
            states: states, SnapDiscreteB(operands: operands, choices: choices, states: states, snapA: snapA))
    }
}

private struct SnapDiscreteB<Choice: SnapChoice, A: LaneSnap>: SnapConsumer {
    let operands: ScanOperands
    let choices: ScanQuantities<Choice>
    let states: Int
    let snapA: A
    func consume<B: LaneSnap>(_ snapB: B) -> ScanOutcome {
        choices.hiddenState.withSnap(states: states, SnapHidden(operands: operands, snapA: snapA, snapB: snapB))
    }
}

private struct SnapHidden<A: LaneSnap, B: LaneSnap>: SnapConsumer {
    let operands: ScanOperands
    let snapA: A
    let snapB: B
    func consume<H: LaneSnap>(_ snapH: H) -> ScanOutcome {
        let (y, (a, b, h)) = scanKernel(operands, snapA, snapB, snapH)
        return (y, a.counts, b.counts, h.counts)
    }
}

/// The vectorised scan: eight channels per SIMD register, states in the inner loop, Ā_t, B̄_t and
/// h_t snapped where the definition snaps them.
///
/// Time is the outer loop and channels the middle one, so Δ, x and y are read and written row after
/// row and the state of every channel (E×N floats, 24 KiB for Vim-T) stays in cache. Walking one
/// channel group through all of time instead reads each row at a stride of E floats, which defeats
/// the hardware prefetcher at every page: a third of the kernel's time went to waiting on those loads.
/// (Carrying blocks of 64 channels through all of time, so that their A and h stay in the L1 cache,
/// was slower still.)
///
/// Within a group, the exp2 of every state's Ā_t comes first, in a loop of its own (but for the
/// histogram pass, `LaneSnap.exponentialsFirst`). With snaps, Ā_t of every state is then snapped,
/// then B̄_t x_t computed, and the state updates come last: one snapped update is a long chain of
/// dependent operations, and the processor's reorder window overlaps more of these shorter loops than
/// of one fused loop (the fused loop made the W4A4 pass 9 % slower; the exp2 loop of its own took the
/// W4A4 scan of Vim-T's shapes from 7.95 to 6.9–7.1 ms in a harness). When every quantity is only
/// observed (the fp32 scan, and calibration's recording passes) the rest is one fused loop, which keeps
/// B̄_t x_t in registers: three loops there were 10–15 % slower. All arrangements do the same arithmetic.
private func scanKernel<A: LaneSnap, B: LaneSnap, H: LaneSnap>(
    _ operands: ScanOperands, _ snapA: A, _ snapB: B, _ snapH: H
) -> (y: [Float], snaps: (A, B, H)) {
    let (x, delta, b, c) = (operands.x, operands.delta, operands.b, operands.c)
    let (sequences, length, channels) = (x.shape[0], x.shape[1], x.shape[2])
    let states = b.shape[2]
    let groups = (channels + 7) / 8
    var y = [Float](overwrittenCount: x.count)
    let hidden = UnsafeMutablePointer<Lanes>.allocate(capacity: groups * states)
    let discreteA = UnsafeMutablePointer<Lanes>.allocate(capacity: states)
    let discreteBInput = UnsafeMutablePointer<Lanes>.allocate(capacity: states)
    defer {
        hidden.deallocate()
        discreteA.deallocate()
        discreteBInput.deallocate()
    }
    var (snapA, snapB, snapH) = (snapA, snapB, snapH)
    x.scalars.withUnsafeBufferPointer { xp in
        delta.scalars.withUnsafeBufferPointer { dp in
            operands.ratesByLaneGroup.withUnsafeBufferPointer { ap in
                b.scalars.withUnsafeBufferPointer { bp in
                    c.scalars.withUnsafeBufferPointer { cp in
                        operands.skipByLaneGroup.withUnsafeBufferPointer { skip in
                            y.withUnsafeMutableBufferPointer { yp in
                                for s in 0..<sequences {
                                    hidden.initialize(repeating: Lanes(repeating: 0), count: groups * states)
                                    for t in 0..<length {
                                        snapA.enter(step: t)
                                        snapB.enter(step: t)
                                        snapH.enter(step: t)
                                        let row = (s * length + t) * channels
                                        let bRow = bp.baseAddress! + (s * length + t) * states
                                        let cRow = cp.baseAddress! + (s * length + t) * states
                                        forEachLanes(count: channels) { e, n in
                                            snapA.enter(laneCount: n)
                                            snapB.enter(laneCount: n)
                                            snapH.enter(laneCount: n)
                                            var (recordA, recordB, recordH) = (
                                                snapA.startGroup(), snapB.startGroup(), snapH.startGroup()
                                            )
                                            let g = e / 8
                                            let dt = canonicalisingNaN(loadPartial(dp.baseAddress! + row + e, n))
                                            let u = loadPartial(xp.baseAddress! + row + e, n)
                                            let rateGroup = ap.baseAddress! + g * states * 8
                                            let hGroup = hidden + g * states
                                            var acc = skip[g] * u
                                            @inline(__always) func exponential(_ k: Int) -> Lanes {
                                                binaryExponentialOfNonPositive(dt * loadLanes(rateGroup + k * 8))
                                            }
                                            let exponentialsFirst =
                                                A.exponentialsFirst && B.exponentialsFirst && H.exponentialsFirst
                                            if exponentialsFirst {
                                                for k in 0..<states { discreteA[k] = exponential(k) }
                                            }
                                            if A.isObserver && B.isObserver && H.isObserver {
                                                for k in 0..<states {
                                                    let a = snapA.snap(
                                                        exponentialsFirst ? discreteA[k] : exponential(k),
                                                        state: k, recording: &recordA)
                                                    let discreteB = snapB.snap(
                                                        dt * bRow[k], state: k, recording: &recordB)
                                                    let h = snapH.snap(
                                                        (discreteB * u).addingProduct(a, hGroup[k]), state: k,
                                                        recording: &recordH)
                                                    hGroup[k] = h
                                                    acc = acc.addingProduct(h, Lanes(repeating: cRow[k]))
                                                }
                                            } else {
                                                // Local copies, so that their grids stay in registers: read from
                                                // the snaps this closure captures, each grid's scale and bounds
                                                // were loaded again for every state, as the stores might have
                                                // changed them. Only snaps that quantize come here, small values
                                                // without references; the observers' fused loop above keeps its
                                                // recorders in place (copied per group, they held counters and
                                                // arrays: the range pass went from 1.18× to 1.65× the fp32 time).
                                                var (gridA, gridB, gridH) = (snapA, snapB, snapH)
                                                defer { (snapA, snapB, snapH) = (gridA, gridB, gridH) }
                                                for k in 0..<states {
                                                    discreteA[k] = gridA.snap(
                                                        exponentialsFirst ? discreteA[k] : exponential(k),
                                                        state: k, recording: &recordA)
                                                }
                                                for k in 0..<states {
                                                    discreteBInput[k] =
                                                        gridB.snap(dt * bRow[k], state: k, recording: &recordB) * u
                                                }
                                                for k in 0..<states {
                                                    let h = gridH.snap(
                                                        discreteBInput[k].addingProduct(discreteA[k], hGroup[k]),
                                                        state: k, recording: &recordH)
                                                    hGroup[k] = h
                                                    acc = acc.addingProduct(h, Lanes(repeating: cRow[k]))
                                                }
                                            }
                                            storePartial(acc, yp.baseAddress! + row + e, n)
                                            snapA.leaveGroup(recordA)
                                            snapB.leaveGroup(recordB)
                                            snapH.leaveGroup(recordH)
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
    snapA.finish()
    snapB.finish()
    snapH.finish()
    return (y, (snapA, snapB, snapH))
}
