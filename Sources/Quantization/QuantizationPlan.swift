import TensorModule
import Vim

/// The quantizer of one activation point.
public enum ActivationQuantizer: Equatable, Sendable {
    /// A uniform affine quantizer.
    case uniform(UniformQuantizer)
    /// LtSQ (Ā only).
    case longTailed(LongTailedSkewnessQuantizer)
    /// TGQ (h only).
    case temporalGroups(TemporalGroupQuantizer)

    /// The quantizer's name in files and reports.
    public var kind: String {
        switch self {
        case .uniform: return "uniform"
        case .longTailed: return "ltsq"
        case .temporalGroups: return "tgq"
        }
    }

    /// The quantizer as the vectorised scan kernel applies it (TGQ as one grid per time step).
    public var scanGrid: ScanStepGrid {
        switch self {
        case .uniform(let q): return .uniform(q.grid)
        case .longTailed(let q): return .logarithmic(q.grid)
        case .temporalGroups(let tgq): return .perTimeStep((0..<tgq.length).map { tgq.quantizer(atStep: $0).grid })
        }
    }
}

/// Per-output-channel symmetric quantization of one weight matrix.
public struct WeightQuantization: Equatable, Sendable {
    /// Bit width.
    public var bits: Int
    /// One scale per output channel.
    public var scales: [Float]

    /// Why stored parameters make no usable quantization, or nil: the bits must be 2 … 16 (symmetric
    /// grids) and every scale a positive number.
    public static func problem(bits: Int, scales: [Float]) -> String? {
        guard (2...16).contains(bits) else { return "\(bits) bits (weights take 2 to 16)" }
        guard let bad = scales.first(where: { !($0.isFinite && $0 > 0) }) else { return nil }
        return "scale \(bad) (scales must be positive numbers)"
    }

    /// The integer code of every element of `matrix` [channels, inputs], row-major.
    public func codes(_ matrix: Tensor) -> [Int] {
        let columns = matrix.shape[1]
        var codes = [Int](repeating: 0, count: matrix.count)
        for (row, scale) in scales.enumerated() {
            let quantizer = UniformQuantizer(scale: scale, zeroPoint: 0, bits: bits, symmetric: true)
            for i in (row * columns)..<((row + 1) * columns) { codes[i] = quantizer.code(matrix.scalars[i]) }
        }
        return codes
    }

    /// The values codes stand for, scale[row] · code, for rows of `columns` codes.
    public func values(ofCodes codes: [Int], columns: Int) -> [Float] {
        codes.indices.map { scales[$0 / columns] * Float(codes[$0]) }
    }

    /// The matrix [channels, inputs] snapped to each channel's grid.
    public func fakeQuantize(_ matrix: Tensor) -> Tensor {
        Tensor(shape: matrix.shape, scalars: values(ofCodes: codes(matrix), columns: matrix.shape[1]))
    }
}

/// Every fitted quantizer of a model: the result of calibration.
public struct QuantizationPlan: Sendable, Equatable {
    /// The method that produced it.
    public var method: CalibrationMethod
    /// Bit widths and parameters.
    public var settings: QuantizationSettings
    /// Activation quantizers in `QuantizationPoints.activations` order.
    public var activations: [(point: ObservationPoint, quantizer: ActivationQuantizer)]
    /// Weight quantization in `WeightPoint.all` order.
    public var weights: [(point: WeightPoint, quantization: WeightQuantization)]
    /// For a method with LtSQ, at each Ā point, how many of Ā's calibration values exceeded the LtSQ
    /// threshold, of how many: LtSQ is chosen where more than half did. (Empty for the other methods,
    /// and for plans read from exported models.)
    public var discreteAThresholdCounts: [ObservationPoint: ThresholdCount]

    /// Compares everything, point by point.
    public static func == (a: QuantizationPlan, b: QuantizationPlan) -> Bool {
        a.method == b.method && a.settings == b.settings && a.discreteAThresholdCounts == b.discreteAThresholdCounts
            && a.activations.map(\.point) == b.activations.map(\.point)
            && a.activations.map(\.quantizer) == b.activations.map(\.quantizer)
            && a.weights.map(\.point) == b.weights.map(\.point)
            && a.weights.map(\.quantization) == b.weights.map(\.quantization)
    }

