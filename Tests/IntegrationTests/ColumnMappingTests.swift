import BSON
import Foundation
import MongoClient
import PostgresClient
import Spool
import TestSupport
import XCTest

/// `columns: {include, exclude, rename}` in both directions: excluded columns and fields never reach the spool
/// or the target, renamed ones arrive under their new name, snapshot and tail alike.
final class ColumnMappingTests: IntegrationTestCase {
    override var namePrefix: String { "colmap" }

    func spooledDocuments(_ stream: String) throws -> [Document] {
        let dir = try SpoolDirectory(root: state + "/spool", stream: stream)
        return try dir.sequencesOnDisk().flatMap { try SpoolSegmentReader.read(path: dir.segmentPath($0)).changes.compactMap(\.document) }
    }

    func testRedshiftColumnsExcludedAndRenamed() async throws {
        try await Fixtures.createOrders(connection, table: table, rows: 100)
        let config = try Fixtures.writeConfig(directory: directory, pg: pg, mongo: mongoURL, database: database, table: table,
                                              extra: "    columns: { exclude: [note], rename: { customer_id: customer } }")
        XCTAssertEqual(try MongoshiftProcess.run(["snapshot", "--spool-only", "--config", config]).status, 0)
        let spooled = try spooledDocuments("orders")
        XCTAssertEqual(spooled.count, 100)
        XCTAssertTrue(spooled.allSatisfy { $0["note"] == nil && $0["customer_id"] == nil && $0["customer"] != nil }, "\(spooled.first!)")
        let (process, _) = try startRun(config)
        try await waitFor("snapshot applied") { self.phase("orders") == "streaming" }
        try await connection.execute("UPDATE public.\(table) SET note = 'secret', customer_id = 4242, updated_at = now() WHERE id = 1")
        try await waitFor("the update") {
            let docs = try await self.mongo.findAll(database: self.database, collection: "orders", filter: ["_id": .int64(1)])
            return docs.first?["customer"]?.intValue == 4242
        }
        stop(process)
        let docs = try await mongo.findAll(database: database, collection: "orders", filter: [:])
        XCTAssertEqual(docs.count, 100)
        XCTAssertTrue(docs.allSatisfy { $0["note"] == nil && $0["customer_id"] == nil }, "excluded and renamed everywhere")
        // verify compares through the same mapping: nothing differs.
        let verify = try MongoshiftProcess.run(["verify", "--config", config])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)

        // Excluding the key is refused, naming it; so is a column the table does not have.
        for (columns, message) in [("{ exclude: [id] }", "\"id\" is the stream's key"), ("{ include: [nope] }", "no column \"nope\"")] {
            let bad = try Fixtures.writeConfig(directory: directory, pg: pg, mongo: mongoURL, database: database, table: table,
                                               extra: "    columns: \(columns)")
            let result = try MongoshiftProcess.run(["check", "--config", bad, "--min-oplog-window", "0s"])
            XCTAssertTrue(result.stdout.contains(message) || result.stderr.contains(message), result.stdout + result.stderr)
        }
    }

    func testMongoFieldsExcludedAndRenamed() async throws {
        let schema = TestServers.uniqueName("cm")
        onTeardown { [connection] in _ = try? await connection?.execute("DROP SCHEMA IF EXISTS \(schema) CASCADE") }
        _ = try await mongo.bulkWrite(database: database, collection: "people", (1...30).map {
            .insert(["_id": .int32(Int32($0)), "name": .string("p\($0)"), "ssn": "000-00-0000", "card": .document(["number": "4111", "brand": "visa"])])
        })
        let path = try writeStreamsConfig("""
          - name: people
            from: { collection: people }
            to: { table: \(schema).people }
            columns: { exclude: [ssn, card.number], rename: { name: full_name } }
        """)
        let (process, _) = try startRun(path)
        try await waitFor("snapshot") { self.phase("people") == "streaming" }
        _ = try await mongo.bulkWrite(database: database, collection: "people", [.insert(["_id": 31, "name": "new", "ssn": "999-99-9999"])])
        try await waitFor("the insert") {
            (try? await self.connection.query("SELECT count(*) FROM \(schema).people").rows.first?.first ?? nil) == "31"
        }
        stop(process)
        let columns = try await connection.query("SELECT * FROM \(schema).people LIMIT 0").columns.map(\.name)
        XCTAssertTrue(columns.contains("full_name") && columns.contains("card"), "\(columns)")
        XCTAssertFalse(columns.contains { $0.contains("ssn") || $0 == "name" }, "\(columns)")
        let cards = try await connection.query("SELECT card::text FROM \(schema).people WHERE card IS NOT NULL").rows.compactMap { $0[0] ?? nil }
        XCTAssertEqual(cards.count, 30)
        XCTAssertTrue(cards.allSatisfy { $0.contains("visa") && !$0.contains("4111") }, "\(cards.first ?? "")")
        let verify = try MongoshiftProcess.run(["verify", "--config", path])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
    }
}
