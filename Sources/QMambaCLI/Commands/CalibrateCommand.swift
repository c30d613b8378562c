import Checkpoint
import Cluster
import Foundation
import ImageData
import Quantization
import TensorModule
import Vim

/// `qmamba calibrate`: distributed QMamba calibration.
enum CalibrateCommand: Command {
    static let name = "calibrate"
    static let abstract = "Calibrate a model on a sharded image set and write the fitted quantizers (Q.json)"
    static var discussion: String {
        """
        Every rank streams its shard of the calibration images through the fp32 model twice: once for the range of \
        every quantization point, once for fixed-grid histograms on the merged ranges. Ranks merge ranges with MIN/MAX \
        and counts with an integer SUM, so Q.json is byte-identical whatever the number of ranks. Rank 0 fits every \
        quantizer and writes Q.json atomically.

        METHODS:
        """ + "\n"
            + CalibrationMethod.table.map {
                "  \($0.name.padding(toLength: 17, withPad: " ", startingAt: 0))\($0.summary)"
            }
            .joined(separator: "\n")
    }
    static let options =
        ModelOptions.specs
        + DataOptions.specs(folderName: "data", help: "calibration images (ImageNet layout, or flat with --labels)")
        + QuantizationOptions.specs + Calibration.specs
        + [.value("output", "FILE", "where to write the calibration file", required: true)]
    static let usesCluster = true

    static func run(_ arguments: ParsedArguments, context: CommandContext) throws {
        let cluster = context.cluster!
        let out = context.console
        let output = try arguments.required("output")
        let (method, settings) = try QuantizationOptions.parse(arguments)
        let checkpoint = try arguments.required("checkpoint")
        if cluster.isRoot { try OutputPath.check(output, inputs: [checkpoint]) }
        let started = Date()
        let (_, model) = try ModelOptions.load(arguments)
        let statistics = try Calibration.collect(
            arguments, model: model, cluster: cluster, console: out, reading: [method],
            discreteAThreshold: settings.ltsqThreshold)
        guard cluster.isRoot else { return }
        let fitStart = Date()
        let plan = try QuantizationPlan.fit(
            statistics: statistics.statistics, weights: model.weights, method: method, settings: settings)
        let file = CalibrationFile(
            plan: plan, provenance: try statistics.provenance(checkpoint: checkpoint, model: model))
        try AtomicFile.write(file.encoded, to: output)
        out.event(
            "calibration",
            [
                "output": .string(output), "method": .string(method.name), "setting": .string(settings.name),
                "images": .integer(Int(statistics.statistics.imageCount)),
                "seconds": .double(Date().timeIntervalSince(started)),
            ])
        let ltsqPoints = plan.activations.filter { $0.quantizer.kind == "ltsq" }.count
        let ltsqNote =
            "; LtSQ at \(ltsqPoints) of \(plan.discreteAThresholdCounts.count) A_bar points "
            + "(median above \(settings.ltsqThreshold))"
        out.line(
            "fitted \(method.name) \(settings.name) in \(String(format: "%.1f", Date().timeIntervalSince(fitStart))) s"
                + (method.readsThresholdCounts ? ltsqNote : ""))
        out.line(
            "wrote \(output): \(plan.activations.count) activation and \(plan.weights.count) weight quantizers from "
                + "\(statistics.statistics.imageCount) images on \(cluster.size) rank\(cluster.size == 1 ? "" : "s") "
                + "in \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
    }
}

/// The options of a quantization setting.
enum QuantizationOptions {
    static let specs: [OptionSpec] =
        [
            .value("method", "NAME", "calibration method (see METHODS)", default: "qmamba"),
            .value("w-bits", "B", "weight bits of the blocks", default: "8"),
            .value("a-bits", "B", "activation bits of the blocks", default: "8"),
        ] + parameterSpecs

    /// The method parameters shared by every command that fits quantizers (`settings` reads them).
    static let parameterSpecs: [OptionSpec] = [
        .value("edge-bits", "B", "bits of the patch embedding and head, weights and inputs", default: "8"),
        .value("groups", "G", "TGQ groups of time steps", default: "8"),
        .value("ltsq-threshold", "ALPHA", "use LtSQ where the median of A_bar exceeds this", default: "0.5"),
    ]

