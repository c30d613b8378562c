/// Temporal Group Quantization (TGQ) of the hidden state h_t.
///
/// h_t's range changes strongly from one time step to the next (QMamba, §TGQ). TGQ splits the L steps
/// of a scan direction into G contiguous groups, each with its own static uniform quantizer fitted
/// offline; step t uses the quantizer of its group. `tgq` makes the groups equally long (closest to the
/// paper); `tgq-dp` chooses the boundaries by dynamic programming over per-step statistics to minimise
/// the total expected squared error (cost O(G · L²) segment evaluations). G = 1 is per-tensor
/// quantization, G = L one quantizer per step. The quantized h_t is what step t + 1 reuses.
///
/// Example, L = 10, G = 3 equal groups: steps 0–2, 3–5, 6–9 (boundaries ⌊g · L / G⌋).
public struct TemporalGroupQuantizer: Equatable, Sendable {
    /// One group: its steps and its quantizer.
    public struct Group: Equatable, Sendable {
        /// The time steps it covers.
        public var steps: Range<Int>
        /// The quantizer of those steps.
        public var quantizer: UniformQuantizer
    }

    /// The groups, in time order, covering 0 ..< L without gaps.
    public var groups: [Group]
    private var groupOfStep: [Int]

    /// Creates the quantizer from groups that tile 0 ..< L.
    public init(groups: [Group]) {
        precondition(!groups.isEmpty && groups[0].steps.lowerBound == 0)
        precondition(zip(groups, groups.dropFirst()).allSatisfy { $0.steps.upperBound == $1.steps.lowerBound })
        self.groups = groups
        groupOfStep = groups.enumerated().flatMap { index, group in [Int](repeating: index, count: group.steps.count) }
    }

    /// Equal-length boundaries for `count` groups over `length` steps: group g is ⌊g·L/G⌋ ..< ⌊(g+1)·L/G⌋.
    public static func equalBoundaries(length: Int, count: Int) -> [Range<Int>] {
        let groups = min(count, length)
        return (0..<groups).map { g in (g * length / groups)..<((g + 1) * length / groups) }
    }

    /// The quantizer of time step `t`.
    @inline(__always) public func quantizer(atStep t: Int) -> UniformQuantizer {
        groups[groupOfStep[t]].quantizer
    }

    /// The number of time steps covered.
    public var length: Int { groupOfStep.count }
}
