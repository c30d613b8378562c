import Checkpoint
import Cluster
import Foundation
import ImageData
import Quantization
import Vim

/// `qmamba evaluate`: accuracy of the fp32 or fake-quantized model.
enum EvaluateCommand: Command {
    static let name = "evaluate"
    static let abstract = "Top-1/top-5 accuracy and loss of the fp32 or fake-quantized model on an image set"
    static let discussion = """
        Ranks evaluate contiguous shards; top-1 and top-5 counts and the loss (as fixed-point integers) are summed \
        across ranks, so every figure but the timing is identical for any number of ranks. With --quant, weights are \
        snapped to their grids and every activation point goes through its quantizer, Ā, B̄ and h inside the scan at \
        every time step. A file written by 'qmamba export' runs as it is, with its own quantizers (no --quant).
        """
    static let options =
        ModelOptions.specs
        + DataOptions.specs(folderName: "data", help: "evaluation images (ImageNet layout, or flat with --labels)")
        + [
            .value("quant", "FILE", "calibration file (Q.json) to fake-quantize the model with"),
            .value("json", "FILE", "write the results (R.json)"),
            .value("predictions", "FILE", "write every image's label, top-5 classes and loss (tab-separated)"),
            .value(
                "save-every", "N",
                "with --json, save progress in blocks of at most N images in R.json.progress/ so an interrupted run can resume",
                default: "256"),
            .flag("resume", "continue from the progress saved by an interrupted run with the same settings"),
        ]
    static let usesCluster = true

    static func run(_ arguments: ParsedArguments, context: CommandContext) throws {
        let cluster = context.cluster!
        let out = context.console
        let checkpoint = try arguments.required("checkpoint")
        for option in ["json", "predictions"] {
            if cluster.isRoot, let path = arguments.string(option) {
                try OutputPath.check(path, inputs: [checkpoint] + [arguments.string("quant")].compactMap { $0 })
            }
        }
        let saveEvery = try arguments.integer("save-every")!
        if arguments.flag("resume") && arguments.string("json") == nil {
            throw CommandLineError.invalidValue(
                option: "resume", value: "", reason: "needs --json: progress is kept beside the result file")
        }
        let (_, model, plan, planFile) = try ModelOptions.loadRunnable(arguments, console: out)
        let dataset = try DataOptions.dataset(
            arguments, folderOption: "data", cluster: cluster, scoredWith: model.configuration.classCount,
            console: out)
        let transform = try DataOptions.transform(arguments, model: model)
        let blockSize = Evaluation.blockSize(images: dataset.samples.count, saveEvery: saveEvery)
        let runner = ShardRunner(
            dataset: dataset, cluster: cluster, batchSize: try arguments.integer("batch-size")!,
            transform: transform, strict: arguments.flag("strict"), console: out)
        // Saved progress holds every image's prediction (about 150 bytes each), as does --predictions.
        for option in ["json", "predictions"] where cluster.isRoot {
            if let path = arguments.string(option) {
                try OutputPath.requireSpace(path, bytes: dataset.samples.count * 256)
            }
        }
        var progress: EvaluationProgress?
        if cluster.isRoot, let json = arguments.string("json") {
            let digests = try ([checkpoint] + [arguments.string("quant")].compactMap { $0 }).map {
                try SHA256.hexDigest(ofFile: $0)
            }
            let fingerprint = EvaluationProgress.fingerprint(
                digests: digests, dataset: dataset, transform: transform, strict: arguments.flag("strict"))
            progress = try EvaluationProgress(
                directory: json + ".progress", fingerprint: fingerprint, blockSize: blockSize,
                images: dataset.samples.count, resume: arguments.flag("resume"), console: out)
        }
        let setting = plan.map { "\($0.method.name) \($0.settings.name)" } ?? "fp32"
        out.line(
            "evaluating \(setting) on \(dataset.samples.count) images, \(cluster.size) rank\(cluster.size == 1 ? "" : "s")"
        )
        let result = try Evaluation.run(
            model: model, plan: plan, runner: runner, label: "evaluation", progress: progress,
            blockSize: arguments.string("json") == nil ? nil : blockSize)
        guard cluster.isRoot else { return }
        out.line(
            String(
                format: "%@: top-1 %.2f%% (%d/%d), top-5 %.2f%%, loss %.4f, %.1f images/s", setting, result.top1Percent,
                result.top1, result.images, result.top5Percent, result.meanLoss,
                Double(result.images) / max(result.seconds, 1e-9)))
        if result.resumedImages > 0 {
            out.line("\(result.resumedImages) of the images were evaluated by the interrupted run")
        }
        if result.skipped > 0 { out.line("\(result.skipped) unreadable images were skipped (see the warnings)") }
        if let path = arguments.string("predictions") {
            let lines = result.predictions.map { p in
                let name = dataset.samples[p.index].path
                return
                    "\(name)\t\(p.label)\t\(p.top5.map(String.init).joined(separator: ","))\t\(String(format: "%.6f", p.loss))"
            }
            try AtomicFile.write(
                Data((["path\tlabel\ttop5\tloss"] + lines).joined(separator: "\n").utf8 + [10]), to: path)
        }
        let document = ReportJSON.evaluation(
            result, checkpoint: checkpoint, data: try arguments.required("data"), plan: plan,
            quantPath: planFile, ranks: cluster.size)
        out.event("result", ["evaluation": document])
        if let path = arguments.string("json") {
            try AtomicFile.write(Data(document.text.utf8), to: path)
            progress?.remove()
            out.line("wrote \(path)")
        }
    }
}

/// JSON documents of results.
enum ReportJSON {
    static func evaluation(
        _ r: Evaluation.Result, checkpoint: String, data: String, plan: QuantizationPlan?, quantPath: String?,
        ranks: Int
    ) -> CanonicalJSON {
        var quantization: CanonicalJSON = .string("fp32")
        if let plan {
            quantization = .object([
                "file": .string(quantPath ?? ""), "method": .string(plan.method.name),
                "setting": .string(plan.settings.name),
            ])
        }
        return .object([
            "tool": .string("qmamba \(QMambaCLI.version)"),
            "checkpoint": .string((checkpoint as NSString).lastPathComponent),
            "data": .string(data),
            "quantization": quantization,
            "images": .integer(r.images),
            "skipped": .integer(r.skipped),
            "top1_correct": .integer(r.top1),
            "top5_correct": .integer(r.top5),
            "top1": .double(r.top1Percent),
            "top5": .double(r.top5Percent),
            "loss": .double(r.meanLoss),
            "seconds": .double(r.seconds),
            "images_per_s": .double(Double(r.images) / max(r.seconds, 1e-9)),
            "ranks": .integer(ranks),
            "per_rank": .array(
                r.rankTimes.enumerated().map { rank, t in
                    .object(["rank": .integer(rank), "images": .integer(t.images), "seconds": .double(t.seconds)])
                }),
        ])
    }
}
