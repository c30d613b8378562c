/// PIL's `Image.resize(size, Image.BICUBIC)` on 8-bit images, reproduced bit for bit.
///
/// As in Pillow's `Resample.c`: a separable convolution with the Keys cubic (a = −0.5, support 2)
/// widened by the scale factor when shrinking (antialiasing); per output pixel the window
/// [⌊centre − support + ½⌋, ⌊centre + support + ½⌋) clipped to the image, weights normalised to sum 1
/// in double precision, then rounded half away from zero to 22-bit fixed point. Each pass accumulates
/// integers from 2²¹ and shifts right by 22, clamped to 0…255. The horizontal pass runs first, into an
/// 8-bit intermediate, then the vertical pass; an axis whose size does not change is not resampled.
public enum BicubicResize {
    static let precisionBits = 22

    /// The cubic convolution kernel with a = −0.5.
    static func cubic(_ t: Double) -> Double {
        let a = -0.5
        let x = abs(t)
        if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
        if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
        return 0
    }

    /// Fixed-point taps of one axis: for output i, `first[i]` and `weights[i]` (one per input sample).
    struct Taps {
        var first: [Int] = []
        var weights: [[Int32]] = []

        init(inputSize: Int, outputSize: Int) {
            let scale = Double(inputSize) / Double(outputSize)
            let filterScale = max(scale, 1)
            let support = 2 * filterScale
            let one = Double(1 << BicubicResize.precisionBits)
            for i in 0..<outputSize {
                let center = (Double(i) + 0.5) * scale
                let lower = max(Int(center - support + 0.5), 0)
                let upper = min(Int(center + support + 0.5), inputSize)
                var raw: [Double] = []
                var total = 0.0
                if upper > lower {
                    for x in lower..<upper {
                        let w = BicubicResize.cubic((Double(x) - center + 0.5) / filterScale)
                        raw.append(w)
                        total += w
                    }
                }
                first.append(lower)
                weights.append(
                    raw.map { w in
                        let normalised = total != 0 ? w / total : w
                        return Int32(normalised < 0 ? (-0.5 + normalised * one) : (0.5 + normalised * one))
                    })
            }
        }
    }

    @inline(__always) static func clip8(_ sum: Int32) -> UInt8 {
        let shifted = sum >> Int32(precisionBits)
        return shifted < 0 ? 0 : (shifted > 255 ? 255 : UInt8(shifted))
    }

    /// Resizes to `width` × `height`.
    public static func apply(_ image: RGBImage, width: Int, height: Int) -> RGBImage {
        precondition(width > 0 && height > 0)
        var current = image
        if width != current.width { current = horizontal(current, width: width) }
        if height != current.height { current = vertical(current, height: height) }
        return current
    }

    private static func horizontal(_ image: RGBImage, width: Int) -> RGBImage {
        let taps = Taps(inputSize: image.width, outputSize: width)
        var out = [UInt8](repeating: 0, count: width * image.height * 3)
        let rounding = Int32(1 << (precisionBits - 1))
        image.pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for y in 0..<image.height {
                    let row = y * image.width * 3
                    for x in 0..<width {
                        var sums = (rounding, rounding, rounding)
                        let first = taps.first[x]
                        for (k, w) in taps.weights[x].enumerated() {
                            let p = row + (first + k) * 3
                            sums.0 &+= Int32(src[p]) &* w
                            sums.1 &+= Int32(src[p + 1]) &* w
                            sums.2 &+= Int32(src[p + 2]) &* w
                        }
                        let o = (y * width + x) * 3
                        dst[o] = clip8(sums.0)
                        dst[o + 1] = clip8(sums.1)
                        dst[o + 2] = clip8(sums.2)
                    }
                }
            }
        }
        return RGBImage(width: width, height: image.height, pixels: out)
    }

    private static func vertical(_ image: RGBImage, height: Int) -> RGBImage {
        let taps = Taps(inputSize: image.height, outputSize: height)
        let rowLength = image.width * 3
        var out = [UInt8](repeating: 0, count: rowLength * height)
        let rounding = Int32(1 << (precisionBits - 1))
        var sums = [Int32](repeating: 0, count: rowLength)
        image.pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for y in 0..<height {
                    for i in 0..<rowLength { sums[i] = rounding }
                    let first = taps.first[y]
                    for (k, w) in taps.weights[y].enumerated() {
                        let row = (first + k) * rowLength
                        for i in 0..<rowLength { sums[i] &+= Int32(src[row + i]) &* w }
                    }
                    for i in 0..<rowLength { dst[y * rowLength + i] = clip8(sums[i]) }
                }
            }
        }
        return RGBImage(width: image.width, height: height, pixels: out)
    }
}
