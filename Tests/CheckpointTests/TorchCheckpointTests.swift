import Foundation
import TensorModule
import TestSupport
import Testing

@testable import Checkpoint

/// A checkpoint `{'model': OrderedDict(weight=..., bias=...)}` with the given storages and views.
func smallCheckpoint(
    weightClass: String = "FloatStorage", weightBytes: Data, weightNumel: Int, weightShape: [Int] = [2, 3],
    weightStrides: [Int] = [3, 1], weightOffset: Int = 0, extraTopLevel: ((inout PickleBuilder) -> Void)? = nil,
    topKey: String = "model", deflate: Bool = false, zip64: Bool = false
) throws -> String {
    var p = PickleBuilder()
    p.emptyDict()
    p.mark()
    p.string(topKey)
    p.orderedDict()
    p.mark()
    p.string("weight")
    p.tensor(
        storageKey: "0", storageClass: weightClass, numel: weightNumel, offset: weightOffset, shape: weightShape,
        strides: weightStrides)
    p.string("bias")
    p.tensor(storageKey: "1", numel: 2, shape: [2], strides: [1])
    p.setItems()
    extraTopLevel?(&p)
    p.setItems()
    p.stop()
    return try writeTorchArchive(
        pickle: p.bytes, storages: ["0": weightBytes, "1": littleEndianBytes([0.5, -0.5])], deflate: deflate,
        zip64: zip64)
}

@Suite("PyTorch checkpoints")
struct TorchCheckpointTests {
    @Test("the official micro fixture: 75 tensors under 'model', Namespace kept inert")
    func officialFixture() throws {
        let checkpoint = try TorchCheckpoint(path: Fixtures.bundled("vim-official/vim_micro.pth"))
        #expect(checkpoint.tensorNames.count == 75)
        #expect(checkpoint.stateDictLocation == "model")
        #expect(checkpoint.topLevelKeys == ["model", "epoch", "optimizer", "model_ema", "args"])
        #expect(checkpoint.inertClasses == ["argparse.Namespace"])
        #expect(checkpoint.shape(of: "layers.0.mixer.in_proj.weight") == [192, 48])
        #expect(checkpoint.tensorNames.first == "cls_token")
    }

    @Test(
        "stored, deflated and zip64 archives read the same values",
        arguments: [(false, false), (true, false), (false, true), (true, true)])
    func containers(_ variant: (deflate: Bool, zip64: Bool)) throws {
        let values: [Float] = [1, 2, 3, 4, 5, 6]
        let path = try smallCheckpoint(
            weightBytes: littleEndianBytes(values), weightNumel: 6, deflate: variant.deflate, zip64: variant.zip64)
        let checkpoint = try TorchCheckpoint(path: path)
        #expect(try checkpoint.tensor(named: "weight") == Tensor(shape: [2, 3], scalars: values))
        #expect(try checkpoint.tensor(named: "bias").scalars == [0.5, -0.5])
    }

    @Test("strided views and storage offsets are gathered element by element")
    func stridedView() throws {
        // A transposed [3, 2] view of a 6-element storage, starting at element 0, and a view at offset 2.
        let storage = littleEndianBytes([0, 1, 2, 3, 4, 5])
        let transposed = try TorchCheckpoint(
            path: try smallCheckpoint(
                weightBytes: storage, weightNumel: 6, weightShape: [3, 2], weightStrides: [1, 3]))
        #expect(try transposed.tensor(named: "weight").scalars == [0, 3, 1, 4, 2, 5])
        let offset = try TorchCheckpoint(
            path: try smallCheckpoint(
                weightBytes: storage, weightNumel: 6, weightShape: [2, 2], weightStrides: [2, 1], weightOffset: 2))
        #expect(try offset.tensor(named: "weight").scalars == [2, 3, 4, 5])
    }

