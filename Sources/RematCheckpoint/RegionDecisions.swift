/// What a region does with the tensors one op owns: its output and what it saved of its own
/// (layer norm's mean, …). An op owns a storage when it produced it first in the region.
enum OpTreatment: Sendable, Hashable {
    /// Dropped from their slots at the end of the forward; the recompute rebuilds them.
    case recompute
    /// They stay in their slots (a memory plan's KEEP): the op runs again only when a recomputed
    /// op needs its output and nothing holds it any more.
    case keep
    /// They stay in their slots, and the output is also held for the recompute (a selective
    /// policy's save, PyTorch SAC's cache): the op is never recomputed, and recomputed ops that
    /// read its output get it as it is.
    case keepOutput
}

/// Where a region's decision per op comes from: the one thing that differs between plain
/// checkpointing, selective policies and memory plans (the engine is the same).
enum RegionDecisions: Sendable, Hashable {
    /// Plain checkpointing: every op is recomputed.
    case recomputeAll
    /// Keep what the policy saves, recompute the rest.
    case selective(SelectivePolicy)
    /// A memory plan: recompute the named ops (stable names), keep the rest.
    case planned(Set<String>)
    /// Dynamic rematerialization: every saved tensor stays in its slot until the evictor
    /// (``DynamicRematerializer``) drops it under memory pressure; backward rebuilds what it
    /// needs of what was dropped, as a recompute of the ops on its path.
    case dynamic

    func treatment(for call: OpCall) -> OpTreatment {
        switch self {
        case .recomputeAll: return .recompute
        case .selective(let policy): return policy.decide(call).saves ? .keepOutput : .recompute
        case .planned(let names): return names.contains(call.name) ? .recompute : .keep
        case .dynamic: return .keep
        }
    }

    /// For what is not an op (a nested region's input seen first when it is saved).
    var defaultTreatment: OpTreatment {
        switch self {
        case .recomputeAll, .selective: return .recompute
        case .planned, .dynamic: return .keep
        }
    }
}
