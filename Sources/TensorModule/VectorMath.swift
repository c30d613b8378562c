/// Eight float lanes: the AVX2 register width the kernels are written for.
typealias Lanes = SIMD8<Float>

@inline(__always) func loadLanes(_ p: UnsafePointer<Float>) -> Lanes {
    UnsafeRawPointer(p).loadUnaligned(as: Lanes.self)
}

@inline(__always) func storeLanes(_ v: Lanes, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: Lanes.self)
}

/// e^x for eight lanes, accurate to about 1 ulp over the float range (inputs below −87.3 give 0-ish
/// denormal-free results, above ln(Float.greatestFiniteMagnitude) give +inf as expf does).
///
/// Cody–Waite reduction x = k·ln2 + r with |r| ≤ ln2/2, a degree-6 polynomial for e^r, and 2^k built
/// in the exponent bits. Written with `addingProduct` because Swift never fuses `a*b+c`.
@inline(__always) func exponential(_ input: Lanes) -> Lanes {
    var x = input.replacing(with: -87.33654, where: input .< -87.33654)
    x = x.replacing(with: 89, where: x .> 89)
    let (p, shifted) = exponentialCore(x)
    // k may be 128 at the top clamp: split the power of two in two factors so it cannot overflow.
    let bits = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- 0x4B40_0000
    let half = bits &>> 1
    let scaleA = unsafeBitCast((half &+ 127) &<< 23, to: Lanes.self)
    let scaleB = unsafeBitCast((bits &- half &+ 127) &<< 23, to: Lanes.self)
    return p * scaleA * scaleB
}

/// exp for x ≤ 0, as the scan's Δ·A always is (Δ = softplus(·) ≥ 0, A = −exp(A_log) < 0); a
/// positive input gives exp(0) = 1. With k ≥ −126 a single power of two scales the polynomial, and
/// the result equals `exponential`'s bit for bit on every x ≤ 0 (power-of-two scaling is exact).
@inline(__always) func exponentialOfNonPositive(_ input: Lanes) -> Lanes {
    var x = input.replacing(with: -87.33654, where: input .< -87.33654)
    x = x.replacing(with: 0, where: x .> 0)
    let (p, shifted) = exponentialCore(x)
    let bits = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- (0x4B40_0000 - 127)
    return p * unsafeBitCast(bits &<< 23, to: Lanes.self)
}

/// e^r on the reduced range and the shifted x·log2(e) whose low mantissa bits hold k (x = k·ln 2 + r).
@inline(__always) private func exponentialCore(_ x: Lanes) -> (polynomial: Lanes, shifted: Lanes) {
    // Adding 1.5·2^23 rounds x·log2(e) to the nearest integer in the low mantissa bits.
    let shifter = Lanes(repeating: 12_582_912.0)
    let shifted = shifter.addingProduct(x, 1.442_695_04)
    let k = shifted - shifter
    var r = x.addingProduct(k, -0.693_359_375)
    r = r.addingProduct(k, 2.121_944_4e-4)
    var p = Lanes(repeating: 1.987_569_15e-4)
    p = Lanes(repeating: 1.398_199_95e-3).addingProduct(p, r)
    p = Lanes(repeating: 8.333_451_9e-3).addingProduct(p, r)
    p = Lanes(repeating: 4.166_579_59e-2).addingProduct(p, r)
    p = Lanes(repeating: 1.666_666_55e-1).addingProduct(p, r)
    p = Lanes(repeating: 5.000_000_12e-1).addingProduct(p, r)
    return ((r + 1).addingProduct(p, r * r), shifted)
}

/// ln(x) for eight lanes of positive, finite x, accurate to about 1 ulp.
///
/// x = m·2^e with m in [√½, √2); ln m from the Cephes minimax polynomial in f = m − 1, and e·ln2
/// added in two parts (Cody–Waite) so the sum stays exact.
@inline(__always) func logarithm(_ x: Lanes) -> Lanes {
    let bits = unsafeBitCast(x, to: SIMD8<UInt32>.self)
    // The biased exponent as a float, exactly: its 8 bits placed in the mantissa of 2^23, minus 2^23.
    // (SIMD integer selects and int-to-float lane conversions compile to per-lane loops.)
    var e = unsafeBitCast(((bits &>> 23) & 0xFF) | 0x4B00_0000, to: Lanes.self) - (8_388_608 + 127)
    var mantissa = unsafeBitCast((bits & 0x007F_FFFF) | 0x3F80_0000, to: Lanes.self)
    let large = mantissa .> 1.414_213_56
    mantissa = mantissa.replacing(with: mantissa * 0.5, where: large)
    e = e.replacing(with: e + 1, where: large)
    let f = mantissa - 1
    let z = f * f
    var p = Lanes(repeating: 7.037_683_629_2e-2)
    p = Lanes(repeating: -1.151_461_031_0e-1).addingProduct(p, f)
    p = Lanes(repeating: 1.167_699_874_0e-1).addingProduct(p, f)
    p = Lanes(repeating: -1.242_014_084_6e-1).addingProduct(p, f)
    p = Lanes(repeating: 1.424_932_278_7e-1).addingProduct(p, f)
    p = Lanes(repeating: -1.666_805_766_5e-1).addingProduct(p, f)
    p = Lanes(repeating: 2.000_071_476_5e-1).addingProduct(p, f)
    p = Lanes(repeating: -2.499_999_399_3e-1).addingProduct(p, f)
    p = Lanes(repeating: 3.333_333_117_4e-1).addingProduct(p, f)
    var y = f * z * p
    y = y.addingProduct(e, -2.121_944_4e-4)
    y = y.addingProduct(z, -0.5)
    return (f + y).addingProduct(e, 0.693_359_375)
}

