import Foundation
import TestSupport
import Testing

#if canImport(FoundationXML)
    import FoundationXML
#endif

@Suite("qmamba report")
struct ReportTests {
    @Test("the report is one self-contained HTML page of well-formed SVG figures, with SQNR and accuracy tables")
    func report() throws {
        let directory = Fixtures.temporaryDirectory()
        let checkpoint = microCheckpoint
        let calibration = try QMambaExecutable.run(calibrateArguments(directory + "/q.json"))
        #expect(calibration.status == 0, "\(calibration.error)")
        let table =
            #"{"checkpoint": "vim_micro.pth", "validation_images": 12, "methods": ["qmamba"], "settings": ["W4A4"], "fp32": {"top1": 50.0, "top5": 100.0}, "results": {"qmamba": {"W4A4": {"top1": 41.67, "top5": 91.67}}}}"#
        try Data(table.utf8).write(to: URL(fileURLWithPath: directory + "/table.json"))
        guard
            let result = try QMambaExecutable.runMPI(
                ranks: 2,
                [
                    "report", "--checkpoint", checkpoint, "--quant", directory + "/q.json", "--data", images32,
                    "--output", directory + "/report", "--table", directory + "/table.json", "--methods",
                    "minmax,qmamba",
                ])
        else { return }
        #expect(result.status == 0, "\(result.error)")
        let html = try String(contentsOfFile: directory + "/report/index.html", encoding: .utf8)
        for expected in [
            "layer 0 Ā (A_bar)", "−log2(1 − Ā)", "layer 0 B̄ (B_bar)", "h: range per time step and the TGQ groups",
            "TGQ group grid range", "<td>Q.json: qmamba</td>", "<td>minmax</td>", "<td>41.67 (91.67)</td>",
        ] {
            #expect(html.contains(expected), "missing \(expected)")
        }
        #expect(!html.contains("src=") && !html.contains("href="), "the page loads nothing")
        let figures = html.components(separatedBy: "<svg ").dropFirst().map {
            "<svg " + $0.components(separatedBy: "</svg>")[0] + "</svg>"
        }
        #expect(figures.count >= 9)
        for figure in figures {
            let parser = XMLParser(data: Data(figure.utf8))
            #expect(parser.parse(), "an SVG figure is not well-formed XML: \(parser.parserError.map { "\($0)" } ?? "")")
        }
    }
}
