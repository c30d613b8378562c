import Checkpoint
import TensorModule

/// A Vision Mamba classifier: bidirectional Mamba blocks over patch tokens with a middle class token.
///
/// A port of `VisionMamba.forward` of the official `vim/models_mamba.py` with the bimamba-v2 mixer of its
/// bundled `mamba_ssm` 1.1.1, in evaluation mode (see ../shared/docs/VIM.md for every step).
public struct VimModel: Sendable {
    /// The hyper-parameters.
    public let configuration: VimConfiguration
    /// The parameters; fake quantization replaces weights here.
    public var weights: VimWeights

    /// Wraps weights that were loaded for `configuration`.
    public init(configuration: VimConfiguration, weights: VimWeights) {
        self.configuration = configuration
        self.weights = weights
    }

    /// Loads a checkpoint, with its configuration inferred from the tensor shapes unless one is given.
    public init(loading source: TensorSource, configuration: VimConfiguration? = nil) throws {
        let configuration = try configuration ?? VimConfiguration.inferred(from: source)
        try configuration.validate()
        self.init(configuration: configuration, weights: try VimWeights(loading: source, configuration: configuration))
    }

    /// Computes the logits [B, classes] of normalised images [B, C, H, W].
    ///
    /// - Parameter hooks: sees (and may replace) every `ObservationPoint`; nil runs the plain fp32 model.
    /// - Throws: `VimError.invalidInput` if the images do not have the configured shape.
    public func callAsFunction(_ images: Tensor, hooks: ForwardHooks? = nil) throws -> Tensor {
        let c = configuration
        guard images.rank == 4, images.shape[1] == c.channels, images.shape[2] == c.imageSize,
            images.shape[3] == c.imageSize
        else {
            throw VimError.invalidInput(
                "images have shape \(images.shape), the model needs [N, \(c.channels), \(c.imageSize), \(c.imageSize)]")
        }
        var pixels = images
        hooks?.process(ObservationPoint(.patchEmbeddingInput), &pixels)
        var hidden = embed(pixels)
        hooks?.process(ObservationPoint(.embedding), &hidden)
        var residual: Tensor?
        for (index, layer) in weights.layers.enumerated() {
            var sum = residual.map { $0 + hidden } ?? hidden
            hooks?.process(ObservationPoint(layer: index, .residual), &sum)
            residual = sum
            let normed = produce(ObservationPoint(layer: index, .inProjectionInput), hooks) {
                RMSNorm.apply(sum, weight: layer.normWeight, epsilon: c.normEpsilon, snappedTo: $0)
            }
            hidden = mix(normed, layer: layer, index: index, hooks: hooks)
            hooks?.process(ObservationPoint(layer: index, .mixerOutput), &hidden)
        }
        let final = RMSNorm.apply(
            (residual ?? hidden) + hidden, weight: weights.finalNormWeight, epsilon: c.normEpsilon)
        let batch = images.shape[0]
        let (length, d) = (c.tokenCount, c.embedDimension)
        var features = Tensor(shape: [batch, d])
        for b in 0..<batch {
            let row = (b * length + c.classTokenIndex) * d
            features.scalars.replaceSubrange(b * d..<(b + 1) * d, with: final.scalars[row..<(row + d)])
        }
        hooks?.process(ObservationPoint(.headInput), &features)
        return Linear.apply(features, weight: weights.headWeight, bias: weights.headBias)
    }

    /// Patch embedding, class token inserted at M / 2, position embedding added: [B, L, D].
    private func embed(_ images: Tensor) -> Tensor {
        let c = configuration
        let patches = PatchEmbedding.apply(
            images, weight: weights.patchEmbeddingWeight, bias: weights.patchEmbeddingBias, stride: c.stride)
        let (batch, m, d, length) = (images.shape[0], c.patchCount, c.embedDimension, c.tokenCount)
        var tokens = [Float](repeating: 0, count: batch * length * d)
        let middle = c.classTokenIndex
        for b in 0..<batch {
            for t in 0..<length {
                let destination = (b * length + t) * d
                let position = t * d
                for j in 0..<d {
                    let value: Float
                    if t < middle {
                        value = patches.scalars[(b * m + t) * d + j]
                    } else if t == middle {
                        value = weights.classToken[j]
                    } else {
                        value = patches.scalars[(b * m + t - 1) * d + j]
                    }
                    tokens[destination + j] = value + weights.positionEmbedding.scalars[position + j]
                }
            }
        }
        return Tensor(shape: [batch, length, d], scalars: tokens)
    }

