import Checkpoint
import Cluster
import Foundation
import Quantization
import TensorModule
import Vim

/// `qmamba forward`: logits of an array of images.
enum ForwardCommand: Command {
    static let name = "forward"
    static let abstract = "Compute the logits of an N x C x H x W float32 .npy array of normalised images"
    static let discussion = """
        Under mpirun the images are split into contiguous shards, one per rank; rank 0 gathers the logits and
        writes them (N x classes, float32 .npy) atomically. A file written by 'qmamba export' runs as it is, with \
        its own quantizers (no --quant).
        """
    static let options =
        ModelOptions.specs + [
            .value(
                "input", "FILE", "input images, float32 .npy of shape N x C x H x W (already normalised)",
                required: true),
            .value("output", "FILE", "where to write the logits (.npy)", required: true),
            .value("batch-size", "N", "images per forward pass on each rank", default: "8"),
            .value("quant", "FILE", "calibration file (Q.json): compute the fake-quantized model's logits"),
        ]
    static let usesCluster = true

    static func run(_ arguments: ParsedArguments, context: CommandContext) throws {
        let cluster = context.cluster!
        let inputPath = try arguments.required("input")
        let outputPath = try arguments.required("output")
        let batchSize = try arguments.integer("batch-size")!
        try OutputPath.check(outputPath, inputs: [inputPath, try arguments.required("checkpoint")])
        let (_, loaded, plan, _) = try ModelOptions.loadRunnable(arguments, console: context.console)
        let (model, hooks) = Evaluation.quantized(loaded, plan: plan)
        let images = try NumPyArray(contentsOf: inputPath).tensor
        let c = model.configuration
        guard images.rank == 4, images.shape[1] == c.channels, images.shape[2] == c.imageSize,
            images.shape[3] == c.imageSize
        else {
            throw VimError.invalidInput(
                "\(inputPath) has shape \(images.shape); this model needs N x \(c.channels) x \(c.imageSize) x \(c.imageSize)"
            )
        }
        let count = images.shape[0]
        if context.console.enabled {
            let perImage = images.count / max(count, 1)
            let damaged = (0..<count).filter { n in
                images.scalars[(n * perImage)..<((n + 1) * perImage)].contains { !$0.isFinite }
            }
            if !damaged.isEmpty {
                let listed = damaged.prefix(5).map(String.init).joined(separator: ", ")
                context.console.warning(
                    "\(inputPath): \(damaged.count) of \(count) images hold NaN or infinite values (image "
                        + "\(listed)\(damaged.count > 5 ? ", …" : "")); their logits will not be finite")
            }
        }
        try OutputPath.requireSpace(outputPath, bytes: count * c.classCount * 4)
        let shard = (count * cluster.rank / cluster.size)..<(count * (cluster.rank + 1) / cluster.size)
        var logits: [Float] = []
        let started = Communicator.time
        var start = shard.lowerBound
        while start < shard.upperBound {
            let end = min(start + batchSize, shard.upperBound)
            logits += try model(images.slice(outer: start..<end), hooks: hooks).scalars
            start = end
        }
        var seconds = [Communicator.time - started]
        cluster.allReduce(&seconds, .maximum)
        guard let all = cluster.gather(logits) else { return }
        try NumPyArray(Tensor(shape: [count, c.classCount], scalars: all)).write(to: outputPath)
        let rate = Double(count) / max(seconds[0], 1e-9)
        context.console.line(
            "wrote \(outputPath): logits of \(count) images (\(cluster.size) rank\(cluster.size == 1 ? "" : "s"), "
                + "batch \(batchSize), \(String(format: "%.2f", seconds[0])) s, \(String(format: "%.2f", rate)) images/s)"
        )
    }
}

/// Checks on an output path made before any work is done.
enum OutputPath {
    /// Refuses an output that is one of the inputs or lies in a directory that cannot be written.
    static func check(_ output: String, inputs: [String]) throws {
        let resolved = URL(fileURLWithPath: output).resolvingSymlinksInPath().path
        for input in inputs where URL(fileURLWithPath: input).resolvingSymlinksInPath().path == resolved {
            throw CommandFailure("refusing to write the output over the input \(input)")
        }
        let directory = directory(of: output)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CommandFailure("\(output): the directory \(directory) does not exist")
        }
        // A probe file, not access(2): root passes access() on read-only file systems.
        let probe = "\(directory)/.qmamba-probe-\(getpid())"
        let descriptor = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard descriptor >= 0 else {
            throw CommandFailure(
                "\(output): the directory \(directory) cannot be written (\(String(cString: strerror(errno))))")
        }
        close(descriptor)
        unlink(probe)
    }

    /// The directory an output will be written in, symbolic links resolved.
    private static func directory(of output: String) -> String {
        URL(fileURLWithPath: output).resolvingSymlinksInPath().deletingLastPathComponent().path
    }

    /// Refuses to start work whose result of about `bytes` cannot fit on the output's file system.
    static func requireSpace(_ output: String, bytes: Int) throws {
        let directory = directory(of: output)
        var info = statvfs()
        guard statvfs(directory, &info) == 0 else { return }
        let free = Int(info.f_bavail) * Int(info.f_frsize)
        let needed = bytes + (1 << 20)
        guard free >= needed else {
            throw CommandFailure(
                "\(output): the result needs about \(needed >> 20) MiB but the file system of \(directory) has "
                    + "\(free >> 20) MiB free")
        }
    }
}
