// swift-tools-version:6.0
import PackageDescription

// Three layers, each its own target:
//   WavelaneProtocol  pure protocol logic (frames, envelopes, JSON, topic globs, message assembly); no I/O
//   WavelaneAuth      JWT verification on the system OpenSSL (libcrypto); no I/O
//   WavelaneEngine    the SwiftNIO server: HTTP upgrade, connections, topics, users, the event queue
//   WavelaneCABI      the C ABI (@_cdecl) over the engine; header in Sources/CWavelane/include/wavelane.h
// Only `wavelane` (the C ABI) is a dynamic product: one shared library holds all Swift code.
// The engine's state is confined to one event loop per shard; dynamic exclusivity checks
// (swift_beginAccess) showed up at ~6% of fan-out CPU in perf, so release builds of the two hot
// targets skip them (debug builds and tests keep them).
let hotPathSettings: [SwiftSetting] = [
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
]

let package = Package(
    name: "Wavelane",
    products: [
        .library(name: "wavelane", type: .dynamic, targets: ["WavelaneCABI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        .systemLibrary(
            name: "CWavelaneOpenSSL",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),
        .systemLibrary(
            name: "CWavelaneZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        .target(name: "CWavelane"),
        .target(name: "CWavelaneGlibcCompat"),
        .target(
            name: "WavelaneProtocol",
            dependencies: [
                "CWavelaneOpenSSL",
                "CWavelaneZlib",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            swiftSettings: hotPathSettings
        ),
        .target(
            name: "WavelaneAuth",
            dependencies: ["CWavelaneOpenSSL", "WavelaneProtocol"]
        ),
        .target(
            name: "WavelaneEngine",
            dependencies: [
                "WavelaneProtocol",
                "WavelaneAuth",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: hotPathSettings
        ),
        .target(
            name: "WavelaneCABI",
            dependencies: ["CWavelane", "CWavelaneGlibcCompat", "WavelaneEngine"],
            linkerSettings: [
                // libgcc static: libwavelane.so needs only glibc at run time (the manylinux wheel;
                // setup.py links libcrypto, zlib and libstdc++ statically through pkg-config).
                // CWavelaneGlibcCompat keeps its glibc symbol versions at 2.34 or older.
                .unsafeFlags(["-Xlinker", "-z", "-Xlinker", "nodelete", "-Xclang-linker", "-static-libgcc"]),
            ]
        ),
        // Microbenchmarks of the hot paths: `swift run -c release wavelane-micro` (benchmarks/README.md).
        .executableTarget(
            name: "wavelane-micro",
            dependencies: [
                "WavelaneProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            path: "benchmarks/micro"
        ),
        .testTarget(
            name: "WavelaneProtocolTests",
            dependencies: [
                "WavelaneProtocol",
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),  // the reference for RequestHeadParser
            ]
        ),
        .testTarget(name: "WavelaneAuthTests", dependencies: ["WavelaneAuth"], resources: [.copy("Fixtures")]),
        .testTarget(
            name: "WavelaneEngineTests",
            dependencies: [
                "WavelaneEngine",
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
    ],
    swiftLanguageModes: [.v5]
)
