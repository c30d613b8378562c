import CZlib

/// Reads the raw samples of non-interlaced 16-bit PNGs with alpha (colour types 4 and 6).
///
/// libpng's simplified API hands such images out only as premultiplied linear samples, which loses
/// the colour where alpha is small; PIL keeps the high byte of each colour sample and drops alpha.
/// So for these two kinds the image data is inflated and unfiltered here.
enum PNGSampleReader {
    /// The RGB image PIL makes of a 16-bit grey+alpha or RGBA PNG, or nil for any other kind.
    static func decodeSixteenBitWithAlpha(_ bytes: [UInt8], path: String) throws -> RGBImage? {
        var offset = 8
        var width = 0
        var height = 0
        var colourType: UInt8 = 0
        var compressed: [UInt8] = []
        while offset + 12 <= bytes.count {
            let length =
                Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8
                | Int(bytes[offset + 3])
            guard offset + 12 + length <= bytes.count else { return nil }
            let type = String(decoding: bytes[(offset + 4)..<(offset + 8)], as: UTF8.self)
            let body = bytes[(offset + 8)..<(offset + 8 + length)]
            if type == "IHDR" {
                guard length == 13 else { return nil }
                let b = Array(body)
                width = Int(b[0]) << 24 | Int(b[1]) << 16 | Int(b[2]) << 8 | Int(b[3])
                height = Int(b[4]) << 24 | Int(b[5]) << 16 | Int(b[6]) << 8 | Int(b[7])
                colourType = b[9]
                guard b[8] == 16, colourType == 4 || colourType == 6 else { return nil }
                guard b[12] == 0 else {
                    throw ImageError.unsupportedFormat(path: path, detail: "interlaced 16-bit PNG with alpha")
                }
                guard width > 0, height > 0, width * height <= 1 << 26 else {
                    throw ImageError.corrupt(path: path, detail: "implausible size \(width)x\(height)")
                }
            } else if type == "IDAT" {
                compressed += body
            } else if type == "IEND" {
                break
            }
            offset += 12 + length
        }
        guard width > 0 else { return nil }
        let pixelBytes = colourType == 4 ? 4 : 8
        let rowBytes = width * pixelBytes
        var raw = [UInt8](repeating: 0, count: height * (rowBytes + 1))
        var produced = uLongf(raw.count)
        let status = raw.withUnsafeMutableBufferPointer { out in
            compressed.withUnsafeBufferPointer { src in
                uncompress(out.baseAddress, &produced, src.baseAddress, uLong(src.count))
            }
        }
        guard status == Z_OK, Int(produced) == raw.count else {
            throw ImageError.corrupt(path: path, detail: "the PNG image data does not inflate to its declared size")
        }
        var previous = [UInt8](repeating: 0, count: rowBytes)
        var rgb = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            let filter = raw[y * (rowBytes + 1)]
            var row = Array(raw[(y * (rowBytes + 1) + 1)..<((y + 1) * (rowBytes + 1))])
            try unfilter(&row, previous: previous, filter: filter, pixelBytes: pixelBytes, path: path)
            for x in 0..<width {
                let p = x * pixelBytes
                for c in 0..<3 {
                    rgb[(y * width + x) * 3 + c] = colourType == 4 ? row[p] : row[p + 2 * c]
                }
            }
            previous = row
        }
        return RGBImage(width: width, height: height, pixels: rgb)
    }

    /// Undoes one of PNG's five row filters in place.
    private static func unfilter(
        _ row: inout [UInt8], previous: [UInt8], filter: UInt8, pixelBytes: Int, path: String
    ) throws {
        for i in row.indices {
            let left = i >= pixelBytes ? Int(row[i - pixelBytes]) : 0
            let up = Int(previous[i])
            let upLeft = i >= pixelBytes ? Int(previous[i - pixelBytes]) : 0
            let predictor: Int
            switch filter {
            case 0: predictor = 0
            case 1: predictor = left
            case 2: predictor = up
            case 3: predictor = (left + up) / 2
            case 4:
                let estimate = left + up - upLeft
                let (a, b, c) = (abs(estimate - left), abs(estimate - up), abs(estimate - upLeft))
                predictor = a <= b && a <= c ? left : (b <= c ? up : upLeft)
            default:
                throw ImageError.corrupt(path: path, detail: "unknown PNG row filter \(filter)")
            }
            row[i] = UInt8(truncatingIfNeeded: Int(row[i]) + predictor)
        }
    }
}
