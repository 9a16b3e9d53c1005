import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
import Remat

/// The CLI on inputs that are valid but extreme, and interrupted: answers quickly, valid JSON,
/// no lost work.
@Suite struct RunTests {
    @Test func planChainAnswersAnyLengthAtOnce() throws {
        let s = Sandbox()
        defer { s.remove() }
        let r = CLI.run(["plan", "chain", "--length", "1000000000", "--slots", "2", "--json"], in: s.path)
        #expect(r.status == 0, "\(r)")
        // The whole process, on a busy 2-core machine (tests run beside it): a hang or a table of
        // a billion entries would take far longer. In-process the count takes microseconds
        // (ChainScheduleTests); standalone the command takes about 0.02 s.
        #expect(r.seconds < 10, "\(r)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        // Griewank: r = 44720 repetitions, F = r·n − C(r + 2, 3).
        #expect(json["forward_steps"] as? Int == 29_813_239_704_560)
        #expect(json["schedule"] == nil, "the action list is not printed for a billion layers")
    }

    /// The first Ctrl-C stops training after the current step and saves the weights (whole); the
    /// exit status says the run was interrupted.
    @Test func interruptedTrainingSavesAndExits130() throws {
        let s = Sandbox()
        defer { s.remove() }
        let r = CLI.run(["train", "--steps", "100000", "--batch", "1", "--save", "out", "--threads", "1", "--report", "r.html"], in: s.path,
                        timeout: 120, interruptAfter: [4])
        #expect(r.status == 130, "\(r)")
        #expect(!r.signaled)
        #expect(r.stdout.contains("interrupted after step"), "\(r)")
        // The report of the steps run so far is written too (no timeline: the last step never came).
        let html = try String(contentsOfFile: s.file("r.html"), encoding: .utf8)
        #expect(XMLParser(data: Data(html.utf8)).parse() && html.contains("<section id=\"run\">") && html.contains("interrupted after step"))
        let weights = try SafetensorsFile.read(path: s.file("out/model.safetensors"))
        #expect(weights.tensors.count == GPT(.gptMini).namedTensors.count)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: s.file("out")).filter { $0 != "model.safetensors" }
        #expect(leftovers.isEmpty, "\(leftovers)")
    }

    /// `train --report`: one well-formed file with the run (every step against the budget), the
    /// last step's timeline and the plan it ran; the command says where it wrote it.
    @Test func trainingWritesItsReport() throws {
        let s = Sandbox()
        defer { s.remove() }
        let r = CLI.run(["train", "--steps", "3", "--batch", "2", "--budget", "0.8", "--threads", "1", "--report", "r.html"], in: s.path, timeout: 300)
        #expect(r.status == 0, "\(r)")
        #expect(r.stdout.contains("wrote the report to r.html"), "\(r)")
        let html = try String(contentsOfFile: s.file("r.html"), encoding: .utf8)
        #expect(XMLParser(data: Data(html.utf8)).parse(), "not well-formed")
        for id in ["run", "timeline", "ops", "frontier", "graph", "provenance"] { #expect(html.contains("<section id=\"\(id)\">"), "\(id) missing") }
        #expect(html.contains("data-series=\"budget\"") && html.contains("step 3: memory during one step") && html.contains("new shape (profiled before it)"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.path) == ["r.html"])
    }

    /// `remat demo` writes its report (here a short demo: one step, one round, one policy).
    @Test func demoWritesItsReport() throws {
        let s = Sandbox()
        defer { s.remove() }
        let r = CLI.run(["demo", "--steps", "1", "--rounds", "1", "--policies", "all", "--threads", "1"], in: s.path, timeout: 300)
        #expect(r.status == 0, "\(r)")
        #expect(r.stdout.contains("/remat-demo.html ("), "\(r)")
        let html = try String(contentsOfFile: s.file("remat-demo.html"), encoding: .utf8)
        #expect(XMLParser(data: Data(html.utf8)).parse(), "not well-formed")
        for id in ["run", "ways", "timeline", "ops", "frontier", "graph"] { #expect(html.contains("<section id=\"\(id)\">"), "\(id) missing") }
        #expect(html.contains("all: memory during one step") && html.contains("plan: memory during one step"))
    }

    /// A second Ctrl-C quits at once, still with status 130, and leaves no temporary file behind.
    @Test func secondInterruptQuitsAtOnce() throws {
        let s = Sandbox()
        defer { s.remove() }
        let r = CLI.run(["train", "--steps", "100000", "--batch", "1", "--save", "out", "--threads", "1"], in: s.path,
                        timeout: 120, interruptAfter: [4, 4.02])
        #expect(r.status == 130, "\(r)")
        #expect(!r.signaled)
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: s.file("out"))) ?? []
        #expect(!entries.contains { $0.contains(".tmp-") }, "\(entries)")
    }

    /// `bench train --plan FILE` runs the plan's codecs too (it used to apply the plan and then
    /// replace its codecs and offload with the absent --compress / --offload): the measured peak
    /// is the plan's predicted one.
    @Test func benchTrainRunsThePlanFileWhole() throws {
        let s = Sandbox()
        defer { s.remove() }
        // A plan that compresses (which ops it does depends on the timings measured here).
        var found: (String, [String: Any])? = nil
        for budget in ["0.8", "0.9", "0.75", "0.7", "0.85", "0.6"] where found == nil {
            let p = CLI.run(["plan", "--model", "gpt-mini", "--batch", "2", "--budget", budget, "--allow-lossy", "bf16", "--json"], in: s.path)
            // The least feasible budget depends on the machine's timings and kernels: skip one below it.
            if p.status != 0 && p.stderr.contains("below the minimum feasible") { continue }
            #expect(p.status == 0, "\(p)")
            let plan = try #require(try JSONSerialization.jsonObject(with: Data(p.stdout.utf8)) as? [String: Any])
            if !((plan["compress"] as? [Any]) ?? []).isEmpty { found = (p.stdout, plan) }
        }
        let (text, plan) = try #require(found, "no plan compresses at budgets 0.6-0.9 (else this test proves nothing)")
        try text.write(toFile: s.file("p.json"), atomically: true, encoding: .utf8)
        let predicted = try #require(plan["predictedPeakBytes"] as? Int)
        let r = CLI.run(["bench", "train", "--plan", "p.json", "--steps", "1", "--json"], in: s.path, timeout: 300)
        #expect(r.status == 0, "\(r)")
        let line = try #require(r.stdout.split(separator: "\n").last)
        let run = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        let measured = try #require(run["peak_bytes"] as? Int)
        #expect(abs(Double(measured - predicted)) <= 0.01 * Double(predicted), "measured \(measured), predicted \(predicted)")
    }

    @Test func jsonOutputsParse() throws {
        let s = Sandbox()
        defer { s.remove() }
        for args in [["bench", "kernels", "--sizes", "8", "--elements", "1024", "--reps", "1", "--json"],
                     ["plan", "chain", "--length", "7", "--slots", "3", "--json"],
                     ["explain", "--batch", "1", "--policy", "all", "--json"]] {
            let r = CLI.run(args, in: s.path)
            #expect(r.status == 0, "\(args): \(r)")
            #expect((try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) != nil, "\(args): not JSON: \(r.stdout.prefix(200))")
        }
    }
}