    static func parse(_ arguments: ParsedArguments) throws -> (CalibrationMethod, QuantizationSettings) {
        let name = arguments.string("method")!
        let method: CalibrationMethod
        do {
            method = try CalibrationMethod.named(name)
        } catch {
            throw CommandLineError.invalidValue(option: "method", value: name, reason: "\(error)")
        }
        return (
            method,
            try settings(
                arguments, weightBits: try arguments.integer("w-bits", in: QuantizationSettings.bitRange)!,
                activationBits: try arguments.integer("a-bits", in: QuantizationSettings.bitRange)!)
        )
    }

    /// The comma-separated methods of `--methods`.
    static func methods(_ arguments: ParsedArguments) throws -> [CalibrationMethod] {
        try (arguments.string("methods") ?? "").split(separator: ",").map { name in
            do {
                return try CalibrationMethod.named(String(name))
            } catch {
                throw CommandLineError.invalidValue(option: "methods", value: String(name), reason: "\(error)")
            }
        }
    }

    /// The plan of `--quant`, checked against the model, or nil without the option.
    ///
    /// A file fitted on a checkpoint with other bytes than `--checkpoint` is used with a warning (on
    /// rank 0, which hashes the checkpoint): its weight scales and activation ranges belong to that
    /// checkpoint's weights, which may differ, but a re-saved or converted copy of the same weights
    /// (a `.pth` made `.safetensors`) is a fair use.
    static func plan(_ arguments: ParsedArguments, model: VimModel, console: Console) throws -> QuantizationPlan? {
        guard let path = arguments.string("quant") else { return nil }
        let file = try CalibrationFile(contentsOf: path)
        try file.validate(against: model.configuration, weights: model.weights, path: path)
        if console.enabled, let checkpoint = arguments.string("checkpoint") {
            let fitted = file.provenance
            let digest = try SHA256.hexDigest(ofFile: checkpoint)
            if digest != fitted.checkpointSHA256 {
                console.warning(
                    "\(path) was fitted on \(fitted.checkpointName) (SHA-256 \(fitted.checkpointSHA256.prefix(12))…), "
                        + "not on the bytes of \(checkpoint) (\(digest.prefix(12))…): its weight scales and activation "
                        + "ranges are those of that file's weights, right only if these are the same weights")
            }
        }
        return file.plan
    }

    static func settings(_ arguments: ParsedArguments, weightBits: Int, activationBits: Int) throws
        -> QuantizationSettings
    {
        var settings = QuantizationSettings(weightBits: weightBits, activationBits: activationBits)
        settings.edgeBits = try arguments.integer("edge-bits", in: QuantizationSettings.bitRange)!
        settings.groups = try arguments.integer("groups", in: QuantizationSettings.groupRange)!
        settings.ltsqThreshold = try ltsqThreshold(arguments)
        return settings
    }

    /// The LtSQ threshold of `--ltsq-threshold`.
    static func ltsqThreshold(_ arguments: ParsedArguments) throws -> Float {
        let text = arguments.string("ltsq-threshold")!
        guard let threshold = Float(text), QuantizationSettings.ltsqThresholdRange.contains(threshold) else {
            throw CommandLineError.invalidValue(
                option: "ltsq-threshold", value: text, reason: "expected a number in [0, 1]")
        }
        return threshold
    }
}

/// Distributed collection of calibration statistics.
enum Calibration {
    /// The options of statistics collection, shared by `calibrate`, `table`, `report` and `bench`.
    static let specs: [OptionSpec] = [
        .value(
            "scan-sampling", "K",
            "count one in K of the scan's A_bar, B_bar and h values in the histogram pass (1, 2, 4, 8 or 16; "
                + "ranges always see every value)", default: "1")
    ]

    /// The sampling of `--scan-sampling`, checked against the model's state size.
    static func scanSampling(_ arguments: ParsedArguments, model: VimModel) throws -> ScanSampling {
        let stride = try arguments.integer("scan-sampling")!
        if let problem = ScanSampling.problem(stride: stride, states: model.configuration.stateSize) {
            throw CommandLineError.invalidValue(option: "scan-sampling", value: String(stride), reason: problem)
        }
        return ScanSampling(stride: stride)
    }

    /// Merged statistics and what they were collected from.
    struct Collected {
        let statistics: CalibrationStatistics
        let dataset: ImageDataset
        let seed: UInt64
        let dataLocation: String

