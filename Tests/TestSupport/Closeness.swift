/// How far apart two arrays are.
public struct Difference: CustomStringConvertible {
    /// The largest absolute difference.
    public let maximumAbsolute: Float
    /// Where it occurs.
    public let index: Int
    /// The two values there.
    public let values: (Float, Float)

    public var description: String {
        "max |Δ| = \(maximumAbsolute) at index \(index) (\(values.0) vs \(values.1))"
    }
}

/// The largest absolute element difference between two equally long arrays (NaN counts as infinite).
public func difference(_ a: [Float], _ b: [Float]) -> Difference {
    precondition(a.count == b.count, "arrays of \(a.count) and \(b.count) elements")
    var worst: Float = 0
    var at = 0
    for i in 0..<a.count {
        let d = abs(a[i] - b[i])
        let delta = d.isNaN ? Float.infinity : d
        if delta > worst {
            worst = delta
            at = i
        }
    }
    return Difference(maximumAbsolute: worst, index: at, values: a.isEmpty ? (0, 0) : (a[at], b[at]))
}

/// The largest difference relative to the reference's largest magnitude.
public func relativeDifference(_ a: [Float], reference: [Float]) -> Float {
    let scale = reference.map { abs($0) }.max() ?? 1
    return difference(a, reference).maximumAbsolute / max(scale, 1e-12)
}
