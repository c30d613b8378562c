import TensorModule
import Vim

/// What calibration keeps of the activations: per point, ranges and fixed-grid integer histograms.
///
/// Collection runs in two passes over the same images. The range pass records minima and maxima
/// (per time step for h) and, for LtSQ, how many of Ā's values exceed the LtSQ threshold; ranks merge
/// them with MIN, MAX and an integer SUM. The histogram pass counts values on grids built from those merged
/// ranges; ranks merge the counts with an integer SUM. Every merge is exact and independent of order,
/// so the statistics, and everything fitted from them, do not depend on how many ranks ran. Memory
/// depends on the model, never on the number of images.
///
/// The threshold counts decide between LtSQ and a uniform quantizer at each Ā point before the
/// histogram pass, so that pass counts Ā only where some method fits a quantizer on its histogram
/// (Ā is a third of the values it counts).
public struct CalibrationStatistics: Sendable {
    /// Bins of a per-tensor histogram.
    public static let tensorBins = 2048
    /// Bins of a per-time-step histogram of h.
    public static let stepBins = 256
    /// The grid of the histogram of −log2(1 − Ā): 64 bins per octave over [0, 32].
    public static let logDistanceGrid = LogDistanceGrid(octaves: Int(LongTailedSkewnessQuantizer.maximumLogDistance))

    /// The statistics of one point.
    public struct Point: Sendable {
        /// Which tensor.
        public let point: ObservationPoint
        /// How it is quantized.
        public let role: PointRole
        /// Smallest value seen, per time step for h (one entry otherwise).
        public var minimum: [Float]
        /// Largest value seen, per time step for h (one entry otherwise).
        public var maximum: [Float]
        /// Histograms on the merged ranges: one per time step for h, one otherwise (empty in the range pass).
        public var histograms: [Histogram] = []
        /// For Ā, when the histogram pass counted log distances: the histogram of −log2(1 − Ā).
        public var logHistogram: Histogram?
        /// For Ā: how many of its values exceeded the LtSQ threshold (from the range pass).
        public var aboveThreshold: ThresholdCount?
    }

    /// Per point, in `QuantizationPoints.activations` order.
    public var points: [Point]
    /// Images that went through the model, counted in the range pass (which every calibration runs).
    public var imageCount: Int64 = 0
    /// Which of the scan's Ā, B̄ and h values the histogram pass counts (ranges always cover every value).
    public private(set) var scanSampling: ScanSampling = .everyValue
    /// The LtSQ threshold α that the range pass counts Ā's values against (nil: they are not counted).
    public let discreteAThreshold: Float?
    let index: [ObservationPoint: Int]

    /// Empty range statistics for a model of `depth` blocks and `length` tokens, counting Ā's values
    /// above `discreteAThreshold` (the LtSQ threshold of the settings that will be fitted) unless nil.
    public init(depth: Int, length: Int, discreteAThreshold: Float?) {
        self.discreteAThreshold = discreteAThreshold
        points = QuantizationPoints.activations(depth: depth).map { point, role in
            let entries = role == .hiddenState ? length : 1
            return Point(
                point: point, role: role, minimum: [Float](repeating: .infinity, count: entries),
                maximum: [Float](repeating: -.infinity, count: entries),
                aboveThreshold: role == .discreteA
                    ? discreteAThreshold.map { ThresholdCount(threshold: $0, above: 0, total: 0) } : nil
            )
        }
        index = Dictionary(uniqueKeysWithValues: points.enumerated().map { ($1.point, $0) })
    }

    /// The statistics of `point`, if it is a quantization point.
    public subscript(point: ObservationPoint) -> Point? { index[point].map { points[$0] } }

    // MARK: - Range pass

    mutating func observeRange(_ i: Int, _ values: [Float]) {
        let (low, high) = values.withUnsafeBufferPointer(extremaIgnoringNaN)
        observeRange(i, step: 0, minimum: low, maximum: high)
    }

    mutating func observeRange(_ i: Int, step: Int, minimum: Float, maximum: Float) {
        points[i].minimum[step] = min(points[i].minimum[step], minimum)
        points[i].maximum[step] = max(points[i].maximum[step], maximum)
    }

    mutating func observeThresholdCount(_ i: Int, _ count: ThresholdCount) {
        precondition(count.threshold == discreteAThreshold)
        points[i].aboveThreshold!.above += count.above
        points[i].aboveThreshold!.total += count.total
    }

    /// Ā's threshold counts (values above, values seen, per Ā point) as a flat array, for a SUM
    /// reduction across ranks.
    public var flatThresholdCounts: [Int64] {
        points.flatMap { $0.aboveThreshold.map { [$0.above, $0.total] } ?? [] }
    }

    /// Replaces the threshold counts by merged ones (the layout of `flatThresholdCounts`).
    public mutating func setThresholdCounts(_ flat: [Int64]) {
        var offset = 0
        for i in points.indices where points[i].aboveThreshold != nil {
            points[i].aboveThreshold!.above = flat[offset]
            points[i].aboveThreshold!.total = flat[offset + 1]
            offset += 2
        }
    }

