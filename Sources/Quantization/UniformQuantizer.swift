import TensorModule

/// Uniform affine quantization to a `bits`-bit integer grid.
///
/// Asymmetric: q = clamp(round(v / s) + z, 0, 2^b − 1), v̂ = s · (q − z). Symmetric: z = 0 and
/// q ∈ [−(2^(b−1) − 1), 2^(b−1) − 1]. Rounding is half to even, as `torch.round`.
///
/// | bits | symmetric | grid |
/// |---|---|---|
/// | 4 | no | 0 … 15 |
/// | 4 | yes | −7 … 7 |
/// | 8 | no | 0 … 255 |
public struct UniformQuantizer: Equatable, Sendable {
    /// Step between grid values.
    public var scale: Float
    /// The integer that represents 0; any integer (the grid need not contain 0 for one-sided data).
    public var zeroPoint: Int
    /// Bit width.
    public var bits: Int
    /// Whether the grid is symmetric around 0 (z = 0).
    public var symmetric: Bool

    /// Smallest step allowed: a constant tensor would otherwise divide by zero.
    public static let minimumScale: Float = 1e-12

    /// The smallest and largest integer codes.
    public var codeRange: ClosedRange<Int> {
        symmetric ? -((1 << (bits - 1)) - 1)...((1 << (bits - 1)) - 1) : 0...((1 << bits) - 1)
    }

    /// The asymmetric quantizer whose grid runs from `lower` to `upper`: s = (upper − lower) / (2^b − 1),
    /// z = round(−lower / s).
    public init(lower: Float, upper: Float, bits: Int) {
        precondition(bits >= 1 && bits <= 16)
        let levels = Float((1 << bits) - 1)
        let scale = max((upper - lower) / levels, UniformQuantizer.minimumScale)
        self.scale = scale
        self.zeroPoint = Int((-lower / scale).rounded(.toNearestOrEven))
        self.bits = bits
        self.symmetric = false
    }

    /// The symmetric quantizer whose largest code represents `absoluteMaximum`.
    public init(absoluteMaximum: Float, bits: Int) {
        precondition(bits >= 2 && bits <= 16)
        self.scale = max(absoluteMaximum / Float((1 << (bits - 1)) - 1), UniformQuantizer.minimumScale)
        self.zeroPoint = 0
        self.bits = bits
        self.symmetric = true
    }

    /// Why stored parameters make no usable quantizer, or nil: the bits must be 1 … 16 (2 … 16 when
    /// symmetric), the scale a positive number and the zero point within ±2^23, so that every code
    /// minus it is a float exactly (`UniformGrid`). Files are checked with it before a quantizer is made
    /// (the library is compiled without precondition checks).
    public static func problem(scale: Float, zeroPoint: Int, bits: Int, symmetric: Bool) -> String? {
        let lowestBits = symmetric ? 2 : 1
        guard (lowestBits...16).contains(bits) else {
            return "\(bits) bits (\(symmetric ? "symmetric" : "asymmetric") grids take \(lowestBits) to 16)"
        }
        guard scale.isFinite, scale > 0 else { return "scale \(scale) (must be a positive number)" }
        guard abs(zeroPoint) <= 1 << 23 else { return "zero point \(zeroPoint) (must be within ±2^23)" }
        return nil
    }

    /// Creates a quantizer from stored parameters (see `problem(scale:zeroPoint:bits:symmetric:)`).
    public init(scale: Float, zeroPoint: Int, bits: Int, symmetric: Bool) {
        self.scale = scale
        self.zeroPoint = zeroPoint
        self.bits = bits
        self.symmetric = symmetric
    }

    /// The integer code of `value`.
    @inline(__always) public func code(_ value: Float) -> Int {
        let range = codeRange
        let q = (value / scale).rounded(.toNearestOrEven) + Float(zeroPoint)
        guard q.isFinite else { return value > 0 ? range.upperBound : range.lowerBound }
        return min(max(Int(q), range.lowerBound), range.upperBound)
    }

    /// The value a code stands for.
    @inline(__always) public func value(ofCode code: Int) -> Float {
        scale * Float(code - zeroPoint)
    }

    /// `value` snapped to the grid.
    @inline(__always) public func fakeQuantize(_ value: Float) -> Float {
        self.value(ofCode: code(value))
    }

    /// The grid in the form the scan kernel applies it.
    public var grid: UniformGrid { UniformGrid(scale: scale, zeroPoint: zeroPoint, codes: codeRange) }

    /// Snaps every element in place (the same arithmetic as the scan kernel's).
    public func fakeQuantize(_ values: inout [Float]) { grid.snap(&values) }
}
