// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "mongoshift",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "mongoshift", targets: ["mongoshift"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
    ],
    targets: [
        // C libraries from Debian, flags from pkg-config. Only the wrapper module beside each imports it.
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CMongoC", pkgConfig: "libmongoc-1.0", providers: [.apt(["libmongoc-dev", "libbson-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),

        .target(name: "ShiftCore"),
        .target(name: "PostgresClient", dependencies: ["CLibPQ", "ShiftCore"]),
        .target(name: "MongoClient", dependencies: ["CMongoC", "ShiftCore"]),
        .target(name: "Spool", dependencies: ["CZstd", "MongoClient", "ShiftCore"]),
        .target(name: "SQLiteStore", dependencies: ["CSQLite"]),
        .target(name: "Replication", dependencies: [
            "PostgresClient", "MongoClient", "Spool", "SQLiteStore",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Metrics", package: "swift-metrics"),
        ]),
        .executableTarget(name: "mongoshift", dependencies: [
            "Replication",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Yams", package: "Yams"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),

        // Test helpers: the dev servers' URLs from the environment, unique names, running the built binary.
        .target(name: "TestSupport", dependencies: ["MongoClient", "PostgresClient", "SQLiteStore", "Replication", "ShiftCore"], path: "Tests/TestSupport"),
        .testTarget(name: "MongoClientTests", dependencies: ["MongoClient", "TestSupport"]),
        .testTarget(name: "PostgresClientTests", dependencies: ["PostgresClient", "TestSupport"]),
        .testTarget(name: "SpoolTests", dependencies: ["Spool", "MongoClient", "CZstd"]),
        .testTarget(name: "ReplicationTests", dependencies: ["Replication", "MongoClient", "Spool", "TestSupport"]),
        .testTarget(name: "mongoshiftTests", dependencies: ["mongoshift", "Replication", "MongoClient", "PostgresClient", "TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
