import CIntrinsics

/// Eight float lanes: the AVX2 register width the kernels are written for.
typealias Lanes = SIMD8<Float>

@inline(__always) func loadLanes(_ p: UnsafePointer<Float>) -> Lanes {
    UnsafeRawPointer(p).loadUnaligned(as: Lanes.self)
}

@inline(__always) func storeLanes(_ v: Lanes, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: Lanes.self)
}

/// e^x for x ≤ 0, eight lanes, accurate to about 1 ulp; below −87.34 it gives about 2^−126, the
/// smallest normal float. SiLU and softplus need no more: both are written in e^−|v|.
///
/// Cody–Waite reduction x = k·ln2 + r with |r| ≤ ln2/2, a degree-6 polynomial for e^r, and 2^k
/// (−126 ≤ k ≤ 0, so a normal float) built in the exponent bits. Written with `addingProduct`
/// because Swift never fuses `a*b+c`. A NaN stays NaN.
@inline(__always) func exponentialOfNonPositive(_ input: Lanes) -> Lanes {
    let x = input.replacing(with: -87.33654, where: input .< -87.33654)
    // Adding 1.5·2^23 rounds x·log2(e) to the nearest integer k in the low mantissa bits.
    let shifter = Lanes(repeating: 12_582_912.0)
    let shifted = shifter.addingProduct(x, binaryLogarithmOfE)
    let k = shifted - shifter
    var r = x.addingProduct(k, -0.693_359_375)
    r = r.addingProduct(k, 2.121_944_4e-4)
    var p = Lanes(repeating: 1.987_569_15e-4)
    p = Lanes(repeating: 1.398_199_95e-3).addingProduct(p, r)
    p = Lanes(repeating: 8.333_451_9e-3).addingProduct(p, r)
    p = Lanes(repeating: 4.166_579_59e-2).addingProduct(p, r)
    p = Lanes(repeating: 1.666_666_55e-1).addingProduct(p, r)
    p = Lanes(repeating: 5.000_000_12e-1).addingProduct(p, r)
    p = (r + 1).addingProduct(p, r * r)
    let power = (unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- (0x4B40_0000 - 127)) &<< 23
    return p * unsafeBitCast(power, to: Lanes.self)
}

/// log2(e): a rate A·log2(e) turns the scan's e^(Δ·A) into 2^(Δ·A·log2 e), which needs no Cody–Waite
/// reduction (as the official CUDA kernel, which calls exp2f on A·log2 e).
let binaryLogarithmOfE: Float = 1.442_695_04

/// 2^x for x ≤ 0, as the scan's Δ·A·log2(e) always is (Δ = softplus(·) ≥ 0, A = −exp(A_log) < 0),
/// within 1.8e−7 relative (2 ulp, as CUDA's exp2f); below −126 it gives the smallest normal float, 2^−126.
///
/// k = round(x) (to nearest, ties to even), r = x − k exactly, 2^r from a degree-5 polynomial with
/// constant term 1 (relative minimax error 9.2e−8 on [−½, ½]; 1.7e−7 evaluated in single precision),
/// and k added to its exponent bits, read from x + 1.5·2^23, whose low mantissa bits hold k: with
/// −126 ≤ k ≤ 0 and r ≥ 0 whenever k = −126 the result is a normal float, so the addition is exact.
/// The scan runs one per state update and is bound by the multiply–add ports: the sixth-degree term
/// (within 7.6e−8) made the fp32 scan 12 % slower, and k from the shifter (x + 1.5·2^23 − 1.5·2^23)
/// put two more additions on each update's dependency chain than the rounding instruction does.
///
/// A NaN input must be a NaN without payload (as `canonicalisingNaN` makes it): the exponent addition
/// could turn a NaN with other payload bits into a number.
@inline(__always) func binaryExponentialOfNonPositive(_ input: Lanes) -> Lanes {
    let x = input.replacing(with: -126, where: input .< -126)
    let shifter = Lanes(repeating: 12_582_912.0)
    let shifted = x + shifter
    let r = x - x.rounded(.toNearestOrEven)
    var p = Lanes(repeating: 1.326_472_7e-3)
    p = Lanes(repeating: 9.671_513e-3).addingProduct(p, r)
    p = Lanes(repeating: 5.550_733_6e-2).addingProduct(p, r)
    p = Lanes(repeating: 2.402_224_2e-1).addingProduct(p, r)
    p = Lanes(repeating: 6.931_470_04e-1).addingProduct(p, r)
    p = Lanes(repeating: 1).addingProduct(p, r)
    // The shifter's own bits leave the word when shifted by 23, so this is k in the exponent field.
    let power = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &<< 23
    return unsafeBitCast(unsafeBitCast(p, to: SIMD8<Int32>.self) &+ power, to: Lanes.self)
}

