import Checkpoint
import Cluster
import Foundation
import ImageData
import Quantization
import Vim

/// `qmamba table`: the paper's comparison table in one MPI job.
enum TableCommand: Command {
    static let name = "table"
    static let abstract = "Calibrate and evaluate every method at every bit setting in one job: the paper's table"
    static let discussion = """
        Loads the model once and collects calibration statistics once (they do not depend on the method or the bits). \
        For each setting and method, rank 0 fits the quantizers and sends them to every rank, and all ranks evaluate \
        their validation shards. Writes <prefix>.md and <prefix>.json: rows = methods (fp32 on top), columns = settings, \
        cells = top-1 (top-5). Every cell's counts are saved in <prefix>.progress/ as its evaluation goes, so a job \
        that was interrupted continues with --resume (calibration runs again; it gives the same quantizers).
        """
    static let options =
        ModelOptions.specs
        + DataOptions.specs(folderName: "calib", help: "calibration images (ImageNet layout, or flat with --labels)")
        + [
            .value("val", "DIR", "validation images (ImageNet layout)", required: true),
            .value("val-labels", "FILE", "label file for a flat validation folder"),
            .value("settings", "LIST", "bit settings", default: "W8A8,W6A6,W4A8,W4A4"),
            .value("methods", "LIST", "methods", default: "minmax,percentile,mse,mse+ltsq,mse+tgq,qmamba"),
            .value("output", "PREFIX", "write PREFIX.md and PREFIX.json", required: true),
            .value("save-calibrations", "DIR", "also write each cell's Q.json into DIR"),
            .value(
                "save-every", "N", "save each cell's progress in blocks of at most N validation images",
                default: "256"),
            .flag("resume", "continue from the progress saved by an interrupted table with the same settings"),
        ] + QuantizationOptions.parameterSpecs + Calibration.specs
    static let usesCluster = true

    static func run(_ arguments: ParsedArguments, context: CommandContext) throws {
        let cluster = context.cluster!
        let out = context.console
        let prefix = try arguments.required("output")
        let checkpoint = try arguments.required("checkpoint")
        let progressDirectory = prefix + ".progress"
        if cluster.isRoot {
            try OutputPath.check(prefix + ".md", inputs: [checkpoint])
            try OutputPath.check(prefix + ".json", inputs: [checkpoint])
            if FileManager.default.fileExists(atPath: progressDirectory) && !arguments.flag("resume") {
                throw EvaluationProgress.startingOver(progressDirectory, of: "table")
            }
        }
        let methods = try QuantizationOptions.methods(arguments)
        let settings = try arguments.string("settings")!.split(separator: ",").map { name in
            do {
                let parsed = try QuantizationSettings(named: String(name))
                return try QuantizationOptions.settings(
                    arguments, weightBits: parsed.weightBits, activationBits: parsed.activationBits)
            } catch let error as QuantizationError {
                throw CommandLineError.invalidValue(option: "settings", value: String(name), reason: "\(error)")
            }
        }
        if cluster.isRoot, let directory = arguments.string("save-calibrations") {
            for setting in settings {
                for method in methods {
                    try OutputPath.check("\(directory)/\(method.name)-\(setting.name).json", inputs: [checkpoint])
                }
            }
        }
        let started = Date()
        let (_, model) = try ModelOptions.load(arguments)
        // Before calibrating: a wrong --val should not cost the calibration first.
        let validation = try DataOptions.dataset(
            arguments, folderOption: "val", labelOption: "val-labels", cluster: cluster, subset: false,
            scoredWith: model.configuration.classCount, console: out)
        let calibration = try Calibration.collect(
            arguments, model: model, cluster: cluster, console: out, folderOption: "calib", reading: methods,
            discreteAThreshold: try QuantizationOptions.ltsqThreshold(arguments))
        let provenance = cluster.isRoot ? try calibration.provenance(checkpoint: checkpoint, model: model) : nil
        let transform = try DataOptions.transform(arguments, model: model)
        let runner = ShardRunner(
            dataset: validation, cluster: cluster, batchSize: try arguments.integer("batch-size")!,
            transform: transform, strict: arguments.flag("strict"), console: out)
        let blockSize = Evaluation.blockSize(
            images: validation.samples.count, saveEvery: try arguments.integer("save-every")!)
        /// Evaluates one cell with its progress in `<prefix>.progress/<name>`, tied to the checkpoint, the
        /// quantizers' bytes and the validation set (rank 0 keeps it).
        func evaluateCell(_ name: String, label: String, plan: QuantizationPlan?, planBytes: [UInt8]) throws
            -> Evaluation.Result
        {
            var progress: EvaluationProgress?
            // Rank 0, the one with the provenance (which holds the checkpoint's digest).
            if let provenance {
                let manager = FileManager.default
                if !manager.fileExists(atPath: progressDirectory) {
                    try manager.createDirectory(atPath: progressDirectory, withIntermediateDirectories: false)
                }
                var planDigest = SHA256()
                planDigest.update(planBytes)
                let directory = "\(progressDirectory)/\(name)"
                progress = try EvaluationProgress(
                    directory: directory,
                    fingerprint: EvaluationProgress.fingerprint(
                        digests: [provenance.checkpointSHA256] + (plan == nil ? [] : [planDigest.hexDigest()]),
                        dataset: validation,
                        transform: transform, strict: arguments.flag("strict")),
                    blockSize: blockSize, images: validation.samples.count,
                    resume: manager.fileExists(atPath: directory),
                    console: out)
            }
            return try Evaluation.run(
                model: model, plan: plan, runner: runner, label: label, progress: progress, blockSize: blockSize,
                keepsPredictions: false)
        }
        let fp32 = try evaluateCell("fp32", label: "fp32", plan: nil, planBytes: [])
        out.line(String(format: "fp32: top-1 %.2f%%, top-5 %.2f%%", fp32.top1Percent, fp32.top5Percent))
        var cells: [String: Evaluation.Result] = [:]
        for setting in settings {
            for method in methods {
                var bytes: [UInt8] = []
                if let provenance {
                    let plan = try QuantizationPlan.fit(
                        statistics: calibration.statistics, weights: model.weights, method: method, settings: setting)
                    bytes = Array(CalibrationFile(plan: plan, provenance: provenance).encoded)
                    if let directory = arguments.string("save-calibrations") {
                        try AtomicFile.write(Data(bytes), to: "\(directory)/\(method.name)-\(setting.name).json")
                    }
                }
                cluster.broadcast(&bytes)
                let plan = try CalibrationFile(data: Data(bytes), path: "\(method.name) \(setting.name)").plan
                let label = "\(method.name) \(setting.name)"
                let result = try evaluateCell(
                    "\(method.name)-\(setting.name)", label: label, plan: plan, planBytes: bytes)
                cells[label] = result
                out.line(
                    String(format: "%@: top-1 %.2f%%, top-5 %.2f%%", label, result.top1Percent, result.top5Percent))
            }
        }
        guard cluster.isRoot else { return }
        let table = ResultTable(
            methods: methods.map(\.name), settings: settings.map(\.name), fp32: fp32, cells: cells,
            checkpoint: (checkpoint as NSString).lastPathComponent,
            calibrationImages: Int(calibration.statistics.imageCount),
            validationImages: fp32.images, ranks: cluster.size, seconds: Date().timeIntervalSince(started),
            scanSampling: calibration.statistics.scanSampling.stride)
        try AtomicFile.write(Data(table.markdown.utf8), to: prefix + ".md")
        try AtomicFile.write(Data(table.json.text.utf8), to: prefix + ".json")
        out.event("result", ["table": table.json])
        out.line("")
        out.line(table.markdown)
        try? FileManager.default.removeItem(atPath: progressDirectory)
        out.line("wrote \(prefix).md and \(prefix).json")
    }
}