        func provenance(checkpoint: String, model: VimModel) throws -> CalibrationFile.Provenance {
            var listHash = SHA256()
            listHash.update(Array(dataset.listing.utf8))
            return CalibrationFile.Provenance(
                checkpointName: (checkpoint as NSString).lastPathComponent,
                checkpointSHA256: try SHA256.hexDigest(ofFile: checkpoint), configuration: model.configuration,
                data: dataLocation, imageCount: Int(statistics.imageCount), seed: seed,
                imageListSHA256: listHash.hexDigest(), tool: "qmamba \(QMambaCLI.version)",
                scanSampling: statistics.scanSampling)
        }
    }

    /// Runs the passes over the dataset's shard on every rank and merges the statistics: what `methods`
    /// read, or everything (`nil`, for reports). The range pass counts Ā against the LtSQ threshold
    /// `discreteAThreshold` if one of the methods chooses LtSQ by it; the histogram pass runs only if one
    /// of them reads histograms, and counts Ā only at the points where one of them reads Ā's histograms.
    static func collect(
        _ arguments: ParsedArguments, model: VimModel, cluster: Communicator, console: Console,
        folderOption: String = "data", reading methods: [CalibrationMethod]?, discreteAThreshold: Float
    ) throws -> Collected {
        let histograms = methods?.contains(where: \.readsHistograms) ?? true
        let thresholdCounts = methods?.contains(where: \.readsThresholdCounts) ?? true
        let dataset = try DataOptions.dataset(
            arguments, folderOption: folderOption, cluster: cluster, console: console)
        let sampling = try scanSampling(arguments, model: model)
        let runner = ShardRunner(
            dataset: dataset, cluster: cluster, batchSize: try arguments.integer("batch-size")!,
            transform: try DataOptions.transform(arguments, model: model), strict: arguments.flag("strict"),
            console: console)
        let scope =
            if !histograms { "; ranges only" } else if sampling == .everyValue { "" } else {
                "; histograms count 1 in \(sampling.stride) scan values"
            }
        console.line(
            "calibrating on \(dataset.samples.count) images, \(cluster.size) rank\(cluster.size == 1 ? "" : "s"), "
                + "model D \(model.configuration.embedDimension) x \(model.configuration.depth) layers" + scope)
        let ranges = StatisticsObserver(
            statistics: CalibrationStatistics(
                depth: model.configuration.depth, length: model.configuration.tokenCount,
                discreteAThreshold: thresholdCounts ? discreteAThreshold : nil),
            pass: .ranges)
        var skipped = try runner.run(label: histograms ? "pass 1/2 (ranges)" : "ranges (no histograms needed)") {
            batch in
            _ = try model(batch.images, hooks: ranges)
            ranges.countImages(batch.images.shape[0])
        }
        var (minima, maxima) = ranges.statistics.flatRanges
        cluster.allReduce(&minima, .minimum)
        cluster.allReduce(&maxima, .maximum)
        var flatThresholdCounts = ranges.statistics.flatThresholdCounts
        cluster.allReduce(&flatThresholdCounts, .sum)
        var statistics = ranges.statistics
        statistics.setThresholdCounts(flatThresholdCounts)
        if histograms {
            statistics.startHistograms(minima: minima, maxima: maxima, scanSampling: sampling, reading: methods)
            let discreteAPoints = statistics.points.filter { $0.role == .discreteA }.count
            if statistics.countedDiscreteAPoints < discreteAPoints {
                console.line(
                    "the histogram pass counts A_bar at \(statistics.countedDiscreteAPoints) of \(discreteAPoints) "
                        + "points: at the others more than half of A_bar is above \(discreteAThreshold), and LtSQ "
                        + "needs no histogram")
            }
            let counts = StatisticsObserver(statistics: statistics, pass: .histograms)
            skipped = try runner.run(label: "pass 2/2 (histograms)") { batch in
                _ = try model(batch.images, hooks: counts)
            }
            statistics = counts.statistics
        } else {
            statistics.setRanges(minima: minima, maxima: maxima)
        }
        // With no histograms this is the image count alone.
        var flat = statistics.flatCounts
        cluster.allReduce(&flat, .sum)
        var merged = statistics
        merged.setCounts(flat)
        if skipped > 0 { console.line("\(skipped) unreadable images were skipped (see the warnings)") }
        return Collected(
            statistics: merged, dataset: dataset, seed: try DataOptions.seed(arguments),
            dataLocation: try arguments.required(folderOption))
    }
}
