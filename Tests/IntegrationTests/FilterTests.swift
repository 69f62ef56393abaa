import BSON
import Foundation
import MongoClient
import PostgresClient
import TestSupport
import XCTest

/// Filters: `where:` (Redshift → Mongo) and `match:` (Mongo → Redshift) apply to snapshot and tail alike, and a
/// row or document that leaves the filter is deleted from the target.
final class FilterTests: IntegrationTestCase {
    override var namePrefix: String { "filter" }

    func testWhereFiltersSnapshotAndTailAndDeletesRowsThatLeaveIt() async throws {
        try await Fixtures.createOrders(connection, table: table, rows: 100)
        let config = try Fixtures.writeConfig(directory: directory, pg: pg, mongo: mongoURL, database: database, table: table,
                                              extra: "    where: \"customer_id % 2 = 0\"\n    reconcile_every: 1s")
        let expected = Int(try await connection.query("SELECT count(*)::text FROM public.\(table) WHERE customer_id % 2 = 0 AND NOT is_deleted").rows[0][0]!)!
        let (process, _) = try startRun(config)
        try await waitFor("snapshot") { self.phase("orders") == "streaming" }
        let copied = try await mongo.count(database: database, collection: "orders")
        XCTAssertEqual(copied, expected, "only matching rows")
        // A matching row moves out of the filter, a non-matching one moves in.
        let leaving = try await connection.query("SELECT id::text FROM public.\(table) WHERE customer_id % 2 = 0 AND NOT is_deleted LIMIT 1").rows[0][0]!
        let entering = try await connection.query("SELECT id::text FROM public.\(table) WHERE customer_id % 2 = 1 AND NOT is_deleted LIMIT 1").rows[0][0]!
        try await connection.execute("UPDATE public.\(table) SET customer_id = customer_id + 1, updated_at = now() WHERE id IN (\(leaving), \(entering))")
        try await waitFor("the swap") {
            let ids = try await self.mongo.findAll(database: self.database, collection: "orders", filter: ["_id": .document(["$in": .array([.int64(Int64(leaving)!), .int64(Int64(entering)!)])])])
            return ids.count == 1 && ids[0]["_id"]?.int64Value == Int64(entering)
        }
        try await Task.sleep(for: .seconds(3))  // reconcile cycles: rows outside the filter are not "missing"
        stop(process)
        let final = try await mongo.count(database: database, collection: "orders")
        XCTAssertEqual(final, expected)
        let verify = try MongoshiftProcess.run(["verify", "--config", config])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
        // A predicate the source refuses is a configuration error naming the stream.
        let bad = try Fixtures.writeConfig(directory: directory, pg: pg, mongo: mongoURL, database: database, table: table, extra: "    where: \"no_such_column > 1\"")
        let check = try MongoshiftProcess.run(["check", "--config", bad, "--min-oplog-window", "0s"])
        XCTAssertTrue(check.stdout.contains("orders: where: the source refuses the predicate"), check.stdout + check.stderr)
    }

    /// The progress total of a filtered snapshot is the planner's estimate of the matching rows, not the table's count.
    func testWhereSnapshotProgressTotalEstimatesTheMatchingRows() async throws {
        try await Fixtures.createOrders(connection, table: table, rows: 2000)
        try await connection.execute("ANALYZE public.\(table)")
        let config = try Fixtures.writeConfig(directory: directory, pg: pg, mongo: mongoURL, database: database, table: table,
                                              extra: "    where: \"id <= 100\"")
        let result = try MongoshiftProcess.run(["snapshot", "--config", config, "--log-format", "json"])
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        let totals = (result.stdout + result.stderr).split(separator: "\n")
            .filter { $0.contains("\"snapshot progress\"") }
            .compactMap { line -> Int? in
                guard let range = line.range(of: "\"total\": \"") else { return nil }
                return Int(line[range.upperBound...].prefix { $0.isNumber })
            }
        XCTAssertFalse(totals.isEmpty, result.stdout + result.stderr)
        for total in totals { XCTAssertTrue((50...200).contains(total), "total \(total): the estimate of the 100 matching rows") }
    }

    func testMatchFiltersSnapshotAndChangeStreamAndDeletesDocumentsThatLeaveIt() async throws {
        let schema = TestServers.uniqueName("flt")
        onTeardown { [connection] in _ = try? await connection?.execute("DROP SCHEMA IF EXISTS \(schema) CASCADE") }
        _ = try await mongo.bulkWrite(database: database, collection: "accounts", (1...40).map { (i: Int) -> WriteOperation in
            let status: String = i % 4 == 0 ? "closed" : "active"
            return .insert(["_id": .int32(Int32(i)), "status": .string(status), "balance": .int32(Int32(i * 10))])
        })
        let path = try writeStreamsConfig("""
          - name: accounts
            from: { collection: accounts }
            to: { table: \(schema).accounts }
            match: { status: active, balance: { $gte: 50 } }
        """)
        let (process, _) = try startRun(path)
        try await waitFor("snapshot") { self.phase("accounts") == "streaming" }
        func count() async throws -> String? { try await connection.query("SELECT count(*)::text FROM \(schema).accounts").rows.first?.first ?? nil }
        // ids 5…40 not divisible by 4: 27 documents.
        let first = try await count()
        XCTAssertEqual(first, "27")
        _ = try await mongo.bulkWrite(database: database, collection: "accounts", [
            .update(filter: ["_id": 5], update: ["$set": .document(["status": "closed"])], upsert: false),   // leaves
            .update(filter: ["_id": 4], update: ["$set": .document(["status": "active"])], upsert: false),   // 40 < 50: still out
            .update(filter: ["_id": 8], update: ["$set": .document(["status": "active"])], upsert: false),   // enters
            .insert(["_id": 41, "status": "active", "balance": 1]),                                        // never in
        ])
        try await waitFor("the changes") {
            let ids = try await self.connection.query("SELECT _id::text FROM \(schema).accounts WHERE _id IN (4, 5, 8, 41)").rows.compactMap { $0[0] ?? nil }
            return ids == ["8"]
        }
        stop(process)
        let last = try await count()
        XCTAssertEqual(last, "27")
        let verify = try MongoshiftProcess.run(["verify", "--config", path])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
    }
}
