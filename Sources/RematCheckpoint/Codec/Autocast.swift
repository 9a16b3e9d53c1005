/// Mixed precision, as PyTorch's `torch.autocast`: runs `body` with the products (linear, matmul,
/// convolution, attention scores) computing in `precision` — operands and outputs rounded to it,
/// float32 accumulation — while norms, softmax, activations and the loss compute in float32
/// (``AutocastPrecision``), and stores every saved activation whose values are `precision`'s in
/// 2 bytes per element (the ``Codec/bf16`` / ``Codec/fp16`` encoding, exact on such values: the
/// backward reads bitwise what the forward computed). The others — the float32 residual stream a
/// norm saves, its statistics — stay float32, as in PyTorch. Master weights, gradients and
/// optimizer state stay float32.
///
/// Backward may run outside the scope (`withAutocast(.bfloat16) { model.loss(x) }.backward()`):
/// checkpoint regions recompute in the precision their forward ran in. A model's compression or
/// offload rules apply first; what they keep as it is, this scope then stores in 2 bytes.
///
/// ```swift
/// let loss = withAutocast(.bfloat16) { model.loss(batch.input, targets: batch.target) }
/// loss.backward()
/// ```
public func withAutocast<R>(_ precision: AutocastPrecision, _ body: () throws -> R) rethrows -> R {
    let session = CompressionSession([ActivationCompression.Rule(precision == .bfloat16 ? .bf16 : .fp16)])
    let hooks = SavedTensorHooks(pack: { t, info in
        guard !info.isParameter, t.dtype == .float32, precision.represents(t) else { return .tensor(t) }
        return session.pack(t, info)
    }, unpack: unpackTreated)
    return try AutocastScope.$hooks.withValue(hooks) {
        try withAutocastPrecision(precision) { try withSavedTensorHooks(hooks, body) }
    }
}

/// The saved-tensor hooks of the innermost ``withAutocast(_:_:)`` in this task.
enum AutocastScope {
    @TaskLocal static var hooks: SavedTensorHooks?
}

/// The hooks of the ``withAutocast(_:_:)`` in force, if any: a checkpoint region stores the
/// outputs it keeps for its recompute through them, as its other kept slots are.
var autocastHooksInForce: SavedTensorHooks? { AutocastScope.hooks }
