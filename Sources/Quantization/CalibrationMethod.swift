/// How activation ranges are chosen from the statistics.
public enum RangeFitter: String, CaseIterable, Sendable {
    /// The observed minimum and maximum.
    case minmax
    /// The 0.01 % and 99.99 % quantiles.
    case percentile
    /// The clipping range with the least expected squared error (coordinate descent on both ends).
    case mse
}

/// How Ā is quantized.
public enum DiscreteAQuantization: String, Sendable {
    /// A uniform quantizer fitted like the other activations.
    case uniform
    /// LtSQ with the published rule (s = 1), where the median of Ā exceeds the threshold (more than
    /// half of its values do).
    case ltsq
    /// LtSQ with the scale inside the logarithm searched for least squared error.
    case ltsqSearch = "ltsq-search"
}

/// How h_t is quantized.
public enum HiddenStateQuantization: String, Sendable {
    /// One uniform quantizer for all time steps.
    case perTensor = "per-tensor"
    /// TGQ with equal-length groups.
    case tgq
    /// TGQ with group boundaries chosen by dynamic programming.
    case tgqDP = "tgq-dp"
}

/// A calibration method: one entry of the method table.
public struct CalibrationMethod: Sendable, Equatable {
    /// The name used on the command line and in files.
    public let name: String
    /// How activation ranges are fitted.
    public let rangeFitter: RangeFitter
    /// The quantizer of Ā.
    public let discreteA: DiscreteAQuantization
    /// The quantizer of h_t.
    public let hiddenState: HiddenStateQuantization
    /// One line for help and reports.
    public let summary: String

    /// Every method, baselines first. The table drives `--method` validation, help, reports and tests.
    public static let table: [CalibrationMethod] = [
        CalibrationMethod(
            name: "minmax", rangeFitter: .minmax, discreteA: .uniform, hiddenState: .perTensor,
            summary: "uniform quantizers on the observed ranges"),
        CalibrationMethod(
            name: "percentile", rangeFitter: .percentile, discreteA: .uniform, hiddenState: .perTensor,
            summary: "uniform quantizers on the 0.01%-99.99% quantile ranges"),
        CalibrationMethod(
            name: "mse", rangeFitter: .mse, discreteA: .uniform, hiddenState: .perTensor,
            summary: "uniform quantizers with clipping searched for least squared error"),
        CalibrationMethod(
            name: "mse+ltsq", rangeFitter: .mse, discreteA: .ltsq, hiddenState: .perTensor,
            summary: "mse, with LtSQ for the discrete parameter A_bar (ablation)"),
        CalibrationMethod(
            name: "mse+ltsq-search", rangeFitter: .mse, discreteA: .ltsqSearch, hiddenState: .perTensor,
            summary: "mse, with searched-scale LtSQ for A_bar (ablation)"),
        CalibrationMethod(
            name: "mse+tgq", rangeFitter: .mse, discreteA: .uniform, hiddenState: .tgq,
            summary: "mse, with equal-group TGQ for the hidden state h (ablation)"),
        CalibrationMethod(
            name: "mse+tgq-dp", rangeFitter: .mse, discreteA: .uniform, hiddenState: .tgqDP,
            summary: "mse, with DP-grouped TGQ for h (ablation)"),
        CalibrationMethod(
            name: "qmamba", rangeFitter: .mse, discreteA: .ltsq, hiddenState: .tgq,
            summary: "QMamba: LtSQ for A_bar, TGQ for h, mse elsewhere"),
        CalibrationMethod(
            name: "qmamba-search", rangeFitter: .mse, discreteA: .ltsqSearch, hiddenState: .tgqDP,
            summary: "QMamba with searched-scale LtSQ and DP-grouped TGQ"),
    ]

    /// Whether fitting reads the histogram of −log2(1 − Ā) where it chooses LtSQ. Only the searched LtSQ
    /// does: the published rule's grid is fixed, and what decides between LtSQ and uniform is counted in
    /// the range pass. Calibration counts these log distances only when the method reads them, which is
    /// a sixth of the histogram pass for Vim-B (Docs/PERFORMANCE.md).
    public var readsLogDistances: Bool { discreteA == .ltsqSearch }

    /// Whether fitting chooses between LtSQ and a uniform quantizer at each Ā point, by how many of Ā's
    /// values exceed the LtSQ threshold: calibration counts them in the range pass only for such methods.
    public var readsThresholdCounts: Bool { discreteA != .uniform }

    /// Whether fitting reads the histogram of Ā's values at a point where more than half of them do
    /// (or do not) exceed the LtSQ threshold: a method with a uniform Ā always does (but `minmax`, which
    /// reads no histogram), LtSQ with the published rule only where it falls back to a uniform
    /// quantizer, and searched LtSQ always (its log distances are counted with Ā's values).
    public func readsDiscreteAHistogram(majorityAboveThreshold: Bool) -> Bool {
        guard readsHistograms else { return false }
        return discreteA != .ltsq || !majorityAboveThreshold
    }

    /// Whether fitting reads histograms at all. Min–max quantizers, with Ā uniform and one quantizer for h,
    /// are fitted from the ranges alone, so calibrating them needs only the range pass.
    public var readsHistograms: Bool {
        !(rangeFitter == .minmax && discreteA == .uniform && hiddenState == .perTensor)
    }