    /// Fits every quantizer: weights from the model, activations from the merged statistics (ranges
    /// alone suffice for a method that does not `readsHistograms`).
    ///
    /// At an Ā point, a method with LtSQ chooses it where more than half of Ā's values exceed the
    /// threshold (the statistics' exact count), and fits a uniform quantizer on Ā's histogram otherwise.
    ///
    /// - Throws: `QuantizationError.noData` when a point saw no values, `thresholdMismatch` when the
    ///   method chooses LtSQ and the statistics counted Ā against another threshold (or none),
    ///   `missingHistograms`, `missingHistogram` or `missingLogDistances` when the statistics lack what
    ///   the method reads.
    public static func fit(
        statistics: CalibrationStatistics, weights: VimWeights, method: CalibrationMethod,
        settings: QuantizationSettings
    ) throws -> QuantizationPlan {
        guard !method.readsThresholdCounts || statistics.discreteAThreshold == settings.ltsqThreshold else {
            throw QuantizationError.thresholdMismatch(
                statistics: statistics.discreteAThreshold, settings: settings.ltsqThreshold)
        }
        guard statistics.hasHistograms || !method.readsHistograms else {
            throw QuantizationError.missingHistograms(method: method.name)
        }
        var activations: [(ObservationPoint, ActivationQuantizer)] = []
        var thresholdCounts: [ObservationPoint: ThresholdCount] = [:]
        for entry in statistics.points {
            let bits = entry.role == .edgeActivation ? settings.edgeBits : settings.activationBits
            let ranges = WeightedSamples(minima: entry.minimum, maxima: entry.maximum)
            guard !ranges.isEmpty else { throw QuantizationError.noData(point: entry.point.description) }
            if method.readsThresholdCounts, let count = entry.aboveThreshold {
                thresholdCounts[entry.point] = count
                if count.isMajorityAbove {
                    activations.append((entry.point, .longTailed(try longTailed(entry, bits: bits, method: method))))
                    continue
                }
            }
            let quantizer: ActivationQuantizer
            switch (entry.role, method.hiddenState) {
            case (.hiddenState, .tgq), (.hiddenState, .tgqDP):
                quantizer = .temporalGroups(
                    Fitting.temporalGroups(
                        try Self.histograms(entry, method: method), bits: bits, groups: settings.groups,
                        fitter: method.rangeFitter, dynamic: method.hiddenState == .tgqDP))
            default:
                let samples =
                    method.readsHistograms ? WeightedSamples(try Self.histograms(entry, method: method)) : ranges
                quantizer = .uniform(Fitting.uniform(samples, bits: bits, fitter: method.rangeFitter))
            }
            activations.append((entry.point, quantizer))
        }
        let fittedWeights = WeightPoint.all(depth: weights.layers.count).map { point in
            let bits = point.kind.isEdge ? settings.edgeBits : settings.weightBits
            return (
                point,
                WeightQuantization(bits: bits, scales: Fitting.weightScales(point.matrix(in: weights), bits: bits))
            )
        }
        return QuantizationPlan(
            method: method, settings: settings, activations: activations, weights: fittedWeights,
            discreteAThresholdCounts: thresholdCounts)
    }

    /// The histograms a uniform quantizer or TGQ at `entry` is fitted on (per time step for h), for a
    /// method that reads them; a method that reads none is fitted on the ranges, which determine its
    /// quantizers.
    private static func histograms(
        _ entry: CalibrationStatistics.Point, method: CalibrationMethod
    ) throws -> [Histogram] {
        guard !entry.histograms.isEmpty else {
            throw QuantizationError.missingHistogram(point: entry.point.description, method: method.name)
        }
        guard entry.histograms.contains(where: { $0.total > 0 }) else {
            throw QuantizationError.noData(point: entry.point.description)
        }
        return entry.histograms
    }

    /// LtSQ at an Ā point: the published rule, or with the scale searched on the histogram of log distances.
    private static func longTailed(
        _ entry: CalibrationStatistics.Point, bits: Int, method: CalibrationMethod
    ) throws -> LongTailedSkewnessQuantizer {
        guard method.discreteA == .ltsqSearch else { return LongTailedSkewnessQuantizer(bits: bits) }
        guard let log = entry.logHistogram else {
            throw QuantizationError.missingLogDistances(point: entry.point.description, method: method.name)
        }
        return Fitting.searchedLongTailed(log, bits: bits)
    }

