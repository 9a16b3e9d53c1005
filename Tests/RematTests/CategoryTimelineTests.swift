import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
import Remat

/// The report's timeline by category agrees with the ledger, downsampled or not.
@Suite struct CategoryTimelineTests {
    /// One GPT training step recorded: the timeline's peak is the ledger's peak, the categories
    /// at the peak are the ledger's breakdown at its peak, the end is the ledger's breakdown after
    /// the step, and downsampling keeps the peak and stays within its sample count.
    @Test(arguments: [100_000, 100, 2]) func aStepsTimelineMatchesTheLedger(maxSamples: Int) throws {
        let ledger = MemoryLedger()
        MemoryLedger.withLedger(ledger) {
            let (trainer, batch) = DynamicBudgetTrainingTests.gptTrainer(ledger)
            trainer.step(batch)   // optimizer state exists
            let start = ledger.breakdown
            ledger.resetPeak()
            ledger.startTimeline()
            trainer.step(batch)
            let events = ledger.stopTimeline()
            let timeline = CategoryTimeline(events: events, start: start, maxSamples: maxSamples)
            #expect(timeline.eventCount == events.count && events.count > 200, "\(events.count) events")
            #expect(timeline.peak.totalBytes == ledger.peakBytes)
            let atPeak = ledger.breakdownAtPeak
            for (i, c) in CategoryTimeline.order.enumerated() where c != .offloaded {
                #expect(timeline.peak.bytes[i] == atPeak[c], "\(c)")
                #expect(timeline.samples.last!.bytes[i] == ledger.currentBytes(in: c), "\(c) at the end")
            }
            #expect(timeline.samples.contains(timeline.peak))
            #expect(timeline.samples.count <= max(maxSamples, 2) + 1)
            #expect(timeline.samples.allSatisfy { $0.totalBytes <= timeline.peak.totalBytes })
            #expect(zip(timeline.samples, timeline.samples.dropFirst()).allSatisfy { $0.rank < $1.rank })
            #expect(!timeline.peak.name.isEmpty)
            #expect(timeline.peak.name == ledger.peakAllocationName, "the ledger names the peak's allocation \(ledger.peakAllocationName ?? "nil")")
            if maxSamples >= events.count { #expect(timeline.stride == 1 && timeline.samples.count == events.count + 1) }
        }
    }

    /// A step recorded for a report (``MemoryReport/record(_:maxSamples:_:)``): the peak is the
    /// allocation the ledger says made its peak, and the op running then is named beside it.
    @Test func aRecordedStepNamesThePeakAsTheLedgerDoes() throws {
        let ledger = MemoryLedger()
        try MemoryLedger.withLedger(ledger) {
            let (trainer, batch) = DynamicBudgetTrainingTests.gptTrainer(ledger)
            trainer.step(batch)
            let (report, timeline) = try MemoryReport.record(ledger) { try trainer.checkedStep(batch) }
            #expect(timeline.peak.totalBytes == report.peakBytes && report.peakBytes == ledger.peakBytes)
            #expect(timeline.peak.name == ledger.peakAllocationName)
            let phase = try #require(timeline.peakPhase)
            #expect(phase.hasPrefix("after ") || phase.hasPrefix("backward of "), "\(phase)")
            #expect(!ledger.isRecordingTimeline)
            ledger.resetPeak()
            #expect(ledger.peakAllocationName == nil)
        }
    }

    /// A move takes its bytes from the category it names as its source.
    @Test func movesTakeFromTheirSource() {
        let events = [
            MemoryEvent(rank: 0, kind: .allocate, name: "a", category: .temporaries, bytes: 64, liveBytes: 64, storageID: 1),
            MemoryEvent(rank: 1, kind: .move, name: "a", category: .activations, bytes: 64, liveBytes: 64, storageID: 1, source: .temporaries),
            MemoryEvent(rank: 2, kind: .move, name: "a", category: .offloaded, bytes: 64, liveBytes: 0, storageID: 1, source: .activations),
            MemoryEvent(rank: 3, kind: .mark, name: "backward", category: .temporaries, bytes: 0, liveBytes: 0),
        ]
        let t = CategoryTimeline(events: events)
        #expect(t.series(.temporaries) == [0, 64, 0, 0, 0])
        #expect(t.series(.activations) == [0, 0, 64, 0, 0])
        #expect(t.series(.offloaded) == [0, 0, 0, 64, 64])
        #expect(t.samples.map(\.totalBytes) == [0, 64, 64, 0, 0])
        #expect(t.peak.rank == 0 && t.peakPhase == nil)
    }

    /// A step under `none` and under `all` as charts: well-formed SVG, the categories each
    /// timeline has, the same axes for both, the peak labelled with the event the ledger peaked at.
    @Test func timelinesDrawOnSharedAxesWithThePeakNamed() throws {
        let ledger = MemoryLedger()
        var timelines: [(label: String, timeline: CategoryTimeline)] = []
        try MemoryLedger.withLedger(ledger) {
            let (trainer, batch) = DynamicBudgetTrainingTests.gptTrainer(ledger)
            for policy in [CheckpointPolicy.none, .all] {
                try trainer.model.applyCheckpointing(policy)
                trainer.step(batch)
                let start = ledger.breakdown
                ledger.resetPeak()
                ledger.startTimeline()
                trainer.step(batch)
                let timeline = CategoryTimeline(events: ledger.stopTimeline(), start: start, maxSamples: 150)
                #expect(timeline.peak.totalBytes == ledger.peakBytes)
                #expect(timeline.samples.last!.seconds > 0)
                timelines.append(("\(policy)", timeline))
            }
        }
        let budget = timelines[1].timeline.peak.totalBytes + 1
        let charts = try TimelineCharts.charts(timelines, budgetBytes: budget)
        #expect(charts.count == 2)
        let scales = try charts.map { try $0.scales() }
        #expect(scales[0].x.domain == scales[1].x.domain && scales[0].y.domain == scales[1].y.domain)
        for (chart, (_, timeline)) in zip(charts, timelines) {
            let svg = try chart.svg()
            #expect(XMLParser(data: Data(svg.utf8)).parse(), "not well-formed XML")
            for name in ["parameters", "gradients", "optimizer", "activations", "temporaries", "budget"] {
                #expect(svg.contains("data-series=\"\(name)\""), "\(name) missing")
            }
            #expect(chart.annotations.count == 1 && chart.annotations[0].label.contains(timeline.peak.name))
            #expect(svg.contains(xmlEscaped(chart.annotations[0].label)))
            #expect(scales[0].y.contains(Double(timeline.peak.totalBytes) / 1_048_576))
            #expect(scales[0].x.contains(timeline.samples.last!.seconds * 1000))
        }
        #expect(timelines[1].timeline.peak.totalBytes < timelines[0].timeline.peak.totalBytes)
    }

    /// A captured GPT step and a recompute-only plan a third of the way from its least peak up.
    static func plannedGPTStep() throws -> (StepGraph, MemoryPlan) {
        let (trainer, batch) = DynamicBudgetTrainingTests.gptTrainer(MemoryLedger())
        let graph = try StepCapture.capture(trainer, batch: batch, timingRuns: 1)
        let sim = PlanSimulator(graph)
        let none = sim.simulate([]).peakBytes, floor = Planner.leastPeak(sim, options: .recomputeOnly)
        return (graph, try Planner.plan(sim, budget: .bytes(floor + (none - floor) / 3), options: .recomputeOnly))
    }

    /// The per-op profile of a captured GPT step under a plan: one bar per forward op in the time
    /// charts, the plan's recomputed ops (and only they) in the recomputed group, the saved bytes
    /// adding up to the step's saved tensors, every chart well-formed.
    @Test func opProfilesColourWhatThePlanDoes() throws {
        let (graph, plan) = try Self.plannedGPTStep()
        #expect(!plan.recompute.isEmpty)
        let charts = OpProfileCharts.charts(graph, plan: plan, label: "plan")
        #expect(charts.count == 3)
        for chart in charts.prefix(2) {
            #expect(chart.bars.map(\.category) == graph.ops.map(\.name))
            #expect(Set(chart.bars.filter { $0.group == "recomputed" }.map(\.category)) == Set(plan.recompute))
        }
        #expect(abs(charts[0].bars.reduce(0) { $0 + $1.value } - graph.ops.reduce(0) { $0 + $1.seconds * 1000 }) < 1e-9)
        let saved = graph.tensors.filter { !$0.savedBy.isEmpty && $0.owner != nil }.reduce(0) { $0 + $1.bytes }
        #expect(abs(charts[2].bars.reduce(0) { $0 + $1.value } * 1_048_576 - Double(saved)) < 1)
        #expect(charts[2].bars.allSatisfy { $0.value > 0 })
        for chart in charts {
            let svg = try chart.svg()
            #expect(XMLParser(data: Data(svg.utf8)).parse(), "not well-formed XML")
            for group in OpProfileCharts.Action.allCases { #expect(svg.contains("data-series=\"\(group.rawValue)\"")) }
        }
    }

    /// The frontier chart: a line and points per frontier, the knee marked, policies as points,
    /// the axes containing every point.
    @Test func frontiersDrawWithTheirKneesAndPolicies() throws {
        let ledger = MemoryLedger()
        let (trainer, batch) = DynamicBudgetTrainingTests.gptTrainer(ledger)
        let sim = PlanSimulator(try StepCapture.capture(trainer, batch: batch, timingRuns: 1))
        let frontiers = [try Planner.frontier(sim, options: .recomputeOnly, points: 6), try Planner.frontier(sim, points: 6)]
        #expect(frontiers.allSatisfy { $0.knee != nil })
        let all = sim.simulate(Set(sim.candidates.indices))
        let policy = FrontierChart.Policy(name: "every candidate recomputed", peakBytes: all.peakBytes,
                                          overhead: all.stepSeconds / sim.simulate([]).stepSeconds)
        let chart = FrontierChart.chart(frontiers, policies: [policy], title: "gpt: budget → step time")
        let svg = try chart.svg()
        #expect(XMLParser(data: Data(svg.utf8)).parse(), "not well-formed XML")
        for f in frontiers {
            #expect(svg.contains("data-series=\"\(f.actions)\"") && svg.contains("data-series=\"\(f.actions) plans\""))
            #expect(chart.annotations.contains { $0.label.hasPrefix("knee (\(f.actions))") })
        }
        #expect(svg.contains("data-series=\"policies\"") && svg.contains(">every candidate recomputed<"))
        let (x, y) = try chart.scales()
        for f in frontiers {
            for p in f.points {
                #expect(x.contains(Double(p.predictedPeakBytes) / 1_048_576) && y.contains(p.overhead))
            }
        }
        #expect(x.contains(Double(policy.peakBytes) / 1_048_576) && y.contains(policy.overhead))
    }

    /// The HTML document: well-formed as XML with its SVG inline, sections and tables escaped,
    /// no script, written atomically (a failed write leaves the old file).
    @Test func anHTMLReportIsOneWellFormedFile() throws {
        let chart = XYChart(title: "a <chart>", x: ChartAxis("x"), y: ChartAxis("y"),
                            series: [.init("s", .line, [ChartPoint(x: 0, y: 1), ChartPoint(x: 1, y: 2)])])
        let report = HTMLReport(title: "Memory & time", sections: [
            .init(id: "timeline", title: "Timeline", paragraphs: ["peak <here>"], figures: [try chart.svg()],
                  tables: [.init(caption: "numbers", header: ["op", "MiB"], rows: [["a&b", "1.5"], ["c", "2"]])]),
        ], provenance: [("command", "remat report --model gpt-mini --compare 'all'")])
        let html = report.html()
        #expect(XMLParser(data: Data(html.utf8)).parse(), "not well-formed")
        #expect(!html.contains("<script"))
        #expect(html.contains("<td>a&amp;b</td>") && html.contains("<p>peak &lt;here&gt;</p>") && html.contains("<svg "))
        #expect(html.contains("<a href=\"#timeline\">Timeline</a>") && html.contains("remat report --model gpt-mini --compare &apos;all&apos;"))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("remat-report-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try report.write(to: dir + "/r.html")
        #expect(try String(contentsOfFile: dir + "/r.html", encoding: .utf8) == html)
        #expect(throws: AtomicFileError.self) { try report.write(to: dir + "/missing/r.html") }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["r.html"])
    }

    /// The step graph before and after a plan: one row per block, every op a node in forward
    /// order, every input an edge, the plan's recomputed ops coloured so after it and none before.
    @Test func theStepGraphDrawsBeforeAndAfterThePlan() throws {
        let (graph, plan) = try Self.plannedGPTStep()
        for p in [nil, plan] {
            let d = StepGraphDiagram.diagram(graph, plan: p, title: p == nil ? "before" : "after")
            #expect(d.rows.flatMap(\.nodes).map(\.id) == graph.ops.map(\.name))
            for region in graph.regions { #expect(d.rows.contains { $0.label == region }) }
            let recomputed = d.rows.flatMap(\.nodes).filter { $0.group == "recomputed" }.map(\.id)
            #expect(Set(recomputed) == Set(p?.recompute ?? []))
            let svg = try d.svg()
            #expect(XMLParser(data: Data(svg.utf8)).parse(), "not well-formed XML")
            #expect(svg.components(separatedBy: "class=\"node\"").count - 1 == graph.ops.count)
            let inputs = graph.ops.reduce(0) { $0 + $1.inputs.filter { name in graph.ops.contains { $0.name == name } }.count }
            #expect(svg.components(separatedBy: "class=\"edge\"").count - 1 == inputs)
            #expect(inputs > graph.ops.count / 2)
        }
        var bad = StepGraphDiagram.diagram(graph, plan: nil, title: "bad")
        bad.edges.append((from: "nowhere", to: graph.ops[0].name))
        #expect(throws: DiagramError.unknownNode("nowhere")) { try bad.svg() }
    }

    /// Whole reports of gpt-mini and resnet50-64 (small batches): one well-formed document with
    /// every section, a timeline per run with the categories and the budget, the frontier with
    /// the policies, the graph before and after the plan, and the provenance.
    @Test(arguments: [("gpt-mini", 2, 0.9), ("resnet50-64", 4, 0.97)]) func aWorkloadsReportHasEverySection(model: String, batch: Int, budget: Double) throws {
        let report = try MemoryReport.make(workload: model, batchSize: batch, compare: [.all], budget: .fraction(budget), frontierPoints: 4,
                                           provenance: [("command", "test")])
        // scripts/test.sh opens these in headless Chromium (scripts/check_report.py) when it can.
        if let dir = ProcessInfo.processInfo.environment["REMAT_REPORT_DIR"] { try report.write(to: "\(dir)/\(model).html") }
        #expect(report.sections.map(\.id) == ["timeline", "ops", "frontier", "graph"])
        #expect(report.sections[0].figures.count == 3 && report.sections[3].figures.count == 2)
        let html = report.html()
        #expect(XMLParser(data: Data(html.utf8)).parse(), "not well-formed")
        for series in ["parameters", "gradients", "optimizer", "activations", "temporaries", "budget", "policies", "recompute-only", "lossless"] {
            #expect(html.contains("data-series=\"\(series)\""), "\(series) missing")
        }
        #expect(html.contains(">all<") && html.contains("none: memory during one step") && html.contains("<dt>command</dt>"))
        // The peak is named by the op running then.
        #expect(html.contains("(backward of ") || html.contains("(after "))
        // The parameters are counted (the model was made in the report's ledger).
        #expect(html.contains("data-series=\"parameters\"") && !html.contains("parameters 0.0 MiB"))
    }

    /// A training run's section: every step drawn up to 1000 steps, longer runs in 1000 equal
    /// runs of steps keeping each run's highest peak (so the drawn peak is the run's), the budget
    /// drawn, the steps over it counted, profiled steps marked.
    @Test(arguments: [20, 1000, 4321]) func aRunsStepsDrawWithTheBudget(steps: Int) throws {
        let budget = 100 << 20
        let reports = (0..<steps).map { i in
            StepReport(step: i, loss: 5 - Float(i) / Float(steps), learningRate: 1e-3, stepMilliseconds: 500 + Double(i % 7),
                       tokensPerSecond: 1000, peakBytes: (90 << 20) + (i == steps / 3 ? 20 << 20 : (i % 13) << 10),
                       peakByCategory: [:], activationPeakBytes: 50 << 20)
        }
        let section = try TrainingRunReport.runSection(reports, budgetBytes: budget, profiled: [0])
        #expect(section.figures.count == 3)
        let drawn = min(steps, TrainingRunReport.maxDrawnSteps)
        #expect(section.tables[0].rows.count == drawn)
        #expect(section.paragraphs[0].contains("1 of \(steps) steps above it"))
        #expect(section.paragraphs[0].contains("equal runs") == (steps > TrainingRunReport.maxDrawnSteps))
        for svg in section.figures { #expect(XMLParser(data: Data(svg.utf8)).parse(), "not well-formed") }
        // The highest step is labelled and drawn at its true value.
        #expect(section.figures[0].contains("highest: step \(steps / 3 + 1), 110.0 MiB (over the budget)"))
        #expect(section.figures[0].contains("data-series=\"budget\"") && section.figures[1].contains("step 1: new shape (profiled before it)"))
        let table = section.tables[0]
        #expect(table.rows.contains { $0[3] == "110.0 MiB" })
        #expect(throws: Never.self) { _ = try TrainingRunReport.runSection(Array(reports.prefix(1)), budgetBytes: nil) }
    }
}
