import Checkpoint
import Foundation
import ImageData
import Quantization
import TensorModule
import Vim

/// `qmamba bench`: how fast the forward pass and the image pipeline run on one core.
enum BenchCommand: Command {
    static let name = "bench"
    static let abstract =
        "Time the fp32 and fake-quantized forward passes, calibration observers, an sgemm of the model's shapes"
    static let discussion = """
        Runs in one process with one BLAS thread and reports per-core figures. Without --checkpoint the weights are
        random (drawn like the official initialisation) for the registered model named by --model. After an \
        untimed warm-up, each kind of pass runs once per round, in turn, for --repeat rounds, so that a change in \
        the machine's speed weighs on every ratio alike. The quantized \
        pass uses --quant, or else a W4A4 qmamba plan fitted on the benchmark's own synthetic batch, whose two \
        observer passes (ranges, histograms) are timed as the observer figure: the statistics that calibrating with \
        the plan's method collects (minmax needs the range pass alone), the histogram pass counting the scan values \
        --scan-sampling picks. A histogram pass of every histogram (what reports count: A_bar at every point, with \
        its log distances) is timed too. With --image-folder it also times decoding plus the evaluation transform over \
        every image in the folder.
        """
    static let options: [OptionSpec] =
        [
            .value("model", "NAME", "registered model to time with random weights", default: "vim-t"),
            .value("checkpoint", "FILE", "time this checkpoint's model instead"),
            .value("batch", "N", "images per forward pass", default: "8"),
            .value("repeat", "N", "rounds of timed passes, one of each kind per round", default: "3"),
            .value("quant", "FILE", "time the quantized pass with this calibration file (default: fit W4A4 qmamba)"),
            .value("image-folder", "DIR", "also time decode + transform over the images under DIR"),
            .value("json", "FILE", "write the figures as JSON"),
        ] + Calibration.specs
    static let usesCluster = false