    /// The minima and maxima as flat arrays, for MIN and MAX reductions across ranks.
    public var flatRanges: (minima: [Double], maxima: [Double]) {
        (points.flatMap { $0.minimum.map(Double.init) }, points.flatMap { $0.maximum.map(Double.init) })
    }

    /// Whether the histogram pass ran (or is running): without it the statistics are ranges alone.
    public var hasHistograms: Bool { points.contains { !$0.histograms.isEmpty } }

    /// Replaces the ranges by merged ones (the layout of `flatRanges`).
    public mutating func setRanges(minima: [Double], maxima: [Double]) {
        var offset = 0
        for i in points.indices {
            let n = points[i].minimum.count
            points[i].minimum = minima[offset..<(offset + n)].map { Float($0) }
            points[i].maximum = maxima[offset..<(offset + n)].map { Float($0) }
            offset += n
        }
    }

    /// Replaces the ranges by merged ones (the layout of `flatRanges`) and prepares empty histograms on
    /// them, which will count the scan's values `scanSampling` picks: every histogram that fitting
    /// `methods` reads, or every one there is (`nil`, what reports and plots need).
    ///
    /// At an Ā point, where its merged threshold count says the median exceeds the threshold, LtSQ
    /// methods fit no histogram of Ā's values, and searched LtSQ reads its log distances instead; where
    /// it does not, they fit a uniform quantizer on Ā's values and need no log distances. Log distances
    /// are counted with Ā's values, since the kernel counts a value once, on both grids' refinement.
    public mutating func startHistograms(
        minima: [Double], maxima: [Double], scanSampling: ScanSampling = .everyValue,
        reading methods: [CalibrationMethod]? = nil
    ) {
        self.scanSampling = scanSampling
        setRanges(minima: minima, maxima: maxima)
        for i in points.indices {
            var (values, logDistances) = (true, false)
            if points[i].role == .discreteA {
                // Without threshold counts no method can choose LtSQ (fitting one refuses such statistics).
                let majorityAbove = points[i].aboveThreshold?.isMajorityAbove ?? false
                logDistances = methods?.contains { $0.readsLogDistances && majorityAbove } ?? true
                values =
                    logDistances
                    || methods?.contains { $0.readsDiscreteAHistogram(majorityAboveThreshold: majorityAbove) } ?? true
            }
            guard values else { continue }
            let n = points[i].minimum.count
            let bins = points[i].role == .hiddenState ? Self.stepBins : Self.tensorBins
            points[i].histograms = (0..<n).map { step in
                let (low, high) = (points[i].minimum[step], points[i].maximum[step])
                return low <= high
                    ? Histogram(lower: low, upper: high, bins: bins) : Histogram(lower: 0, upper: 0, bins: bins)
            }
            if logDistances {
                points[i].logHistogram = Histogram(
                    lower: 0, upper: Self.logDistanceGrid.upper, bins: Self.logDistanceGrid.bins)
            }
        }
    }

    /// The Ā points whose values the histogram pass counts.
    public var countedDiscreteAPoints: Int {
        points.filter { $0.role == .discreteA && !$0.histograms.isEmpty }.count
    }

    // MARK: - Histogram pass

    mutating func observeCounts(_ i: Int, _ values: [Float]) {
        points[i].histograms[0].add(values)
    }

    mutating func addCounts(_ i: Int, _ counts: QuantityCounts) {
        precondition(counts.counts.count == points[i].histograms.count)
        for (step, stepCounts) in counts.counts.enumerated() { points[i].histograms[step].add(counts: stepCounts) }
        if let logCounts = counts.logDistanceCounts { points[i].logHistogram!.add(counts: logCounts) }
    }

    /// Every count, flattened in a fixed order, for a SUM reduction across ranks (the image count last).
    public var flatCounts: [Int64] {
        var flat: [Int64] = []
        for point in points {
            for histogram in point.histograms { flat += histogram.counts }
            if let log = point.logHistogram { flat += log.counts }
        }
        return flat + [imageCount]
    }

    /// Replaces the counts by merged ones (the layout of `flatCounts`).
    public mutating func setCounts(_ flat: [Int64]) {
        var offset = 0
        func take(_ n: Int) -> [Int64] {
            defer { offset += n }
            return Array(flat[offset..<(offset + n)])
        }
        for i in points.indices {
            for h in points[i].histograms.indices {
                points[i].histograms[h].counts = take(points[i].histograms[h].counts.count)
            }
            if let log = points[i].logHistogram { points[i].logHistogram!.counts = take(log.counts.count) }
        }
        imageCount = flat[offset]
    }
}

/// Records calibration statistics from the forward pass: ranges in the first pass, histograms in
/// the second.
public final class StatisticsObserver: ForwardHooks {
    /// What the observer records.
    public enum Pass: Sendable {
        case ranges, histograms
    }

    /// The statistics gathered so far.
    public private(set) var statistics: CalibrationStatistics
    private let pass: Pass

    /// Starts recording into `statistics` (empty for the range pass, with histograms for the second).
    public init(statistics: CalibrationStatistics, pass: Pass) {
        self.statistics = statistics
        self.pass = pass
    }

