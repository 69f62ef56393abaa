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
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),

        // Leaves first; each module depends only on those above it (docs/ARCHITECTURE.md).
        .target(name: "ShiftCore"),
        .target(name: "BSON"),
        .target(name: "Changes", dependencies: ["BSON"]),
        .target(name: "PostgresClient", dependencies: ["CLibPQ", "ShiftCore"]),
        .target(name: "MongoClient", dependencies: ["CMongoC", "BSON", "ShiftCore"]),
        .target(name: "SQLiteStore", dependencies: ["CSQLite"]),
        .target(name: "S3", dependencies: ["CCurl", "CCrypto", "ShiftCore"]),
        .target(name: "Zstd", dependencies: ["CZstd", "ShiftCore"]),
        .target(name: "Spool", dependencies: ["Zstd", "BSON", "Changes", "ShiftCore"]),
        .target(name: "StateStore", dependencies: ["Changes", "BSON", "ShiftCore", "SQLiteStore", "PostgresClient"]),
        .target(name: "Replication", dependencies: [
            "BSON", "Changes", "PostgresClient", "MongoClient", "Spool", "StateStore", "ShiftCore", "S3", "Zstd",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Metrics", package: "swift-metrics"),
        ]),
        .executableTarget(name: "mongoshift", dependencies: [
            "Replication", "StateStore", "BSON", "Changes", "MongoClient", "PostgresClient", "ShiftCore", "S3",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Yams", package: "Yams"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),

        // Test helpers: the dev servers' URLs from the environment, unique names, running the built binary, the
        // integration suites' shared setUp/tearDown.
        .target(name: "TestSupport", dependencies: ["BSON", "Changes", "MongoClient", "PostgresClient", "StateStore", "Replication", "ShiftCore", "S3"],
                path: "Tests/TestSupport"),
        // No servers: `swift test --filter UnitTests` runs these alone, in seconds.
        .testTarget(name: "UnitTests", dependencies: ["mongoshift", "BSON", "Changes", "MongoClient", "Spool", "StateStore", "SQLiteStore", "ShiftCore", "Replication", "PostgresClient", "S3", "Zstd", "TestSupport"]),
        // Against the dev servers (skipped with the reason printed when MONGOSHIFT_TEST_PG / _MONGO are unset).
        .testTarget(name: "IntegrationTests", dependencies: ["mongoshift", "BSON", "Changes", "MongoClient", "PostgresClient", "Spool",
                                                             "StateStore", "Replication", "S3", "TestSupport"]),
        // Whole processes under abuse: crash storms, server faults, several workers, memory.
        .testTarget(name: "SystemTests", dependencies: ["BSON", "Changes", "MongoClient", "PostgresClient", "StateStore", "Replication", "S3", "TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
