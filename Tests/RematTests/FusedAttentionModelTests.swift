import Testing
import Remat

/// GPT with the fused attention (issue 17): the same model as with the explicit probabilities to
/// float32 rounding, bitwise under checkpointing and a plan, and no T×T probabilities saved.
@Suite struct FusedAttentionModelTests {
    static let config = GPTConfig(contextLength: 80, layers: 2, heads: 2, modelDimension: 32, mlpHidden: 64, batchSize: 2)

    static func step(_ kernel: AttentionKernel, _ policy: CheckpointPolicy, plan: MemoryPlan? = nil,
                     attentionDropout: Float = 0) throws -> (Float, [String: [Float]], Int) {
        let ledger = MemoryLedger()
        return try MemoryLedger.withLedger(ledger) {
            var c = config
            c.attentionDropout = attentionDropout
            let model = GPT(c, seed: 3)
            model.setAttentionKernel(kernel)
            if let plan { try model.applyPlan(plan) } else { try model.applyCheckpointing(policy) }
            var source = ArithmeticText.dataset(seed: 5)
            let batch = source.nextBatch(batchSize: 2, length: 80)
            ledger.resetPeak()
            let loss = model.loss(batch.input, targets: batch.target)
            loss.backward()
            #expect(ledger.currentBytes(in: .activations) == 0)
            let grads = Dictionary(uniqueKeysWithValues: model.namedParameters.map { ($0.0, $0.1.grad?.toArray() ?? []) })
            return (loss.item, grads, ledger.peakBytes(in: .activations))
        }
    }

    @Test func fusedMatchesExplicitAndSavesLess() throws {
        let (le, ge, pe) = try Self.step(.explicit, .none)
        let (lf, gf, pf) = try Self.step(.fused, .none)
        #expect(abs(le - lf) <= 1e-5 * abs(le))
        for (name, g) in ge {
            let f = try #require(gf[name])
            let scale = max(g.map(abs).max() ?? 0, 1e-12)
            let err = zip(g, f).map { abs($0 - $1) }.max() ?? 0
            #expect(err <= 1e-4 * scale, "\(name): \(err) of \(scale)")
        }
        // T = 80, 2 heads, 2 layers: the explicit path saves 2·2·80·80·4 bytes of probabilities per layer.
        #expect(pe - pf >= 2 * 2 * 2 * 80 * 80 * 4 - 2 * 2 * 2 * 80 * 16 * 4 - 2 * 2 * 2 * 80 * 4, "activation peaks \(pe) vs \(pf)")
    }

    @Test(arguments: [CheckpointPolicy.all, .saveMatmuls, .revolve(slots: 1)], [0, 0.2] as [Float])
    func checkpointedFusedIsBitwise(policy: CheckpointPolicy, attentionDropout: Float) throws {
        let (l0, g0, _) = try Self.step(.fused, .none, attentionDropout: attentionDropout)
        let (l1, g1, _) = try Self.step(.fused, policy, attentionDropout: attentionDropout)
        #expect(l0.bitPattern == l1.bitPattern)
        for (name, g) in g0 { #expect(g1[name]?.map(\.bitPattern) == g.map(\.bitPattern), "\(policy): \(name)") }
    }

    /// Attention dropout: the fused op draws the mask the explicit path's dropout draws (same
    /// stream positions), so the two models agree to float32 rounding, not just in distribution.
    @Test func attentionDropoutMatchesTheExplicitPath() throws {
        let (le, ge, _) = try Self.step(.explicit, .none, attentionDropout: 0.2)
        let (lf, gf, _) = try Self.step(.fused, .none, attentionDropout: 0.2)
        let (l0, _, _) = try Self.step(.fused, .none)
        #expect(abs(le - lf) <= 1e-5 * abs(le) && l0 != lf)
        for (name, g) in ge {
            let f = try #require(gf[name])
            let scale = max(g.map(abs).max() ?? 0, 1e-12)
            let err = zip(g, f).map { abs($0 - $1) }.max() ?? 0
            #expect(err <= 1e-4 * scale, "\(name): \(err) of \(scale)")
        }
    }

    @Test func plannedFusedIsBitwiseAndNamesTheOp() throws {
        let model = GPT(Self.config, seed: 3)
        model.setAttentionKernel(.fused)
        let trainer = Trainer(model: model, optimizer: Trainer.specAdamW(model), gradientClip: nil, ledger: MemoryLedger())
        var source = ArithmeticText.dataset(seed: 5)
        let graph = try StepCapture.capture(trainer, batch: source.nextBatch(batchSize: 2, length: 80), timingRuns: 1)
        let names = graph.slots.map(\.name)
        #expect(names.contains("blocks.0.attn/sdpa#0:lse") && names.contains("blocks.1.attn/sdpa#0:output"))
        #expect(!names.contains { $0.contains("attention_probs") })
        let sim = PlanSimulator(graph)
        let plan = Planner.plan(sim, actions: PlanActions(recompute: Set(sim.candidates.indices)))
        let (l0, g0, _) = try Self.step(.fused, .none)
        let (l1, g1, _) = try Self.step(.fused, .none, plan: plan)
        #expect(l0.bitPattern == l1.bitPattern)
        for (name, g) in g0 { #expect(g1[name]?.map(\.bitPattern) == g.map(\.bitPattern), "plan: \(name)") }
    }
}
