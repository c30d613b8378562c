import Foundation

/// The hyper-parameters of a Vision Mamba classifier.
///
/// Keys follow the official `VisionMamba` constructor arguments (`img_size`, `embed_dim`, …), so a
/// configuration JSON written from the Python side decodes as is. Only the settings of the released
/// models are supported (bidirectional v2 mixer averaged over directions, one middle class token,
/// RMSNorm, absolute position embedding, no RoPE); a file asking for anything else is refused.
public struct VimConfiguration: Codable, Equatable, Sendable {
    /// Input image side in pixels (square images).
    public var imageSize: Int
    /// Patch side in pixels.
    public var patchSize: Int
    /// Patch stride in pixels (equal to `patchSize` except in the stride-8 fine-tuned models).
    public var stride: Int
    /// Token width D.
    public var embedDimension: Int
    /// Number of Mamba blocks.
    public var depth: Int
    /// SSM state size N.
    public var stateSize: Int
    /// Number of output classes.
    public var classCount: Int
    /// Input channels.
    public var channels: Int
    /// Inner width factor: E = expand · D.
    public var expand: Int
    /// Causal convolution width.
    public var convolutionWidth: Int
    /// Rank R of the step-size projection; nil means ceil(D / 16), the official "auto".
    public var explicitStepRank: Int?
    /// Epsilon of every RMSNorm.
    public var normEpsilon: Float

    enum CodingKeys: String, CodingKey {
        case imageSize = "img_size"
        case patchSize = "patch_size"
        case stride
        case embedDimension = "embed_dim"
        case depth
        case stateSize = "d_state"
        case classCount = "num_classes"
        case channels
        case expand
        case convolutionWidth = "d_conv"
        case explicitStepRank = "dt_rank"
        case normEpsilon = "norm_epsilon"
        // Architecture switches of the official constructor; only their official values are accepted.
        case rmsNorm = "rms_norm"
        case bimambaType = "bimamba_type"
        case clsToken = "if_cls_token"
        case middleClsToken = "use_middle_cls_token"
        case divideOut = "if_divide_out"
        case rope = "if_rope"
        case absolutePositionEmbedding = "if_abs_pos_embed"
        case doubleClsToken = "use_double_cls_token"
    }

    /// Creates a configuration; unspecified settings take the official defaults.
    public init(
        imageSize: Int = 224, patchSize: Int = 16, stride: Int? = nil, embedDimension: Int, depth: Int = 24,
        stateSize: Int = 16, classCount: Int = 1000, channels: Int = 3, expand: Int = 2,
        convolutionWidth: Int = 4, stepRank: Int? = nil, normEpsilon: Float = 1e-5
    ) {
        self.imageSize = imageSize
        self.patchSize = patchSize
        self.stride = stride ?? patchSize
        self.embedDimension = embedDimension
        self.depth = depth
        self.stateSize = stateSize
        self.classCount = classCount
        self.channels = channels
        self.expand = expand
        self.convolutionWidth = convolutionWidth
        self.explicitStepRank = stepRank
        self.normEpsilon = normEpsilon
    }

