import Checkpoint
import Foundation
import TestSupport
import Testing

@testable import ImageData

let pngKinds = [
    "grey8", "grey16", "grey1", "grey4", "grey_alpha8", "grey_alpha16", "rgb8", "rgb16", "rgba8", "rgba16",
    "palette8", "palette8_transparent", "rgb8_gamma",
]

@Suite("Decoding as PIL's convert('RGB')")
struct DecodingTests {
    @Test("every PNG colour type and bit depth decodes as Pillow 10.1.0 converts it", arguments: pngKinds)
    func pngKind(_ name: String) throws {
        let image = try ImageDecoder.decode(contentsOf: Fixtures.bundled("images/\(name).png"))
        let expected = try NumPyArray(contentsOf: Fixtures.bundled("images/\(name)_rgb.npy"))
        #expect(expected.shape == [image.height, image.width, 3])
        #expect(image.pixels == [UInt8](expected.payload))
    }

    @Test(
        "bicubic resizing equals Pillow's, up, down and along one axis",
        arguments: [
            (80, 50), (11, 7), (37, 60), (15, 23), (256, 3), (1, 1),
        ])
    func resize(_ size: (width: Int, height: Int)) throws {
        let source = try ImageDecoder.decode(contentsOf: Fixtures.bundled("images/resize_source.png"))
        let resized = BicubicResize.apply(source, width: size.width, height: size.height)
        let expected = try NumPyArray(contentsOf: Fixtures.bundled("images/resize_\(size.width)x\(size.height).npy"))
        #expect(resized.pixels == [UInt8](expected.payload))
    }

    @Test("damaged or foreign files are errors naming the file")
    func badFiles() throws {
        let directory = Fixtures.temporaryDirectory()
        let jpeg = try Data(contentsOf: URL(fileURLWithPath: Fixtures.bundled("photos/chelsea.jpg")))
        let png = try Data(contentsOf: URL(fileURLWithPath: Fixtures.bundled("photos/rocket.png")))
        let cases: [(String, Data, String)] = [
            ("truncated.jpg", jpeg.prefix(jpeg.count / 2), "damaged image"),
            ("header-only.jpg", jpeg.prefix(20), "damaged image"),
            ("truncated.png", png.prefix(png.count / 2), "damaged image"),
            ("text.JPEG", Data("this is not an image".utf8), "not a JPEG or PNG"),
            ("empty.jpg", Data(), "empty"),
        ]
        for (name, bytes, message) in cases {
            let path = "\(directory)/\(name)"
            try bytes.write(to: URL(fileURLWithPath: path))
            #expect {
                try ImageDecoder.decode(contentsOf: path)
            } throws: { error in
                "\(error)".hasPrefix(path) && "\(error)".contains(message)
            }
        }
        #expect(throws: ImageError.self) { try ImageDecoder.decode(contentsOf: "\(directory)/absent.jpg") }
    }
}
