import Checkpoint
import Foundation
import TensorModule
import TestSupport
import Testing

@testable import Vim

/// Tensor shapes only: enough to infer a configuration.
struct ShapeOnlySource: TensorSource {
    let path = "shapes-only"
    let shapes: [(String, [Int])]
    var tensorNames: [String] { shapes.map(\.0) }
    func shape(of name: String) -> [Int]? { shapes.first { $0.0 == name }?.1 }
    func tensor(named name: String) throws -> Tensor { Tensor(shape: shape(of: name)!) }
}

/// The tensor names and shapes of an official checkpoint for `c`, in state-dict order.
func officialShapes(_ c: VimConfiguration) -> [(String, [Int])] {
    let (d, e, n, r, k) = (c.embedDimension, c.innerDimension, c.stateSize, c.stepRank, c.convolutionWidth)
    var shapes: [(String, [Int])] = [
        ("cls_token", [1, 1, d]), ("pos_embed", [1, c.tokenCount, d]),
        ("patch_embed.proj.weight", [d, c.channels, c.patchSize, c.patchSize]), ("patch_embed.proj.bias", [d]),
        ("head.weight", [c.classCount, d]), ("head.bias", [c.classCount]),
    ]
    for i in 0..<c.depth {
        let p = "layers.\(i).mixer."
        shapes += [
            (p + "A_log", [e, n]), (p + "D", [e]), (p + "A_b_log", [e, n]), (p + "D_b", [e]),
            (p + "in_proj.weight", [2 * e, d]), (p + "conv1d.weight", [e, 1, k]), (p + "conv1d.bias", [e]),
            (p + "x_proj.weight", [r + 2 * n, e]), (p + "dt_proj.weight", [e, r]), (p + "dt_proj.bias", [e]),
            (p + "conv1d_b.weight", [e, 1, k]), (p + "conv1d_b.bias", [e]), (p + "x_proj_b.weight", [r + 2 * n, e]),
            (p + "dt_proj_b.weight", [e, r]), (p + "dt_proj_b.bias", [e]), (p + "out_proj.weight", [d, e]),
            ("layers.\(i).norm.weight", [d]),
        ]
    }
    shapes.append(("norm_f.weight", [d]))
    return shapes
}

/// Copies the micro fixture into a safetensors file, letting `edit` change the tensor list first.
func microSafetensors(_ edit: (inout [(name: String, tensor: Tensor)]) -> Void = { _ in }) throws -> String {
    let source = try CheckpointFile.open(Fixtures.bundled("vim-official/vim_micro.pth"))
    var tensors = try source.tensorNames.map { (name: $0, tensor: try source.tensor(named: $0)) }
    edit(&tensors)
    let path = Fixtures.temporaryDirectory() + "/micro.safetensors"
    try SafetensorsFile.write(tensors, to: path)
    return path
}

@Suite("Configurations and strict loading")
struct LoadingTests {
    @Test(
        "every registered model is recognised from its shapes alone, stride-8 ones included",
        arguments: VimRegistry.entries.map(\.alias))
    func registryFromShapes(_ alias: String) throws {
        let entry = try VimRegistry.entry(named: alias)
        let inferred = try VimConfiguration.inferred(from: ShapeOnlySource(shapes: officialShapes(entry.configuration)))
        #expect(inferred == entry.configuration)
        #expect(VimRegistry.entry(matching: inferred)?.alias == alias)
        #expect(officialShapes(entry.configuration).count == 415)
    }

    /// The totals of ../shared/docs/VIM-DETAILS.md §6 (matrix products and convolutions), derived there
    /// from the official layer sizes, in GMAC to the digits the table gives.
    @Test(
        "multiply-accumulates per image match the cost table of the Vim notes",
        arguments: [
            ("vim-t", 1.29), ("vim-s", 4.85), ("vim-b", 18.77), ("vim-t-stride8", 4.79), ("vim-s-stride8", 17.98),
        ])
    func costTable(_ sample: (alias: String, giga: Double)) throws {
        let configuration = try VimRegistry.entry(named: sample.alias).configuration
        let giga = Double(configuration.multiplyAccumulatesPerImage) / 1e9
        #expect(abs(giga - sample.giga) <= 0.005, "\(sample.alias): \(giga) GMAC")
    }