    /// The bidirectional mixer: both directions' gated outputs averaged, then `out_proj`.
    ///
    /// Tensors at points no hook `processes` are not materialised: x is read in place from the input
    /// projection, in either time order, and without gated outputs to show, both directions are
    /// gated (SiLU(z) computed on the fly) and averaged in one pass. The arithmetic is the same
    /// either way, so the results are identical bit for bit.
    private func mix(_ input: Tensor, layer: VimLayerWeights, index: Int, hooks: ForwardHooks?) -> Tensor {
        let e = configuration.innerDimension
        let projected = Linear.apply(input, weight: layer.inProjection)
        let (forward, forwardGrid) = scan(
            projected, weights: layer.forward, layer: index, direction: .forward, hooks: hooks)
        let (backward, backwardGrid) = scan(
            projected, weights: layer.backward, layer: index, direction: .backward, hooks: hooks)
        let gatedPoints = ScanDirection.allCases.map { ObservationPoint(layer: index, direction: $0, .gatedOutput) }
        let averagePoint = ObservationPoint(layer: index, .outProjectionInput)
        var combined: Tensor
        if let hooks, gatedPoints.contains(where: hooks.processes) {
            var (forward, backward) = (consume forward, consume backward)
            forwardGrid?.snap(&forward.scalars)
            backwardGrid?.snap(&backward.scalars)
            let gateActivation = Activation.silu(projected, columns: e..<(2 * e))
            var gatedForward = Activation.gate(consume forward, by: gateActivation)
            hooks.process(gatedPoints[0], &gatedForward)
            var gatedBackward = Activation.gate(consume backward, by: gateActivation, timeReversed: true)
            hooks.process(gatedPoints[1], &gatedBackward)
            combined = gatedForward.averaged(withTimeReversed: gatedBackward)
            hooks.process(averagePoint, &combined)
        } else {
            let averageGrid = hooks?.elementwiseGrid(at: averagePoint)
            combined = Activation.gatedAverage(
                forward: consume forward, backward: consume backward, gateSource: projected, columns: e..<(2 * e),
                grids: (forwardGrid, backwardGrid, averageGrid))
            if averageGrid == nil { hooks?.process(averagePoint, &combined) }
        }
        return Linear.apply(combined, weight: layer.outProjection)
    }