/// `values` with every NaN replaced by `Float.nan`, whose payload bits are zero.
@inline(__always) func canonicalisingNaN(_ values: Lanes) -> Lanes {
    values.replacing(with: .nan, where: values .!= values)
}

/// softplus(v) = ln(1 + e^v), and v itself above PyTorch's threshold of 20.
///
/// Written as max(v, 0) + ln(1 + t) with t = e^−|v| in (0, 1], which never overflows, and
/// ln(1 + t) = 2·atanh(s) with s = t / (2 + t) ≤ ⅓: the odd series of atanh to s^13 is within
/// 2e−8 of it, and keeps tiny t (very negative v) at full relative accuracy, as log1p does.
///
/// In two parts, t first (`negatedMagnitudeExponential`), so that a caller can compute t for a whole
/// row before the rest: each part is a shorter chain of dependent operations, and the processor
/// overlaps more of them (`Activation.softplus`).
@inline(__always) func softplus(_ v: Lanes, negatedMagnitudeExponential t: Lanes) -> Lanes {
    let s = t / (2 + t)
    let w = s * s
    var p = Lanes(repeating: 2 / 13)
    p = Lanes(repeating: 2 / 11).addingProduct(p, w)
    p = Lanes(repeating: 2 / 9).addingProduct(p, w)
    p = Lanes(repeating: 2 / 7).addingProduct(p, w)
    p = Lanes(repeating: 2 / 5).addingProduct(p, w)
    p = Lanes(repeating: 2 / 3).addingProduct(p, w)
    let logarithmOfOnePlusT = (s + s).addingProduct(s * w, p)
    let result = v.replacing(with: 0, where: v .< 0) + logarithmOfOnePlusT
    return result.replacing(with: v, where: v .> 20)
}

/// e^−|v|, the first part of `softplus`.
@inline(__always) func negatedMagnitudeExponential(_ v: Lanes) -> Lanes { exponentialOfNonPositive(-magnitude(v)) }

/// SiLU(v) = v·σ(v) = v / (1 + e^−v), computed with t = e^−|v| as v / (1 + t) for v ≥ 0 and
/// v·t / (1 + t) below, so the exponential never overflows.
@inline(__always) func silu(_ v: Lanes) -> Lanes {
    let t = negatedMagnitudeExponential(v)
    return v.replacing(with: v * t, where: v .< 0) / (1 + t)
}

/// |v| by clearing the sign bits (NaN stays NaN).
@inline(__always) func magnitude(_ v: Lanes) -> Lanes {
    unsafeBitCast(unsafeBitCast(v, to: SIMD8<UInt32>.self) & 0x7FFF_FFFF, to: Lanes.self)
}

/// Asks the processor to bring `count` floats from `start` into the cache: for rows read one after
/// another at a stride (a column range of a wider tensor, or time reversed), which the hardware
/// prefetcher does not follow across rows. A batch's activations exceed the L2 cache, so such a row
/// otherwise arrives from L3 while the kernel waits on its first loads.
@inline(__always) func prefetchForReading(_ start: UnsafePointer<Float>, count: Int) {
    cprefetch_lines_for_reading(start, count * MemoryLayout<Float>.stride)
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
