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
        every time step.
        """
    static let options =
        ModelOptions.specs
        + DataOptions.specs(folderName: "data", help: "evaluation images (ImageNet layout, or flat with --labels)")
        + [
            .value("quant", "FILE", "calibration file (Q.json) to fake-quantize the model with"),
            .value("json", "FILE", "write the results (R.json)"),
            .value("predictions", "FILE", "write every image's label, top-5 classes and loss (tab-separated)"),
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
        let (_, model) = try ModelOptions.load(arguments)
        let plan = try QuantizationOptions.plan(arguments, model: model)
        let dataset = try DataOptions.dataset(arguments, folderOption: "data", cluster: cluster)
        let runner = ShardRunner(
            dataset: dataset, cluster: cluster, batchSize: try arguments.integer("batch-size")!,
            transform: try DataOptions.transform(arguments, model: model), strict: arguments.flag("strict"),
            console: out)
        let setting = plan.map { "\($0.method.name) \($0.settings.name)" } ?? "fp32"
        out.line(
            "evaluating \(setting) on \(dataset.samples.count) images, \(cluster.size) rank\(cluster.size == 1 ? "" : "s")"
        )
        let result = try Evaluation.run(
            model: model, plan: plan, runner: runner, label: "evaluation",
            keepPredictions: arguments.string("predictions") != nil)
        guard cluster.isRoot else { return }
        out.line(
            String(
                format: "%@: top-1 %.2f%% (%d/%d), top-5 %.2f%%, loss %.4f, %.1f images/s", setting, result.top1Percent,
                result.top1, result.images, result.top5Percent, result.meanLoss,
                Double(result.images) / max(result.seconds, 1e-9)))
        if result.skipped > 0 { out.line("\(result.skipped) unreadable images were skipped (see the warnings)") }
        if let path = arguments.string("predictions") {
            let lines = result.predictions.sorted { $0.index < $1.index }.map { p in
                let name = dataset.samples[p.index].path
                return
                    "\(name)\t\(p.label)\t\(p.top5.map(String.init).joined(separator: ","))\t\(String(format: "%.6f", p.loss))"
            }
            try AtomicFile.write(
                Data((["path\tlabel\ttop5\tloss"] + lines).joined(separator: "\n").utf8 + [10]), to: path)
        }
        if let path = arguments.string("json") {
            let document = ReportJSON.evaluation(
                result, checkpoint: checkpoint, data: try arguments.required("data"), plan: plan,
                quantPath: arguments.string("quant"), ranks: cluster.size)
            try AtomicFile.write(Data(document.text.utf8), to: path)
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