    /// Counts the images of a finished batch.
    public func countImages(_ n: Int) { statistics.imageCount += Int64(n) }

    /// Records a tensor at a quantization point.
    public func process(_ point: ObservationPoint, _ tensor: inout Tensor) {
        guard let i = statistics.index[point] else { return }
        record(i, tensor.scalars)
    }

    /// Only the quantization points are recorded.
    public func processes(_ point: ObservationPoint) -> Bool { statistics.index[point] != nil }

    /// The range pass takes the extremes of Ā, B̄ and h from the vectorised scan.
    public func recordsScanExtremes(layer: Int, direction: ScanDirection) -> Bool { pass == .ranges }

    /// The range pass counts Ā's values above the statistics' LtSQ threshold, if they have one.
    public func discreteAThreshold(layer: Int, direction: ScanDirection) -> Float? {
        pass == .ranges ? statistics.discreteAThreshold : nil
    }

    /// Records the extremes of Ā, B̄ or h (h per time step) of one scan, and Ā's threshold count.
    public func processScanExtremes(_ point: ObservationPoint, _ extremes: ScanExtremes) {
        guard let i = statistics.index[point] else { return }
        precondition(extremes.minima.count == statistics.points[i].minimum.count)
        for step in extremes.minima.indices {
            statistics.observeRange(i, step: step, minimum: extremes.minima[step], maximum: extremes.maxima[step])
        }
        if let count = extremes.aboveThreshold { statistics.observeThresholdCount(i, count) }
    }

    /// The histogram pass has the vectorised scan count Ā (where it has a histogram, and also by log
    /// distance where it has that histogram), B̄ and h (per time step) on the histograms' grids.
    public func scanBinning(layer: Int, direction: ScanDirection) -> ScanBinning? {
        guard pass == .histograms else { return nil }
        func binning(_ site: ObservationPoint.Site) -> QuantityBinning? {
            let i = statistics.index[ObservationPoint(layer: layer, direction: direction, site)]!
            let point = statistics.points[i]
            guard !point.histograms.isEmpty else { return nil }
            return QuantityBinning(
                grids: point.histograms.map(\.grid),
                logDistance: point.logHistogram == nil ? nil : CalibrationStatistics.logDistanceGrid,
                sampling: statistics.scanSampling)
        }
        return ScanBinning(
            discreteA: binning(.discreteA), discreteB: binning(.discreteB), hiddenState: binning(.hiddenState))
    }

    /// Adds the scan's counts of Ā, B̄ or h to the histograms.
    public func processScanCounts(_ point: ObservationPoint, _ counts: QuantityCounts) {
        guard let i = statistics.index[point] else { return }
        statistics.addCounts(i, counts)
    }

    private func record(_ i: Int, _ values: [Float]) {
        switch pass {
        case .ranges: statistics.observeRange(i, values)
        case .histograms: statistics.observeCounts(i, values)
        }
    }
}

extension CalibrationStatistics {
    /// The statistics of `images` in this process: a range pass counting Ā against `discreteAThreshold`,
    /// then a histogram pass that counts the scan's values `scanSampling` picks into the histograms
    /// `methods` read (every histogram for nil): what a distributed calibration does with merges
    /// between and after the passes.
    public static func observe(
        _ model: VimModel, on images: Tensor, discreteAThreshold: Float? = QuantizationSettings.defaultLtsqThreshold,
        scanSampling: ScanSampling = .everyValue, reading methods: [CalibrationMethod]? = nil
    ) throws -> CalibrationStatistics {
        try observeRanges(model, on: images, discreteAThreshold: discreteAThreshold).observeHistograms(
            model, on: images, scanSampling: scanSampling, reading: methods)
    }

    /// The range pass over `images`: statistics with every point's extremes, Ā's counts above
    /// `discreteAThreshold` (unless nil) and the image count, no histograms.
    public static func observeRanges(
        _ model: VimModel, on images: Tensor, discreteAThreshold: Float? = QuantizationSettings.defaultLtsqThreshold
    ) throws -> CalibrationStatistics {
        let c = model.configuration
        let ranges = StatisticsObserver(
            statistics: CalibrationStatistics(
                depth: c.depth, length: c.tokenCount, discreteAThreshold: discreteAThreshold),
            pass: .ranges)
        _ = try model(images, hooks: ranges)
        ranges.countImages(images.shape[0])
        return ranges.statistics
    }

    /// The histogram pass over `images` on grids built from these statistics' ranges, counting the scan's
    /// values `scanSampling` picks into the histograms `methods` read (every histogram for nil).
    public func observeHistograms(
        _ model: VimModel, on images: Tensor, scanSampling: ScanSampling = .everyValue,
        reading methods: [CalibrationMethod]? = nil
    ) throws -> CalibrationStatistics {
        var statistics = self
        let flat = statistics.flatRanges
        statistics.startHistograms(
            minima: flat.minima, maxima: flat.maxima, scanSampling: scanSampling, reading: methods)
        let counts = StatisticsObserver(statistics: statistics, pass: .histograms)
        _ = try model(images, hooks: counts)
        return counts.statistics
    }
}
