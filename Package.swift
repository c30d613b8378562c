// swift-tools-version:6.0
import PackageDescription

/// Every Swift target is compiled for AVX2 + FMA: the calling convention depends on the target's vector
/// features, so a module built without them can disagree with one built with them on how a value is
/// returned. (A test target without them read `ForwardHooks.scanBinning`'s Optional result from the wrong
/// place and overwrote its own return address.) Without them every `addingProduct` becomes a libm call.
let vectorFeatures = ["-Xcc", "-mavx2", "-Xcc", "-mfma"]
let targetSettings: [SwiftSetting] = [.unsafeFlags(vectorFeatures)]
/// Numeric targets are also compiled optimised in debug builds: SIMD code is ~1000x slower at -Onone
/// (Docs/ARCHITECTURE.md).
let kernelSettings: [SwiftSetting] = [.unsafeFlags(["-Ounchecked"] + vectorFeatures)]

let package = Package(
    name: "qmamba",
    products: [
        .executable(name: "qmamba", targets: ["qmamba"]),
        .library(name: "TensorModule", targets: ["TensorModule"]),
        .library(name: "Checkpoint", targets: ["Checkpoint"]),
        .library(name: "Vim", targets: ["Vim"]),
        .library(name: "Cluster", targets: ["Cluster"]),
        .library(name: "ImageData", targets: ["ImageData"]),
        .library(name: "Quantization", targets: ["Quantization"]),
    ],
    targets: [
        // MARK: - C libraries (module maps and static-inline shims only)
        .systemLibrary(
            name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c",
            providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .systemLibrary(
            name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(
            name: "CTurboJPEG", path: "Sources/CTurboJPEG", pkgConfig: "libturbojpeg",
            providers: [.apt(["libturbojpeg0-dev"])]),
        .systemLibrary(
            name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng",
            providers: [.apt(["libpng-dev"])]),
        .systemLibrary(
            name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CMalloc", path: "Sources/CMalloc"),
        .systemLibrary(name: "CIntrinsics", path: "Sources/CIntrinsics"),

        // MARK: - Libraries
        .target(name: "TensorModule", dependencies: ["CBLAS", "CIntrinsics"], swiftSettings: kernelSettings),
        .target(name: "Checkpoint", dependencies: ["TensorModule", "CZlib"], swiftSettings: kernelSettings),
        .target(name: "Vim", dependencies: ["TensorModule", "Checkpoint"], swiftSettings: kernelSettings),
        .target(
            name: "Quantization", dependencies: ["TensorModule", "Checkpoint", "Vim"], swiftSettings: kernelSettings),
        .target(name: "Cluster", dependencies: ["CMPI"], swiftSettings: targetSettings),
        .target(
            name: "ImageData", dependencies: ["TensorModule", "CTurboJPEG", "CPNG", "CZlib"],
            swiftSettings: kernelSettings),

        // MARK: - Command line
        .target(
            name: "QMambaCLI",
            dependencies: ["TensorModule", "Checkpoint", "Vim", "Quantization", "Cluster", "ImageData", "CMalloc"],
            swiftSettings: targetSettings),
        .executableTarget(name: "qmamba", dependencies: ["QMambaCLI"], swiftSettings: targetSettings),

        // MARK: - Tests
        .target(
            name: "TestSupport", dependencies: ["TensorModule", "Checkpoint", "CZlib"], path: "Tests/TestSupport",
            swiftSettings: targetSettings),
        .testTarget(
            name: "TensorModuleTests", dependencies: ["TensorModule", "TestSupport"], swiftSettings: targetSettings),
        .testTarget(
            name: "CheckpointTests", dependencies: ["Checkpoint", "TestSupport"], swiftSettings: targetSettings),
        .testTarget(
            name: "VimTests", dependencies: ["Vim", "Checkpoint", "TestSupport"], swiftSettings: targetSettings),
        .testTarget(
            name: "ImageDataTests", dependencies: ["ImageData", "TestSupport"], swiftSettings: targetSettings),
        .testTarget(
            name: "QuantizationTests", dependencies: ["Quantization", "Vim", "Checkpoint", "TestSupport"],
            swiftSettings: targetSettings),
        .testTarget(
            name: "QMambaCLITests", dependencies: ["TestSupport", "Checkpoint", "TensorModule", "Quantization", "Vim"],
            swiftSettings: targetSettings),
    ],
    swiftLanguageModes: [.v5]
)
