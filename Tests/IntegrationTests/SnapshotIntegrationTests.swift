import BSON
import Foundation
import MongoClient
import PostgresClient
import TestSupport
import XCTest

/// `mongoshift snapshot` end to end: PostgreSQL rows → BSON changes → spool segments → Mongo bulk writes.
final class SnapshotIntegrationTests: IntegrationTestCase {
    override var namePrefix: String { "orders" }

    func allIds() async throws -> [Int64] {
        try await mongo.findAll(database: database, collection: "orders", projection: ["_id": 1]).compactMap {
            if case .int64(let v)? = $0["_id"] { return v }
            return nil
        }
    }

    /// `snapshot` took the stream's lease and never renewed it: after one lease period the stream looked free
    /// (`lag` showed no owner, `reset` and other workers could take it) while the copy went on.
    func testASnapshotKeepsItsLeaseForAsLongAsItRuns() async throws {
        try await Fixtures.createOrders(connection, table: table, rows: 400)
        let config = try Fixtures.writeConfig(directory: directory, pg: pg, mongo: mongoURL, database: database, table: table,
                                              extra: "    max_writes_per_second: 60\nlease: 3s")
        let (process, _) = try start(["snapshot", "--config", config])
        try await Task.sleep(for: .seconds(4))
        XCTAssertTrue(process.isRunning, "the paced snapshot outlasts two lease periods")
        let lag = try MongoshiftProcess.run(["lag", "--config", config, "--json"])
        XCTAssertTrue(lag.stdout.contains("\"owner\"") && !lag.stdout.contains("\"owner\" : null") && !lag.stdout.contains("\"owner\":null"), lag.stdout)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
    }

    func testSnapshotCopiesEveryRowWithExactTypes() async throws {
        try await Fixtures.createOrders(connection, table: table, rows: 20_000)
        let config = try Fixtures.writeConfig(directory: directory, pg: pg, mongo: mongoURL, database: database, table: table)
        let result = try MongoshiftProcess.run(["snapshot", "--config", config])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("snapshot complete, 20000 rows applied"), result.stdout)
        let count = try await mongo.count(database: database, collection: "orders")
        XCTAssertEqual(count, 20_000)

        // A typed sample document matches its row exactly.
        let docs = try await mongo.findAll(database: database, collection: "orders", filter: ["_id": .int64(11)])
        let doc = try XCTUnwrap(docs.first)
        XCTAssertEqual(doc["id"], .int64(11))
        XCTAssertEqual(doc["customer_id"], .int32(12))
        XCTAssertEqual(doc["quantity"], .int32(11))
        XCTAssertEqual(doc["amount"], .decimal128(Decimal128("13.5795")!))
        XCTAssertEqual(doc["big_amount"], .decimal128(Decimal128("9007199254740993.011000")!), "Decimal128 keeps every digit")
        XCTAssertEqual(doc["score"], .double(11.0 / 3.0))
        XCTAssertEqual(doc["paid"], .bool(false))
        XCTAssertEqual(doc["note"], .string("note 11"))
        XCTAssertEqual(doc["order_date"], .datetime(1_705_017_600_000), "2024-01-12 00:00 UTC")
        XCTAssertEqual(doc["created_at"], .datetime(1_704_067_860_123), "2024-01-01 00:11:00.123456 to the millisecond")
        XCTAssertEqual(doc["updated_at"], .datetime(1_717_200_011_987), "2024-06-01 00:00:11.987654+00 to the millisecond")
        XCTAssertEqual(doc["pickup_tz"], .string("08:11:00+02"))
        XCTAssertEqual(doc["payload"], .binary(BSONBinary(subtype: 0, data: [0, 0, 0, 11])))
        guard case .document(let attrs)? = doc["attrs"] else { return XCTFail("attrs is not a subdocument: \(doc)") }
        XCTAssertEqual(attrs["sku"], .string("SKU-11"))
        XCTAssertEqual(attrs["big"], .int64(9_007_199_254_740_993), "int64 inside JSON stays exact")
        XCTAssertEqual(attrs["dims"], .document(["h": 2.5, "w": 1]))
        XCTAssertEqual(attrs["tags"], .array(["a", "b", 1]))
        XCTAssertEqual(doc["note"].flatMap { _ in docs.count }, 1)
        // Every other field of the row, compared through PostgreSQL's own text of it.
        let row = try await connection.query("SELECT big_amount IS NULL, note IS NULL FROM public.\(table) WHERE id = 10").rows[0]
        let ten = try await mongo.findAll(database: database, collection: "orders", filter: ["_id": .int64(10)]).first
        XCTAssertEqual(row, ["t", "f"])
        XCTAssertEqual(ten?["big_amount"], .null, "NULL becomes null")

        // A second run on a finished stream changes nothing and says so.
        let again = try MongoshiftProcess.run(["snapshot", "--config", config])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("already complete") && again.stdout.contains("nothing to do"), again.stdout)
        let countAfter = try await mongo.count(database: database, collection: "orders")
        XCTAssertEqual(countAfter, 20_000)
        XCTAssertEqual(Fixtures.streamCounters(stateDirectory: directory + "/state", stream: "orders")?.applied, 20_000)
    }

    func testKillNineMidSnapshotThenResumeLosesAndDuplicatesNothing() async throws {
        try await Fixtures.createOrders(connection, table: table, rows: 20_000)
        // Small batches: many pages, so the kill lands mid-snapshot.
        let config = try Fixtures.writeConfig(directory: directory, pg: pg, mongo: mongoURL, database: database, table: table,
                                              defaults: "batch_bytes: 64KiB")
        let (process, _) = try MongoshiftProcess.start(["snapshot", "--config", config])
        let deadline = Date().addingTimeInterval(120)
        var killedAt: (extracted: Int, applied: Int, phase: String)?
        while Date() < deadline && process.isRunning {
            if let c = Fixtures.streamCounters(stateDirectory: directory + "/state", stream: "orders"), c.applied > 2_000 {
                kill(process.processIdentifier, SIGKILL)
                killedAt = c
                break
            }
            usleep(5_000)
        }
        process.waitPolling()
        let killed = try XCTUnwrap(killedAt, "the snapshot finished before it could be killed")
        print("killed mid-snapshot at extracted=\(killed.extracted) applied=\(killed.applied)")
        XCTAssertLessThan(killed.applied, 20_000)
        let partial = try await mongo.count(database: database, collection: "orders")
        XCTAssertLessThan(partial, 20_000)

        let resumed = try MongoshiftProcess.run(["snapshot", "--config", config])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains("resuming snapshot"), resumed.stderr)
        let ids = try await allIds()
        XCTAssertEqual(ids.count, 20_000, "no duplicate, no missing")
        XCTAssertEqual(Set(ids), Set(1...20_000))
    }
}
