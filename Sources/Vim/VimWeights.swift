import Checkpoint
import Foundation
import TensorModule

/// The parameters of one scan direction of a Vim mixer (the backward direction's keys end in `_b`).
public struct VimDirectionWeights: Sendable {
    /// Depthwise causal convolution taps, [E, K] (checkpoint `conv1d.weight` [E, 1, K]).
    public var convolutionWeight: Tensor
    /// Convolution bias, [E].
    public var convolutionBias: [Float]
    /// `x_proj.weight`, [R + 2N, E]: rows give Δ's low-rank input, then B, then C.
    public var inputProjection: Tensor
    /// `dt_proj.weight`, [E, R].
    public var stepProjection: Tensor
    /// `dt_proj.bias`, [E].
    public var stepBias: [Float]
    /// A = −exp(A_log), [E, N].
    public var stateMatrix: Tensor
    /// The skip parameter D, [E].
    public var skip: [Float]
}

/// The parameters of one Vim block.
public struct VimLayerWeights: Sendable {
    /// RMSNorm gain, [D].
    public var normWeight: [Float]
    /// `in_proj.weight`, [2E, D]: rows 0..<E make x, rows E..<2E make the gate z.
    public var inProjection: Tensor
    /// The forward direction.
    public var forward: VimDirectionWeights
    /// The backward direction.
    public var backward: VimDirectionWeights
    /// `out_proj.weight`, [D, E].
    public var outProjection: Tensor
}

/// Every parameter of a Vim classifier.
public struct VimWeights: Sendable {
    /// Patch embedding convolution, [D, C, P, P].
    public var patchEmbeddingWeight: Tensor
    /// Patch embedding bias, [D].
    public var patchEmbeddingBias: [Float]
    /// The class token, [D].
    public var classToken: [Float]
    /// Absolute position embedding, [L, D].
    public var positionEmbedding: Tensor
    /// The blocks.
    public var layers: [VimLayerWeights]
    /// Final RMSNorm gain, [D].
    public var finalNormWeight: [Float]
    /// Classifier weight, [classes, D].
    public var headWeight: Tensor
    /// Classifier bias, [classes].
    public var headBias: [Float]

    /// The number of scalar parameters.
    public var parameterCount: Int {
        var total =
            patchEmbeddingWeight.count + patchEmbeddingBias.count + classToken.count + positionEmbedding.count
            + finalNormWeight.count + headWeight.count + headBias.count
        for layer in layers {
            total += layer.normWeight.count + layer.inProjection.count + layer.outProjection.count
            for direction in [layer.forward, layer.backward] {
                total +=
                    direction.convolutionWeight.count + direction.convolutionBias.count
                    + direction.inputProjection.count + direction.stepProjection.count + direction.stepBias.count
                    + direction.stateMatrix.count + direction.skip.count
            }
        }
        return total
    }

    /// Assembles weights from their parts.
    public init(
        patchEmbeddingWeight: Tensor, patchEmbeddingBias: [Float], classToken: [Float], positionEmbedding: Tensor,
        layers: [VimLayerWeights], finalNormWeight: [Float], headWeight: Tensor, headBias: [Float]
    ) {
        self.patchEmbeddingWeight = patchEmbeddingWeight
        self.patchEmbeddingBias = patchEmbeddingBias
        self.classToken = classToken
        self.positionEmbedding = positionEmbedding
        self.layers = layers
        self.finalNormWeight = finalNormWeight
        self.headWeight = headWeight
        self.headBias = headBias
    }

    /// Loads the weights of `configuration` from `source`, strictly: every tensor the model needs must be
    /// present with its exact shape, and every tensor in the file must be used.
    ///
    /// - Throws: `VimError.missingTensor`, `.shapeMismatch` or `.unexpectedTensors` naming the file and
    ///   key, or the `CheckpointError` of a tensor that cannot be read.
    public init(loading source: TensorSource, configuration c: VimConfiguration) throws {
        var reader = StrictReader(source: source)
        let (d, e, n, r) = (c.embedDimension, c.innerDimension, c.stateSize, c.stepRank)
        patchEmbeddingWeight = try reader.tensor("patch_embed.proj.weight", [d, c.channels, c.patchSize, c.patchSize])
        patchEmbeddingBias = try reader.vector("patch_embed.proj.bias", d)
        classToken = try reader.tensor("cls_token", [1, 1, d]).scalars
        positionEmbedding = try reader.tensor("pos_embed", [1, c.tokenCount, d]).reshaped([c.tokenCount, d])
        layers = try (0..<c.depth).map { i in
            let p = "layers.\(i)."
            func direction(_ suffix: String, stateKey: String) throws -> VimDirectionWeights {
                VimDirectionWeights(
                    convolutionWeight: try reader.tensor(
                        p + "mixer.conv1d\(suffix).weight", [e, 1, c.convolutionWidth]
                    )
                    .reshaped([e, c.convolutionWidth]),
                    convolutionBias: try reader.vector(p + "mixer.conv1d\(suffix).bias", e),
                    inputProjection: try reader.tensor(p + "mixer.x_proj\(suffix).weight", [r + 2 * n, e]),
                    stepProjection: try reader.tensor(p + "mixer.dt_proj\(suffix).weight", [e, r]),
                    stepBias: try reader.vector(p + "mixer.dt_proj\(suffix).bias", e),
                    stateMatrix: Tensor(
                        shape: [e, n],
                        scalars: try reader.tensor(p + "mixer.\(stateKey)", [e, n]).scalars.map { -Float.exp($0) }),
                    skip: try reader.vector(p + "mixer.D\(suffix)", e))
            }
            return VimLayerWeights(
                normWeight: try reader.vector(p + "norm.weight", d),
                inProjection: try reader.tensor(p + "mixer.in_proj.weight", [2 * e, d]),
                forward: try direction("", stateKey: "A_log"),
                backward: try direction("_b", stateKey: "A_b_log"),
                outProjection: try reader.tensor(p + "mixer.out_proj.weight", [d, e]))
        }
        finalNormWeight = try reader.vector("norm_f.weight", d)
        headWeight = try reader.tensor("head.weight", [c.classCount, d])
        headBias = try reader.vector("head.bias", c.classCount)
        try reader.requireAllUsed()
    }
}

/// Reads tensors by key with their expected shapes, remembering which were used.
private struct StrictReader {
    let source: TensorSource
    var used: Set<String> = []

    mutating func tensor(_ key: String, _ shape: [Int]) throws -> Tensor {
        guard let found = source.shape(of: key) else {
            throw VimError.missingTensor(path: source.path, key: key, expectedShape: shape)
        }
        guard found == shape else {
            throw VimError.shapeMismatch(path: source.path, key: key, expected: shape, found: found)
        }
        used.insert(key)
        return try source.tensor(named: key)
    }

    mutating func vector(_ key: String, _ count: Int) throws -> [Float] {
        try tensor(key, [count]).scalars
    }

    func requireAllUsed() throws {
        let extra = source.tensorNames.filter { !used.contains($0) }
        if !extra.isEmpty { throw VimError.unexpectedTensors(path: source.path, keys: extra) }
    }
}

extension Float {
    fileprivate static func exp(_ x: Float) -> Float { Float(Foundation.exp(Double(x))) }
}
