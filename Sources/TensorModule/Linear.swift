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
    public static func apply(_ input: Tensor, weight: Tensor, bias: [Float]? = nil) -> Tensor {
        precondition(weight.rank == 2, "weight must be [out, in], got \(weight.shape)")
        let k = weight.shape[1]
        let n = weight.shape[0]
        precondition(input.shape.last == k, "input \(input.shape) does not end in \(k)")
        let m = input.count / max(k, 1)
        var out = [Float](repeating: 0, count: m * n)
        if let bias {
            precondition(bias.count == n)
            for row in 0..<m { out.withUnsafeMutableBufferPointer { p in
                for j in 0..<n { p[row * n + j] = bias[j] }
            } }
        }
        if m > 0 && n > 0 && k > 0 {
            cblas_sgemm(
                CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k), 1,
                input.scalars, Int32(k), weight.scalars, Int32(k), bias == nil ? 0 : 1, &out, Int32(n))
        }
        return Tensor(shape: Array(input.shape.dropLast()) + [n], scalars: out)
    }

    /// Multiplies a strided sub-matrix: columns `columns` of every row of `input` [M, W] by `weight` [N, K]
    /// where K = `columns.count`. Used to apply `dt_proj` to the first R columns of `x_proj`'s output
    /// without copying them out.
    public static func apply(
        _ input: Tensor, columns: Range<Int>, weight: Tensor
    ) -> Tensor {
        precondition(weight.rank == 2 && weight.shape[1] == columns.count)
        let width = input.shape.last ?? 0
        precondition(columns.upperBound <= width)
        let m = input.count / max(width, 1)
        let n = weight.shape[0]
        let k = columns.count
        var out = [Float](repeating: 0, count: m * n)
        input.scalars.withUnsafeBufferPointer { src in
            guard let base = src.baseAddress, m > 0, n > 0, k > 0 else { return }
            cblas_sgemm(
                CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k), 1,
                base + columns.lowerBound, Int32(width), weight.scalars, Int32(k), 0, &out, Int32(n))
        }
        return Tensor(shape: Array(input.shape.dropLast()) + [n], scalars: out)
    }
}
