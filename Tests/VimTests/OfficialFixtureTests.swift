import Checkpoint
import Foundation
import TensorModule
import TestSupport
import Testing

@testable import Vim

/// Keeps a copy of the tensors at chosen points.
final class RecordingHooks: ForwardHooks {
    let wanted: Set<ObservationPoint>
    var recorded: [ObservationPoint: Tensor] = [:]

    init(_ wanted: [ObservationPoint]) { self.wanted = Set(wanted) }

    func process(_ point: ObservationPoint, _ tensor: inout Tensor) {
        if wanted.contains(point) { recorded[point] = tensor }
    }
}

/// One reference set made by the official code: a model and the arrays it produced.
struct ReferenceSet: CustomStringConvertible, Sendable {
    let directory: String
    let model: String
    let deepLayer: Int

    var description: String { "\(model) in \(directory)" }

    func path(_ suffix: String) -> String { "\(directory)/\(model)_\(suffix)" }
    func array(_ suffix: String) throws -> Tensor { try NumPyArray(contentsOf: path(suffix)).tensor }
    func exists(_ suffix: String) -> Bool { FileManager.default.fileExists(atPath: path(suffix)) }
}

/// Compares a tensor of this implementation with the reference; `tolerance` is relative to the
/// reference's largest magnitude.
func expectClose(
    _ actual: Tensor?, _ reference: Tensor, tolerance: Float, _ what: String,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    guard let actual else {
        Issue.record("\(what): nothing recorded", sourceLocation: sourceLocation)
        return
    }
    #expect(actual.shape == reference.shape, "\(what): shape", sourceLocation: sourceLocation)
    guard actual.shape == reference.shape else { return }
    let relative = relativeDifference(actual.scalars, reference: reference.scalars)
    print("  \(what): relative difference \(relative)")
    #expect(
        relative <= tolerance,
        "\(what): relative difference \(relative) > \(tolerance); \(difference(actual.scalars, reference.scalars))",
        sourceLocation: sourceLocation)
}

func referenceSets() -> [ReferenceSet] {
    var sets = [
        ReferenceSet(directory: Fixtures.bundled("vim-official"), model: "vim_micro", deepLayer: 1),
        ReferenceSet(directory: Fixtures.bundled("vim-official-init"), model: "vim_micro", deepLayer: 3),
    ]
    if let tiny = Fixtures.shared("vim-official/vim_tiny.pth") {
        sets.append(
            ReferenceSet(directory: (tiny as NSString).deletingLastPathComponent, model: "vim_tiny", deepLayer: 11))
    }
    if let tiny = Fixtures.shared("vim-official-init/vim_tiny.pth") {
        sets.append(
            ReferenceSet(directory: (tiny as NSString).deletingLastPathComponent, model: "vim_tiny", deepLayer: 11))
    }
    return sets
}

@Suite("The forward pass reproduces the official Vim code")
struct OfficialFixtureTests {
    @Test("logits and every recorded intermediate match the reference arrays", arguments: referenceSets())
    func matchesReference(_ set: ReferenceSet) throws {
        let source = try CheckpointFile.open(set.path("").dropLast() + ".pth")
        let model = try VimModel(loading: source)
        let layers = [0, set.deepLayer]
        var points = [
            ObservationPoint(.embedding), ObservationPoint(.headInput), ObservationPoint(layer: 0, .inProjectionInput),
        ]
        for layer in layers {
            points += [ObservationPoint(layer: layer, .mixerOutput), ObservationPoint(layer: layer, .residual)]
        }
        let perDirection: [(String, ObservationPoint.Site)] = [
            ("conv_out", .scanInput), ("delta", .step), ("y", .scanOutput), ("y_gated", .gatedOutput),
            ("B", .inputMatrix), ("C", .outputMatrix),
        ]
        for direction in ScanDirection.allCases {
            for (_, site) in perDirection { points.append(ObservationPoint(layer: 0, direction: direction, site)) }
        }
        let hooks = RecordingHooks(points)
        let logits = try model(try set.array("input.npy"), hooks: hooks)
        let r = hooks.recorded

        let referenceLogits = try set.array("logits.npy")
        #expect(logits.shape == referenceLogits.shape)
        let logitError = difference(logits.scalars, referenceLogits.scalars)
        print("\(set): logits \(logitError)")
        #expect(logitError.maximumAbsolute <= 1e-3, "logits: \(logitError)")

        expectClose(r[ObservationPoint(.embedding)], try set.array("embed.npy"), tolerance: 5e-6, "embed")
        if set.exists("features.npy") {
            expectClose(r[ObservationPoint(.headInput)], try set.array("features.npy"), tolerance: 2e-5, "features")
        }
        if set.exists("layer0_mixer_in.npy") {
            expectClose(
                r[ObservationPoint(layer: 0, .inProjectionInput)], try set.array("layer0_mixer_in.npy"),
                tolerance: 5e-6,
                "layer 0 mixer input")
        }
        for layer in layers {
            expectClose(
                r[ObservationPoint(layer: layer, .mixerOutput)], try set.array("layer\(layer)_hidden.npy"),
                tolerance: 2e-5, "layer \(layer) hidden")
            expectClose(
                r[ObservationPoint(layer: layer, .residual)], try set.array("layer\(layer)_residual.npy"),
                tolerance: 2e-5, "layer \(layer) residual")
        }
        for direction in ScanDirection.allCases {
            for (name, site) in perDirection where set.exists("layer0_\(direction.rawValue)_\(name).npy") {
                // The reference stores these as [N, channels, L]; ours are [N, L, channels].
                let reference = try set.array("layer0_\(direction.rawValue)_\(name).npy").transposingLastTwo()
                expectClose(
                    r[ObservationPoint(layer: 0, direction: direction, site)], reference, tolerance: 2e-5,
                    "layer 0 \(direction.rawValue) \(name)")
            }
        }
    }
}