    /// One direction from the input projection [B, L, 2E] (x, then z): conv and SiLU on x in that
    /// direction's time order, projections, selective scan. Returns the scan output y (before the
    /// gate) in the direction's time order, and the hooks' grid for y if they have one: the mixer
    /// snaps y with it where it reads y, and the hooks are not called for it.
    private func scan(
        _ projected: Tensor, weights w: VimDirectionWeights, layer: Int, direction: ScanDirection,
        hooks: ForwardHooks?
    ) -> (y: Tensor, outputGrid: UniformGrid?) {
        let (e, r, n) = (configuration.innerDimension, configuration.stepRank, configuration.stateSize)
        func point(_ site: ObservationPoint.Site) -> ObservationPoint {
            ObservationPoint(layer: layer, direction: direction, site)
        }
        let reversed = direction == .backward
        let u = produce(point(.scanInput), hooks) { grid in
            let conv = point(.convolutionInput)
            if let hooks, hooks.processes(conv), hooks.elementwiseGrid(at: conv) == nil {
                var x = projected.columns(0..<e, timeReversed: reversed)
                hooks.process(conv, &x)
                return CausalConvolution.applyThenSiLU(
                    x, columns: 0..<e, weight: w.convolutionWeight, bias: w.convolutionBias, outputGrid: grid)
            }
            return CausalConvolution.applyThenSiLU(
                projected, columns: 0..<e, timeReversed: reversed, weight: w.convolutionWeight,
                bias: w.convolutionBias, inputGrid: hooks?.elementwiseGrid(at: conv), outputGrid: grid)
        }
        let projected = Linear.apply(u, weight: w.inputProjection)
        let stepInput = produce(point(.stepProjectionInput), hooks) { projected.columns(0..<r, snappedTo: $0) }
        var step = Activation.softplus(Linear.apply(stepInput, weight: w.stepProjection), columnBias: w.stepBias)
        hooks?.process(point(.step), &step)
        var b = projected.columns(r..<(r + n))
        hooks?.process(point(.inputMatrix), &b)
        let c = produce(point(.outputMatrix), hooks) { projected.columns((r + n)..<(r + 2 * n), snappedTo: $0) }
        let stepHook = hooks.flatMap { hooks in
            hooks.needsScanInternals(layer: layer, direction: direction)
                ? ScanHookAdapter(hooks: hooks, layer: layer, direction: direction) : nil
        }
        var y: Tensor
        if stepHook == nil, let hooks, hooks.recordsScanExtremes(layer: layer, direction: direction) {
            let recorded = SelectiveScan.applyRecordingExtremes(
                x: u, delta: step, a: w.stateMatrix, b: b, c: c, d: w.skip,
                discreteAThreshold: hooks.discreteAThreshold(layer: layer, direction: direction))
            hooks.processScanExtremes(point(.discreteA), recorded.discreteA)
            hooks.processScanExtremes(point(.discreteB), recorded.discreteB)
            hooks.processScanExtremes(point(.hiddenState), recorded.hiddenState)
            y = recorded.y
        } else if stepHook == nil, let hooks, let binning = hooks.scanBinning(layer: layer, direction: direction) {
            let counted = SelectiveScan.applyCountingBins(
                x: u, delta: step, a: w.stateMatrix, b: b, c: c, d: w.skip, binning: binning)
            if let counts = counted.discreteA { hooks.processScanCounts(point(.discreteA), counts) }
            if let counts = counted.discreteB { hooks.processScanCounts(point(.discreteB), counts) }
            if let counts = counted.hiddenState { hooks.processScanCounts(point(.hiddenState), counts) }
            y = counted.y
        } else {
            y = SelectiveScan.apply(
                x: u, delta: step, a: w.stateMatrix, b: b, c: c, d: w.skip,
                quantization: hooks?.scanQuantization(layer: layer, direction: direction), hook: stepHook)
        }
        let outputGrid = hooks?.elementwiseGrid(at: point(.scanOutput))
        if outputGrid == nil { hooks?.process(point(.scanOutput), &y) }
        return (y, outputGrid)
    }
}

/// The tensor at `point`: written by `make` with the hooks' grid for it when they have one (the
/// kernel snaps as it writes), else written plain and handed to the hooks' `process`.
private func produce(_ point: ObservationPoint, _ hooks: ForwardHooks?, _ make: (UniformGrid?) -> Tensor) -> Tensor {
    if let grid = hooks?.elementwiseGrid(at: point) { return make(grid) }
    var tensor = make(nil)
    hooks?.process(point, &tensor)
    return tensor
}

/// Forwards the scan's per-step quantities to the model's hooks under their point names.
private final class ScanHookAdapter: ScanStepHook {
    let hooks: ForwardHooks
    let points: [ScanQuantity: ObservationPoint]

    init(hooks: ForwardHooks, layer: Int, direction: ScanDirection) {
        self.hooks = hooks
        points = [
            .discreteA: ObservationPoint(layer: layer, direction: direction, .discreteA),
            .discreteB: ObservationPoint(layer: layer, direction: direction, .discreteB),
            .hiddenState: ObservationPoint(layer: layer, direction: direction, .hiddenState),
        ]
    }

    func process(_ quantity: ScanQuantity, sequence: Int, timeStep: Int, values: inout [Float]) {
        hooks.processScanStep(points[quantity]!, image: sequence, timeStep: timeStep, &values)
    }
}
