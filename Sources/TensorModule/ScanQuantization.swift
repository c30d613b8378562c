import CIntrinsics
import Foundation

/// A uniform affine grid in the form the scan kernel applies it: v̂ = s · (clamp(round(v / s) + z) − z).
///
/// It is applied as v̂ = s · clamp(round(v / s), lo − z, hi − z): the same values, since codes and
/// zero point are integers that floats hold exactly (|z| < 2^24), with two fewer operations in the
/// scan's dependency chain. Scalar and vectorised forms share this arithmetic (divide, round half to
/// even, clamp, rescale), so the vectorised scan and an element-by-element loop give the same bits.
public struct UniformGrid: Sendable, Equatable {
    /// Step between grid values.
    public let scale: Float
    /// The smallest multiple of the step on the grid: the lowest code minus the zero point.
    public let lowestMultiple: Float
    /// The largest multiple of the step on the grid: the highest code minus the zero point.
    public let highestMultiple: Float

    /// A grid from its parameters.
    public init(scale: Float, zeroPoint: Int, codes: ClosedRange<Int>) {
        self.scale = scale
        lowestMultiple = Float(codes.lowerBound - zeroPoint)
        highestMultiple = Float(codes.upperBound - zeroPoint)
    }

    /// `value` snapped to the grid.
    @inline(__always) public func snap(_ value: Float) -> Float {
        // Clamped by comparisons, as vmaxps and vminps clamp the vectorised form (Swift's `max(−0, 0)`
        // would give +0).
        var q = (value / scale).rounded(.toNearestOrEven)
        if q < lowestMultiple { q = lowestMultiple }
        if q > highestMultiple { q = highestMultiple }
        return scale * q
    }

    /// Snaps every element in place, eight at a time.
    public func snap(_ values: inout [Float]) {
        values.withUnsafeMutableBufferPointer { buffer in snap(buffer.baseAddress!, count: buffer.count) }
    }

    /// Snaps `count` floats at `values` in place: kernels call it on each row they have just written,
    /// while it is in the L1 cache, instead of a pass over the whole tensor.
    @inline(__always) func snap(_ values: UnsafeMutablePointer<Float>, count: Int) {
        snap(UnsafePointer(values), count: count, into: values)
    }

    /// Writes `count` floats from `source`, snapped, to `destination` (which may be `source`).
    @inline(__always) func snap(
        _ source: UnsafePointer<Float>, count: Int, into destination: UnsafeMutablePointer<Float>
    ) {
        forEachLanes(count: count) { i, width in
            storePartial(snap(loadPartial(source + i, width)), destination + i, width)
        }
    }

    /// Σ weight · (v − snap(v))² in double precision, eight values at a time (eight partial sums):
    /// the error the fitters minimise over histogram bins, evaluated hundreds of times per quantizer.
    public func squaredError(_ values: UnsafeBufferPointer<Float>, weights: UnsafeBufferPointer<Double>) -> Double {
        precondition(values.count == weights.count)
        // A plain loop rather than `forEachLanes`: captured by its closure, the sums lived in memory.
        var (low, high) = (SIMD4<Double>(repeating: 0), SIMD4<Double>(repeating: 0))
        var i = 0
        while i < values.count {
            let width = min(8, values.count - i)
            let v = loadPartial(values.baseAddress! + i, width)
            let d = v - snap(v)
            var (wLow, wHigh) = (SIMD4<Double>(repeating: 0), SIMD4<Double>(repeating: 0))
            if width == 8 {
                let w = UnsafeRawPointer(weights.baseAddress! + i)
                (wLow, wHigh) = (
                    w.loadUnaligned(as: SIMD4<Double>.self), w.loadUnaligned(fromByteOffset: 32, as: SIMD4<Double>.self)
                )
            } else {
                // Lanes past the end keep weight 0.
                for j in 0..<width {
                    if j < 4 { wLow[j] = weights[i + j] } else { wHigh[j - 4] = weights[i + j] }
                }
            }
            let (dLow, dHigh) = (SIMD4<Double>(d.lowHalf), SIMD4<Double>(d.highHalf))
            low += wLow * dLow * dLow
            high += wHigh * dHigh * dHigh
            i += 8
        }
        return (low + high).sum()
    }

