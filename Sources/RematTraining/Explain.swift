/// What a checkpointing policy does to a model's saved tensors: per module, whether it is
/// checkpointed, and every tensor saved for backward (stable name, shape, dtype, bytes) with
/// whether the policy keeps it or recomputes it — JAX's `print_saved_residuals`, for any policy.
public struct CheckpointExplanation: Sendable {
    public struct SavedTensorRow: Sendable {
        public var info: SavedTensorInfo
        /// Kept through the step's forward (false: dropped and recomputed in backward).
        public var kept: Bool
        /// The codec the compression packed it with, and the packed bytes (shared parts counted
        /// with each tensor); nil when it is kept as it is or recomputed.
        public var codec: Codec? = nil
        public var packedBytes: Int? = nil
        /// Elements the codec saturated (``PackedTensor/saturated``).
        public var saturated: Int = 0
        /// The codec the compression's rules chose for a tensor the policy recomputes: ignored
        /// (a recomputed tensor is never packed).
        public var ignoredCodec: Codec? = nil
    }
    public struct ModuleRow: Sendable {
        public var path: String
        public var typeName: String
        public var checkpointed: Bool
        public var parameters: Int
    }

    public var policy: String
    /// The activation compression's rules (empty: none).
    public var compression: String = ""
    public var modules: [ModuleRow]
    /// Every tensor the plain step saves, in order, marked kept or recomputed under the policy.
    public var saved: [SavedTensorRow]
    /// Unique bytes saved by the plain step (tensors sharing storage counted once).
    public var plainSavedBytes: Int
    /// Unique bytes the policy keeps at the end of the forward (including region / chain inputs).
    public var keptBytes: Int
    /// Measured (ledger) peak of the activations category during forward + backward.
    public var measuredPeakActivations: Int
    public var measuredPeakActivationsWithoutPolicy: Int
    /// The seed's estimator: plain activation bytes minus (average saved bytes per block × checkpointed blocks).
    public var estimatedActivations: Int
    public var checkpointedBlocks: Int
    public var blocks: Int
}

public enum CheckpointExplainer {
    /// Runs one forward + backward of `model` on a random batch without and with `policy` and
    /// reports what is saved, kept and recomputed, with measured and estimated activation memory.
    /// With `compression`, the second step also runs under it, and each row says what it was
    /// packed to (or that the codec chosen for it was ignored because the policy recomputes it).
    public static func explain(_ workload: Workload, policy: CheckpointPolicy, compression: ActivationCompression? = nil,
                               batchSize: Int, seed: UInt64 = 0) throws -> CheckpointExplanation {
        let model = workload.model
        let batch = workload.batches(batchSize, seed)()
        let packedBox = PackedBox()

        func run(_ p: CheckpointPolicy, _ c: ActivationCompression?) throws -> (rows: [(SavedTensorInfo, ObjectIdentifier?, Int)], kept: Int, peak: Int) {
            try model.applyCheckpointing(p)
            model.applyActivationCompression(c)
            defer { model.applyActivationCompression(nil) }
            let ledger = MemoryLedger(label: "explain")
            let box = SeenBox()
            let observer: @Sendable (Node, Tensor) -> Void = { node, _ in
                for slot in node.savedTensors {
                    var storage: ObjectIdentifier? = nil, bytes = slot.info.byteCount
                    switch slot.payload {
                    case .tensor(let t)? where !slot.info.isParameter:
                        storage = ObjectIdentifier(t.storage)
                        bytes = t.storage.byteCount
                    case .packed(let p)?:
                        storage = ObjectIdentifier(p)
                        bytes = p.parts.reduce(0) { $0 + $1.storage.byteCount }
                        if let packed = (p as? PackedTensor) ?? (p as? PackedTensorView)?.base {
                            packedBox.packed[slot.info.name] = (packed.codec, bytes, packed.saturated)
                        }
                    default: break
                    }
                    box.rows.append((slot.info, storage, bytes))
                }
            }
            var keptAtForwardEnd = 0
            MemoryLedger.withLedger(ledger) {
                model.zeroGrad()
                ledger.resetPeak()
                let loss = AutogradContext.with({ $0.opObserver = observer }) {
                    model.loss(batch.input, targets: batch.target)
                }
                keptAtForwardEnd = ledger.currentBytes(in: .activations)
                loss.backward()
                model.zeroGrad()
            }
            return (box.rows, keptAtForwardEnd, ledger.peakBytes(in: .activations))
        }

        let previous = model.activationCompression
        let (plain, plainKept, plainPeak) = try run(.none, nil)
        let checkpointedPaths = try model.applyCheckpointing(policy)
        let (with, keptBytes, peak) = try run(policy, compression)
        try model.applyCheckpointing(policy)   // leave the model as asked
        model.applyActivationCompression(previous)

        let keptNames = Set(with.filter { $0.1 != nil }.map(\.0.name))
        let rows = plain.filter { !$0.0.isParameter }.map { r -> CheckpointExplanation.SavedTensorRow in
            var row = CheckpointExplanation.SavedTensorRow(info: r.0, kept: keptNames.contains(r.0.name))
            if let (codec, bytes, saturated) = packedBox.packed[r.0.name] {
                row.codec = codec
                row.packedBytes = bytes
                row.saturated = saturated
            } else if !row.kept, let c = compression?.codec(for: r.0), c != .none {
                row.ignoredCodec = c
            }
            return row
        }
        let blockPaths = model.blockModules.map(\.0)
        let checkpointedSet = Set(checkpointedPaths)
        let modules = model.namedModules.map { path, m in
            CheckpointExplanation.ModuleRow(path: path.isEmpty ? "(root)" : path, typeName: m.typeName,
                      checkpointed: checkpointedSet.contains(path) || checkpointedSet.contains { path.hasPrefix($0 + ".") },
                      parameters: m.parameterCount)
        }
        // Estimator (seed's estimate_checkpointing_memory_savings): bytes per block × checkpointed blocks.
        let inBlocks = plain.filter { r in !r.0.isParameter && blockPaths.contains { r.0.name.hasPrefix($0 + ".") || r.0.name.hasPrefix($0 + "/") } }
        let perBlock = blockPaths.isEmpty ? 0 : uniqueBytes(inBlocks) / blockPaths.count
        let checkpointedBlocks = blockPaths.filter { checkpointedSet.contains($0) }.count
        return CheckpointExplanation(
            policy: policy.description, compression: compression?.description ?? "", modules: modules, saved: rows, plainSavedBytes: plainKept,
            keptBytes: keptBytes, measuredPeakActivations: peak, measuredPeakActivationsWithoutPolicy: plainPeak,
            estimatedActivations: Swift.max(0, plainKept - perBlock * checkpointedBlocks),
            checkpointedBlocks: checkpointedBlocks, blocks: blockPaths.count)
    }

    private static func uniqueBytes(_ rows: [(SavedTensorInfo, ObjectIdentifier?, Int)]) -> Int {
        var seen = Set<ObjectIdentifier>(), total = 0
        for (info, storage, bytes) in rows {
            if let s = storage { if seen.insert(s).inserted { total += bytes } } else if !info.isParameter { total += bytes }
        }
        return total
    }
}

private final class PackedBox: @unchecked Sendable {
    var packed: [String: (Codec, Int, Int)] = [:]
}

private final class SeenBox: @unchecked Sendable {
    var rows: [(SavedTensorInfo, ObjectIdentifier?, Int)] = []
}
