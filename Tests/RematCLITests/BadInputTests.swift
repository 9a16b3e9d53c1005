import Foundation
import Testing
import Remat

/// The built CLI on bad input, as a new user would give it: every case must fail with a non-zero
/// exit and a one-paragraph message on stderr — no trap or crash signal, no "Fatal error", no
/// hang, and no file in its folder changed or left behind.
@Suite struct BadInputTests {
    struct Case: Sendable, CustomStringConvertible {
        let name: String
        let arguments: [String]
        var environment: [String: String] = [:]
        var setup: @Sendable (Sandbox) throws -> Void = { _ in }
        var description: String { name }
    }

    // MARK: Files the cases use

    /// A GPT token batch `[b, t]`; `id(i)` gives the i-th input id, `target(i)` the i-th target.
    static func tokenBatch(_ path: String, b: Int = 2, t: Int = 16, id: (Int) -> Int = { $0 % 200 },
                           target: (Int) -> Int = { ($0 + 1) % 200 }, dtype: DType = .int32) throws {
        let n = b * t
        try SafetensorsFile.write([("input", Tensor(indices: (0..<n).map(id), shape: [b, t], dtype: dtype)),
                                   ("target", Tensor(indices: (0..<n).map(target), shape: [b, t], dtype: dtype))], to: path)
    }

    /// A resnet50-64 image batch of `b` images.
    static func imageBatch(_ path: String, b: Int = 2, value: Float = 0.5, classes: [Int]? = nil, size: Int = 64) throws {
        let x = Tensor.full([b, 3, size, size], value)
        try SafetensorsFile.write([("input", x), ("target", Tensor(indices: classes ?? Array(repeating: 1, count: b), shape: [b]))], to: path)
    }

    static func write(_ path: String, _ text: String) throws { try text.write(toFile: path, atomically: false, encoding: .utf8) }

    static func writeBytes(_ path: String, _ bytes: [UInt8]) throws { try Data(bytes).write(to: URL(fileURLWithPath: path)) }

    /// A safetensors file whose JSON header is `header` (the payload `payload` bytes of zeros).
    static func safetensors(_ path: String, header: String, payload: Int = 64, declaredLength: UInt64? = nil) throws {
        let h = Array(header.utf8)
        var bytes = withUnsafeBytes(of: (declaredLength ?? UInt64(h.count)).littleEndian) { Array($0) }
        bytes += h + [UInt8](repeating: 0, count: payload)
        try writeBytes(path, bytes)
    }

    /// A profile folder of a real gpt-mini step (batch 1), made once by the CLI and copied per case.
    static let profile: String = {
        let dir = NSTemporaryDirectory() + "remat-cli-profile-" + UUID().uuidString
        let r = CLI.run(["profile", "--model", "gpt-mini", "--batch", "1", "--runs", "1", "--out", dir], in: NSTemporaryDirectory())
        precondition(r.status == 0, "could not make the reference profile: \(r)")
        return dir
    }()

    /// A copy of the reference profile in the sandbox, with `edit` applied to one of its files.
    static func profileCopy(_ s: Sandbox, _ name: String = "stats", edit: ((inout String, String) -> Void)? = nil, file: String = "") throws {
        let dir = s.file(name)
        try FileManager.default.copyItem(atPath: profile, toPath: dir)
        if let edit {
            var text = try String(contentsOfFile: dir + "/" + file, encoding: .utf8)
            edit(&text, file)
            try write(dir + "/" + file, text)
        }
    }

    /// Replaces the first data row's field in `column` of a CSV text (`text`) by `value`.
    static func setField(_ text: inout String, column: String, value: String, row: Int = 0) {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let header = lines[0].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard let c = header.firstIndex(of: column), row + 1 < lines.count else { return }
        var fields = lines[row + 1].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard c < fields.count else { return }
        fields[c] = value
        lines[row + 1] = fields.joined(separator: ",")
        text = lines.joined(separator: "\n")
    }

    // MARK: The cases

