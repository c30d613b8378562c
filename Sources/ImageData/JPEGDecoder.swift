import CTurboJPEG
import Foundation

/// JPEG decoding through TurboJPEG's error-code API (libjpeg's own API reports errors by longjmp,
/// which Swift cannot use).
///
/// With default flags TurboJPEG uses the accurate integer IDCT and fancy upsampling, as PIL does, so
/// RGB, greyscale and progressive files decode bit-identically to PIL. CMYK/YCCK files are decoded to
/// CMYK and converted with PIL's own formula.
enum JPEGDecoder {
    static func decode(_ data: Data, path: String) throws -> RGBImage {
        guard let handle = tjInitDecompress() else {
            throw ImageError.corrupt(path: path, detail: "cannot start the JPEG decoder")
        }
        defer { tjDestroy(handle) }
        return try data.withUnsafeBytes { raw -> RGBImage in
            let source = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            var width: Int32 = 0
            var height: Int32 = 0
            var subsampling: Int32 = 0
            var colorspace: Int32 = 0
            guard tjDecompressHeader3(handle, source, UInt(raw.count), &width, &height, &subsampling, &colorspace) == 0
            else { throw ImageError.corrupt(path: path, detail: message(handle)) }
            guard width > 0, height > 0, Int(width) * Int(height) <= 1 << 28 else {
                throw ImageError.corrupt(path: path, detail: "implausible size \(width)x\(height)")
            }
            let (w, h) = (Int(width), Int(height))
            let isCMYK = colorspace == Int32(TJCS_CMYK.rawValue) || colorspace == Int32(TJCS_YCCK.rawValue)
            let channels = isCMYK ? 4 : 3
            var pixels = [UInt8](repeating: 0, count: w * h * channels)
            let format = isCMYK ? TJPF_CMYK : TJPF_RGB
            let status = pixels.withUnsafeMutableBufferPointer {
                tjDecompress2(
                    handle, source, UInt(raw.count), $0.baseAddress, width, 0, height, Int32(format.rawValue), 0)
            }
            if status != 0 {
                // PIL accepts files that only draw libjpeg warnings (e.g. extraneous bytes), except a
                // file that ends early, which it reports as truncated.
                let text = message(handle)
                if tjGetErrorCode(handle) != Int32(TJERR_WARNING.rawValue) || text.contains("Premature end") {
                    throw ImageError.corrupt(path: path, detail: text)
                }
            }
            guard isCMYK else { return RGBImage(width: w, height: h, pixels: pixels) }
            return RGBImage(
                width: w, height: h, pixels: cmykToRGB(pixels, inverted: hasAdobeMarker(raw)))
        }
    }

    private static func message(_ handle: tjhandle) -> String {
        String(cString: tjGetErrorStr2(handle))
    }

    /// PIL's CMYK → RGB: with k' and c' the (possibly un-inverted) ink values,
    /// `r = (255 − k') − c'·(255 − k') / 255` with its rounded integer division.
    private static func cmykToRGB(_ cmyk: [UInt8], inverted: Bool) -> [UInt8] {
        let count = cmyk.count / 4
        var rgb = [UInt8](repeating: 0, count: count * 3)
        for i in 0..<count {
            let ink = (0..<4).map { c -> Int in
                let v = Int(cmyk[i * 4 + c])
                return inverted ? 255 - v : v
            }
            let notBlack = 255 - ink[3]
            for c in 0..<3 {
                let t = ink[c] * notBlack + 128
                rgb[i * 3 + c] = UInt8(clamping: notBlack - (((t >> 8) + t) >> 8))
            }
        }
        return rgb
    }

    /// Whether the file has an APP14 "Adobe" segment; PIL reads such CMYK data as inverted.
    private static func hasAdobeMarker(_ raw: UnsafeRawBufferPointer) -> Bool {
        var i = 2
        while i + 4 <= raw.count {
            guard raw[i] == 0xFF else { return false }
            let marker = raw[i + 1]
            if marker == 0xDA || marker == 0xD9 { return false }  // start of scan / end of image
            if marker == 0xFF {
                i += 1
                continue
            }
            let length = Int(raw[i + 2]) << 8 | Int(raw[i + 3])
            if marker == 0xEE, length >= 7, i + 9 <= raw.count,
                Array(raw[(i + 4)..<(i + 9)]) == Array("Adobe".utf8)
            {
                return true
            }
            i += 2 + length
        }
        return false
    }
}
