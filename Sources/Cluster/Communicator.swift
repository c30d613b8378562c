import CMPI
import Foundation

/// The MPI job this process belongs to: its rank, the number of ranks, and collective operations.
///
/// Started without `mpirun` the process is a job of one rank (MPI's singleton mode). MPI's default
/// error handler is kept, so a failed communication ends the whole job instead of leaving ranks
/// waiting. A rank that meets an error of its own calls `abort(_:)`, which prints the message with
/// the rank and ends every rank.
public final class Communicator: @unchecked Sendable {
    /// This process's rank, 0 ..< size.
    public let rank: Int
    /// The number of ranks in the job.
    public let size: Int
    private let world: MPI_Comm
    private var finalized = false

    /// Element-wise reductions of `allReduce`.
    public enum Reduction: Sendable {
        case sum, minimum, maximum

        var handle: MPI_Op {
            switch self {
            case .sum: return cmpi_sum()
            case .minimum: return cmpi_min()
            case .maximum: return cmpi_max()
            }
        }
    }

    /// Initialises MPI (once per process) and joins the job.
    public init() {
        var initialized: Int32 = 0
        MPI_Initialized(&initialized)
        if initialized == 0 {
            var provided: Int32 = 0
            MPI_Init_thread(nil, nil, Int32(MPI_THREAD_FUNNELED), &provided)
        }
        world = cmpi_comm_world()
        var rank: Int32 = 0
        var size: Int32 = 0
        MPI_Comm_rank(world, &rank)
        MPI_Comm_size(world, &size)
        self.rank = Int(rank)
        self.size = Int(size)
    }

    /// Whether this is rank 0, which reads shared inputs, fits and writes results.
    public var isRoot: Bool { rank == 0 }

    /// The MPI library's version string.
    public static var libraryVersion: String {
        var buffer = [CChar](repeating: 0, count: Int(MPI_MAX_LIBRARY_VERSION_STRING))
        var length: Int32 = 0
        MPI_Get_library_version(&buffer, &length)
        return String(cString: buffer).split(separator: "\n").first.map(String.init) ?? ""
    }

    /// Seconds since an arbitrary point, from MPI's clock.
    public static var time: Double { MPI_Wtime() }

    /// Combines `values` element-wise over all ranks; every rank receives the result.
    public func allReduce(_ values: inout [Int64], _ reduction: Reduction) {
        guard size > 1, !values.isEmpty else { return }
        MPI_Allreduce(cmpi_in_place(), &values, Int32(values.count), cmpi_int64(), reduction.handle, world)
    }

    /// Combines `values` element-wise over all ranks; every rank receives the result.
    ///
    /// Floating-point sums depend on the order MPI combines them in; use integer counts where the
    /// result must not depend on the number of ranks.
    public func allReduce(_ values: inout [Double], _ reduction: Reduction) {
        guard size > 1, !values.isEmpty else { return }
        MPI_Allreduce(cmpi_in_place(), &values, Int32(values.count), cmpi_double(), reduction.handle, world)
    }

    /// Sends `bytes` from `root` to every rank (other ranks' contents are replaced).
    public func broadcast(_ bytes: inout [UInt8], root: Int = 0) {
        guard size > 1 else { return }
        var count = Int64(bytes.count)
        MPI_Bcast(&count, 1, cmpi_int64(), Int32(root), world)
        if rank != root { bytes = [UInt8](repeating: 0, count: Int(count)) }
        var offset = 0
        while offset < bytes.count {
            let chunk = min(bytes.count - offset, Int(Int32.max))
            bytes.withUnsafeMutableBytes { p in
                _ = MPI_Bcast(p.baseAddress! + offset, Int32(chunk), cmpi_byte(), Int32(root), world)
            }
            offset += chunk
        }
    }

    /// Collects every rank's `values` at `root`, concatenated in rank order; other ranks receive nil.
    public func gather(_ values: [Float], root: Int = 0) -> [Float]? {
        let parts = gather(bytes: values.withUnsafeBytes { Array($0) }, root: root)
        return parts.map { parts in
            parts.flatMap { part in
                part.withUnsafeBytes { raw in
                    (0..<(raw.count / 4)).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) }
                }
            }
        }
    }

    /// Gathers every rank's bytes (any length, empty included) on `root`, in rank order; nil elsewhere.
    public func gather(bytes: [UInt8], root: Int = 0) -> [[UInt8]]? {
        guard size > 1 else { return [bytes] }
        var count = Int32(bytes.count)
        var counts = [Int32](repeating: 0, count: size)
        MPI_Gather(&count, 1, cmpi_int32(), &counts, 1, cmpi_int32(), Int32(root), world)
        var displacements = [Int32](repeating: 0, count: size)
        for i in 1..<size { displacements[i] = displacements[i - 1] + counts[i - 1] }
        var result = [UInt8](repeating: 0, count: rank == root ? Int(counts.reduce(0, +)) : 0)
        bytes.withUnsafeBufferPointer { send in
            result.withUnsafeMutableBufferPointer { receive in
                _ = MPI_Gatherv(
                    send.baseAddress, count, cmpi_byte(), receive.baseAddress, counts, displacements, cmpi_byte(),
                    Int32(root), world)
            }
        }
        guard rank == root else { return nil }
        return (0..<size).map { Array(result[Int(displacements[$0])..<Int(displacements[$0] + counts[$0])]) }
    }

    /// Waits until every rank has reached this call.
    public func barrier() {
        guard size > 1 else { return }
        MPI_Barrier(world)
    }

    /// Prints `message` to standard error, prefixed with the rank when the job has several, and ends
    /// every rank of the job with exit code `code`.
    public func abort(_ message: String, code: Int32 = 1) -> Never {
        let prefix = size > 1 ? "qmamba: rank \(rank) of \(size): " : "qmamba: "
        FileHandle.standardError.write((prefix + message + "\n").data(using: .utf8)!)
        if size > 1 {
            MPI_Abort(world, code)
        }
        finalize()
        exit(code)
    }

    /// Leaves MPI; call once before a normal exit.
    public func finalize() {
        guard !finalized else { return }
        finalized = true
        MPI_Finalize()
    }
}