    @Test("the micro fixture's settings are inferred, and equal its official configuration file")
    func microInference() throws {
        let source = try CheckpointFile.open(Fixtures.bundled("vim-official/vim_micro.pth"))
        let inferred = try VimConfiguration.inferred(from: source)
        let file = try VimConfiguration.load(contentsOf: Fixtures.bundled("vim-official/vim_micro_config.json"))
        #expect(inferred == file)
        #expect(
            inferred.imageSize == 32 && inferred.patchSize == 4 && inferred.stepRank == 3 && inferred.tokenCount == 65)
    }

    @Test("configuration files asking for unsupported architecture switches are refused")
    func unsupportedSwitches() throws {
        let path = Fixtures.temporaryDirectory() + "/config.json"
        try Data(#"{"embed_dim": 48, "bimamba_type": "v1"}"#.utf8).write(to: URL(fileURLWithPath: path))
        #expect { try VimConfiguration.load(contentsOf: path) } throws: { "\($0)".contains("bimamba_type 'v1'") }
        try Data(#"{"embed_dim": 48, "if_rope": true}"#.utf8).write(to: URL(fileURLWithPath: path))
        #expect { try VimConfiguration.load(contentsOf: path) } throws: { "\($0)".contains("if_rope") }
        try Data(#"{"depth": 4}"#.utf8).write(to: URL(fileURLWithPath: path))
        #expect { try VimConfiguration.load(contentsOf: path) } throws: { "\($0)".contains("embed_dim") }
    }

    @Test("a safetensors copy of a checkpoint gives bit-identical logits")
    func safetensorsModel() throws {
        let input = try NumPyArray(contentsOf: Fixtures.bundled("vim-official/vim_micro_input.npy")).tensor
        let fromTorch = try VimModel(loading: try CheckpointFile.open(Fixtures.bundled("vim-official/vim_micro.pth")))
        let fromSafetensors = try VimModel(loading: try CheckpointFile.open(try microSafetensors()))
        #expect(try fromTorch(input) == fromSafetensors(input))
    }

    @Test("a missing tensor, a wrong shape or an unused tensor is an error naming the key and shapes")
    func strictLoading() throws {
        let missing = try microSafetensors { $0.removeAll { $0.name == "layers.2.mixer.x_proj_b.weight" } }
        #expect(
            throws: VimError.missingTensor(
                path: missing, key: "layers.2.mixer.x_proj_b.weight", expectedShape: [35, 96])
        ) {
            try VimModel(loading: try CheckpointFile.open(missing))
        }
        let wrong = try microSafetensors { tensors in
            let i = tensors.firstIndex { $0.name == "layers.1.mixer.D_b" }!
            tensors[i].tensor = Tensor(shape: [95])
        }
        #expect(throws: VimError.shapeMismatch(path: wrong, key: "layers.1.mixer.D_b", expected: [96], found: [95])) {
            try VimModel(loading: try CheckpointFile.open(wrong))
        }
        let extra = try microSafetensors { $0.append((name: "layers.0.mixer.gamma", tensor: Tensor(shape: [48]))) }
        #expect(throws: VimError.unexpectedTensors(path: extra, keys: ["layers.0.mixer.gamma"])) {
            try VimModel(loading: try CheckpointFile.open(extra))
        }
        let noClassToken = try microSafetensors { $0.removeAll { $0.name == "cls_token" } }
        #expect { try VimModel(loading: try CheckpointFile.open(noClassToken)) } throws: {
            "\($0)".contains("class token")
        }
    }

    @Test("images of the wrong size are refused")
    func wrongInput() throws {
        let model = try VimModel(loading: try CheckpointFile.open(Fixtures.bundled("vim-official/vim_micro.pth")))
        #expect(throws: VimError.self) { try model(Tensor(shape: [1, 3, 224, 224])) }
    }

    @Test("observation point names round-trip through their text form")
    func pointNames() {
        var points = [
            ObservationPoint(.embedding), ObservationPoint(.headInput), ObservationPoint(.patchEmbeddingInput),
        ]
        for site in ObservationPoint.Site.allCases where site.isPerLayer {
            if site.isPerDirection {
                points += ScanDirection.allCases.map { ObservationPoint(layer: 12, direction: $0, site) }
            } else {
                points.append(ObservationPoint(layer: 3, site))
            }
        }
        for point in points { #expect(ObservationPoint(point.description) == point) }
        #expect(ObservationPoint(layer: 3, direction: .forward, .hiddenState).description == "layers.3.fwd.h")
        #expect(ObservationPoint("layers.x.fwd.h") == nil)
        #expect(ObservationPoint("layers.3.h") == nil)
        #expect(ObservationPoint("layers.3.sideways.h") == nil)
    }
}

