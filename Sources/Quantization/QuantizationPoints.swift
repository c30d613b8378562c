import TensorModule
import Vim

/// How the activation at a quantization point is observed and quantized.
public enum PointRole: String, Sendable {
    /// A tensor quantized per tensor with a uniform quantizer.
    case activation
    /// Ā_t: uniform or LtSQ, observed step by step inside the scan.
    case discreteA
    /// B̄_t: uniform, observed step by step inside the scan.
    case discreteB
    /// h_t: per tensor or TGQ, observed per time step inside the scan.
    case hiddenState
    /// An activation of the patch embedding or head, at the edge bit width.
    case edgeActivation
}

/// The activation and weight quantization points of a Vim model (QMAMBA.md, "What is quantized").
public enum QuantizationPoints {
    /// Every activation point in a fixed order (model input, then each block, then the head input).
    public static func activations(depth: Int) -> [(point: ObservationPoint, role: PointRole)] {
        var points: [(ObservationPoint, PointRole)] = [(ObservationPoint(.patchEmbeddingInput), .edgeActivation)]
        for layer in 0..<depth {
            points.append((ObservationPoint(layer: layer, .inProjectionInput), .activation))
            for direction in ScanDirection.allCases {
                let sites: [(ObservationPoint.Site, PointRole)] = [
                    (.convolutionInput, .activation), (.scanInput, .activation), (.stepProjectionInput, .activation),
                    (.outputMatrix, .activation), (.discreteA, .discreteA), (.discreteB, .discreteB),
                    (.hiddenState, .hiddenState), (.scanOutput, .activation),
                ]
                for (site, role) in sites {
                    points.append((ObservationPoint(layer: layer, direction: direction, site), role))
                }
            }
            points.append((ObservationPoint(layer: layer, .outProjectionInput), .activation))
        }
        points.append((ObservationPoint(.headInput), .edgeActivation))
        return points
    }
}

/// A weight matrix that is quantized per output channel, by its checkpoint key.
public struct WeightPoint: Hashable, Sendable, CustomStringConvertible {
    /// Which parameter of a block (or of the model's edges).
    public enum Kind: String, CaseIterable, Sendable {
        case patchEmbedding = "patch_embed.proj.weight"
        case head = "head.weight"
        case inProjection = "mixer.in_proj.weight"
        case forwardConvolution = "mixer.conv1d.weight"
        case backwardConvolution = "mixer.conv1d_b.weight"
        case forwardInputProjection = "mixer.x_proj.weight"
        case backwardInputProjection = "mixer.x_proj_b.weight"
        case forwardStepProjection = "mixer.dt_proj.weight"
        case backwardStepProjection = "mixer.dt_proj_b.weight"
        case outProjection = "mixer.out_proj.weight"

        /// Whether the weight belongs to the model's edges (kept at the edge bit width).
        public var isEdge: Bool { self == .patchEmbedding || self == .head }
    }

    /// The block, for block weights.
    public let layer: Int?
    /// The parameter.
    public let kind: Kind

    /// The official checkpoint key.
    public var description: String { layer.map { "layers.\($0).\(kind.rawValue)" } ?? kind.rawValue }

    /// Every quantized weight of a model of `depth` blocks, in a fixed order.
    public static func all(depth: Int) -> [WeightPoint] {
        [WeightPoint(layer: nil, kind: .patchEmbedding)]
            + (0..<depth).flatMap { layer in
                Kind.allCases.filter { !$0.isEdge }.map { WeightPoint(layer: layer, kind: $0) }
            }
            + [WeightPoint(layer: nil, kind: .head)]
    }

    /// The weight as [output channels, inputs].
    public func matrix(in weights: VimWeights) -> Tensor {
        let tensor = reference(weights)
        return tensor.reshaped([tensor.shape[0], tensor.count / max(tensor.shape[0], 1)])
    }

    /// Replaces the weight (given as [output channels, inputs]) keeping its shape.
    public func replace(in weights: inout VimWeights, with matrix: Tensor) {
        let shape = reference(weights).shape
        let value = matrix.reshaped(shape)
        switch kind {
        case .patchEmbedding: weights.patchEmbeddingWeight = value
        case .head: weights.headWeight = value
        case .inProjection: weights.layers[layer!].inProjection = value
        case .outProjection: weights.layers[layer!].outProjection = value
        case .forwardConvolution: weights.layers[layer!].forward.convolutionWeight = value
        case .backwardConvolution: weights.layers[layer!].backward.convolutionWeight = value
        case .forwardInputProjection: weights.layers[layer!].forward.inputProjection = value
        case .backwardInputProjection: weights.layers[layer!].backward.inputProjection = value
        case .forwardStepProjection: weights.layers[layer!].forward.stepProjection = value
        case .backwardStepProjection: weights.layers[layer!].backward.stepProjection = value
        }
    }

    private func reference(_ weights: VimWeights) -> Tensor {
        switch kind {
        case .patchEmbedding: return weights.patchEmbeddingWeight
        case .head: return weights.headWeight
        case .inProjection: return weights.layers[layer!].inProjection
        case .outProjection: return weights.layers[layer!].outProjection
        case .forwardConvolution: return weights.layers[layer!].forward.convolutionWeight
        case .backwardConvolution: return weights.layers[layer!].backward.convolutionWeight
        case .forwardInputProjection: return weights.layers[layer!].forward.inputProjection
        case .backwardInputProjection: return weights.layers[layer!].backward.inputProjection
        case .forwardStepProjection: return weights.layers[layer!].forward.stepProjection
        case .backwardStepProjection: return weights.layers[layer!].backward.stepProjection
        }
    }
}