    @Test("float16 and bfloat16 storages are converted to float32")
    func halfPrecision() throws {
        // 1.0, -2.0, 0.5, 65504 (max half), 2^-24 (smallest subnormal), -0.0 in IEEE half.
        let half: [UInt16] = [0x3C00, 0xC000, 0x3800, 0x7BFF, 0x0001, 0x8000]
        let halfPath = try smallCheckpoint(
            weightClass: "HalfStorage", weightBytes: half.withUnsafeBytes { Data($0) }, weightNumel: 6)
        #expect(
            try TorchCheckpoint(path: halfPath).tensor(named: "weight").scalars == [1, -2, 0.5, 65504, 0x1p-24, -0.0])
        let bfloat: [UInt16] = [0x3F80, 0xC000, 0x3F00, 0x4049, 0x0000, 0xBF80]
        let bfloatPath = try smallCheckpoint(
            weightClass: "BFloat16Storage", weightBytes: bfloat.withUnsafeBytes { Data($0) }, weightNumel: 6)
        #expect(try TorchCheckpoint(path: bfloatPath).tensor(named: "weight").scalars == [1, -2, 0.5, 3.140625, 0, -1])
    }

    @Test("weights are found under model_ema when there is no model, and in a bare state dict")
    func stateDictLocations() throws {
        let ema = try TorchCheckpoint(
            path: try smallCheckpoint(
                weightBytes: littleEndianBytes([1, 2, 3, 4, 5, 6]), weightNumel: 6, topKey: "model_ema"))
        #expect(ema.stateDictLocation == "model_ema")
        var p = PickleBuilder()
        p.orderedDict()
        p.mark()
        p.string("w")
        p.tensor(storageKey: "0", numel: 2, shape: [2], strides: [1])
        p.setItems()
        p.stop()
        let bare = try TorchCheckpoint(
            path: try writeTorchArchive(pickle: p.bytes, storages: ["0": littleEndianBytes([7, 8])]))
        #expect(bare.stateDictLocation == "top level")
        #expect(try bare.tensor(named: "w").scalars == [7, 8])
    }

    @Test("an unknown global outside the weights is kept inert; inside them it is an error naming the key")
    func unknownGlobals() throws {
        let outside = try smallCheckpoint(weightBytes: littleEndianBytes([1, 2, 3, 4, 5, 6]), weightNumel: 6) { p in
            p.string("hook")
            p.global("os", "system")
            p.mark()
            p.string("rm -rf /")
            p.tuple()
            p.reduce()
        }
        #expect(try TorchCheckpoint(path: outside).inertClasses == ["os.system"])

        var p = PickleBuilder()
        p.emptyDict()
        p.mark()
        p.string("model")
        p.orderedDict()
        p.mark()
        p.string("layers.0.weight")
        p.global("subprocess", "check_output")
        p.mark()
        p.string("id")
        p.tuple()
        p.reduce()
        p.setItems()
        p.setItems()
        p.stop()
        let inside = try writeTorchArchive(pickle: p.bytes, storages: [:])
        #expect(
            throws: CheckpointError.notATensor(
                path: inside, key: "layers.0.weight", found: "an object of class subprocess.check_output")
        ) {
            try TorchCheckpoint(path: inside)
        }
    }

    @Test("views outside their storage, and storages shorter than declared, are refused")
    func invalidViews() throws {
        let beyond = try smallCheckpoint(
            weightBytes: littleEndianBytes([1, 2, 3, 4, 5, 6]), weightNumel: 6, weightShape: [2, 3],
            weightStrides: [4, 1])
        #expect(throws: CheckpointError.self) { try TorchCheckpoint(path: beyond).tensor(named: "weight") }
        let short = try smallCheckpoint(weightBytes: littleEndianBytes([1, 2, 3]), weightNumel: 6)
        #expect {
            try TorchCheckpoint(path: short).tensor(named: "weight")
        } throws: { error in
            "\(error)".contains("holds 12 bytes, 6 elements of 4 bytes declared")
        }
        let expanded = try smallCheckpoint(
            weightBytes: littleEndianBytes([1, 2, 3, 4, 5, 6]), weightNumel: 6, weightShape: [1 << 30],
            weightStrides: [0])
        #expect {
            try TorchCheckpoint(path: expanded).tensor(named: "weight")
        } throws: { error in
            "\(error)".contains("more than its storage's 6")
        }
        let negative = try smallCheckpoint(
            weightBytes: littleEndianBytes([1, 2, 3, 4, 5, 6]), weightNumel: 6, weightStrides: [-3, 1])
        #expect(throws: CheckpointError.self) { try TorchCheckpoint(path: negative).tensor(named: "weight") }
        let integer = try smallCheckpoint(weightClass: "LongStorage", weightBytes: Data(count: 48), weightNumel: 6)
        #expect(throws: CheckpointError.unsupportedElementType(path: integer, tensor: "weight", type: "LongStorage")) {
            try TorchCheckpoint(path: integer).tensor(named: "weight")
        }
    }

    @Test("truncated, corrupted and foreign files give errors that name the file")
    func damagedFiles() throws {
        let original = try Data(contentsOf: URL(fileURLWithPath: Fixtures.bundled("vim-official/vim_micro.pth")))
        let directory = Fixtures.temporaryDirectory()

        let truncated = directory + "/truncated.pth"
        try original.prefix(original.count / 2).write(to: URL(fileURLWithPath: truncated))
        #expect {
            try TorchCheckpoint(path: truncated)
        } throws: { error in
            guard case CheckpointError.corruptArchive(let path, _) = error else { return false }
            return path == truncated
        }

        // Flip one byte inside the first tensor's data: the CRC check catches it when it is read.
        var damaged = original
        let archive = try ZipArchive(path: Fixtures.bundled("vim-official/vim_micro.pth"))
        let entry = archive.entries.first { $0.name.hasSuffix("/data/0") }!
        let checkpoint = try TorchCheckpoint(path: Fixtures.bundled("vim-official/vim_micro.pth"))
        _ = checkpoint
        let payloadOffset = original.range(of: try archive.contents(of: entry))!.lowerBound
        damaged[payloadOffset] ^= 0xFF
        let corrupted = directory + "/corrupted.pth"
        try damaged.write(to: URL(fileURLWithPath: corrupted))
        #expect {
            try TorchCheckpoint(path: corrupted).tensor(named: "cls_token")
        } throws: { error in
            "\(error)".contains("CRC-32")
        }

        let text = directory + "/notes.pth"
        try Data("just some text, not a checkpoint".utf8).write(to: URL(fileURLWithPath: text))
        #expect {
            try CheckpointFile.open(text)
        } throws: { error in
            guard case CheckpointError.unrecognizedFormat(let path, _) = error else { return false }
            return path == text
        }

        let legacy = directory + "/legacy.pth"
        try Data([0x80, 0x02, 0x8A, 0x0A]).write(to: URL(fileURLWithPath: legacy))
        #expect { try CheckpointFile.open(legacy) } throws: { "\($0)".contains("legacy") }

        #expect(throws: CheckpointError.unreadable(path: directory + "/absent.pth", reason: "no such file")) {
            try CheckpointFile.open(directory + "/absent.pth")
        }
    }

    @Test("a zip bomb's declared size is refused before anything is inflated")
    func zipBomb() throws {
        var zip = ZipWriter()
        zip.add("archive/data.pkl", Data(count: 1 << 20), deflate: true)
        var bytes = zip.data
        // Patch the central directory's uncompressed size to 4 GiB - 1.
        let directory = bytes.range(of: Data([0x50, 0x4B, 0x01, 0x02]))!.lowerBound
        bytes.replaceSubrange((directory + 24)..<(directory + 28), with: [0xFE, 0xFF, 0xFF, 0xFF])
        #expect { try ZipArchive(data: bytes, path: "bomb.zip") } throws: { "\($0)".contains("zip bomb") }
    }
}