/// The paper-style table: rows = methods, columns = settings, cells = top-1 (top-5).
struct ResultTable {
    let methods: [String]
    let settings: [String]
    let fp32: Evaluation.Result
    let cells: [String: Evaluation.Result]
    let checkpoint: String
    let calibrationImages: Int
    let validationImages: Int
    let ranks: Int
    let seconds: Double
    /// One in this many of the scan's values went into the histograms (1: every value).
    let scanSampling: Int

    var markdown: String {
        func cell(_ r: Evaluation.Result) -> String { String(format: "%.2f (%.2f)", r.top1Percent, r.top5Percent) }
        var lines = [
            "Top-1 (top-5) accuracy in %, \(checkpoint), \(calibrationImages) calibration and \(validationImages) "
                + "validation images, \(ranks) rank\(ranks == 1 ? "" : "s"), \(String(format: "%.0f", seconds)) s."
                + (scanSampling == 1 ? "" : " Histograms counted 1 in \(scanSampling) of the scan's values."),
            "",
            "| method | " + settings.joined(separator: " | ") + " |",
            "|---|" + settings.map { _ in "---|" }.joined(),
            "| fp32 | " + settings.map { _ in cell(fp32) }.joined(separator: " | ") + " |",
        ]
        for method in methods {
            lines.append(
                "| \(method) | " + settings.map { cells["\(method) \($0)"].map(cell) ?? "–" }.joined(separator: " | ")
                    + " |")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    var json: CanonicalJSON {
        func entry(_ r: Evaluation.Result) -> CanonicalJSON {
            .object([
                "top1": .double(r.top1Percent), "top5": .double(r.top5Percent), "top1_correct": .integer(r.top1),
                "top5_correct": .integer(r.top5), "images": .integer(r.images), "loss": .double(r.meanLoss),
            ])
        }
        var rows: [String: CanonicalJSON] = [:]
        for method in methods {
            var row: [String: CanonicalJSON] = [:]
            for setting in settings { if let r = cells["\(method) \(setting)"] { row[setting] = entry(r) } }
            rows[method] = .object(row)
        }
        return .object([
            "tool": .string("qmamba \(QMambaCLI.version)"), "checkpoint": .string(checkpoint),
            "calibration_images": .integer(calibrationImages), "validation_images": .integer(validationImages),
            "ranks": .integer(ranks), "seconds": .double(seconds), "scan_sampling": .integer(scanSampling),
            "methods": .array(methods.map { .string($0) }),
            "settings": .array(settings.map { .string($0) }), "fp32": entry(fp32), "results": .object(rows),
        ])
    }
}
