import Foundation

/// A small chart written as SVG text: axes with ticks, histograms as bars, lines, shaded bands and
/// marker lines. Everything is inline, so a report opens in a browser with no network.
struct SVGChart {
    /// A colour with a name a legend can show.
    struct Series {
        let label: String
        let color: String
    }

    let title: String
    let xLabel: String
    let yLabel: String
    var xRange: ClosedRange<Double>
    var yRange: ClosedRange<Double>
    var width = 560.0
    var height = 280.0
    private var marks: [String] = []
    private var legend: [Series] = []
    private let margin = (left: 62.0, right: 14.0, top: 30.0, bottom: 44.0)

    init(title: String, xLabel: String, yLabel: String, xRange: ClosedRange<Double>, yRange: ClosedRange<Double>) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.xRange = xRange.lowerBound < xRange.upperBound ? xRange : (xRange.lowerBound - 1)...(xRange.upperBound + 1)
        self.yRange = yRange.lowerBound < yRange.upperBound ? yRange : (yRange.lowerBound - 1)...(yRange.upperBound + 1)
    }

    private func x(_ value: Double) -> Double {
        let span = xRange.upperBound - xRange.lowerBound
        return margin.left + (value - xRange.lowerBound) / span * (width - margin.left - margin.right)
    }

    private func y(_ value: Double) -> Double {
        let span = yRange.upperBound - yRange.lowerBound
        let clamped = min(max(value, yRange.lowerBound), yRange.upperBound)
        return height - margin.bottom - (clamped - yRange.lowerBound) / span * (height - margin.top - margin.bottom)
    }

    private static func number(_ v: Double) -> String { String(format: "%.2f", v) }

    /// Text with the characters XML and HTML reserve replaced by entities.
    static func escaped(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;")
    }

    /// Bars from the axis to each height, `binWidth` wide in data units.
    mutating func bars(centers: [Double], heights: [Double], binWidth: Double, series: Series) {
        legend.append(series)
        for (c, h) in zip(centers, heights) where h > yRange.lowerBound {
            let left = x(c - binWidth / 2)
            let barWidth = max(x(c + binWidth / 2) - left, 0.6)
            let top = y(h)
            marks.append(
                "<rect x=\"\(Self.number(left))\" y=\"\(Self.number(top))\" width=\"\(Self.number(barWidth))\" "
                    + "height=\"\(Self.number(y(yRange.lowerBound) - top))\" fill=\"\(series.color)\"/>")
        }
    }

    /// A polyline through the points.
    mutating func line(xs: [Double], ys: [Double], series: Series, dashed: Bool = false) {
        legend.append(series)
        let points = zip(xs, ys).filter { $0.1.isFinite }.map { "\(Self.number(x($0.0))),\(Self.number(y($0.1)))" }
        marks.append(
            "<polyline fill=\"none\" stroke=\"\(series.color)\" stroke-width=\"1.6\"\(dashed ? " stroke-dasharray=\"5 3\"" : "") "
                + "points=\"\(points.joined(separator: " "))\"/>")
    }

    /// A shaded region between two curves.
    mutating func band(xs: [Double], lows: [Double], highs: [Double], series: Series) {
        legend.append(series)
        let upper = zip(xs, highs).map { "\(Self.number(x($0.0))),\(Self.number(y($0.1)))" }
        let lower = zip(xs, lows).reversed().map { "\(Self.number(x($0.0))),\(Self.number(y($0.1)))" }
        marks.append(
            "<polygon fill=\"\(series.color)\" fill-opacity=\"0.35\" stroke=\"\(series.color)\" stroke-width=\"0.8\" "
                + "points=\"\((upper + lower).joined(separator: " "))\"/>")
    }

    /// A vertical marker across the plot.
    mutating func verticalLine(at value: Double, color: String) {
        marks.append(
            "<line x1=\"\(Self.number(x(value)))\" x2=\"\(Self.number(x(value)))\" y1=\"\(Self.number(y(yRange.upperBound)))\" "
                + "y2=\"\(Self.number(y(yRange.lowerBound)))\" stroke=\"\(color)\" stroke-width=\"1\" stroke-dasharray=\"3 3\"/>"
        )
    }

    /// A horizontal segment from x0 to x1.
    mutating func segment(from x0: Double, to x1: Double, at value: Double, color: String) {
        marks.append(
            "<line x1=\"\(Self.number(x(x0)))\" x2=\"\(Self.number(x(x1)))\" y1=\"\(Self.number(y(value)))\" "
                + "y2=\"\(Self.number(y(value)))\" stroke=\"\(color)\" stroke-width=\"1.4\"/>")
    }

    /// Adds a legend entry without drawing anything (for marks drawn piecewise).
    mutating func addLegend(_ series: Series) { legend.append(series) }

    /// About five round tick values across a range.
    static func ticks(_ range: ClosedRange<Double>) -> [Double] {
        let span = range.upperBound - range.lowerBound
        guard span > 0, span.isFinite else { return [range.lowerBound] }
        let raw = span / 5
        let magnitude = pow(10, (log10(raw)).rounded(.down))
        let step = [1.0, 2, 2.5, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
        var values: [Double] = []
        var v = (range.lowerBound / step).rounded(.up) * step
        while v <= range.upperBound + step * 1e-9 {
            values.append(abs(v) < step * 1e-9 ? 0 : v)
            v += step
        }
        return values
    }

    private static func label(_ v: Double) -> String {
        let a = abs(v)
        if a == 0 { return "0" }
        if a >= 1e4 || a < 1e-3 { return String(format: "%.1e", v) }
        if a >= 100 { return String(format: "%.0f", v) }
        return String(format: "%.3g", v)
    }

    /// The finished SVG element.
    var svg: String {
        var out = [
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" "
                + "viewBox=\"0 0 \(Int(width)) \(Int(height))\" font-family=\"sans-serif\" font-size=\"11\">",
            "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>",
            "<text x=\"\(Self.number(width / 2))\" y=\"17\" text-anchor=\"middle\" font-size=\"13\" font-weight=\"bold\">"
                + "\(Self.escaped(title))</text>",
        ]
        let (left, right, bottom, top) = (
            x(xRange.lowerBound), x(xRange.upperBound), y(yRange.lowerBound), y(yRange.upperBound)
        )
        for t in Self.ticks(yRange) {
            out.append(
                "<line x1=\"\(Self.number(left))\" x2=\"\(Self.number(right))\" y1=\"\(Self.number(y(t)))\" y2=\"\(Self.number(y(t)))\" stroke=\"#e4e4e4\"/>"
                    + "<text x=\"\(Self.number(left - 4))\" y=\"\(Self.number(y(t) + 4))\" text-anchor=\"end\">\(Self.label(t))</text>"
            )
        }
        for t in Self.ticks(xRange) {
            out.append(
                "<line x1=\"\(Self.number(x(t)))\" x2=\"\(Self.number(x(t)))\" y1=\"\(Self.number(bottom))\" y2=\"\(Self.number(bottom + 4))\" stroke=\"black\"/>"
                    + "<text x=\"\(Self.number(x(t)))\" y=\"\(Self.number(bottom + 16))\" text-anchor=\"middle\">\(Self.label(t))</text>"
            )
        }
        out += marks
        out.append(
            "<rect x=\"\(Self.number(left))\" y=\"\(Self.number(top))\" width=\"\(Self.number(right - left))\" "
                + "height=\"\(Self.number(bottom - top))\" fill=\"none\" stroke=\"black\"/>")
        out.append(
            "<text x=\"\(Self.number((left + right) / 2))\" y=\"\(Self.number(height - 6))\" text-anchor=\"middle\">\(Self.escaped(xLabel))</text>"
        )
        out.append(
            "<text transform=\"translate(14 \(Self.number((top + bottom) / 2))) rotate(-90)\" text-anchor=\"middle\">\(Self.escaped(yLabel))</text>"
        )
        var seen = Set<String>()
        var row = 0.0
        for entry in legend where !entry.label.isEmpty && seen.insert(entry.label).inserted {
            let ly = top + 12 + row * 14
            out.append(
                "<rect x=\"\(Self.number(right - 150))\" y=\"\(Self.number(ly - 8))\" width=\"10\" height=\"10\" fill=\"\(entry.color)\"/>"
                    + "<text x=\"\(Self.number(right - 136))\" y=\"\(Self.number(ly + 1))\">\(Self.escaped(entry.label))</text>"
            )
            row += 1
        }
        out.append("</svg>")
        return out.joined(separator: "\n")
    }
}
