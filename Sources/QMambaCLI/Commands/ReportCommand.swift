import Checkpoint
import Foundation
import Quantization
import Vim

/// `qmamba report`: an HTML page of the distributions QMamba is about, and of how well each method
/// quantizes them.
enum ReportCommand: Command {
    static let name = "report"
    static let abstract = "Write an HTML report: distributions of A_bar, B_bar and h, TGQ groups, SQNR per method"
    static let discussion = """
        Observes the images of --data like a calibration (ranks share the work), then writes DIR/index.html with SVG \
        figures drawn by the tool: histograms of A_bar, B_bar and h_t for the chosen layers (the paper's Figure 1), \
        the range of h_t at every time step with the TGQ group boundaries and grids of --quant, the \
        signal-to-quantization-noise ratio of every A_bar, B_bar and h point for each method of --methods fitted \
        on the same statistics at the setting of --quant, and the accuracy table of --table (the .json of \
        'qmamba table'). The page needs no network.
        """
    static let options =
        ModelOptions.specs
        + DataOptions.specs(folderName: "data", help: "images to observe (ImageNet layout, or flat with --labels)")
        + [
            .value("quant", "FILE", "calibration file (Q.json) whose quantizers are drawn", required: true),
            .value("output", "DIR", "directory for index.html (created if missing)", required: true),
            .value("layers", "LIST", "blocks to draw, comma-separated (default: first, middle, last)"),
            .value("methods", "LIST", "methods to compare by SQNR", default: "minmax,mse,mse+ltsq,mse+tgq,qmamba"),
            .value("table", "FILE", "accuracy table to include (the .json written by 'qmamba table')"),
        ] + Calibration.specs
    static let usesCluster = true

    static func run(_ arguments: ParsedArguments, context: CommandContext) throws {
        let cluster = context.cluster!
        let out = context.console
        let directory = try arguments.required("output")
        let checkpoint = try arguments.required("checkpoint")
        let page = directory + "/index.html"
        if cluster.isRoot {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try OutputPath.check(page, inputs: [checkpoint])
        }
        let (_, model) = try ModelOptions.load(arguments)
        let plan = try QuantizationOptions.plan(arguments, model: model, console: out)!
        let depth = model.configuration.depth
        let layers = try layerList(arguments, depth: depth)
        let methods = try QuantizationOptions.methods(arguments)
        let table = try arguments.string("table").map { path -> [String: Any] in
            guard let data = FileManager.default.contents(atPath: path),
                let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any], object["results"] != nil
            else { throw CommandFailure("\(path): not a table written by 'qmamba table'") }
            return object
        }
        // Everything: the plots show histograms, and the SQNR of LtSQ points is measured on Ā's log distances.
        let collected = try Calibration.collect(
            arguments, model: model, cluster: cluster, console: out, reading: nil,
            discreteAThreshold: plan.settings.ltsqThreshold)
        guard cluster.isRoot else { return }
        var compared: [(label: String, sqnr: [ObservationPoint: Double])] = [
            ("Q.json: \(plan.method.name)", plan.signalToQuantizationNoise(collected.statistics))
        ]
        for method in methods {
            let fitted = try QuantizationPlan.fit(
                statistics: collected.statistics, weights: model.weights, method: method, settings: plan.settings)
            compared.append((method.name, fitted.signalToQuantizationNoise(collected.statistics)))
        }
        let html = ReportPage(
            checkpoint: (checkpoint as NSString).lastPathComponent, configuration: model.configuration, plan: plan,
            statistics: collected.statistics, layers: layers, compared: compared, table: table
        ).html
        try AtomicFile.write(Data(html.utf8), to: page)
        out.line("wrote \(page)")
        out.event("result", ["report": .object(["output": .string(page)])])
    }

    static func layerList(_ arguments: ParsedArguments, depth: Int) throws -> [Int] {
        guard let text = arguments.string("layers") else { return Array(Set([0, depth / 2, depth - 1])).sorted() }
        return try text.split(separator: ",").map { item in
            guard let layer = Int(item.trimmingCharacters(in: .whitespaces)), (0..<depth).contains(layer) else {
                throw CommandLineError.invalidValue(
                    option: "layers", value: text, reason: "expected block numbers from 0 to \(depth - 1)")
            }
            return layer
        }
    }
}