    static let cases: [Case] = {
        var c: [Case] = []
        func add(_ name: String, _ args: [String], env: [String: String] = [:], _ setup: @escaping @Sendable (Sandbox) throws -> Void = { _ in }) {
            c.append(Case(name: name, arguments: args, environment: env, setup: setup))
        }
        // Command line: unknown commands and options.
        add("unknown subcommand", ["frobnicate"])
        add("unknown option", ["bench", "train", "--frobnicate", "1"])
        add("option without its value", ["bench", "train", "--steps"])
        // --threads and REMAT_THREADS, on every command that computes.
        for cmd in [["demo"], ["train"], ["bench", "train"], ["explain"], ["profile", "--out", "p"], ["plan", "--budget", "0.5"],
                    ["bench", "kernels"], ["bench", "conv"], ["bench", "codecs"], ["bench", "fp8"], ["report", "--out", "r.html"]] {
            for t in ["0", "-1", "257", "99999999999", "abc", "2.5"] { add("\(cmd.joined(separator: " ")) --threads \(t)", cmd + ["--threads", t]) }
        }
        for env in ["0", "-3", "abc", "100000"] { add("REMAT_THREADS=\(env)", ["bench", "kernels", "--sizes", "4"], env: ["REMAT_THREADS": env]) }
        // Budgets, wherever they are taken.
        let badBudgets = ["1e30", "inf", "-inf", "nan", "-5", "0", "1.5", "123456", "0B", "0.5B", "abc", "", "MiB", "-3MiB", "1e30MiB", "2EiB", "0x10"]
        for b in badBudgets { add("bench train --budget '\(b)'", ["bench", "train", "--budget", b]) }
        for b in ["1e30", "inf", "1.5", "-5", "abc"] {
            add("plan --budget '\(b)'", ["plan", "--budget", b])
            add("train --budget '\(b)'", ["train", "--budget", b])
            add("demo --budget '\(b)'", ["demo", "--budget", b])
            add("step --budget '\(b)'", ["step", "--batch", "b.safetensors", "--budget", b]) { s in try tokenBatch(s.file("b.safetensors")) }
        }
        add("plan without --budget", ["plan", "--model", "gpt-mini"])
        for s in ["bogus", "", "AUTO"] {
            add("plan --solver '\(s)'", ["plan", "--budget", "0.5", "--solver", s])
            add("train --solver '\(s)'", ["train", "--budget", "0.5", "--solver", s])
        }
        for (label, value) in [("unknown codec", "bf17"), ("a lossless codec", "relu-mask"), ("none", "none"), ("empty", ""),
                               ("empty item", "bf16,,fp16"), ("bad group", "fp8-e4m3/g0")] {
            add("plan --allow-lossy \(label)", ["plan", "--budget", "0.5", "--allow-lossy", value])
            add("train --allow-lossy \(label)", ["train", "--budget", "0.5", "--allow-lossy", value])
            add("bench train --allow-lossy \(label)", ["bench", "train", "--budget", "0.5", "--allow-lossy", value])
        }
        add("plan --allow-lossy with --recompute-only", ["plan", "--budget", "0.5", "--allow-lossy", "bf16", "--recompute-only"])
        add("train --allow-lossy without --budget", ["train", "--allow-lossy", "bf16"])
        add("bench train --recompute-only without --budget", ["bench", "train", "--recompute-only"])
        add("plan --no-offload with --recompute-only", ["plan", "--budget", "0.5", "--no-offload", "--recompute-only"])
        add("train --no-offload without --budget", ["train", "--no-offload"])
        add("step --solver without --budget", ["step", "--batch", "b.safetensors", "--solver", "greedy"]) { s in try tokenBatch(s.file("b.safetensors")) }
        add("--budget with --policy", ["train", "--budget", "0.5", "--policy", "all"])
        // Reports (issue 19).
        add("report without --out", ["report"])
        add("report --out a directory", ["report", "--out", "."])
        add("report --out in a missing directory", ["report", "--out", "missing/r.html"])
        add("report --compare bogus", ["report", "--out", "r.html", "--compare", "bogus"])
        add("report --compare none", ["report", "--out", "r.html", "--compare", "none"])
        add("report --compare twice", ["report", "--out", "r.html", "--compare", "all", "--compare", "all"])
        add("report --budget bad", ["report", "--out", "r.html", "--budget", "1.5"])
        add("report --points 1", ["report", "--out", "r.html", "--points", "1"])
        add("report --model bogus", ["report", "--out", "r.html", "--model", "bogus"])
        add("report --policy none", ["report", "--out", "r.html", "--policy", "none"])
        add("report --policy bogus", ["report", "--out", "r.html", "--policy", "bogus"])
        add("report --policy and --budget", ["report", "--out", "r.html", "--policy", "all", "--budget", "0.5"])
        add("report --policy also in --compare", ["report", "--out", "r.html", "--policy", "all", "--compare", "all"])
        add("report --allow-lossy a lossless codec", ["report", "--out", "r.html", "--allow-lossy", "relu-mask"])
        add("report --allow-lossy bogus", ["report", "--out", "r.html", "--allow-lossy", "bf17"])
        add("train --report a directory", ["train", "--report", "."])
        add("train --report in a missing directory", ["train", "--report", "missing/r.html"])
        add("train --report the --data file", ["train", "--data", "d.txt", "--report", "d.txt"]) { try write($0.file("d.txt"), String(repeating: "abc ", count: 400)) }
        add("train --bucket-mib without --distributed", ["train", "--bucket-mib", "4"])
        add("train --bucket-mib 0", ["train", "--distributed", "--bucket-mib", "0"])
        add("train --zero1 without --distributed", ["train", "--zero1"])
        add("demo --report a directory", ["demo", "--report", "."])
        add("demo --report in a missing directory", ["demo", "--report", "missing/r.html"])
        // Dynamic budgets (issue 18).
        add("train --dynamic without --budget", ["train", "--dynamic"])
        add("train --dynamic with a fractional budget", ["train", "--dynamic", "--budget", "0.5"])
        add("train --dynamic with --solver", ["train", "--dynamic", "--budget", "100MiB", "--solver", "greedy"])
        add("train --dynamic with an impossible budget", ["train", "--dynamic", "--budget", "1MiB", "--steps", "1", "--batch", "1"])
        add("train --hybrid without --budget", ["train", "--hybrid"])
        add("train --planned without --budget", ["train", "--planned"])
        add("train --hybrid with a fractional budget", ["train", "--hybrid", "--budget", "0.5"])
        add("train --hybrid and --dynamic", ["train", "--hybrid", "--dynamic", "--budget", "100MiB"])
        add("train --hybrid with --allow-lossy", ["train", "--hybrid", "--budget", "100MiB", "--allow-lossy", "bf16"])
        add("train --hybrid with an impossible budget", ["train", "--hybrid", "--budget", "1MiB", "--steps", "1", "--batch", "1"])
        add("train --budget BYTES (hybrid) with an impossible budget", ["train", "--budget", "1MiB", "--steps", "1", "--batch", "1"])
        add("bench train --mode hybrid without --budget", ["bench", "train", "--mode", "hybrid"])
        add("bench train --mode hybrid with --allow-lossy", ["bench", "train", "--budget", "100MiB", "--mode", "hybrid", "--allow-lossy", "bf16"])
        for r in ["0:64", "64", "9:8", "a:b", "64:4096", ":"] { add("train --length-range '\(r)'", ["train", "--length-range", r]) }
        add("bench train --mode unknown", ["bench", "train", "--budget", "0.5", "--mode", "fast"])
        add("bench train --mode dynamic without --budget", ["bench", "train", "--mode", "dynamic"])
        add("bench train --mode dynamic with --allow-lossy", ["bench", "train", "--budget", "0.5", "--mode", "dynamic", "--allow-lossy", "bf16"])
        add("bench dynamic --modes unknown", ["bench", "dynamic", "--modes", "none,fast"])
        add("bench dynamic --budgets bad", ["bench", "dynamic", "--budgets", "0.5,-1"])
        add("bench dynamic --range past the context", ["bench", "dynamic", "--range", "64:4096"])
        add("bench dynamic --range bad", ["bench", "dynamic", "--range", "8-64"])
        add("bench dynamic --steps 0", ["bench", "dynamic", "--steps", "0"])
        add("bench dynamic --modes empty", ["bench", "dynamic", "--modes", ""])
        add("bench dynamic --modes twice", ["bench", "dynamic", "--modes", "dynamic,dynamic"])
        add("step --budget with --policy", ["step", "--batch", "b.safetensors", "--budget", "0.5", "--policy", "all"]) { s in try tokenBatch(s.file("b.safetensors")) }
        // Policies.
        for p in ["every-k:0", "every-k:-1", "every-k:abc", "every-k", "revolve", "revolve:0", "recursive:0", "revolve:99999999",
                  "heavy-ops:0", "auto:-5", "none:3", "all:2", "bogus", "", "modules:", "modules:a,,b", "save-matmuls:1"] {
            add("bench train --policy '\(p)'", ["bench", "train", "--policy", p])
        }
        for (label, value) in [("unknown codec", "bf17"), ("empty selector", "bf16:op="), ("unknown selector", "bf16:where=x"),
                               ("group on bf16", "bf16/g8"), ("group 0", "fp8-e4m3/g0"), ("empty", "")] {
            for command in [["train"], ["explain", "--batch", "1"], ["bench", "train"]] {
                add("\(command[0]) --compress \(label)", command + ["--compress", value])
            }
        }
        add("train --compress with --budget", ["train", "--budget", "0.5", "--compress", "bf16"])
        add("step --compress with --budget", ["step", "--batch", "b.safetensors", "--budget", "0.5", "--compress", "bf16"]) { s in try tokenBatch(s.file("b.safetensors")) }
        add("bench train --compress with --budget", ["bench", "train", "--budget", "0.5", "--compress", "bf16"])
        add("bench train --compare with a bad codec", ["bench", "train", "--compare", "all+fp9"])
        for p in ["bf17", "", "FP8", "fp8-hp", "fp32"] { add("train --precision '\(p)'", ["train", "--precision", p]) }
        for a in ["", "flash", "Fused"] { add("train --attention '\(a)'", ["train", "--attention", a]) }
        add("bench fp8 --policy none", ["bench", "fp8", "--policy", "none"])
        add("bench fp8 --policy bogus", ["bench", "fp8", "--policy", "bogus"])
        add("bench fp8 on a convolutional model", ["bench", "fp8", "--model", "resnet50-64"])
        for r in ["0", "-1", "1001", "abc"] { add("bench fp8 --rounds \(r)", ["bench", "fp8", "--rounds", r]) }
        for command in [["train"], ["bench", "train"]] {
            add("\(command[0]) --offload with a bad selector", command + ["--offload", "op="])
            add("\(command[0]) --offload-dir missing", command + ["--offload", "all", "--offload-dir", "/nonexistent/spill"])
            add("\(command[0]) --offload with --budget", command + ["--offload", "all", "--budget", "0.5"])
        }
        for (label, value) in [("unknown op kind", "bf16:op=liner"), ("space in a name", "bf16:op= linear"), ("two conditions", "bf16:op=linear:role=input"),
                               ("unknown module", "bf16:module=blocks.99")] {
            add("explain --compress \(label)", ["explain", "--batch", "1", "--compress", value])
        }
        add("train --offload unknown module", ["train", "--offload", "module=blocks.99"])
        add("bench train --compare unknown op kind in a list", ["bench", "train", "--compare", "all+bf16:op=linear,liner"])
        add("train --offload-dir without --offload", ["train", "--offload-dir", "."])
        add("train --offload-dir with a ~ component", ["train", "--offload", "all", "--offload-dir", "~/nowhere"])
        add("step --save-grads under a ~ component", ["step", "--batch", "b.safetensors", "--save-grads", "~/nowhere/g.safetensors"]) { s in try tokenBatch(s.file("b.safetensors")) }
        add("bench codecs --offload-dir missing", ["bench", "codecs", "--offload-dir", "/nonexistent/spill"])
        add("bench train --compare with a bad offload selector", ["bench", "train", "--compare", "all+offload:where=x"])
        add("explain --policy modules:nowhere", ["explain", "--policy", "modules:blocks.9", "--batch", "1"])
        add("explain --policy every-k:2 on a model without a chain", ["explain", "--model", "minilm", "--batch", "1", "--policy", "every-k:2"])
        add("demo --policies with a bad one", ["demo", "--policies", "all,every-k:0"])
        add("demo --policies with an empty one", ["demo", "--policies", "all,,save-matmuls"])
        // Counts.
        for (cmd, option, values) in [(["demo"], "--steps", ["0", "-1", "100001", "abc"]), (["demo"], "--measure", ["0", "-2", "1001"]),
                                      (["train"], "--steps", ["0", "-1", "10000001", "1e3"]), (["train"], "--batch", ["0", "-1", "65537", "1000000"]),
                                      (["train"], "--log-every", ["0", "-1"]), (["train"], "--lr", ["0", "-1", "nan", "inf", "11"]),
                                      (["bench", "train"], "--steps", ["0", "-1", "10001"]), (["bench", "train"], "--batch", ["0", "-1", "65537"]),
                                      (["explain"], "--batch", ["0", "-4"]), (["profile", "--out", "p"], "--runs", ["0", "101", "-1"]),
                                      (["profile", "--out", "p"], "--batch", ["0"]), (["plan", "--budget", "0.5"], "--batch", ["0", "-1"]),
                                      (["plan", "--budget", "0.5"], "--show-peak", ["-1", "100001"]),
                                      (["bench", "kernels"], "--elements", ["0", "-1", "999999999999"]), (["bench", "kernels"], "--reps", ["0", "1001"]),
                                      (["bench", "kernels"], "--sizes", ["", "0", "abc", "1,,2", "9000", "-5"]), (["bench", "conv"], "--batch", ["0", "1025"]),
                                      (["bench", "codecs"], "--elements", ["0", "-1", "999999999999"]), (["bench", "codecs"], "--reps", ["0", "1001"])] {
            for v in values { add("\(cmd.joined(separator: " ")) \(option) \(v)", cmd + [option, v]) }
        }
        add("a batch too large for this machine", ["bench", "train", "--model", "gpt-mini", "--batch", "60000", "--steps", "1"])
        // Models.
        for cmd in [["bench", "train"], ["explain"], ["profile", "--out", "p"], ["plan", "--budget", "0.5"]] {
            add("\(cmd.joined(separator: " ")) --model bogus", cmd + ["--model", "bogus"])
        }
        add("train --model resnet50-64 (not a language model)", ["train", "--model", "resnet50-64"])
        add("step --model bogus", ["step", "--model", "bogus", "--batch", "b.safetensors"]) { s in try tokenBatch(s.file("b.safetensors")) }
        // remat plan chain.
        for (l, s) in [("0", "2"), ("-1", "2"), ("2199023255553", "2"), ("abc", "2"), ("10", "0"), ("10", "-5"), ("1099511627776", "1")] {
            add("plan chain --length \(l) --slots \(s)", ["plan", "chain", "--length", l, "--slots", s])
        }
        // Files given to step.
        add("step --batch missing", ["step", "--batch", "missing.safetensors"])
        add("step --batch a directory", ["step", "--batch", "d"]) { s in try FileManager.default.createDirectory(atPath: s.file("d"), withIntermediateDirectories: false) }
        add("step --batch a FIFO", ["step", "--batch", "fifo"]) { s in _ = mkfifo(s.file("fifo"), 0o644) }
        add("step --weights a FIFO", ["step", "--batch", "b.safetensors", "--weights", "fifo"]) { s in
            try tokenBatch(s.file("b.safetensors")); _ = mkfifo(s.file("fifo"), 0o644)
        }
        add("step --batch empty file", ["step", "--batch", "e.safetensors"]) { s in try writeBytes(s.file("e.safetensors"), []) }
        add("step --batch random bytes", ["step", "--batch", "r.safetensors"]) { s in try writeBytes(s.file("r.safetensors"), (0..<300).map { UInt8(($0 * 37 + 11) % 256) }) }
        add("step --batch text file", ["step", "--batch", "t.safetensors"]) { s in try write(s.file("t.safetensors"), "input,target\n1,2\n") }
        add("step --batch header length beyond the file", ["step", "--batch", "h.safetensors"]) { s in
            try safetensors(s.file("h.safetensors"), header: "{}", declaredLength: 1 << 40)
        }
        add("step --batch header not JSON", ["step", "--batch", "h.safetensors"]) { s in try safetensors(s.file("h.safetensors"), header: "{not json") }
        add("step --batch offsets beyond the payload", ["step", "--batch", "h.safetensors"]) { s in
            try safetensors(s.file("h.safetensors"), header: #"{"input":{"dtype":"I32","shape":[2,16],"data_offsets":[0,128]},"target":{"dtype":"I32","shape":[2,16],"data_offsets":[128,99999999999]}}"#)
        }
        add("step --batch shape overflowing", ["step", "--batch", "h.safetensors"]) { s in
            try safetensors(s.file("h.safetensors"), header: #"{"input":{"dtype":"I32","shape":[4611686018427387904,4],"data_offsets":[0,64]}}"#)
        }
        add("step --batch unknown dtype", ["step", "--batch", "h.safetensors"]) { s in
            try safetensors(s.file("h.safetensors"), header: #"{"input":{"dtype":"Q7","shape":[2],"data_offsets":[0,2]}}"#)
        }
        add("step --batch no target", ["step", "--batch", "b.safetensors"]) { s in
            try SafetensorsFile.write([("input", Tensor(indices: Array(0..<32), shape: [2, 16]))], to: s.file("b.safetensors"))
        }
        add("step --batch float tokens", ["step", "--batch", "b.safetensors"]) { s in
            try SafetensorsFile.write([("input", Tensor.zeros([2, 16])), ("target", Tensor.zeros([2, 16]))], to: s.file("b.safetensors"))
        }
        add("step --batch token id ≥ vocabulary", ["step", "--batch", "b.safetensors"]) { s in try tokenBatch(s.file("b.safetensors"), id: { $0 == 7 ? 256 : 1 }) }
        add("step --batch negative token id", ["step", "--batch", "b.safetensors"]) { s in try tokenBatch(s.file("b.safetensors"), id: { $0 == 3 ? -1 : 1 }) }
        add("step --batch target ≥ vocabulary (int64)", ["step", "--batch", "b.safetensors"]) { s in
            try tokenBatch(s.file("b.safetensors"), target: { $0 == 9 ? 100_000 : 1 }, dtype: .int64)
        }
        add("step --batch longer than the context", ["step", "--batch", "b.safetensors"]) { s in try tokenBatch(s.file("b.safetensors"), t: 257) }
        add("step --batch shapes differ", ["step", "--batch", "b.safetensors"]) { s in
            try SafetensorsFile.write([("input", Tensor(indices: Array(repeating: 1, count: 32), shape: [2, 16])),
                                       ("target", Tensor(indices: Array(repeating: 1, count: 30), shape: [2, 15]))], to: s.file("b.safetensors"))
        }
        add("step --batch rank 1", ["step", "--batch", "b.safetensors"]) { s in
            try SafetensorsFile.write([("input", Tensor(indices: [1, 2], shape: [2])), ("target", Tensor(indices: [1, 2], shape: [2]))], to: s.file("b.safetensors"))
        }
        add("step --batch empty sequence", ["step", "--batch", "b.safetensors"]) { s in try tokenBatch(s.file("b.safetensors"), t: 0) }
        add("step resnet: class ≥ 100", ["step", "--model", "resnet50-64", "--batch", "b.safetensors"]) { s in try imageBatch(s.file("b.safetensors"), classes: [3, 100]) }
        add("step resnet: negative class", ["step", "--model", "resnet50-64", "--batch", "b.safetensors"]) { s in try imageBatch(s.file("b.safetensors"), classes: [-1, 3]) }
        add("step resnet: NaN pixels", ["step", "--model", "resnet50-64", "--batch", "b.safetensors"]) { s in try imageBatch(s.file("b.safetensors"), value: .nan) }
        add("step resnet: wrong image size", ["step", "--model", "resnet50-64", "--batch", "b.safetensors"]) { s in try imageBatch(s.file("b.safetensors"), size: 32) }
        add("step resnet: token batch", ["step", "--model", "resnet50-64", "--batch", "b.safetensors"]) { s in try tokenBatch(s.file("b.safetensors")) }
        add("step minilm: token id ≥ vocabulary", ["step", "--model", "minilm", "--batch", "b.safetensors"]) { s in
            try SafetensorsFile.write([("input", Tensor(indices: [101, 99999, 102, 0], shape: [1, 4])), ("target", Tensor(indices: [1], shape: [1]))], to: s.file("b.safetensors"))
        }
        add("step minilm: label ≥ 2", ["step", "--model", "minilm", "--batch", "b.safetensors"]) { s in
            try SafetensorsFile.write([("input", Tensor(indices: [101, 2000, 102, 0], shape: [1, 4])), ("target", Tensor(indices: [2], shape: [1]))], to: s.file("b.safetensors"))
        }
        add("step --weights missing", ["step", "--batch", "b.safetensors", "--weights", "w.safetensors"]) { s in try tokenBatch(s.file("b.safetensors")) }
        add("step --weights of another model", ["step", "--batch", "b.safetensors", "--weights", "w.safetensors"]) { s in
            try tokenBatch(s.file("b.safetensors"))
            try SafetensorsFile.write([("fc.weight", Tensor.zeros([2, 2]))], to: s.file("w.safetensors"))
        }
        add("step --weights wrong shape", ["step", "--batch", "b.safetensors", "--weights", "w.safetensors"]) { s in
            try tokenBatch(s.file("b.safetensors"))
            let model = GPT(.gptMini)
            var tensors = model.namedTensors
            tensors[0].1 = Tensor.zeros([3, 3])
            try SafetensorsFile.write(tensors, to: s.file("w.safetensors"))
        }
        // Outputs: checked before any work, never over an input.
        add("step --save-grads over --weights", ["step", "--batch", "b.safetensors", "--weights", "w.safetensors", "--save-grads", "w.safetensors"]) { s in
            try tokenBatch(s.file("b.safetensors"))
            try SafetensorsFile.write(GPT(.gptMini).namedTensors, to: s.file("w.safetensors"))
        }
        add("step --save-grads over --batch", ["step", "--batch", "b.safetensors", "--save-grads", "b.safetensors"]) { s in try tokenBatch(s.file("b.safetensors")) }
        add("step --save-grads a directory", ["step", "--batch", "b.safetensors", "--save-grads", "d"]) { s in
            try tokenBatch(s.file("b.safetensors")); try FileManager.default.createDirectory(atPath: s.file("d"), withIntermediateDirectories: false)
        }
        add("step --save-grads in a missing directory", ["step", "--batch", "b.safetensors", "--save-grads", "nowhere/g.safetensors"]) { s in try tokenBatch(s.file("b.safetensors")) }
        add("train --save an existing file", ["train", "--steps", "1", "--save", "f"]) { s in try write(s.file("f"), "keep me") }
        add("train --save under a file", ["train", "--steps", "1", "--save", "f/out"]) { s in try write(s.file("f"), "keep me") }
        add("train --save where model.safetensors is a directory", ["train", "--steps", "1", "--save", "out"]) { s in
            try FileManager.default.createDirectory(atPath: s.file("out/model.safetensors"), withIntermediateDirectories: true)
        }
        add("profile --out an existing file", ["profile", "--batch", "1", "--runs", "1", "--out", "f"]) { s in try write(s.file("f"), "keep me") }
        add("profile --out under a file", ["profile", "--batch", "1", "--runs", "1", "--out", "f/p"]) { s in try write(s.file("f"), "keep me") }
        // Training data.
        add("train --data missing", ["train", "--steps", "1", "--data", "missing.txt"])
        add("train --data a directory", ["train", "--steps", "1", "--data", "d"]) { s in try FileManager.default.createDirectory(atPath: s.file("d"), withIntermediateDirectories: false) }
        add("train --data a FIFO", ["train", "--steps", "1", "--data", "fifo"]) { s in _ = mkfifo(s.file("fifo"), 0o644) }
        add("train --data too short", ["train", "--steps", "1", "--data", "short.txt"]) { s in try write(s.file("short.txt"), "only a few bytes") }
        // Profiles read by plan --stats.
        add("plan --stats missing", ["plan", "--budget", "0.5", "--stats", "nowhere"])
        add("plan --stats a file", ["plan", "--budget", "0.5", "--stats", "f"]) { s in try write(s.file("f"), "x") }
        add("plan --stats with --model", ["plan", "--budget", "0.5", "--stats", "stats", "--model", "gpt-mini"]) { s in try profileCopy(s) }
        add("plan --stats with --batch", ["plan", "--budget", "0.5", "--stats", "stats", "--batch", "2"]) { s in try profileCopy(s) }
        add("plan --stats an empty directory", ["plan", "--budget", "0.5", "--stats", "d"]) { s in try FileManager.default.createDirectory(atPath: s.file("d"), withIntermediateDirectories: false) }
        add("plan --stats missing saved_slots.csv", ["plan", "--budget", "0.5", "--stats", "stats"]) { s in
            try profileCopy(s); try FileManager.default.removeItem(atPath: s.file("stats/saved_slots.csv"))
        }
        add("plan --stats step.json not JSON", ["plan", "--budget", "0.5", "--stats", "stats"]) { s in
            try profileCopy(s); try write(s.file("stats/step.json"), "{")
        }
        add("plan --stats a mixed folder (a CSV changed)", ["plan", "--budget", "0.5", "--stats", "stats"]) { s in
            try profileCopy(s, edit: { text, _ in text += "\n" }, file: "saved_slots.csv")
        }
        for (key, value) in [("baseline_bytes", "-5"), ("baseline_bytes", "9223372036854775807"), ("measured_peak_bytes", "-1"),
                             ("step_seconds", "1e300"), ("forward_ops", "-1"), ("version", "7"), ("input_shape", "[]"), ("input_shape", "[0, 256]"),
                             ("model", "7"), ("blocks", "\"no\"")] {
            add("plan --stats step.json \(key) \(value)", ["plan", "--budget", "0.5", "--stats", "stats"]) { s in
                try profileCopy(s, edit: { text, _ in
                    var object = try! JSONSerialization.jsonObject(with: Data(text.utf8)) as! [String: Any]
                    object[key] = try! JSONSerialization.jsonObject(with: Data(value.utf8), options: .fragmentsAllowed)
                    text = String(decoding: try! JSONSerialization.data(withJSONObject: object), as: UTF8.self)
                }, file: "step.json")
            }
        }
        // Values inside the CSVs (on a folder without stamps: a profile written before them).
        for (file, column, value) in [("activation_stats.csv", "avg_mem_size_bytes", "-5"), ("activation_stats.csv", "avg_mem_size_bytes", "9223372036854775807"),
                                      ("activation_stats.csv", "tensor_id", "7"), ("activation_stats.csv", "last_fw_use_rank", "999999999"),
                                      ("activation_stats.csv", "first_bw_use_rank", "-7"), ("activation_stats.csv", "category", "cheese"),
                                      ("node_stats.csv", "avg_run_time_s", "nan"), ("node_stats.csv", "avg_run_time_s", "-1"),
                                      ("node_stats.csv", "rank", "5"), ("node_stats.csv", "gtype", "sideways"),
                                      ("saved_slots.csv", "tensor_id", "-1"), ("memory_events.csv", "event", "explode"),
                                      ("memory_events.csv", "argument", "999999")] {
            add("plan --stats \(file) \(column) \(value)", ["plan", "--budget", "0.5", "--stats", "stats"]) { s in
                try profileCopy(s, edit: { text, _ in setField(&text, column: column, value: value) }, file: file)
                // Drop the stamps so the value itself is checked.
                var meta = try String(contentsOfFile: s.file("stats/step.json"), encoding: .utf8)
                if let r = meta.range(of: "\"files\"") {
                    let end = meta[r.lowerBound...].range(of: "},\n  \"")!.upperBound
                    meta.replaceSubrange(r.lowerBound..<meta.index(before: end), with: "")
                }
                meta = meta.replacingOccurrences(of: "\"version\" : 2", with: "\"version\" : 1")
                try write(s.file("stats/step.json"), meta)
            }
        }
        // Plans given to bench train.
        add("bench train --plan missing", ["bench", "train", "--plan", "p.json"])
        add("bench train --plan not JSON", ["bench", "train", "--plan", "p.json"]) { s in try write(s.file("p.json"), "plan!") }
        add("bench train --plan a directory", ["bench", "train", "--plan", "d"]) { s in try FileManager.default.createDirectory(atPath: s.file("d"), withIntermediateDirectories: false) }
        add("bench train --plan with --policy", ["bench", "train", "--plan", "p.json", "--policy", "all"]) { s in try write(s.file("p.json"), "{}") }
        add("bench train --plan of another model", ["bench", "train", "--plan", "p.json", "--model", "resnet50-64", "--batch", "2", "--steps", "1"]) { s in
            try write(s.file("p.json"), #"{"baseStepSeconds":1,"budgetBytes":1,"inputShape":[2,256],"keptBytes":0,"keptCount":0,"minimumPeakBytes":0,"model":"GPT","planningSeconds":0,"predictedPeakBytes":1,"predictedPeakLocation":"","predictedStepSeconds":1,"recompute":[],"recomputedBytes":0,"recomputedCount":0,"regions":["blocks.0"],"solver":"auto","unconstrainedPeakBytes":1}"#)
        }
        add("bench train --plan made for another batch", ["bench", "train", "--plan", "p.json", "--batch", "4"]) { s in
            try write(s.file("p.json"), #"{"baseStepSeconds":1,"budgetBytes":1,"inputShape":[2,256],"keptBytes":0,"keptCount":0,"minimumPeakBytes":0,"model":"GPT","planningSeconds":0,"predictedPeakBytes":1,"predictedPeakLocation":"","predictedStepSeconds":1,"recompute":[],"recomputedBytes":0,"recomputedCount":0,"regions":["blocks.0"],"solver":"auto","unconstrainedPeakBytes":1}"#)
        }
        // Model folders given to embed.
        add("embed without texts", ["embed", "--model-dir", "m"]) { s in try FileManager.default.createDirectory(atPath: s.file("m"), withIntermediateDirectories: false) }
        add("embed --model-dir missing", ["embed", "--model-dir", "nowhere", "hello"])
        add("embed --model-dir a file", ["embed", "--model-dir", "f", "hello"]) { s in try write(s.file("f"), "x") }
        add("embed --model-dir without config.json", ["embed", "--model-dir", "m", "hello"]) { s in
            try FileManager.default.createDirectory(atPath: s.file("m"), withIntermediateDirectories: false)
        }
        let config = #"{"vocab_size": 8, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": HEADS, "intermediate_size": 16, "max_position_embeddings": 16, "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu"}"#
        for (name, heads) in [("zero heads", "0"), ("heads not dividing hidden", "3"), ("negative heads", "-2")] {
            add("embed config with \(name)", ["embed", "--model-dir", "m", "hello"]) { s in
                try FileManager.default.createDirectory(atPath: s.file("m"), withIntermediateDirectories: false)
                try write(s.file("m/config.json"), config.replacingOccurrences(of: "HEADS", with: heads))
            }
        }
        add("embed vocab.txt longer than vocab_size", ["embed", "--model-dir", "m", "hello"]) { s in
            try FileManager.default.createDirectory(atPath: s.file("m"), withIntermediateDirectories: false)
            try write(s.file("m/config.json"), config.replacingOccurrences(of: "HEADS", with: "2"))
            try write(s.file("m/vocab.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nworld\nfoo\nbar\nbaz\n")
        }
        add("embed sentence_bert_config.json with max_seq_length 0", ["embed", "--model-dir", "m", "hello"]) { s in
            try FileManager.default.createDirectory(atPath: s.file("m"), withIntermediateDirectories: false)
            try write(s.file("m/config.json"), config.replacingOccurrences(of: "HEADS", with: "2"))
            try write(s.file("m/sentence_bert_config.json"), #"{"max_seq_length": 0}"#)
        }
        return c
    }()

    @Test func thereAreEnoughCases() { #expect(Self.cases.count >= 150, "\(Self.cases.count) cases") }

    @Test(arguments: cases)
    func failsCleanlyAndChangesNothing(_ c: Case) throws {
        let s = Sandbox()
        defer { s.remove() }
        try c.setup(s)
        let before = s.snapshot()
        let r = CLI.run(c.arguments, in: s.path, environment: c.environment, timeout: 120)
        #expect(!r.timedOut, "\(c.name): hung: \(r)")
        #expect(!r.signaled, "\(c.name): killed by a signal: \(r)")
        #expect(r.status != 0, "\(c.name): accepted: \(r)")
        #expect(![132, 133, 134, 136, 137, 139].contains(r.status), "\(c.name): crash status: \(r)")
        #expect(!r.stderr.contains("Fatal error") && !r.stderr.contains("Stack dump") && !r.stderr.contains("💣"), "\(c.name): trapped: \(r)")
        let message = r.stderr.split(separator: "\n").first.map(String.init) ?? ""
        #expect(message.hasPrefix("Error: ") && message.count > 12, "\(c.name): no message: \(r)")
        #expect(!message.contains("NSCocoaErrorDomain") && !message.contains("Error Domain="), "\(c.name): raw error: \(r)")
        // A negative number is a value to judge, not a missing one.
        if c.arguments.contains(where: { $0.hasPrefix("-") && Double($0) != nil }) {
            #expect(!message.contains("Missing value"), "\(c.name): a negative number was not read as a value: \(r)")
        }
        #expect(s.snapshot() == before, "\(c.name): files changed: \(r)")
    }
}
