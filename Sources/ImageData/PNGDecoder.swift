import CPNG
import Foundation

/// PNG decoding through libpng's simplified `png_image` API (its classic API reports errors by
/// longjmp, which Swift cannot use), converted to RGB as PIL does.
///
/// PIL's rules, which differ from libpng's defaults: alpha is dropped, not composited; 16-bit colour
/// keeps the high byte; 16-bit grey (PIL mode "I") is clipped to 255; gamma and colour-profile chunks
/// are ignored. To keep libpng from applying gamma, those chunks are removed before decoding; 16-bit
/// images with alpha are read by `PNGSampleReader`.
enum PNGDecoder {
    /// Ancillary chunks that make the simplified API transform sample values.
    private static let colourManagementChunks: Set<String> = ["gAMA", "sRGB", "iCCP", "cHRM"]

    static func decode(_ data: Data, path: String) throws -> RGBImage {
        let bytes = [UInt8](data)
        if let image = try PNGSampleReader.decodeSixteenBitWithAlpha(bytes, path: path) { return image }
        let (stripped, is16BitGrey) = try withoutColourManagement(bytes, path: path)
        // libpng keeps reading from the memory given to begin_read until finish_read: one scope for both.
        return try stripped.withUnsafeBytes { raw in
            var image = png_image()
            image.version = UInt32(PNG_IMAGE_VERSION)
            defer { png_image_free(&image) }
            guard png_image_begin_read_from_memory(&image, raw.baseAddress, raw.count) != 0 else {
                throw ImageError.corrupt(path: path, detail: message(&image))
            }
            let (w, h) = (Int(image.width), Int(image.height))
            guard w > 0, h > 0, w * h <= 1 << 28 else {
                throw ImageError.corrupt(path: path, detail: "implausible size \(w)x\(h)")
            }
            let sixteenBit = image.format & UInt32(PNG_FORMAT_FLAG_LINEAR) != 0
            let channels = is16BitGrey ? 1 : 4
            image.format =
                (is16BitGrey ? 0 : UInt32(PNG_FORMAT_FLAG_COLOR) | UInt32(PNG_FORMAT_FLAG_ALPHA))
                | (sixteenBit ? UInt32(PNG_FORMAT_FLAG_LINEAR) : 0)
            let sampleCount = w * h * channels
            var rgb = [UInt8](repeating: 0, count: w * h * 3)
            if sixteenBit {
                var samples = [UInt16](repeating: 0, count: sampleCount)
                let done = samples.withUnsafeMutableBytes { png_image_finish_read(&image, nil, $0.baseAddress, 0, nil) }
                guard done != 0 else { throw ImageError.corrupt(path: path, detail: message(&image)) }
                for p in 0..<(w * h) {
                    for c in 0..<3 {
                        rgb[p * 3 + c] = is16BitGrey ? UInt8(min(samples[p], 255)) : UInt8(samples[p * 4 + c] >> 8)
                    }
                }
            } else {
                var samples = [UInt8](repeating: 0, count: sampleCount)
                let done = samples.withUnsafeMutableBytes { png_image_finish_read(&image, nil, $0.baseAddress, 0, nil) }
                guard done != 0 else { throw ImageError.corrupt(path: path, detail: message(&image)) }
                for p in 0..<(w * h) {
                    for c in 0..<3 { rgb[p * 3 + c] = samples[p * 4 + c] }
                }
            }
            return RGBImage(width: w, height: h, pixels: rgb)
        }
    }

    private static func message(_ image: inout png_image) -> String {
        withUnsafeBytes(of: &image.message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    /// The PNG without gAMA/sRGB/iCCP/cHRM chunks, and whether it is 16-bit greyscale (with or
    /// without alpha is told apart: only colour type 0 becomes PIL mode "I").
    private static func withoutColourManagement(_ bytes: [UInt8], path: String) throws -> ([UInt8], Bool) {
        var output = Array(bytes.prefix(8))
        var offset = 8
        var is16BitGrey = false
        while offset + 12 <= bytes.count {
            let length =
                Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8
                | Int(bytes[offset + 3])
            let end = offset + 12 + length
            guard length >= 0, end <= bytes.count else {
                throw ImageError.corrupt(path: path, detail: "a PNG chunk runs past the end of the file (truncated?)")
            }
            let type = String(decoding: bytes[(offset + 4)..<(offset + 8)], as: UTF8.self)
            if type == "IHDR", length >= 10 {
                is16BitGrey = bytes[offset + 16] == 16 && bytes[offset + 17] == 0
            }
            if !colourManagementChunks.contains(type) { output += bytes[offset..<end] }
            offset = end
            if type == "IEND" { break }
        }
        return (output, is16BitGrey)
    }
}