/// The HTML of a report.
struct ReportPage {
    let checkpoint: String
    let configuration: VimConfiguration
    let plan: QuantizationPlan
    let statistics: CalibrationStatistics
    let layers: [Int]
    let compared: [(label: String, sqnr: [ObservationPoint: Double])]
    let table: [String: Any]?

    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]

    /// Counts regrouped onto `bins` equal bins over [lower, upper], from histograms on any grids.
    static func rebinned(_ histograms: [Histogram], bins: Int) -> (centers: [Double], counts: [Double], width: Double)?
    {
        let occupied = histograms.filter { $0.counts.contains { $0 > 0 } }
        guard let lower = occupied.map(\.lower).min(), let upper = occupied.map(\.upper).max(), upper > lower else {
            return nil
        }
        let width = (Double(upper) - Double(lower)) / Double(bins)
        var counts = [Double](repeating: 0, count: bins)
        for histogram in occupied {
            for (bin, count) in histogram.counts.enumerated() where count > 0 {
                let target = Int((Double(histogram.center(bin)) - Double(lower)) / width)
                counts[min(max(target, 0), bins - 1)] += Double(count)
            }
        }
        return ((0..<bins).map { Double(lower) + (Double($0) + 0.5) * width }, counts, width)
    }

    private func quantizer(_ point: ObservationPoint) -> ActivationQuantizer? {
        plan.activations.first { $0.point == point }?.quantizer
    }

    /// A histogram chart with log counts and, when there are few enough, the grid's levels.
    private func histogramChart(_ title: String, _ histograms: [Histogram], xLabel: String, levels: [Double]) -> String
    {
        guard let (centers, counts, width) = Self.rebinned(histograms, bins: 120) else { return "<p>No values.</p>" }
        let heights = counts.map { log10(1 + $0) }
        var chart = SVGChart(
            title: title, xLabel: xLabel, yLabel: "log10(1 + count)",
            xRange: (centers.first! - width / 2)...(centers.last! + width / 2), yRange: 0...max(heights.max()!, 1))
        chart.bars(
            centers: centers, heights: heights, binWidth: width, series: .init(label: "observed", color: "#4c72b0"))
        let inside = levels.filter { chart.xRange.contains($0) }
        if !inside.isEmpty && inside.count <= 64 {
            for level in inside { chart.verticalLine(at: level, color: "#d62728") }
            chart.addLegend(.init(label: "grid levels of Q.json", color: "#d62728"))
        }
        return chart.svg
    }

    private static func levels(of quantizer: UniformQuantizer) -> [Double] {
        quantizer.codeRange.map { Double(quantizer.value(ofCode: $0)) }
    }

    private func distributions(layer: Int) -> String {
        var figures: [String] = []
        let a = ObservationPoint(layer: layer, direction: .forward, .discreteA)
        if let entry = statistics[a] {
            var linear: [Double] = []
            var logLevels: [Double] = []
            switch quantizer(a) {
            case .longTailed(let q)?:
                let grid = q.grid
                linear = (0..<(1 << q.bits)).map { Double(grid.value(ofCode: $0)) }
                logLevels = (0..<(1 << q.bits)).map { Double($0) - Double(q.logScale) }
            case .uniform(let q)?:
                linear = Self.levels(of: q)
                logLevels = linear.filter { $0 < 1 }.map { -log2(1 - $0) }
            default: break
            }
            figures.append(histogramChart("layer \(layer) Ā (A_bar)", entry.histograms, xLabel: "Ā", levels: linear))
            if let log = entry.logHistogram {
                figures.append(
                    histogramChart(
                        "layer \(layer) −log2(1 − Ā): where LtSQ's grid lies", [log], xLabel: "−log2(1 − Ā)",
                        levels: logLevels))
            }
        }
        let b = ObservationPoint(layer: layer, direction: .forward, .discreteB)
        if let entry = statistics[b] {
            var levels: [Double] = []
            if case .uniform(let q)? = quantizer(b) { levels = Self.levels(of: q) }
            figures.append(histogramChart("layer \(layer) B̄ (B_bar)", entry.histograms, xLabel: "B̄", levels: levels))
        }
        let h = ObservationPoint(layer: layer, direction: .forward, .hiddenState)
        if let entry = statistics[h] {
            figures.append(
                histogramChart("layer \(layer) h, all time steps", entry.histograms, xLabel: "h", levels: []))
            figures.append(hiddenStateRange(layer: layer, entry))
        }
        return figures.joined(separator: "\n")
    }

    /// h's range at every step, with the TGQ groups: boundaries and each group's grid range.
    private func hiddenStateRange(layer: Int, _ entry: CalibrationStatistics.Point) -> String {
        let steps = entry.minimum.indices.map(Double.init)
        let lows = entry.minimum.map(Double.init)
        let highs = entry.maximum.map(Double.init)
        let finite = (lows + highs).filter(\.isFinite)
        guard let low = finite.min(), let high = finite.max() else { return "" }
        var chart = SVGChart(
            title: "layer \(layer) h: range per time step and the TGQ groups", xLabel: "time step t",
            yLabel: "h", xRange: 0...Double(max(steps.count - 1, 1)), yRange: low...high)
        chart.band(xs: steps, lows: lows, highs: highs, series: .init(label: "observed min … max", color: "#4c72b0"))
        switch quantizer(ObservationPoint(layer: layer, direction: .forward, .hiddenState)) {
        case .temporalGroups(let tgq)?:
            for group in tgq.groups {
                if group.steps.lowerBound > 0 {
                    chart.verticalLine(at: Double(group.steps.lowerBound) - 0.5, color: "#444")
                }
                let codes = group.quantizer.codeRange
                let x0 = Double(group.steps.lowerBound) - 0.5
                let x1 = Double(group.steps.upperBound) - 0.5
                chart.segment(
                    from: x0, to: x1, at: Double(group.quantizer.value(ofCode: codes.lowerBound)), color: "#d62728")
                chart.segment(
                    from: x0, to: x1, at: Double(group.quantizer.value(ofCode: codes.upperBound)), color: "#d62728")
            }
            chart.addLegend(.init(label: "TGQ group grid range", color: "#d62728"))
        case .uniform(let q)?:
            let codes = q.codeRange
            chart.segment(from: 0, to: steps.last ?? 0, at: Double(q.value(ofCode: codes.lowerBound)), color: "#d62728")
            chart.segment(from: 0, to: steps.last ?? 0, at: Double(q.value(ofCode: codes.upperBound)), color: "#d62728")
            chart.addLegend(.init(label: "per-tensor grid range", color: "#d62728"))
        default: break
        }
        return chart.svg
    }

    private func sqnrChart(_ site: ObservationPoint.Site, title: String) -> String {
        let layers = Array(0..<configuration.depth)
        let values = compared.map { entry in
            layers.map { entry.sqnr[ObservationPoint(layer: $0, direction: .forward, site)] ?? .nan }
        }
        let finite = values.flatMap { $0 }.filter(\.isFinite)
        guard let low = finite.min(), let high = finite.max() else { return "" }
        var chart = SVGChart(
            title: title, xLabel: "block", yLabel: "SQNR (dB)", xRange: 0...Double(max(configuration.depth - 1, 1)),
            yRange: (low - 1)...(high + 1))
        for (i, entry) in compared.enumerated() {
            chart.line(
                xs: layers.map(Double.init), ys: values[i],
                series: .init(label: entry.label, color: Self.palette[i % Self.palette.count]), dashed: i == 0)
        }
        return chart.svg
    }

    private func sqnrTable() -> String {
        let sites: [(ObservationPoint.Site?, String)] = [
            (.discreteA, "Ā"), (.discreteB, "B̄"), (.hiddenState, "h"), (nil, "all points"),
        ]
        var rows = ["<table><tr><th>method</th>" + sites.map { "<th>\($0.1)</th>" }.joined() + "</tr>"]
        for entry in compared {
            var cells = ""
            for (site, _) in sites {
                let values = entry.sqnr.filter { site == nil || $0.key.site == site }.map(\.value)
                cells +=
                    values.isEmpty
                    ? "<td>–</td>" : "<td>\(String(format: "%.1f", values.reduce(0, +) / Double(values.count)))</td>"
            }
            rows.append("<tr><td>\(SVGChart.escaped(entry.label))</td>\(cells)</tr>")
        }
        return rows.joined(separator: "\n") + "</table>"
    }

    private func accuracyTable() -> String {
        guard let table, let methods = table["methods"] as? [String], let settings = table["settings"] as? [String],
            let results = table["results"] as? [String: [String: [String: Any]]]
        else { return "<p>No accuracy table given (pass --table with the .json of <code>qmamba table</code>).</p>" }
        func cell(_ r: [String: Any]?) -> String {
            guard let r, let top1 = (r["top1"] as? NSNumber)?.doubleValue,
                let top5 = (r["top5"] as? NSNumber)?.doubleValue
            else { return "<td>–</td>" }
            return String(format: "<td>%.2f (%.2f)</td>", top1, top5)
        }
        var rows = [
            "<table><tr><th>method</th>" + settings.map { "<th>\(SVGChart.escaped($0))</th>" }.joined() + "</tr>"
        ]
        let fp32 = table["fp32"] as? [String: Any]
        rows.append("<tr><td>fp32</td>" + settings.map { _ in cell(fp32) }.joined() + "</tr>")
        for method in methods {
            rows.append(
                "<tr><td>\(SVGChart.escaped(method))</td>" + settings.map { cell(results[method]?[$0]) }.joined()
                    + "</tr>")
        }
        let images = (table["validation_images"] as? Int).map { " on \($0) validation images" } ?? ""
        return
            "<p>Top-1 (top-5) accuracy in %\(images), from \(SVGChart.escaped(table["checkpoint"] as? String ?? "")).</p>"
            + rows.joined(separator: "\n") + "</table>"
    }

    var html: String {
        let c = configuration
        var body = [
            "<h1>QMamba report: \(SVGChart.escaped(checkpoint))</h1>",
            "<p>Vim, D \(c.embedDimension), \(c.depth) blocks, \(c.tokenCount) tokens. Quantization: "
                + "\(SVGChart.escaped(plan.method.name)) \(plan.settings.name), \(plan.settings.groups) TGQ groups. "
                + "Statistics of \(statistics.imageCount) images; figures show the forward scan direction.</p>",
            "<h2>Distributions of Ā, B̄ and h (the paper's Figure 1)</h2>",
        ]
        for layer in layers {
            body.append("<h3>Block \(layer)</h3><div class=\"row\">\(distributions(layer: layer))</div>")
        }
        body += [
            "<h2>Quantization error per point</h2>",
            "<p>Signal-to-quantization-noise ratio on the observed histograms, forward direction, every block; each "
                + "method fitted on the same statistics at \(plan.settings.name). SQNR of Ā itself favours uniform "
                + "grids, whose error is smallest where Ā is large in absolute terms; LtSQ spends its codes on the "
                + "relative precision of 1 − Ā near 1, which the state update h_t = Ā h_{t−1} + … compounds over "
                + "time steps (Docs/METHODS.md). Means over both directions:</p>",
            sqnrTable(),
            "<div class=\"row\">",
            sqnrChart(.discreteA, title: "Ā: SQNR per block"),
            sqnrChart(.discreteB, title: "B̄: SQNR per block"),
            sqnrChart(.hiddenState, title: "h: SQNR per block"),
            "</div>",
            "<h2>Accuracy</h2>",
            accuracyTable(),
            "<p class=\"small\">Written by qmamba \(QMambaCLI.version).</p>",
        ]
        return """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>QMamba report: \(SVGChart.escaped(checkpoint))</title>
            <style>
            body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1800px; }
            .row { display: flex; flex-wrap: wrap; gap: 12px; }
            table { border-collapse: collapse; margin: 8px 0 16px; }
            td, th { border: 1px solid #bbb; padding: 3px 8px; text-align: right; }
            td:first-child, th:first-child { text-align: left; }
            .small { color: #777; font-size: 12px; }
            </style></head><body>
            \(body.joined(separator: "\n"))
            </body></html>

            """
    }
}
