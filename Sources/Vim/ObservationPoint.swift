import TensorModule

/// The two scan directions of a bidirectional Vim mixer.
public enum ScanDirection: String, CaseIterable, Codable, Sendable {
    /// Left to right over the token sequence.
    case forward = "fwd"
    /// Right to left; its tensors are in its own (reversed) time order.
    case backward = "bwd"
}

/// A named tensor in the forward pass that can be observed (calibration) or replaced (fake
/// quantization).
///
/// The text form is stable and used in files and on the command line: `embed`, `head.input`,
/// `layers.3.in_proj.input`, `layers.3.fwd.h`, `layers.3.bwd.A_bar`.
public struct ObservationPoint: Hashable, Sendable, CustomStringConvertible {
    /// What the tensor is.
    public enum Site: String, CaseIterable, Sendable {
        /// The normalised image, [B, C, H, W].
        case patchEmbeddingInput = "patch_embed.input"
        /// Tokens after the class token and position embedding, [B, L, D] (the input of layer 0).
        case embedding = "embed"
        /// The final normalised class-token features, [B, D].
        case headInput = "head.input"
        /// The running fp32 residual that enters a block's norm, [B, L, D].
        case residual = "residual"
        /// The normalised block input u, [B, L, D].
        case inProjectionInput = "in_proj.input"
        /// The average of both directions' gated outputs, [B, L, E].
        case outProjectionInput = "out_proj.input"
        /// The mixer's output (what the block returns as hidden), [B, L, D].
        case mixerOutput = "mixer.output"
        /// x before the causal convolution, [B, L, E].
        case convolutionInput = "conv1d.input"
        /// x' = SiLU(conv(x)): the input of x_proj and of the scan, [B, L, E].
        case scanInput = "x"
        /// The low-rank Δ input of dt_proj, [B, L, R].
        case stepProjectionInput = "dt_proj.input"
        /// Δ after bias and softplus, [B, L, E].
        case step = "delta"
        /// The input-dependent B_t, [B, L, N].
        case inputMatrix = "B"
        /// The input-dependent C_t, [B, L, N].
        case outputMatrix = "C"
        /// Ā_t = exp(Δ_t A), E×N per step (scan internal).
        case discreteA = "A_bar"
        /// B̄_t = Δ_t B_t, E×N per step (scan internal).
        case discreteB = "B_bar"
        /// The hidden state h_t, E×N per step (scan internal).
        case hiddenState = "h"
        /// The scan output y_t before the gate, [B, L, E].
        case scanOutput = "y"
        /// The gated output y_t ⊙ SiLU(z_t), [B, L, E].
        case gatedOutput = "y_gated"

        /// Whether the site belongs to one direction of a block.
        public var isPerDirection: Bool {
            switch self {
            case .patchEmbeddingInput, .embedding, .headInput, .residual, .inProjectionInput, .outProjectionInput,
                .mixerOutput:
                return false
            default:
                return true
            }
        }

        /// Whether the site belongs to a block.
        public var isPerLayer: Bool {
            switch self {
            case .patchEmbeddingInput, .embedding, .headInput: return false
            default: return true
            }
        }

        /// Whether the tensor exists only inside the scan, one time step at a time.
        public var isScanInternal: Bool { self == .discreteA || self == .discreteB || self == .hiddenState }
    }

    /// The block index, for per-layer sites.
    public let layer: Int?
    /// The direction, for per-direction sites.
    public let direction: ScanDirection?
    /// The tensor.
    public let site: Site

    /// A model-level point (`embed`, `head.input`, `patch_embed.input`).
    public init(_ site: Site) {
        precondition(!site.isPerLayer)
        self.layer = nil
        self.direction = nil
        self.site = site
    }

    /// A point of block `layer`, in `direction` when the site is per direction.
    public init(layer: Int, direction: ScanDirection? = nil, _ site: Site) {
        precondition(site.isPerLayer && (direction != nil) == site.isPerDirection)
        self.layer = layer
        self.direction = direction
        self.site = site
    }

    /// Parses the text form; nil if it is not one.
    public init?(_ text: String) {
        if let site = Site(rawValue: text), !site.isPerLayer {
            self.init(site)
            return
        }
        let parts = text.split(separator: ".", maxSplits: 2).map(String.init)
        guard parts.count == 3, parts[0] == "layers", let layer = Int(parts[1]), layer >= 0 else { return nil }
        if let site = Site(rawValue: parts[2]), site.isPerLayer, !site.isPerDirection {
            self.init(layer: layer, site)
            return
        }
        let rest = parts[2].split(separator: ".", maxSplits: 1).map(String.init)
        guard rest.count == 2, let direction = ScanDirection(rawValue: rest[0]), let site = Site(rawValue: rest[1]),
            site.isPerDirection
        else { return nil }
        self.init(layer: layer, direction: direction, site)
    }