    /// Decodes a configuration; absent settings take the official defaults, and unsupported architecture switches are refused.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        imageSize = try c.decodeIfPresent(Int.self, forKey: .imageSize) ?? 224
        patchSize = try c.decodeIfPresent(Int.self, forKey: .patchSize) ?? 16
        stride = try c.decodeIfPresent(Int.self, forKey: .stride) ?? patchSize
        embedDimension = try c.decode(Int.self, forKey: .embedDimension)
        depth = try c.decodeIfPresent(Int.self, forKey: .depth) ?? 24
        stateSize = try c.decodeIfPresent(Int.self, forKey: .stateSize) ?? 16
        classCount = try c.decodeIfPresent(Int.self, forKey: .classCount) ?? 1000
        channels = try c.decodeIfPresent(Int.self, forKey: .channels) ?? 3
        expand = try c.decodeIfPresent(Int.self, forKey: .expand) ?? 2
        convolutionWidth = try c.decodeIfPresent(Int.self, forKey: .convolutionWidth) ?? 4
        // The official constructor accepts dt_rank "auto" (a string) as well as an integer.
        explicitStepRank = try? c.decodeIfPresent(Int.self, forKey: .explicitStepRank)
        normEpsilon = try c.decodeIfPresent(Float.self, forKey: .normEpsilon) ?? 1e-5
        func require(_ key: CodingKeys, _ expected: Bool) throws {
            if let value = try c.decodeIfPresent(Bool.self, forKey: key), value != expected {
                throw DecodingError.dataCorruptedError(
                    forKey: key, in: c,
                    debugDescription:
                        "\(key.rawValue) = \(value) is not supported (the released Vim models use \(expected))")
            }
        }
        try require(.rmsNorm, true)
        try require(.clsToken, true)
        try require(.middleClsToken, true)
        try require(.divideOut, true)
        try require(.rope, false)
        try require(.absolutePositionEmbedding, true)
        try require(.doubleClsToken, false)
        if let type = try c.decodeIfPresent(String.self, forKey: .bimambaType), type != "v2" {
            throw DecodingError.dataCorruptedError(
                forKey: .bimambaType, in: c, debugDescription: "bimamba_type '\(type)' is not supported (only 'v2')")
        }
    }

    /// Encodes with the official constructor argument names.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(imageSize, forKey: .imageSize)
        try c.encode(patchSize, forKey: .patchSize)
        try c.encode(stride, forKey: .stride)
        try c.encode(embedDimension, forKey: .embedDimension)
        try c.encode(depth, forKey: .depth)
        try c.encode(stateSize, forKey: .stateSize)
        try c.encode(classCount, forKey: .classCount)
        try c.encode(channels, forKey: .channels)
        try c.encode(expand, forKey: .expand)
        try c.encode(convolutionWidth, forKey: .convolutionWidth)
        try c.encode(stepRank, forKey: .explicitStepRank)
        try c.encode(normEpsilon, forKey: .normEpsilon)
    }

    /// Two configurations are equal when they build the same model: an explicit dt_rank equal to the
    /// automatic one is the same setting.
    public static func == (a: VimConfiguration, b: VimConfiguration) -> Bool {
        a.imageSize == b.imageSize && a.patchSize == b.patchSize && a.stride == b.stride
            && a.embedDimension == b.embedDimension && a.depth == b.depth && a.stateSize == b.stateSize
            && a.classCount == b.classCount && a.channels == b.channels && a.expand == b.expand
            && a.convolutionWidth == b.convolutionWidth && a.stepRank == b.stepRank && a.normEpsilon == b.normEpsilon
    }

    /// Inner width E = expand · D.
    public var innerDimension: Int { expand * embedDimension }
    /// Rank R of the Δ projection.
    public var stepRank: Int { explicitStepRank ?? (embedDimension + 15) / 16 }
    /// Patches per side: (image − patch) / stride + 1.
    public var gridSize: Int { (imageSize - patchSize) / stride + 1 }
    /// Number of patches M.
    public var patchCount: Int { gridSize * gridSize }
    /// Sequence length L = M + 1 (the class token).
    public var tokenCount: Int { patchCount + 1 }
    /// Where the class token sits in the sequence: M / 2.
    public var classTokenIndex: Int { patchCount / 2 }

    /// Multiply-accumulates of one image's matrix products and convolutions.
    public var multiplyAccumulatesPerImage: Int {
        let (d, e, r, n, l) = (embedDimension, innerDimension, stepRank, stateSize, tokenCount)
        let perLayer = l * (d * 2 * e + e * d + 2 * (e * convolutionWidth + e * (r + 2 * n) + r * e))
        return patchCount * d * channels * patchSize * patchSize + depth * perLayer + d * classCount
    }

    /// Checks that the settings describe a model that can be built.
    public func validate() throws {
        guard imageSize > 0, patchSize > 0, stride > 0, imageSize >= patchSize, embedDimension > 0, depth > 0,
            stateSize > 0, classCount > 0, channels > 0, expand > 0, convolutionWidth > 0, stepRank > 0,
            normEpsilon > 0
        else {
            throw VimError.invalidConfiguration("every size must be positive and the image at least one patch: \(self)")
        }
    }
}