    /// The weights with every quantized matrix snapped to its grid.
    public func quantizedWeights(_ weights: VimWeights) -> VimWeights {
        var result = weights
        for (point, quantization) in self.weights {
            point.replace(in: &result, with: quantization.fakeQuantize(point.matrix(in: weights)))
        }
        return result
    }
}

/// Runs the forward pass with every activation point of a plan fake-quantized: values are snapped to
/// the integer grid and dequantized. Ā, B̄ and h are quantized inside the scan at every step; the
/// quantized h_t is what step t + 1 reuses, TGQ choosing the quantizer of t's group.
public final class FakeQuantizationHooks: ForwardHooks {
    private struct ScanBlock: Hashable {
        let layer: Int
        let direction: ScanDirection
    }

    private let quantizers: [ObservationPoint: ActivationQuantizer]
    private let scanLayers: Set<Int>
    private let fused: Bool
    private let scanGrids: [ScanBlock: ScanQuantization]

    /// Hooks applying `plan`'s activation quantizers. With `fused` (the default) Ā, B̄ and h are
    /// snapped inside the vectorised scan kernel and the per-tensor grids inside the kernels that
    /// write their tensors; without it, every point goes through `process` and, step by step,
    /// `processScanStep` (the definitional path; both give the same bits).
    public init(plan: QuantizationPlan, fused: Bool = true) {
        let quantizers = Dictionary(uniqueKeysWithValues: plan.activations.map { ($0.point, $0.quantizer) })
        scanLayers = Set(plan.activations.filter { $0.point.site.isScanInternal }.compactMap(\.point.layer))
        var grids: [ScanBlock: ScanQuantization] = [:]
        for layer in scanLayers where fused {
            for direction in ScanDirection.allCases {
                func grid(_ site: ObservationPoint.Site) -> ScanStepGrid {
                    quantizers[ObservationPoint(layer: layer, direction: direction, site)]?.scanGrid ?? .none
                }
                grids[ScanBlock(layer: layer, direction: direction)] = ScanQuantization(
                    discreteA: grid(.discreteA), discreteB: grid(.discreteB), hiddenState: grid(.hiddenState))
            }
        }
        self.quantizers = quantizers
        self.fused = fused
        scanGrids = grids
    }

    /// Snaps a tensor at a quantized point.
    public func process(_ point: ObservationPoint, _ tensor: inout Tensor) {
        guard case .uniform(let quantizer)? = quantizers[point] else { return }
        quantizer.fakeQuantize(&tensor.scalars)
    }

    /// Only the points with a uniform quantizer are processed.
    public func processes(_ point: ObservationPoint) -> Bool {
        guard case .uniform? = quantizers[point] else { return false }
        return true
    }

    /// A uniform quantizer's grid, for the kernel that writes the tensor (when fused).
    public func elementwiseGrid(at point: ObservationPoint) -> UniformGrid? {
        guard fused, case .uniform(let quantizer)? = quantizers[point] else { return nil }
        return quantizer.grid
    }

    /// The grids of this block's scan, for the fused kernel.
    public func scanQuantization(layer: Int, direction: ScanDirection) -> ScanQuantization? {
        scanGrids[ScanBlock(layer: layer, direction: direction)]
    }

    /// Whether this block's scans have quantized internals that go step by step.
    public func needsScanInternals(layer: Int, direction: ScanDirection) -> Bool {
        !fused && scanLayers.contains(layer)
    }

    /// Snaps Ā_t, B̄_t or h_t at one step.
    public func processScanStep(_ point: ObservationPoint, image: Int, timeStep: Int, _ values: inout [Float]) {
        switch quantizers[point] {
        case .uniform(let quantizer)?:
            quantizer.fakeQuantize(&values)
        case .longTailed(let quantizer)?:
            let grid = quantizer.grid
            for i in values.indices { values[i] = grid.snap(values[i]) }
        case .temporalGroups(let tgq)?:
            tgq.quantizer(atStep: timeStep).fakeQuantize(&values)
        case nil:
            break
        }
    }
}