/// min(−log2(1 − x), cap) for every element, eight at a time: the distance of x below 1 in octaves
/// (LtSQ's coordinate for Ā), from `logarithm` · log2(e), within about 2 ulp.
///
/// x ≥ 1 gives `cap`; NaN stays NaN.
public func negatedBinaryLogarithmsOfComplement(_ values: [Float], cappedAt cap: Float) -> [Float] {
    var out = values
    out.withUnsafeMutableBufferPointer { p in
        forEachLanes(count: p.count) { i, n in
            let gap = 1 - loadPartial(p.baseAddress! + i, n)
            let positive = gap .> 0
            var distance = -(logarithm(gap.replacing(with: 1, where: .!positive)) * 1.442_695_04)
            distance = distance.replacing(with: cap, where: .!positive .| (distance .> cap))
            storePartial(distance.replacing(with: gap, where: gap .!= gap), p.baseAddress! + i, n)
        }
    }
    return out
}

/// softplus(v) = ln(1 + e^v), and v itself above PyTorch's threshold of 20.
///
/// ln(1 + t) is computed as ln(u) − ((u − 1) − t) / u with u = 1 + t: the correction restores what
/// rounding 1 + t lost, so tiny t (very negative v) keep full relative accuracy, as log1p does.
@inline(__always) func softplus(_ v: Lanes) -> Lanes {
    let t = exponential(v.replacing(with: 0, where: v .> 20))
    let u = 1 + t
    let result = logarithm(u) - ((u - 1) - t) / u
    return result.replacing(with: v, where: v .> 20)
}

/// SiLU(v) = v·σ(v) = v / (1 + e^−v), as the official kernels compute it.
@inline(__always) func silu(_ v: Lanes) -> Lanes {
    v / (1 + exponential(-v))
}

@inline(__always) func siluScalar(_ v: Float) -> Float {
    var lanes = Lanes(repeating: 0)
    lanes[0] = v
    return silu(lanes)[0]
}

/// Applies `body` to `count` floats in chunks of eight lanes, with a zero-padded last chunk.
@inline(__always) func forEachLanes(
    count: Int, _ body: (_ offset: Int, _ width: Int) -> Void
) {
    var i = 0
    while i + 8 <= count {
        body(i, 8)
        i += 8
    }
    if i < count { body(i, count - i) }
}

@inline(__always) func loadPartial(_ p: UnsafePointer<Float>, _ width: Int) -> Lanes {
    if width == 8 { return loadLanes(p) }
    var v = Lanes(repeating: 0)
    for j in 0..<width { v[j] = p[j] }
    return v
}

@inline(__always) func storePartial(_ v: Lanes, _ p: UnsafeMutablePointer<Float>, _ width: Int) {
    if width == 8 {
        storeLanes(v, p)
        return
    }
    for j in 0..<width { p[j] = v[j] }
}

/// The smallest and largest of `values`, NaNs ignored (+∞ and −∞ when there is no other value),
/// eight at a time.
public func extremaIgnoringNaN(_ values: UnsafeBufferPointer<Float>) -> (minimum: Float, maximum: Float) {
    var low = Lanes(repeating: .infinity)
    var high = Lanes(repeating: -.infinity)
    forEachLanes(count: values.count) { i, width in
        // Missing lanes of a partial load repeat the first value, so they cannot move either extreme.
        var v = width == 8 ? loadLanes(values.baseAddress! + i) : Lanes(repeating: values[i])
        for j in 0..<width where width < 8 { v[j] = values[i + j] }
        low = low.replacing(with: v, where: v .< low)
        high = high.replacing(with: v, where: v .> high)
    }
    return (low.min(), high.max())
}