    /// The method with this name.
    ///
    /// - Throws: `QuantizationError.unknownMethod` listing the valid names.
    public static func named(_ name: String) throws -> CalibrationMethod {
        guard let method = table.first(where: { $0.name == name }) else {
            throw QuantizationError.unknownMethod(name, known: table.map(\.name))
        }
        return method
    }
}

/// The bit widths and method parameters of one calibration.
public struct QuantizationSettings: Sendable, Equatable {
    /// Bits of block weights.
    public var weightBits: Int
    /// Bits of block activations.
    public var activationBits: Int
    /// Bits of the patch embedding and head (weights and inputs).
    public var edgeBits: Int = 8
    /// TGQ groups G.
    public var groups: Int = 8
    /// LtSQ is used where the median of Ā exceeds this, that is where more than half of Ā's values do
    /// (a uniform quantizer otherwise).
    public var ltsqThreshold: Float = Self.defaultLtsqThreshold
    /// The default LtSQ threshold α.
    public static let defaultLtsqThreshold: Float = 0.5
    /// The bit widths settings take, for weights, activations and the edge layers.
    public static let bitRange = 2...16
    /// The numbers of TGQ groups settings take.
    public static let groupRange = 1...100_000
    /// The LtSQ thresholds settings take.
    public static let ltsqThresholdRange: ClosedRange<Float> = 0...1

    /// The first setting outside its range, described; nil when every one is inside.
    public var problem: String? {
        for (name, bits) in [("weight_bits", weightBits), ("activation_bits", activationBits), ("edge_bits", edgeBits)]
        where !Self.bitRange.contains(bits) {
            return "\(name) \(bits) (takes \(Self.bitRange.lowerBound) to \(Self.bitRange.upperBound))"
        }
        if !Self.groupRange.contains(groups) {
            return "groups \(groups) (takes \(Self.groupRange.lowerBound) to \(Self.groupRange.upperBound))"
        }
        if !Self.ltsqThresholdRange.contains(ltsqThreshold) { return "ltsq_threshold \(ltsqThreshold) (takes 0 to 1)" }
        return nil
    }

    /// Settings with the given bit widths and default parameters.
    public init(weightBits: Int, activationBits: Int) {
        self.weightBits = weightBits
        self.activationBits = activationBits
    }

    /// Parses `W4A8`-style names (case-insensitive).
    public init(named name: String) throws {
        let upper = name.uppercased()
        guard upper.hasPrefix("W"), let a = upper.firstIndex(of: "A"),
            let w = Int(upper[upper.index(after: upper.startIndex)..<a]),
            let activation = Int(upper[upper.index(after: a)...]), Self.bitRange.contains(w),
            Self.bitRange.contains(activation)
        else { throw QuantizationError.invalidSetting(name) }
        self.init(weightBits: w, activationBits: activation)
    }

    /// The `W4A8`-style name.
    public var name: String { "W\(weightBits)A\(activationBits)" }
}

/// Why quantization could not be set up.
public enum QuantizationError: Error, CustomStringConvertible, Equatable {
    /// A method name that is not in the table.
    case unknownMethod(String, known: [String])
    /// A bit setting that cannot be parsed.
    case invalidSetting(String)
    /// A calibration file that cannot be used.
    case invalidCalibrationFile(path: String, detail: String)
    /// Statistics without any observed value for a point.
    case noData(point: String)
    /// Statistics collected without the log distances of Ā that the method's searched LtSQ needs.
    case missingLogDistances(point: String, method: String)
    /// Statistics of the range pass alone, for a method that reads histograms.
    case missingHistograms(method: String)
    /// Statistics collected without the histogram of a point that the method fits a quantizer on.
    case missingHistogram(point: String, method: String)
    /// Statistics whose Ā was counted against another LtSQ threshold than the settings', or against
    /// none (nil), for a method that chooses LtSQ by it.
    case thresholdMismatch(statistics: Float?, settings: Float)

    /// A message that names the problem and what is accepted.
    public var description: String {
        switch self {
        case .unknownMethod(let name, let known):
            return "unknown method '\(name)'; methods: \(known.joined(separator: ", "))"
        case .invalidSetting(let name):
            return "invalid bit setting '\(name)' (expected e.g. W4A8: weight bits then activation bits, 2 to 16)"
        case .invalidCalibrationFile(let path, let detail):
            return "\(path): not a usable calibration file: \(detail)"
        case .noData(let point):
            return "no values were observed at \(point); calibrate on at least one image"
        case .missingLogDistances(let point, let method):
            return "method \(method) searches LtSQ's scale at \(point), but the statistics have no histogram of "
                + "-log2(1 - A_bar) there; collect them with log distances"
        case .missingHistograms(let method):
            return "method \(method) reads histograms, but the statistics hold only ranges; collect them with "
                + "the histogram pass"
        case .missingHistogram(let point, let method):
            return "method \(method) fits a uniform quantizer at \(point), but the statistics have no histogram "
                + "there (they were collected for methods that choose LtSQ there); collect them for \(method)"
        case .thresholdMismatch(let statistics, let settings):
            let counted = statistics.map { "against the LtSQ threshold \($0)" } ?? "against no LtSQ threshold"
            return "the statistics counted A_bar \(counted), the settings ask for \(settings); collect them with "
                + "the settings' threshold"
        }
    }
}
