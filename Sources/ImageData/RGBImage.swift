/// An 8-bit RGB image, rows top to bottom, pixels interleaved R, G, B (what PIL's `convert('RGB')` holds).
public struct RGBImage: Equatable, Sendable {
    /// Width in pixels.
    public let width: Int
    /// Height in pixels.
    public let height: Int
    /// `width · height · 3` bytes.
    public var pixels: [UInt8]

    /// Wraps interleaved RGB bytes.
    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width >= 0 && height >= 0 && pixels.count == width * height * 3)
        self.width = width
        self.height = height
        self.pixels = pixels
    }
}