/// Sees the points of `sites` (all by default) and changes nothing: the model materialises those
/// instead of fusing the passes around them.
final class PassThroughHooks: ForwardHooks {
    let sites: Set<ObservationPoint.Site>
    var points: Set<ObservationPoint.Site> = []
    init(sites: Set<ObservationPoint.Site> = Set(ObservationPoint.Site.allCases.filter { !$0.isScanInternal })) {
        self.sites = sites
    }
    func processes(_ point: ObservationPoint) -> Bool { sites.contains(point.site) }
    func process(_ point: ObservationPoint, _ tensor: inout Tensor) {
        if processes(point) { points.insert(point.site) }
    }
}

/// Passes Ā, B̄ and h through unchanged, forcing the step-by-step scan, and counts the calls.
final class IdentityScanHooks: ForwardHooks {
    var steps: [ObservationPoint.Site: Int] = [:]
    func process(_ point: ObservationPoint, _ tensor: inout Tensor) {}
    func needsScanInternals(layer: Int, direction: ScanDirection) -> Bool { true }
    func processScanStep(_ point: ObservationPoint, image: Int, timeStep: Int, _ values: inout [Float]) {
        steps[point.site, default: 0] += 1
    }
}

@Suite("Hooks")
struct HookTests {
    @Test("the step-by-step scan that exposes Ā, B̄ and h gives bit-identical logits to the fast scan")
    func stepwiseScanIsExact() throws {
        let model = try VimModel(loading: try CheckpointFile.open(Fixtures.bundled("vim-official-init/vim_micro.pth")))
        let input = try NumPyArray(contentsOf: Fixtures.bundled("vim-official-init/vim_micro_input.npy")).tensor
        let hooks = IdentityScanHooks()
        #expect(try model(input, hooks: hooks) == model(input))
        // 4 images × 65 steps × 4 layers × 2 directions.
        #expect(hooks.steps == [.discreteA: 2080, .discreteB: 2080, .hiddenState: 2080])
    }

    @Test(
        "hooks that change nothing give the fused plain pass's logits bit for bit, whichever points they see",
        arguments: ["vim-official", "vim-official-init"])
    func hookedMixerIsExact(_ set: String) throws {
        let model = try VimModel(loading: try CheckpointFile.open(Fixtures.bundled("\(set)/vim_micro.pth")))
        let input = try NumPyArray(contentsOf: Fixtures.bundled("\(set)/vim_micro_input.npy")).tensor
        let plain = try model(input)
        let all = PassThroughHooks()
        #expect(try model(input, hooks: all) == plain)
        #expect(all.points == all.sites)
        for sites: Set<ObservationPoint.Site> in [[], [.gatedOutput], [.convolutionInput, .outProjectionInput]] {
            let some = PassThroughHooks(sites: sites)
            #expect(try model(input, hooks: some) == plain)
            #expect(some.points == sites)
        }
    }
}