    /// Σ (v − snap(v))² over `values`, eight at a time (float32 partial sums per lane).
    public func squaredError(_ values: UnsafeBufferPointer<Float>) -> Float {
        // A plain loop, as in the weighted form: inside `forEachLanes`'s closure the sums were stored
        // and reloaded at every step (two thirds of this function's samples on that store).
        var sums = Lanes(repeating: 0)
        var i = 0
        while i < values.count {
            let v = loadPartial(values.baseAddress! + i, min(8, values.count - i))
            let d = v - snap(v)
            sums = sums.addingProduct(d, d)
            i += 8
        }
        return sums.sum()
    }

    /// Eight values snapped. The clamp is x86's max and min: Swift's `replacing(with:where:)` pair
    /// became a compare and a blend per bound once the bounds stayed in registers.
    @_transparent func snap(_ values: Lanes) -> Lanes {
        scale * cintrinsics_clamp((values / scale).rounded(.toNearestOrEven), lowestMultiple, highestMultiple)
    }
}

/// The base-2 logarithmic grid of LtSQ for Ā ∈ (0, 1]: code q = clamp(round(−log2(1 − Ā) + log2 s)),
/// value 1 − s · 2^−q.
///
/// The code is found from the bits of g = 1 − Ā = 2^E · f (f ∈ [1, 2)) rather than a rounded log2:
/// with m = log2 s + ½ = M + r (M an integer, r ∈ [0, 1)), q = M − E − [f > 2^r]. One comparison per
/// element, exact up to the float value of 2^r. The value is 1 − fl(s) · 2^−q with 2^−q built from
/// its bits (exact). Ā ≥ 1 and NaN take the highest code. The vectorised form (`snap(_:_:)`) gives
/// the scalar form's bits (but for NaN).
public struct LogarithmicGrid: Sendable, Equatable {
    /// Bit width: codes 0 … 2^b − 1.
    public let bits: Int
    /// log2 of the scale s.
    public let logScale: Float
    /// The largest |log2 s| a grid takes: every power of two the vectorised form builds is then a
    /// normal float. (Fitted grids have |log2 s| ≤ 3.)
    public static let logScaleLimit: Float = 64
    let integerOffset: Int32
    let fractionThreshold: Float
    let scale: Float
    /// Added to the bits of g, it carries into the exponent exactly when f > 2^r: the mantissa bits of
    /// g exceed those of `fractionThreshold` (0 when that rounded to 2, which no f exceeds).
    let fractionCarry: UInt32
    /// 2^−M and 2^−(2^b − 1), for the vectorised form.
    let inverseOffsetPower: Float
    let lowestPower: Float

    /// The grid of `bits` (1 … 16) codes with log2 scale `logScale` (|logScale| ≤ `logScaleLimit`).
    public init(bits: Int, logScale: Float) {
        precondition(bits >= 1 && bits <= 16)
        precondition(abs(logScale) <= Self.logScaleLimit)
        self.bits = bits
        self.logScale = logScale
        let m = Double(logScale) + 0.5
        integerOffset = Int32(m.rounded(.down))
        fractionThreshold = Float(Foundation.exp2(m - m.rounded(.down)))
        fractionCarry = fractionThreshold < 2 ? 0x7F_FFFF - (fractionThreshold.bitPattern & 0x7F_FFFF) : 0
        scale = Float(Foundation.exp2(Double(logScale)))
        inverseOffsetPower = Float(sign: .plus, exponent: -Int(integerOffset), significand: 1)
        lowestPower = Float(sign: .plus, exponent: -((1 << bits) - 1), significand: 1)
    }

    private var highestCode: Int32 { Int32((1 << bits) - 1) }

    /// The code of Ā.
    @inline(__always) public func code(_ discreteA: Float) -> Int {
        let gap = 1 - discreteA
        guard gap > 0 else { return Int(highestCode) }
        let bits = gap.bitPattern
        let exponent = Int32(bits >> 23) - 127
        let fraction = Float(bitPattern: (bits & 0x7F_FFFF) | 0x3F80_0000)
        let q = integerOffset - exponent - (fraction > fractionThreshold ? 1 : 0)
        return Int(min(max(q, 0), highestCode))
    }

    /// The Ā a code stands for: 1 − fl(s) · 2^−q, with 2^−q exact (subnormal, or 0 below that).
    @inline(__always) public func value(ofCode q: Int) -> Float {
        1 - scale * Float(sign: .plus, exponent: -q, significand: 1)
    }

