// swift-tools-version: 6.1
import Foundation
import PackageDescription

/// Whether MPI's development files are installed (Open MPI's pkg-config file, as Debian's
/// libopenmpi-dev and Homebrew's open-mpi install it): the data-parallel target RematDistributed
/// and what uses it are built only then, so the package builds where MPI is absent.
/// `REMAT_MPI=0` leaves them out, `REMAT_MPI=1` builds them whatever is found.
let hasMPI: Bool = {
    switch ProcessInfo.processInfo.environment["REMAT_MPI"] {
    case "0": return false
    case "1": return true
    default:
        let searched = (ProcessInfo.processInfo.environment["PKG_CONFIG_PATH"] ?? "").split(separator: ":").map(String.init)
            + ["/usr/lib/x86_64-linux-gnu/pkgconfig", "/usr/lib/aarch64-linux-gnu/pkgconfig", "/usr/lib64/pkgconfig",
               "/usr/lib/pkgconfig", "/usr/local/lib/pkgconfig", "/opt/homebrew/lib/pkgconfig"]
        return searched.contains { FileManager.default.fileExists(atPath: $0 + "/ompi-c.pc") }
    }
}()

let package = Package(
    name: "Remat",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Remat", targets: ["Remat"]),
        .executable(name: "remat", targets: ["remat"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // The GEMM library's seam: OpenBLAS on Linux, Accelerate on Apple platforms.
        // OpenBLAS is dlopen'ed at run time (not linked) so that remat_blas_init() can pick its
        // fast kernel via OPENBLAS_CORETYPE before the library's constructor runs; only the
        // runtime package (libopenblas0) is needed. See docs/blas-choice.md.
        .target(
            name: "CRematBLAS",
            linkerSettings: [
                .linkedLibrary("dl", .when(platforms: [.linux])),
                .linkedLibrary("pthread", .when(platforms: [.linux])),
                .linkedFramework("Accelerate", .when(platforms: [.macOS, .iOS])),
            ]
        ),
        // Hot elementwise / reduction loops in C, compiled once per ISA with
        // runtime dispatch (target_clones) so the library stays usable as a dependency.
        .target(name: "CRematKernels", linkerSettings: [.linkedLibrary("m")]),
        // The layers, each seeing only those below it (the compiler enforces the direction):
        // tensors, kernels, autograd and the ledger; files; modules and models; the recompute
        // engine and policies; planning; training loops. `Remat` re-exports them all for users.
        .target(name: "RematCore", dependencies: ["CRematBLAS", "CRematKernels"]),
        // Charts as SVG (scales with nice ticks, a colour-blind-safe palette, line, area, point
        // and bar charts): no dependency, for the reports.
        .target(name: "RematSVG"),
        .target(name: "RematIO", dependencies: ["RematCore"]),
        .target(name: "RematNN", dependencies: ["RematCore", "RematIO"]),
        .target(name: "RematCheckpoint", dependencies: ["RematNN", "CRematKernels"]),
        .target(name: "RematPlanning", dependencies: ["RematCheckpoint", "RematIO"]),
        .target(name: "RematTraining", dependencies: ["RematPlanning"]),
        // The reports (issue 19): what they draw, from the ledger's timeline and the planner's figures.
        .target(name: "RematReport", dependencies: ["RematTraining", "RematIO", "RematSVG"]),
        .target(name: "Remat", dependencies: ["RematCore", "RematIO", "RematNN", "RematCheckpoint", "RematPlanning", "RematTraining",
                                              "RematSVG", "RematReport"]),
        .executableTarget(
            name: "remat",
            dependencies: ["Remat", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .testTarget(name: "RematCoreTests", dependencies: ["RematCore"]),
        .testTarget(name: "RematSVGTests", dependencies: ["RematSVG"]),
        .testTarget(name: "RematTests", dependencies: ["Remat"], exclude: ["Fixtures"]),
        // Runs the built `remat` on bad inputs (depending on it makes the test build build it).
        .testTarget(name: "RematCLITests", dependencies: ["remat", "Remat"]),
    ],
    swiftLanguageModes: [.v6]
)

if hasMPI {
    package.products.append(.library(name: "RematDistributed", targets: ["RematDistributed"]))
    package.targets += [
        // MPI's C API (Open MPI), with its predefined handles as functions Swift can call.
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"]), .brew(["open-mpi"])]),
        // Data-parallel training over MPI (issue 20).
        .target(name: "RematDistributed", dependencies: ["RematTraining", "CMPI"]),
        // Run under mpirun by RematCLITests: every collective checked on every rank.
        .executableTarget(name: "remat-mpi-check", dependencies: ["RematDistributed"]),
    ]
    for target in package.targets {
        if target.name == "RematCLITests" { target.dependencies.append("remat-mpi-check") }
        // remat train --distributed (the CLI checks canImport(RematDistributed)).
        if target.name == "remat" { target.dependencies.append("RematDistributed") }
    }
}
