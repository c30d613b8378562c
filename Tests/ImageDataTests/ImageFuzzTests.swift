import CZlib
import Foundation
import TestSupport
import Testing

@testable import ImageData

/// Mutation fuzzing of the decoders and the evaluation transform: each damaged image must decode
/// (libjpeg-turbo recovers from much) or be refused with an `ImageError` naming the file.
@Suite("Fuzzed images")
struct ImageFuzzTests {
    /// Decodes and preprocesses as evaluation does, so odd decoded sizes reach the resize too.
    static func decodeAndTransform(_ bytes: [UInt8], path: String) throws {
        let image = try ImageDecoder.decode(Data(bytes), path: path)
        _ = EvaluationTransform().normalize(try EvaluationTransform().crop(image, path: path))
    }

    /// Recomputes every chunk's CRC, so a mutation inside a chunk reaches the decoder instead of
    /// stopping at libpng's checksum test.
    static func withValidChunkCRCs(_ png: [UInt8]) -> [UInt8] {
        var bytes = png
        var at = 8
        while at + 12 <= bytes.count {
            let length = Int(bytes[at]) << 24 | Int(bytes[at + 1]) << 16 | Int(bytes[at + 2]) << 8 | Int(bytes[at + 3])
            guard length <= bytes.count - at - 12 else { break }
            let crc = bytes.withUnsafeBufferPointer { UInt32(crc32(0, $0.baseAddress! + at + 4, uInt(length + 4))) }
            for k in 0..<4 { bytes[at + 8 + length + k] = UInt8(truncatingIfNeeded: crc >> (24 - 8 * UInt32(k))) }
            at += 12 + length
        }
        return bytes
    }

    static func fuzz(_ files: [String], cases: Int, seed: UInt64, title: String, repair: ([UInt8]) -> [UInt8]) throws {
        let originals = try files.map { [UInt8](try Data(contentsOf: URL(fileURLWithPath: Fixtures.bundled($0)))) }
        var mutator = Mutator(seed: seed)
        var tally = FuzzTally()
        for index in 0..<cases {
            let which = index % originals.count
            let path = "fuzzed-\(index)-\(files[which].split(separator: "/").last!)"
            let mutated = mutator.mutate(originals[which], focus: 0..<min(originals[which].count, 1024))
            let bytes = mutator.below(3) == 0 ? mutated : repair(mutated)
            tally.run(path, { try decodeAndTransform(bytes, path: path) }) { error in
                error is ImageError && "\(error)".contains(path)
            }
        }
        print(tally.summary(title))
        #expect(tally.failures == [])
        #expect(tally.refused > 0 && tally.accepted > 0)
    }

    @Test("mutated JPEGs (baseline, progressive, grey, CMYK) decode or are refused")
    func mutatedJPEGs() throws {
        let photos = ["astronaut_cmyk.jpg", "camera_gray.jpg", "chelsea.jpg", "coffee_progressive.jpg"].map {
            "photos/" + $0
        }
        try Self.fuzz(photos, cases: FuzzTally.caseCount(standard: 1600), seed: 11, title: "JPEG") { $0 }
    }

    @Test("mutated PNGs of every colour type and depth decode or are refused")
    func mutatedPNGs() throws {
        let kinds = [
            "grey1", "grey4", "grey8", "grey16", "grey_alpha8", "grey_alpha16", "palette8", "palette8_transparent",
            "rgb8", "rgb8_gamma", "rgb16", "rgba8", "rgba16",
        ]
        try Self.fuzz(
            kinds.map { "images/\($0).png" }, cases: FuzzTally.caseCount(standard: 2000), seed: 12, title: "PNG",
            repair: Self.withValidChunkCRCs)
    }
}
