import Cluster
import Foundation
import ImageData
import Quantization
import TensorModule
import Vim

/// Distributed evaluation: each rank scores its shard; integer counts are summed across ranks.
enum Evaluation {
    /// Counts summed over all ranks.
    struct Result {
        var images = 0
        var top1 = 0
        var top5 = 0
        /// Σ cross-entropy in units of 1e-9, summed as integers so the total is exact in any order.
        var lossNanounits: Int64 = 0
        var skipped = 0
        var seconds = 0.0
        var rankTimes: [(images: Int, seconds: Double)] = []
        var predictions: [(index: Int, label: Int, top5: [Int], loss: Double)] = []

        var top1Percent: Double { images > 0 ? 100 * Double(top1) / Double(images) : 0 }
        var top5Percent: Double { images > 0 ? 100 * Double(top5) / Double(images) : 0 }
        var meanLoss: Double { images > 0 ? Double(lossNanounits) / 1e9 / Double(images) : 0 }
    }

    /// The model with `plan` applied (weights snapped to their grids, activations through hooks).
    static func quantized(_ model: VimModel, plan: QuantizationPlan?) -> (VimModel, ForwardHooks?) {
        guard let plan else { return (model, nil) }
        return (
            VimModel(configuration: model.configuration, weights: plan.quantizedWeights(model.weights)),
            FakeQuantizationHooks(plan: plan)
        )
    }

    /// Evaluates this rank's shard and reduces the counts; rank 0 receives the per-rank timings and,
    /// when `keepPredictions` is set, every image's prediction.
    static func run(
        model: VimModel, plan: QuantizationPlan?, runner: ShardRunner, label: String, keepPredictions: Bool
    ) throws -> Result {
        let (network, hooks) = quantized(model, plan: plan)
        let started = Date()
        var local = Result()
        local.skipped = try runner.run(label: label) { batch in
            let logits = try network(batch.images, hooks: hooks)
            let classes = logits.shape[1]
            for (row, label) in batch.labels.enumerated() {
                let scores = logits.scalars[(row * classes)..<((row + 1) * classes)]
                let ranked = scores.indices.sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
                    .prefix(5).map { $0 - row * classes }
                let topFive = ranked + [Int](repeating: -1, count: 5 - ranked.count)
                let largest = scores.max()!
                let logSum = Double(largest) + log(scores.reduce(0.0) { $0 + exp(Double($1 - largest)) })
                let loss = label < classes ? logSum - Double(scores[scores.startIndex + label]) : .infinity
                local.images += 1
                if ranked.first == label { local.top1 += 1 }
                if ranked.contains(label) { local.top5 += 1 }
                local.lossNanounits += loss.isFinite ? Int64((loss * 1e9).rounded()) : 0
                if keepPredictions { local.predictions.append((batch.indices[row], label, topFive, loss)) }
            }
        }
        local.seconds = Date().timeIntervalSince(started)
        let cluster = runner.cluster
        var counts: [Int64] = [Int64(local.images), Int64(local.top1), Int64(local.top5), local.lossNanounits]
        cluster.allReduce(&counts, .sum)
        var longest = [local.seconds]
        cluster.allReduce(&longest, .maximum)
        let times = cluster.gather([Float(local.images), Float(local.seconds)])
        var result = Result(
            images: Int(counts[0]), top1: Int(counts[1]), top5: Int(counts[2]), lossNanounits: counts[3],
            skipped: local.skipped, seconds: longest[0])
        if let times {
            result.rankTimes = stride(from: 0, to: times.count, by: 2).map { (Int(times[$0]), Double(times[$0 + 1])) }
        }
        if keepPredictions {
            let flat = local.predictions.flatMap { p in
                [Float(p.index), Float(p.label)] + p.top5.map(Float.init) + [Float(p.loss)]
            }
            if let all = cluster.gather(flat) {
                let width = 8
                for i in stride(from: 0, to: all.count, by: width) {
                    let topFive: [Int] = all[(i + 2)..<(i + 7)].map { Int($0) }
                    result.predictions.append(
                        (index: Int(all[i]), label: Int(all[i + 1]), top5: topFive, loss: Double(all[i + 7])))
                }
            }
        }
        return result
    }
}