    /// Ā snapped to the grid.
    @inline(__always) public func snap(_ discreteA: Float) -> Float { value(ofCode: code(discreteA)) }

    /// Snaps every element in place, eight at a time, with the scan kernel's arithmetic.
    public func snap(_ values: inout [Float]) {
        let highestValue = value(ofCode: Int(highestCode))
        let parameters = laneParameters
        values.withUnsafeMutableBufferPointer { buffer in
            forEachLanes(count: buffer.count) { i, width in
                let discreteA = loadPartial(buffer.baseAddress! + i, width)
                let snapped = Self.snap(discreteA, parameters)
                storePartial(
                    snapped.replacing(with: highestValue, where: discreteA .!= discreteA), buffer.baseAddress! + i,
                    width)
            }
        }
    }

    /// The grid's constants in every lane, as the vectorised snap takes them. A caller builds them once:
    /// broadcast at every snap they cost 3 % of the W4A4 scan, and kept as `SIMD8` fields of the grid
    /// itself they made debug test code and the optimised library disagree on how a `ScanQuantization`
    /// is passed, and crash.
    struct LaneParameters {
        let fractionCarry: SIMD8<UInt32>
        let inverseOffsetPower: Lanes
        let lowestPower: Lanes
        let negatedScale: Lanes
    }

    var laneParameters: LaneParameters {
        LaneParameters(
            fractionCarry: SIMD8(repeating: fractionCarry), inverseOffsetPower: Lanes(repeating: inverseOffsetPower),
            lowestPower: Lanes(repeating: lowestPower), negatedScale: Lanes(repeating: -scale))
    }

    /// Eight Ā snapped, in floating point and integer adds only (SIMD integer selects compile to per-lane
    /// loops): 2^−q = 2^E' · 2^−M clamped to [2^−(2^b − 1), 1], where 2^E' is the sign and exponent
    /// fields of g's bits plus `fractionCarry` (E + 1 when f > 2^r). Every product is a power of two,
    /// so it is exact. g ≤ 0 (Ā ≥ 1) gives a power of 0 or below, so the highest code, as the scalar
    /// form's guard. A NaN lane gets some value of the grid, not necessarily the highest code's: in
    /// the scan a NaN Ā comes from a NaN Δ, which makes B̄ and so h NaN whatever Ā is snapped to,
    /// and testing for it cost 5 % of the W4A4 scan.
    ///
    /// The carry replaced a multiply, a comparison and a blend on each state update's dependency chain
    /// (W4A4 scan of Vim-T's shapes 9.0 → 8.2 ms in a harness, 7.9 with the constants built once).
    @_transparent static func snap(_ discreteA: Lanes, _ grid: LaneParameters) -> Lanes {
        let bits = unsafeBitCast(1 - discreteA, to: SIMD8<UInt32>.self) &+ grid.fractionCarry
        var power = unsafeBitCast(bits & 0xFF80_0000, to: Lanes.self) * grid.inverseOffsetPower
        power = power.replacing(with: 1, where: power .> 1)
        power = power.replacing(with: grid.lowestPower, where: power .< grid.lowestPower)
        return Lanes(repeating: 1).addingProduct(power, grid.negatedScale)
    }
}

/// Which of the scan's E×N values at each time step a histogram pass counts: the value of channel e and
/// state n at step t when t + ⌊e/8⌋ + n is a multiple of `stride`.
///
/// So every channel at every step has N / `stride` of its states counted, and the counted states rotate
/// with the step and the block of channels. The choice depends only on positions inside a sequence,
/// never on the batch or the rank, so sampled statistics merge as exactly as complete ones. Counting
/// costs more than the rest of the histogram pass (about 230 M counter increments per Vim-T image at
/// stride 1); a stride of 8 counts one value in 8.
public struct ScanSampling: Sendable, Equatable {
    /// One value in `stride` is counted.
    public let stride: Int
    /// The strides the counting kernel supports: powers of two up to 16 (Vim's N).
    public static let strides = [1, 2, 4, 8, 16]
    /// Every value counted.
    public static let everyValue = ScanSampling(stride: 1)

