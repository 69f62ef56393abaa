import BSON
import Foundation
import MongoClient
import TestSupport
import XCTest

/// Gentle on the target: `max_writes_per_second` paces writes to Mongo, and throttling errors (16500, as Cosmos
/// DB's Mongo API answers) are retried, never failures or dead letters.
final class GentleTargetTests: IntegrationTestCase {
    override var namePrefix: String { "gentle" }

    func testWritesArePacedAndThrottlingIsRetried() async throws {
        try await Fixtures.createOrders(connection, table: table, rows: 600)
        let config = try Fixtures.writeConfig(directory: directory, pg: pg, mongo: mongoURL, database: database, table: table,
                                              extra: "    max_writes_per_second: 200", defaults: "batch_bytes: 64KiB")
        // The server throttles the first three write commands (per-item throttling: WriteRateTests).
        _ = try await mongo.command([
            "configureFailPoint": "failCommand", "mode": .document(["times": 3]),
            "data": .document(["failCommands": .array(["insert", "update"]), "errorCode": .int32(16500)]),
        ], database: "admin")
        onTeardown { [mongo] in _ = try? await mongo?.command(["configureFailPoint": "failCommand", "mode": "off"], database: "admin") }
        let started = Date()
        let result = try MongoshiftProcess.run(["snapshot", "--config", config, "--log-format", "json"])
        let elapsed = Date().timeIntervalSince(started)
        XCTAssertEqual(result.status, 0, result.stderr.suffix(2000).description)
        let copied = try await mongo.count(database: database, collection: "orders")
        XCTAssertEqual(copied, 600)
        XCTAssertGreaterThanOrEqual(elapsed, 2.5, "600 writes at 200/s take at least ~3 s")
        XCTAssertTrue(result.stderr.contains("16500"), "the throttling was met and retried: \(result.stderr.suffix(1500))")
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/state/deadletter/orders.jsonl"), "nothing dead-lettered")
    }
}