    static func run(_ arguments: ParsedArguments, context: CommandContext) throws {
        let out = context.console
        let model: VimModel
        if let path = arguments.string("checkpoint") {
            model = try VimModel(loading: try ModelOptions.openCheckpoint(path))
        } else {
            let configuration = try VimRegistry.entry(named: arguments.string("model")!).configuration
            model = VimModel(configuration: configuration, weights: .random(for: configuration, seed: 1))
        }
        let batch = try arguments.integer("batch")!
        let repeats = try arguments.integer("repeat")!
        if let json = arguments.string("json") { try OutputPath.check(json, inputs: []) }
        // Checked before any timing: a file made for another model would index past the model's tensors.
        let givenPlan = try QuantizationOptions.plan(arguments, model: model, console: context.console)
        let c = model.configuration
        var figures: [String: Any] = [
            "batch": batch, "threads": 1, "model_gflop_per_image": 2 * Double(c.multiplyAccumulatesPerImage) / 1e9,
            "tokens": c.tokenCount, "embed_dim": c.embedDimension, "depth": c.depth,
        ]
        out.line(
            "model: D \(c.embedDimension), depth \(c.depth), \(c.tokenCount) tokens; batch \(batch), 1 BLAS thread")

        var generator = SplitMix64(seed: 3)
        let images = Tensor(
            shape: [batch, c.channels, c.imageSize, c.imageSize],
            scalars: (0..<(batch * c.channels * c.imageSize * c.imageSize)).map { _ in
                Float.random(in: -2...2, using: &generator)
            })
        let sampling = try Calibration.scanSampling(arguments, model: model)
        let method = try givenPlan?.method ?? CalibrationMethod.named("qmamba")
        let settings = givenPlan?.settings ?? QuantizationSettings(weightBits: 4, activationBits: 4)
        let threshold = method.readsThresholdCounts ? settings.ltsqThreshold : nil
        out.line(
            "warm-up, then \(repeats) round\(repeats == 1 ? "" : "s") of fp32, quantized, range and histogram passes")
        // Untimed: a warm-up pass, the ranges the histogram passes are binned on, and the plan.
        _ = try model(images)
        let ranges = try CalibrationStatistics.observeRanges(model, on: images, discreteAThreshold: threshold)
        let plan = try givenPlan ?? fittedPlan(ranges, model, images, method, settings, sampling)
        let (quantized, hooks) = Evaluation.quantized(model, plan: plan)
        _ = try quantized(images, hooks: hooks)

        // The passes are timed in turn, round after round, so that a change in the machine's speed (a shared
        // host's neighbours, the clock) weighs on each of them alike and their ratios stay steady.
        var time = PassTimes()
        for _ in 0..<repeats {
            time.forward += try seconds { _ = try model(images) }
            time.quantized += try seconds { _ = try quantized(images, hooks: hooks) }
            time.ranges += try seconds {
                _ = try CalibrationStatistics.observeRanges(model, on: images, discreteAThreshold: threshold)
            }
            time.allHistograms += try seconds {
                _ = try ranges.observeHistograms(model, on: images, scanSampling: sampling)
            }
            if method.readsHistograms {
                time.histograms += try seconds {
                    _ = try ranges.observeHistograms(model, on: images, scanSampling: sampling, reading: [method])
                }
            }
        }
        // A method that reads no histograms is shown what a histogram pass of every histogram takes.
        if !method.readsHistograms { time.histograms = time.allHistograms }
        let perPass = Double(repeats * batch)
        let imagesPerSecond = perPass / time.forward
        let achieved = imagesPerSecond * (figures["model_gflop_per_image"] as! Double)
        figures["fp32_images_per_s"] = imagesPerSecond
        figures["fp32_gflops"] = achieved

        // The model's largest product (in_proj) at its own shape: M = tokens, K = D, N = 2E.
        let x = Tensor(shape: [1, c.tokenCount, c.embedDimension], repeating: 0.5)
        let w = Tensor(shape: [2 * c.innerDimension, c.embedDimension], repeating: 0.25)
        _ = Linear.apply(x, weight: w)
        let gemmRepeats = max(1, 2_000_000_000 / (2 * c.tokenCount * c.embedDimension * 2 * c.innerDimension))
        let gemmSeconds = try seconds { for _ in 0..<gemmRepeats { _ = Linear.apply(x, weight: w) } }
        let sgemm = Double(gemmRepeats * 2 * c.tokenCount * c.embedDimension * 2 * c.innerDimension) / gemmSeconds / 1e9
        figures["sgemm_gflops"] = sgemm
        out.line(
            String(
                format: "fp32 forward: %.2f images/s (%.1f ms/image), %.1f GFLOP/s", imagesPerSecond,
                1000 / imagesPerSecond, achieved))
        out.line(
            String(
                format: "sgemm %dx%dx%d: %.1f GFLOP/s; forward reaches %.0f%% of it", c.tokenCount, c.embedDimension,
                2 * c.innerDimension, sgemm, 100 * achieved / sgemm))

        // What calibrating with the method runs: a method that reads no histograms needs the range pass alone.
        let (passes, observeSeconds) =
            method.readsHistograms ? (2, time.ranges + time.histograms) : (1, time.ranges)
        let observeRate = Double(passes) * perPass / observeSeconds
        figures["observe_method"] = method.name
        figures["observe_images_per_s"] = observeRate
        figures["observe_ranges_images_per_s"] = perPass / time.ranges
        figures["observe_histograms_images_per_s"] = perPass / time.histograms
        figures["observe_all_histograms_images_per_s"] = perPass / time.allHistograms
        figures["scan_sampling"] = sampling.stride
        let quantRate = perPass / time.quantized
        figures["quant_images_per_s"] = quantRate
        out.line(
            String(
                format: "%@ %@ forward: %.2f images/s, %.2f× the fp32 time", plan.method.name, plan.settings.name,
                quantRate, time.quantized / time.forward))
        let histogramRatio = time.histograms / time.forward
        out.line(
            String(
                format: "calibration observers (%@): %.2f images/s per pass, %.2f× the fp32 time (ranges %.2f×, %@%@)",
                method.name, observeRate, imagesPerSecond / observeRate, time.ranges / time.forward,
                method.readsHistograms
                    ? String(format: "histograms %.2f×", histogramRatio)
                    : String(format: "the only pass; a histogram pass would take %.2f×", histogramRatio),
                sampling == .everyValue ? "" : ", 1 in \(sampling.stride) scan values counted"))
        out.line(
            String(
                format: "histogram pass of every histogram (reports: A_bar at every point, with its log distances): "
                    + "%.2f× the fp32 time", time.allHistograms / time.forward))

        if let folder = arguments.string("image-folder") {
            let dataset = try ImageDataset(imageFolder: folder)
            let transform = EvaluationTransform(inputSize: c.imageSize)
            let decodeSeconds = try seconds {
                for sample in dataset.samples { _ = try transform(contentsOf: sample.path) }
            }
            let rate = Double(dataset.samples.count) / decodeSeconds
            figures["decode_transform_images_per_s"] = rate
            out.line(String(format: "decode + transform: %.1f images/s over %d images", rate, dataset.samples.count))
        }
        out.event(
            "result",
            [
                "bench": .object(
                    figures.mapValues { value in
                        (value as? Int).map { .integer($0) } ?? .double((value as? Double) ?? .nan)
                    })
            ])
        if let json = arguments.string("json") {
            let data = try JSONSerialization.data(withJSONObject: figures, options: [.prettyPrinted, .sortedKeys])
            try AtomicFile.write(data, to: json)
            out.line("wrote \(json)")
        }
    }

    /// The plan `method` fits to the statistics of `images` (the ranges alone where it reads no histograms).
    private static func fittedPlan(
        _ ranges: CalibrationStatistics, _ model: VimModel, _ images: Tensor, _ method: CalibrationMethod,
        _ settings: QuantizationSettings, _ sampling: ScanSampling
    ) throws -> QuantizationPlan {
        let statistics =
            method.readsHistograms
            ? try ranges.observeHistograms(model, on: images, scanSampling: sampling, reading: [method]) : ranges
        return try QuantizationPlan.fit(
            statistics: statistics, weights: model.weights, method: method, settings: settings)
    }

    private static func seconds(_ body: () throws -> Void) throws -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    /// Seconds spent in each kind of pass, summed over the rounds.
    private struct PassTimes {
        var forward = 0.0
        var quantized = 0.0
        var ranges = 0.0
        var histograms = 0.0
        var allHistograms = 0.0
    }
}
