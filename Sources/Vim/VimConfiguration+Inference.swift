import Checkpoint
import Foundation

extension VimConfiguration {
    /// Reads every setting off a checkpoint's tensor shapes.
    ///
    /// D, depth, N, E, R, the patch size, channels, classes and the token count are read directly. The
    /// image size and stride are not in any shape: a registered model with the same shapes supplies
    /// them (this tells the stride-8 models from stride-16 ones); otherwise stride = patch and the
    /// image covers the grid exactly.
    ///
    /// - Throws: `VimError.unsupportedCheckpoint` when the tensors are not those of a supported Vim.
    public static func inferred(from source: TensorSource) throws -> VimConfiguration {
        func unsupported(_ reason: String) -> VimError { .unsupportedCheckpoint(path: source.path, reason: reason) }
        func shape(_ key: String) throws -> [Int] {
            guard let s = source.shape(of: key) else { throw unsupported("it has no tensor '\(key)'") }
            return s
        }
        if source.tensorNames.contains(where: { $0.hasPrefix("rope") || $0.contains(".rope.") }) {
            throw unsupported("it uses rotary position embedding (an older, unreleased Vim variant)")
        }
        let patch = try shape("patch_embed.proj.weight")
        guard patch.count == 4, patch[2] == patch[3] else {
            throw unsupported("patch_embed.proj.weight has shape \(patch), expected [D, C, P, P]")
        }
        let (d, channels, patchSize) = (patch[0], patch[1], patch[2])
        let head = try shape("head.weight")
        guard head.count == 2 else { throw unsupported("head.weight has shape \(head), expected [classes, D]") }
        guard source.shape(of: "cls_token") != nil else {
            throw unsupported("it has no class token; only the middle-class-token models are supported")
        }
        let position = try shape("pos_embed")
        guard position.count == 3, position[1] >= 2 else { throw unsupported("pos_embed has shape \(position)") }
        let patches = position[1] - 1
        let grid = Int(Double(patches).squareRoot().rounded())
        guard grid * grid == patches else {
            throw unsupported("pos_embed has \(patches) patch positions, not a square grid")
        }
        let layerIndices = source.tensorNames.compactMap { name -> Int? in
            guard name.hasPrefix("layers.") else { return nil }
            return Int(name.dropFirst("layers.".count).prefix { $0 != "." })
        }
        guard let deepest = layerIndices.max() else { throw unsupported("it has no 'layers.*' tensors") }
        let aLog = try shape("layers.0.mixer.A_log")
        let dtProj = try shape("layers.0.mixer.dt_proj.weight")
        let conv = try shape("layers.0.mixer.conv1d.weight")
        guard aLog.count == 2, dtProj.count == 2, conv.count == 3, aLog[0] % d == 0 else {
            throw unsupported(
                "layer 0's A_log \(aLog), dt_proj.weight \(dtProj) or conv1d.weight \(conv) are not Vim shapes")
        }
        var configuration = VimConfiguration(
            imageSize: (grid - 1) * patchSize + patchSize, patchSize: patchSize, stride: patchSize,
            embedDimension: d, depth: deepest + 1, stateSize: aLog[1], classCount: head[0], channels: channels,
            expand: aLog[0] / d, convolutionWidth: conv[2])
        if dtProj[1] != configuration.stepRank { configuration.explicitStepRank = dtProj[1] }
        if let registered = VimRegistry.entries.first(where: {
            var candidate = $0.configuration
            candidate.imageSize = configuration.imageSize
            candidate.stride = configuration.stride
            return candidate == configuration && $0.configuration.gridSize == grid
        }) {
            configuration = registered.configuration
        }
        try configuration.validate()
        return configuration
    }

    /// Decodes a configuration JSON file (official constructor argument names).
    public static func load(contentsOf path: String) throws -> VimConfiguration {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw VimError.unreadableConfiguration(path: path, reason: (error as NSError).localizedDescription)
        }
        do {
            let configuration = try JSONDecoder().decode(VimConfiguration.self, from: data)
            try configuration.validate()
            return configuration
        } catch let error as DecodingError {
            switch error {
            case .dataCorrupted(let context), .keyNotFound(_, let context), .typeMismatch(_, let context),
                .valueNotFound(_, let context):
                let key = context.codingPath.map(\.stringValue).joined(separator: ".")
                throw VimError.unreadableConfiguration(
                    path: path, reason: (key.isEmpty ? "" : "\(key): ") + context.debugDescription)
            @unknown default:
                throw VimError.unreadableConfiguration(path: path, reason: "\(error)")
            }
        } catch let error as VimError {
            throw VimError.unreadableConfiguration(path: path, reason: error.description)
        }
    }
}
