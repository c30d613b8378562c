import Foundation
import TensorModule

extension VimWeights {
    /// Weights drawn like the official initialisation (uniform fan-in ranges, A = −(1…N), D = 1,
    /// Δ biases giving steps in [0.001, 0.1]), for timing and memory measurements of models whose
    /// checkpoints are not at hand. The same seed gives the same weights.
    public static func random(for c: VimConfiguration, seed: UInt64) -> VimWeights {
        var generator = SeededUniform(seed: seed)
        func uniform(_ shape: [Int], bound: Float) -> Tensor {
            Tensor(shape: shape, scalars: (0..<shape.reduce(1, *)).map { _ in generator.next(in: -bound...bound) })
        }
        func vector(_ count: Int, _ value: Float) -> [Float] { [Float](repeating: value, count: count) }
        let (d, e, n, r, k) = (c.embedDimension, c.innerDimension, c.stateSize, c.stepRank, c.convolutionWidth)
        func direction() -> VimDirectionWeights {
            VimDirectionWeights(
                convolutionWeight: uniform([e, k], bound: 0.5), convolutionBias: uniform([e], bound: 0.5).scalars,
                inputProjection: uniform([r + 2 * n, e], bound: 1 / Float(e).squareRoot()),
                stepProjection: uniform([e, r], bound: 1 / Float(r).squareRoot()),
                stepBias: (0..<e).map { _ in
                    let step = Float.exp(generator.next(in: Float.log(0.001)...Float.log(0.1)))
                    return step + Float.log(-Float.expm1(-step))
                },
                stateMatrix: Tensor(shape: [e, n], scalars: (0..<(e * n)).map { -Float($0 % n + 1) }),
                skip: vector(e, 1))
        }
        return VimWeights(
            patchEmbeddingWeight: uniform([d, c.channels, c.patchSize, c.patchSize], bound: 0.04),
            patchEmbeddingBias: vector(d, 0), classToken: uniform([d], bound: 0.02).scalars,
            positionEmbedding: uniform([c.tokenCount, d], bound: 0.02),
            layers: (0..<c.depth).map { _ in
                VimLayerWeights(
                    normWeight: vector(d, 1), inProjection: uniform([2 * e, d], bound: 1 / Float(d).squareRoot()),
                    forward: direction(), backward: direction(),
                    outProjection: uniform([d, e], bound: 1 / (Float(e) * Float(c.depth)).squareRoot()))
            },
            finalNormWeight: vector(d, 1), headWeight: uniform([c.classCount, d], bound: 0.02),
            headBias: vector(c.classCount, 0))
    }
}

/// Uniform floats from a SplitMix64 stream.
private struct SeededUniform {
    var bits: SplitMix64

    init(seed: UInt64) { bits = SplitMix64(seed: seed) }

    mutating func next(in range: ClosedRange<Float>) -> Float {
        let unit = Float(bits.next() >> 40) / Float(1 << 24)
        return range.lowerBound + unit * (range.upperBound - range.lowerBound)
    }
}

extension Float {
    fileprivate static func exp(_ x: Float) -> Float { Foundation.exp(x) }
    fileprivate static func log(_ x: Float) -> Float { Foundation.log(x) }
    fileprivate static func expm1(_ x: Float) -> Float { Foundation.expm1(x) }
}
