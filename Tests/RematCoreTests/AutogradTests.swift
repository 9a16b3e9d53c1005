import Testing
import RematCore

@Suite struct AutogradTests {
    @Test func gradientsAccumulateAcrossBackwardCalls() {
        let x = Tensor([1, 2, 3], shape: [3], requiresGrad: true)
        (x * x).summed().backward()
        #expect(x.grad!.toArray() == [2, 4, 6])
        (x * 3).summed().backward()
        #expect(x.grad!.toArray() == [5, 7, 9])
    }

    @Test func sharedInputGetsSumOfBranchGradients() {
        let x = Tensor([1, -2], shape: [2], requiresGrad: true)
        let y = x * x + x * 2 + x   // dy/dx = 2x + 3
        y.summed().backward()
        #expect(x.grad!.toArray() == [5, -1])
    }

    @Test func noGradRecordsNothingAndSavesNothing() {
        let ledger = MemoryLedger()
        MemoryLedger.withLedger(ledger) {
            let w = Tensor([1, 2, 3, 4], shape: [2, 2]).makeParameter(name: "w")
            let y = noGrad { matmul(w, w) * w }
            #expect(y.gradFn == nil)
            #expect(!y.requiresGrad)
            #expect(ledger.currentBytes(in: .activations) == 0)
        }
    }

    @Test func savedTensorNamesFollowScopesAndRestartEachStep() {
        func step() -> [String] {
            var names: [String] = []
            let hooks = SavedTensorHooks(pack: { t, info in names.append(info.name); return .tensor(t) },
                                         unpack: { p, _ in guard case .tensor(let t) = p else { fatalError() }; return t })
            let w = Tensor([1, 2, 3, 4], shape: [2, 2], requiresGrad: true)
            withSavedTensorHooks(hooks) {
                withNameScope("") {
                    withNameScope("blocks") {
                        withNameScope("0") { _ = matmul(w, w) * w }
                        withNameScope("1") { _ = matmul(w, w); _ = matmul(w, w) }
                    }
                }
            }
            return names
        }
        let first = step()
        #expect(first == ["blocks.0/matmul#0:a", "blocks.0/matmul#0:b",
                          "blocks.0/mul#0:lhs", "blocks.0/mul#0:rhs",
                          "blocks.1/matmul#0:a", "blocks.1/matmul#0:b",
                          "blocks.1/matmul#1:a", "blocks.1/matmul#1:b"])
        #expect(step() == first)
    }

    /// A hook that packs every saved tensor to bf16: gradients stay within bf16 error.
    @Test func bfloat16PackingHookGivesGradientsWithinBF16Error() {
        let rng = RandomGenerator(seed: 11)
        let x = Tensor.randn([8, 16], generator: rng, requiresGrad: true)
        let w = Tensor.randn([16, 4], generator: rng, requiresGrad: true)
        func run() -> ([Float], [Float]) {
            x.grad = nil; w.grad = nil
            let y = matmul(x, w) * matmul(x, w)
            y.summed().backward()
            return (x.grad!.toArray(), w.grad!.toArray())
        }
        let (gx, gw) = run()
        var packed = 0, unpacked = 0
        let bf16 = SavedTensorHooks(
            pack: { t, _ in packed += 1; return .tensor(t.converted(to: .bfloat16)) },
            unpack: { p, _ in
                unpacked += 1
                guard case .tensor(let t) = p else { fatalError("expected a tensor") }
                return t.converted(to: .float32)
            })
        let (hx, hw) = withSavedTensorHooks(bf16) { run() }
        #expect(packed == 6 && unpacked == 6)
        // bf16 keeps 8 significand bits (unit roundoff u = 2^-9): each gradient is a sum of products
        // of up to three packed values, so the normwise relative error stays within a small multiple of u.
        let reference = gx + gw, packedResult = hx + hw
        let diff = zip(reference, packedResult).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot()
        let norm = reference.map { Double($0) * Double($0) }.reduce(0, +).squareRoot()
        #expect(diff / norm <= 8 * 0.001953125, "normwise bf16 packing error \(diff / norm)")
        #expect(diff / norm >= 1e-6, "packing should change the gradients a little (else the hook did nothing)")
    }

    /// Nested hook scopes: the innermost packs first, unpack runs in reverse.
    @Test func nestedHooksApplyInnermostFirst() {
        var log: [String] = []
        func hook(_ tag: String) -> SavedTensorHooks {
            SavedTensorHooks(pack: { t, _ in log.append("pack \(tag)"); return .tensor(t) },
                             unpack: { p, _ in
                                 log.append("unpack \(tag)")
                                 guard case .tensor(let t) = p else { fatalError() }
                                 return t
                             })
        }
        let x = Tensor([1, 2], shape: [2], requiresGrad: true)
        let y = withSavedTensorHooks(hook("outer")) {
            withSavedTensorHooks(hook("inner")) { (x * 2) * x }   // mul saves lhs and rhs
        }
        #expect(log == ["pack inner", "pack outer", "pack inner", "pack outer"])
        log = []
        y.summed().backward()
        #expect(log == ["unpack outer", "unpack inner", "unpack outer", "unpack inner"])
        #expect(x.grad!.toArray() == [4, 8])
    }

    /// A deferred payload (what checkpointing uses): the tensor is produced when backward asks.
    @Test func deferredPayloadIsMaterialisedOnUnpack() {
        final class Recompute: DeferredTensor {
            let make: () -> Tensor
            var calls = 0
            init(_ make: @escaping () -> Tensor) { self.make = make }
            func materialize() -> Tensor { calls += 1; return make() }
        }
        let x = Tensor([1, 2, 3], shape: [3], requiresGrad: true)
        var recipes: [Recompute] = []
        let drop = SavedTensorHooks(
            pack: { t, _ in
                let copy = noGrad { t.contiguousCopy() }
                let r = Recompute { copy }
                recipes.append(r)
                return .deferred(r)
            },
            unpack: { p, _ in
                guard case .deferred(let d) = p else { fatalError() }
                return d.materialize()
            })
        let y = withSavedTensorHooks(drop) { x * x }
        y.summed().backward()
        #expect(x.grad!.toArray() == [2, 4, 6])
        #expect(recipes.map(\.calls) == [1, 1])
    }

    @Test func backwardTwiceWithRetainedGraphAccumulates() {
        let x = Tensor([3], shape: [1], requiresGrad: true)
        let y = (x * x).summed()
        y.backward(retainGraph: true)
        y.backward()
        #expect(x.grad!.toArray() == [12])
    }
}
