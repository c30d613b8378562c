import CBLAS

/// Matrix products in PyTorch's `nn.Linear` layout, computed by BLAS.
public enum Linear {
    /// Limits OpenBLAS to one thread: parallelism comes from MPI ranks, and two BLAS pools per core
    /// fight for it (Docs/PERFORMANCE.md).
    public static func useSingleThreadedBLAS() {
        openblas_set_num_threads(1)
    }

    /// `output[m, n] = Σ_k input[m, k] · weight[n, k] + bias[n]` for `input` [M, K] and `weight` [N, K].
    ///
    /// `input` may have any leading dimensions; they are flattened into M. The result keeps them and
    /// replaces the last extent by N.
    ///
    /// BLAS picks its blocking from M, so the rounding of a row can depend on how many rows share the
    /// call. The product is therefore computed one outermost slice (one image) at a time: an image's
    /// result is the same whatever batch or MPI shard it is computed in.
    public static func apply(_ input: Tensor, weight: Tensor, bias: [Float]? = nil) -> Tensor {
        precondition(weight.rank == 2, "weight must be [out, in], got \(weight.shape)")
        let k = weight.shape[1]
        let n = weight.shape[0]
        precondition(input.shape.last == k, "input \(input.shape) does not end in \(k)")
        let m = input.count / max(k, 1)
        // The bias fill, or else sgemm with β = 0 (which leaves C unread), writes every output; only a
        // product of no terms (K = 0) without a bias needs zeros.
        var out = bias != nil || k > 0 ? [Float](overwrittenCount: m * n) : [Float](repeating: 0, count: m * n)
        if let bias {
            precondition(bias.count == n)
            for row in 0..<m {
                out.withUnsafeMutableBufferPointer { p in
                    for j in 0..<n { p[row * n + j] = bias[j] }
                }
            }
        }
        let slices = input.rank > 1 ? input.shape[0] : 1
        let rowsPerSlice = m / max(slices, 1)
        if rowsPerSlice > 0 && n > 0 && k > 0 {
            input.scalars.withUnsafeBufferPointer { x in
                weight.scalars.withUnsafeBufferPointer { w in
                    out.withUnsafeMutableBufferPointer { y in
                        for slice in 0..<slices {
                            cblas_sgemm(
                                CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rowsPerSlice), Int32(n), Int32(k), 1,
                                x.baseAddress! + slice * rowsPerSlice * k, Int32(k), w.baseAddress, Int32(k),
                                bias == nil ? 0 : 1, y.baseAddress! + slice * rowsPerSlice * n, Int32(n))
                        }
                    }
                }
            }
        }
        return Tensor(shape: Array(input.shape.dropLast()) + [n], scalars: out)
    }
}
