/// The strided 2-D convolution that turns an image into a grid of patch tokens.
public enum PatchEmbedding {
    /// Convolves `images` [B, C, H, W] with `weight` [D, C, P, P] and `bias` [D] at stride `stride`
    /// (no padding) and returns the tokens [B, G·G, D] in row-major grid order, G = (H − P) / stride + 1.
    ///
    /// Implemented as patch extraction (im2col) followed by one matrix product, so overlapping
    /// (stride < P) and non-overlapping patches take the same path.
    public static func apply(_ images: Tensor, weight: Tensor, bias: [Float], stride: Int) -> Tensor {
        precondition(images.rank == 4 && weight.rank == 4 && stride > 0)
        let (batch, channels, height, width) = (images.shape[0], images.shape[1], images.shape[2], images.shape[3])
        let (dim, patch) = (weight.shape[0], weight.shape[2])
        precondition(weight.shape[1] == channels && weight.shape[3] == patch && height >= patch && width >= patch)
        let rowsOut = (height - patch) / stride + 1
        let colsOut = (width - patch) / stride + 1
        let patchSize = channels * patch * patch
        var columns = [Float](repeating: 0, count: batch * rowsOut * colsOut * patchSize)
        images.scalars.withUnsafeBufferPointer { src in
            columns.withUnsafeMutableBufferPointer { dst in
                var o = 0
                for b in 0..<batch {
                    for gy in 0..<rowsOut {
                        for gx in 0..<colsOut {
                            for ch in 0..<channels {
                                let plane = (b * channels + ch) * height * width
                                for ky in 0..<patch {
                                    let rowStart = plane + (gy * stride + ky) * width + gx * stride
                                    for kx in 0..<patch {
                                        dst[o] = src[rowStart + kx]
                                        o += 1
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let patches = Tensor(shape: [batch, rowsOut * colsOut, patchSize], scalars: columns)
        return Linear.apply(patches, weight: weight.reshaped([dim, patchSize]), bias: bias)
    }
}
