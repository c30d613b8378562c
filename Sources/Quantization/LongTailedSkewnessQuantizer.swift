import Foundation
import TensorModule

/// Long-tailed Skewness Quantization (LtSQ) of the discrete parameter Ā_t = exp(Δ_t A).
///
/// Ā lies in (0, 1], piles up just below 1 and has a long tail towards 0 (QMamba, §LtSQ). LtSQ codes
/// the distance from 1 on a base-2 logarithmic grid, so the dense region near 1 gets fine steps:
/// q = clamp(round(−log2((1 − Ā) / s)), 0, 2^b − 1) and Ā̂ = 1 − s · 2^−q. The published rule is s = 1
/// (`ltsq`); `ltsq-search` chooses log2 s to minimise the expected squared error. In integer arithmetic
/// with s = 1, Ā̂ · h = h − (h >> q).
///
/// | Ā | 1 − Ā | −log2(1 − Ā) | q (4 bits, s = 1) | Ā̂ |
/// |---|---|---|---|---|
/// | 0.3 | 0.7 | 0.51 | 1 | 0.5 |
/// | 0.9 | 0.1 | 3.32 | 3 | 0.875 |
/// | 0.999 | 0.001 | 9.97 | 10 | 0.99902 |
/// | 1.0 | 0 | ∞ | 15 | 0.99997 |
public struct LongTailedSkewnessQuantizer: Equatable, Sendable {
    /// Bit width: codes 0 … 2^b − 1.
    public var bits: Int
    /// log2 of the scale s inside the logarithm (0 for the published rule).
    public var logScale: Float

    /// The largest distance −log2(1 − Ā) a histogram records; float32 Ā = 1 − 2^−24 is the last value
    /// below 1, and Ā = 1 exactly is recorded here too.
    public static let maximumLogDistance: Float = 32

    /// Why stored parameters make no usable quantizer, or nil: the bits must be 1 … 16 and |log2 s| at
    /// most `LogarithmicGrid.logScaleLimit` (fitting searches [−3, 3]). Files are checked with it before
    /// a quantizer is made (the library is compiled without precondition checks).
    public static func problem(bits: Int, logScale: Float) -> String? {
        guard (1...16).contains(bits) else { return "\(bits) bits (LtSQ takes 1 to 16)" }
        guard abs(logScale) <= LogarithmicGrid.logScaleLimit else {
            return "log2 scale \(logScale) (must be within ±\(Int(LogarithmicGrid.logScaleLimit)))"
        }
        return nil
    }

    /// A quantizer with the given bits and log2 scale (see `problem(bits:logScale:)`).
    public init(bits: Int, logScale: Float = 0) {
        precondition(Self.problem(bits: bits, logScale: logScale) == nil)
        self.bits = bits
        self.logScale = logScale
    }

    /// The code of a log distance u = −log2(1 − Ā).
    @inline(__always) public func code(logDistance u: Float) -> Int {
        let q = (u + logScale).rounded(.toNearestOrEven)
        return Int(min(max(q, 0), Float((1 << bits) - 1)))
    }

    /// The Ā a code stands for, exactly as the model runs it.
    public func value(ofCode q: Int) -> Float { grid.value(ofCode: q) }

    /// The grid the model runs with: the same codes, found from the bits of 1 − Ā (exact where a
    /// rounded log2 is not; see `LogarithmicGrid`).
    public var grid: LogarithmicGrid { LogarithmicGrid(bits: bits, logScale: logScale) }

    /// Ā snapped to the logarithmic grid (builds the grid: for many values use `grid`).
    public func fakeQuantize(_ discreteA: Float) -> Float { grid.snap(discreteA) }
}