    /// The stable text form, e.g. `layers.3.fwd.h`.
    public var description: String {
        guard let layer else { return site.rawValue }
        guard let direction else { return "layers.\(layer).\(site.rawValue)" }
        return "layers.\(layer).\(direction.rawValue).\(site.rawValue)"
    }
}

/// Observes, and may replace, tensors at named points of the forward pass.
///
/// Calibration observers and fake quantization are both implementations of this protocol; the model
/// code only names the points. Tensors arrive in the layout documented on each `Site`, with the
/// batch first.
public protocol ForwardHooks: AnyObject {
    /// Called once per batch for every point that is not scan-internal (except, perhaps, those it
    /// does not `processes`).
    func process(_ point: ObservationPoint, _ tensor: inout Tensor)
    /// Whether `process` needs the tensor at this (not scan-internal) point. The model fuses the
    /// passes around points no hook needs instead of materialising them: the results are the same.
    func processes(_ point: ObservationPoint) -> Bool
    /// The grid that `process` snaps every element of this point to, when that is all it does there:
    /// the model may then snap inside the kernel that writes (or reads) the tensor, row by row while
    /// it is in cache, instead of calling `process` (the same bits, one pass over the tensor fewer).
    func elementwiseGrid(at point: ObservationPoint) -> UniformGrid?
    /// Whether the scan of this block and direction must expose Ā_t, B̄_t and h_t (a slower path).
    func needsScanInternals(layer: Int, direction: ScanDirection) -> Bool
    /// Called at every time step of every image for Ā_t, B̄_t and h_t when `needsScanInternals`
    /// returned true; `values` is E×N row-major.
    func processScanStep(_ point: ObservationPoint, image: Int, timeStep: Int, _ values: inout [Float])
    /// Grids to snap Ā_t, B̄_t and h_t to inside the vectorised scan of this block and direction, or
    /// nil; takes the place of `needsScanInternals` for hooks that only quantize.
    func scanQuantization(layer: Int, direction: ScanDirection) -> ScanQuantization?
    /// Whether the scan of this block and direction should report the extremes of Ā_t, B̄_t and
    /// (per step) h_t, found inside the vectorised kernel; takes the place of `needsScanInternals`
    /// for hooks that only need ranges.
    func recordsScanExtremes(layer: Int, direction: ScanDirection) -> Bool
    /// A threshold above which the scan should also count Ā's values when it records extremes, or nil.
    func discreteAThreshold(layer: Int, direction: ScanDirection) -> Float?
    /// Called once per batch for Ā, B̄ and h when `recordsScanExtremes` returned true.
    func processScanExtremes(_ point: ObservationPoint, _ extremes: ScanExtremes)
    /// The grids on which the scan of this block and direction should count Ā_t, B̄_t and h_t inside
    /// the vectorised kernel, or nil; takes the place of `needsScanInternals` for hooks that only
    /// need histograms.
    func scanBinning(layer: Int, direction: ScanDirection) -> ScanBinning?
    /// Called once per batch for each of Ā, B̄ and h that `scanBinning` gave grids for, with its counts.
    func processScanCounts(_ point: ObservationPoint, _ counts: QuantityCounts)
}

extension ForwardHooks {
    /// By default every point is processed.
    public func processes(_ point: ObservationPoint) -> Bool { true }
    /// By default no point is a plain snap to a grid.
    public func elementwiseGrid(at point: ObservationPoint) -> UniformGrid? { nil }
    /// By default no scan internals are needed, and the fast scan runs.
    public func needsScanInternals(layer: Int, direction: ScanDirection) -> Bool { false }
    /// By default the scan is not quantized.
    public func scanQuantization(layer: Int, direction: ScanDirection) -> ScanQuantization? { nil }
    /// By default no extremes are recorded.
    public func recordsScanExtremes(layer: Int, direction: ScanDirection) -> Bool { false }
    /// By default Ā's values are not counted against a threshold.
    public func discreteAThreshold(layer: Int, direction: ScanDirection) -> Float? { nil }
    /// By default extremes are ignored.
    public func processScanExtremes(_ point: ObservationPoint, _ extremes: ScanExtremes) {}
    /// By default nothing is counted.
    public func scanBinning(layer: Int, direction: ScanDirection) -> ScanBinning? { nil }
    /// By default counts are ignored.
    public func processScanCounts(_ point: ObservationPoint, _ counts: QuantityCounts) {}
    /// By default scan internals pass through unchanged.
    public func processScanStep(_ point: ObservationPoint, image: Int, timeStep: Int, _ values: inout [Float]) {}
}