    /// Why `stride` cannot sample a scan of `states` states, or nil: it must be one of `strides` and
    /// divide `states`. (The option and the calibration file are both checked with it.)
    public static func problem(stride: Int, states: Int) -> String? {
        guard !(strides.contains(stride) && states % stride == 0) else { return nil }
        let choices = strides.filter { states % $0 == 0 }.map(String.init).joined(separator: ", ")
        return "expected one of \(choices) (a power of two dividing the model's d_state, \(states))"
    }

    /// Counting one value in `stride`, which must be one of `strides`.
    public init(stride: Int) {
        precondition(Self.strides.contains(stride), "unsupported sampling stride \(stride)")
        self.stride = stride
    }

    /// Whether the value of `channel` and `state` at time step `step` is counted.
    ///
    /// Channels go by blocks of eight, one SIMD register, so that the kernel counts whole registers.
    /// Picking by step + channel + state instead made each lane pick a different state, and gathering
    /// them (a blend per state and quantity) cost 12 % of the histogram pass at stride 16. At any step
    /// the blocks together still pick every state (Vim has more than `stride` blocks), which the
    /// per-step histograms of h need.
    public func counts(step: Int, channel: Int, state: Int) -> Bool {
        (step + channel / 8 + state) % stride == 0
    }
}

/// How one scan quantity is counted by `SelectiveScan.applyCountingBins`.
public struct QuantityBinning: Sendable, Equatable {
    /// One grid for every step, or one per time step (indexed by step); all with the same number of bins.
    public var grids: [BinGrid]
    /// When set, the distance below 1 of every counted value, −log2(1 − v), is counted on it too:
    /// LtSQ's coordinate for Ā.
    public var logDistance: LogDistanceGrid?
    /// Which values are counted; the number of states must be a multiple of its stride.
    public var sampling: ScanSampling

    /// Counting the values `sampling` picks on `grids`, and on `logDistance` by log distance.
    public init(grids: [BinGrid], logDistance: LogDistanceGrid? = nil, sampling: ScanSampling = .everyValue) {
        precondition(!grids.isEmpty)
        self.grids = grids
        self.logDistance = logDistance
        self.sampling = sampling
    }
}

/// What `SelectiveScan.applyCountingBins` counted of one quantity.
public struct QuantityCounts: Sendable, Equatable {
    /// Per grid of `QuantityBinning.grids`, the count per bin.
    public var counts: [[Int64]]
    /// The counts by log distance, when it was asked for.
    public var logDistanceCounts: [Int64]?

    /// Counts from their values.
    public init(counts: [[Int64]], logDistanceCounts: [Int64]?) {
        self.counts = counts
        self.logDistanceCounts = logDistanceCounts
    }
}

/// The grids on which the scan's histogram pass counts Ā_t, B̄_t and h_t (nil: not counted).
public typealias ScanBinning = ScanQuantities<QuantityBinning?>

/// How one scan quantity is snapped at every time step.
public enum ScanStepGrid: Sendable, Equatable {
    /// Left in float32.
    case none
    /// One uniform grid for every step.
    case uniform(UniformGrid)
    /// LtSQ's logarithmic grid (for Ā).
    case logarithmic(LogarithmicGrid)
    /// A uniform grid per time step (TGQ: the grid of the step's group), indexed by step.
    case perTimeStep([UniformGrid])
}

/// Quantization applied inside the scan: Ā_t and B̄_t are snapped before the state update, h_t after
/// it (the snapped h_t is what step t + 1 uses), exactly as a `ScanStepHook` that snaps them would.
public typealias ScanQuantization = ScanQuantities<ScanStepGrid>

/// One value for each of the scan's internal quantities: how each is snapped, or counted.
public struct ScanQuantities<Value> {
    /// For Ā_t = exp(Δ_t A).
    public var discreteA: Value
    /// For B̄_t = Δ_t B_t.
    public var discreteB: Value
    /// For h_t.
    public var hiddenState: Value

    /// The values for the three quantities.
    public init(discreteA: Value, discreteB: Value, hiddenState: Value) {
        self.discreteA = discreteA
        self.discreteB = discreteB
        self.hiddenState = hiddenState
    }

    /// The value for `quantity`.
    public subscript(quantity: ScanQuantity) -> Value {
        switch quantity {
        case .discreteA: discreteA
        case .discreteB: discreteB
        case .hiddenState: hiddenState
        }
    }
}

extension ScanQuantities: Sendable where Value: Sendable {}
extension ScanQuantities: Equatable where Value: Equatable {}
