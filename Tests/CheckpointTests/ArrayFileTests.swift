import Foundation
import TensorModule
import TestSupport
import Testing

@testable import Checkpoint

@Suite("NumPy and safetensors files")
struct ArrayFileTests {
    @Test("a written .npy reads back identically, and NumPy's fixtures read with their shapes")
    func numpyRoundTrip() throws {
        let tensor = Tensor(shape: [2, 1, 3], scalars: [1, -2, 3.5, .infinity, 0, -0.25])
        let path = Fixtures.temporaryDirectory() + "/a.npy"
        try NumPyArray(tensor).write(to: path)
        #expect(try NumPyArray(contentsOf: path).tensor == tensor)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect((bytes.count - tensor.count * 4) % 64 == 0)
        let crop = try NumPyArray(contentsOf: Fixtures.bundled("photos/chelsea_crop_u8.npy"))
        #expect(crop.shape == [224, 224, 3] && crop.elementType == .uint8)
        #expect(
            try NumPyArray(contentsOf: Fixtures.bundled("vim-official/vim_micro_input.npy")).shape == [4, 3, 32, 32])
    }

    @Test("malformed .npy files are refused with the reason")
    func numpyMalformed() throws {
        let good = NumPyArray(Tensor(shape: [4], scalars: [1, 2, 3, 4])).encoded
        #expect { try NumPyArray(data: good.dropLast(), path: "x.npy") } throws: { "\($0)".contains("needs 16 bytes") }
        #expect { try NumPyArray(data: Data("hello".utf8), path: "x.npy") } throws: { "\($0)".contains("magic") }
        var bigEndian = good
        let at = bigEndian.range(of: Data("<f4".utf8))!.lowerBound
        bigEndian[at] = UInt8(ascii: ">")
        #expect { try NumPyArray(data: bigEndian, path: "x.npy") } throws: { "\($0)".contains(">f4") }
    }

    @Test("safetensors written here read back, with metadata")
    func safetensorsRoundTrip() throws {
        let a = Tensor(shape: [2, 2], scalars: [1, 2, 3, 4])
        let b = Tensor(shape: [3], scalars: [-1, 0, 1])
        let path = Fixtures.temporaryDirectory() + "/w.safetensors"
        try SafetensorsFile.write([("a", a), ("b", b)], metadata: ["source": "test"], to: path)
        let file = try SafetensorsFile(path: path)
        #expect(file.tensorNames == ["a", "b"])
        #expect(file.metadata == ["source": "test"])
        #expect(try file.tensor(named: "a") == a)
        #expect(try file.tensor(named: "b") == b)
        #expect(try CheckpointFile.open(path) is SafetensorsFile)
    }

    @Test("safetensors with ranges outside the file are refused")
    func safetensorsMalformed() throws {
        let path = Fixtures.temporaryDirectory() + "/bad.safetensors"
        let header = Data(#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#.utf8)
        var file = Data()
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { file.append(contentsOf: $0) }
        file.append(header)
        file.append(Data(count: 8))
        try file.write(to: URL(fileURLWithPath: path))
        #expect { try SafetensorsFile(path: path) } throws: { "\($0)".contains("byte range") }
    }
}
