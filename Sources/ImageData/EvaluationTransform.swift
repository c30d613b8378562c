import TensorModule

/// The evaluation transform of the official Vim code (`datasets.build_transform(is_train=False)`):
/// resize the shorter side to ⌊size / crop ratio⌋ with PIL's bicubic filter, centre-crop `size`,
/// scale to [0, 1], normalise with the ImageNet mean and standard deviation.
///
/// For models whose input is 32 px or less the official code applies no resize or crop at all; the
/// image must then already have the model's size.
public struct EvaluationTransform: Sendable, Equatable {
    /// The model's input side in pixels.
    public var inputSize: Int
    /// The centre-crop ratio (the official default 0.875 resizes to 256 for 224).
    public var cropRatio: Double
    /// Per-channel mean subtracted after scaling to [0, 1].
    public var mean: [Float] = [0.485, 0.456, 0.406]
    /// Per-channel standard deviation divided by.
    public var standardDeviation: [Float] = [0.229, 0.224, 0.225]

    /// The transform for a model of `inputSize` pixels.
    public init(inputSize: Int = 224, cropRatio: Double = 0.875) {
        self.inputSize = inputSize
        self.cropRatio = cropRatio
    }

    /// The length the shorter side is resized to: `int(size / crop_ratio)`.
    public var resizeLength: Int { Int(Double(inputSize) / cropRatio) }

    /// The resized and cropped 8-bit image (`inputSize` square), before scaling and normalisation.
    ///
    /// - Throws: `ImageError.unsuitable` for a small model (no resize) and an image of another size.
    public func crop(_ image: RGBImage, path: String = "image") throws -> RGBImage {
        if inputSize <= 32 {
            guard image.width == inputSize && image.height == inputSize else {
                throw ImageError.unsuitable(
                    path: path,
                    detail:
                        "is \(image.width)x\(image.height); a model of \(inputSize) px takes images of exactly that size "
                        + "(the official transform does not resize below 33 px)")
            }
            return image
        }
        let short = min(image.width, image.height)
        let long = max(image.width, image.height)
        let newShort = resizeLength
        let newLong = Int(Double(newShort * long) / Double(short))
        let (width, height) = image.width <= image.height ? (newShort, newLong) : (newLong, newShort)
        let resized =
            (width == image.width && height == image.height)
            ? image : BicubicResize.apply(image, width: width, height: height)
        return centerCrop(resized, size: inputSize)
    }

    /// torchvision's `CenterCrop`: top = round((h − size) / 2), left = round((w − size) / 2) with
    /// Python's round (halves to even); an image smaller than the crop is first padded with zeros.
    func centerCrop(_ image: RGBImage, size: Int) -> RGBImage {
        var source = image
        if image.width < size || image.height < size {
            let width = max(image.width, size)
            let height = max(image.height, size)
            let left = (width - image.width) / 2
            let top = (height - image.height) / 2
            var padded = [UInt8](repeating: 0, count: width * height * 3)
            for y in 0..<image.height {
                let from = y * image.width * 3
                let to = ((y + top) * width + left) * 3
                padded.replaceSubrange(to..<(to + image.width * 3), with: image.pixels[from..<(from + image.width * 3)])
            }
            source = RGBImage(width: width, height: height, pixels: padded)
        }
        let top = Int((Double(source.height - size) / 2).rounded(.toNearestOrEven))
        let left = Int((Double(source.width - size) / 2).rounded(.toNearestOrEven))
        var out = [UInt8](repeating: 0, count: size * size * 3)
        for y in 0..<size {
            let from = ((y + top) * source.width + left) * 3
            out.replaceSubrange((y * size * 3)..<((y + 1) * size * 3), with: source.pixels[from..<(from + size * 3)])
        }
        return RGBImage(width: size, height: size, pixels: out)
    }

    /// The model input [3, size, size]: `(v / 255 − mean) / std` per channel, in float32 as torchvision.
    public func normalize(_ crop: RGBImage) -> Tensor {
        let plane = crop.width * crop.height
        var scalars = [Float](repeating: 0, count: 3 * plane)
        for p in 0..<plane {
            for c in 0..<3 {
                scalars[c * plane + p] = (Float(crop.pixels[p * 3 + c]) / 255 - mean[c]) / standardDeviation[c]
            }
        }
        return Tensor(shape: [3, crop.height, crop.width], scalars: scalars)
    }

    /// Decodes, crops and normalises one file: [3, size, size].
    public func callAsFunction(contentsOf path: String) throws -> Tensor {
        normalize(try crop(ImageDecoder.decode(contentsOf: path), path: path))
    }
}
