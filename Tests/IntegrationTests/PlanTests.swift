import BSON
import Foundation
import MongoClient
import PostgresClient
import TestSupport
import XCTest

/// `mongoshift plan`: says what `run` would do — and changes nothing (no state, no target, no position).
final class PlanTests: IntegrationTestCase {
    override var namePrefix: String { "plan" }

    func stateDigest() -> Data? { FileManager.default.contents(atPath: state + "/state.db") }

    func testRedshiftToMongoPlanBeforeAndAfterASnapshot() async throws {
        try await Fixtures.createOrders(connection, table: table, rows: 300)
        try await connection.execute("UPDATE public.\(table) SET is_deleted = false")
        let config = try Fixtures.writeConfig(directory: directory, pg: pg, mongo: mongoURL, database: database, table: table)
        let before = try MongoshiftProcess.run(["plan", "--config", config, "--print-sql"])
        XCTAssertEqual(before.status, 0, before.stderr)
        XCTAssertTrue(before.stdout.contains("stream orders (redshift_to_mongo, phase new)"), before.stdout)
        XCTAssertTrue(before.stdout.contains("snapshot: needed, ≈"), before.stdout)
        XCTAssertTrue(before.stdout.contains("will be created by the first write"), before.stdout)
        XCTAssertTrue(before.stdout.contains("ORDER BY \"updated_at\", \"id\" LIMIT"), "--print-sql shows the poll: \(before.stdout)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: state), "plan creates no state")
        let collections = try await mongo.command(["listCollections": 1], database: database)
        XCTAssertFalse("\(collections)".contains("orders"), "plan creates no collection")

        XCTAssertEqual(try MongoshiftProcess.run(["snapshot", "--config", config]).status, 0)
        // Changes waiting at the source: 10 updates, 2 soft deletes, 5 inserts.
        try await Task.sleep(for: .milliseconds(1100))
        try await connection.execute("""
            UPDATE public.\(table) SET note = 'changed', updated_at = now() WHERE id BETWEEN 1 AND 10;
            UPDATE public.\(table) SET is_deleted = true, updated_at = now() WHERE id IN (20, 21);
            CREATE TEMP TABLE fresh AS SELECT * FROM public.\(table) WHERE id BETWEEN 30 AND 34;
            UPDATE fresh SET id = id + 1000, updated_at = now();
            INSERT INTO public.\(table) SELECT * FROM fresh;
            """)
        let digest = stateDigest()
        let after = try MongoshiftProcess.run(["plan", "--config", config])
        XCTAssertEqual(after.status, 0, after.stderr)
        XCTAssertTrue(after.stdout.contains("snapshot: not needed (complete)"), after.stdout)
        XCTAssertTrue(after.stdout.contains("17 changed rows (2 deletes, 5 inserts, 10 updates)"), after.stdout)
        XCTAssertEqual(stateDigest(), digest, "plan changes no state")
        let docs = try await mongo.count(database: database, collection: "orders", filter: ["note": "changed"])
        XCTAssertEqual(docs, 0, "plan writes nothing to the target")
    }

    func testMongoToRedshiftPlanShowsTheTableItWouldCreate() async throws {
        let schema = TestServers.uniqueName("pl")
        onTeardown { [connection] in _ = try? await connection?.execute("DROP SCHEMA IF EXISTS \(schema) CASCADE") }
        _ = try await mongo.bulkWrite(database: database, collection: "apps", (1...50).map {
            .insert(["_id": .int32(Int32($0)), "name": .string("a\($0)"), "score": .double(Double($0) / 2)])
        })
        let path = try writeStreamsConfig("""
          - { name: apps, from: { collection: apps }, to: { table: \(schema).apps } }
        """)
        let plan = try MongoshiftProcess.run(["plan", "--config", path, "--print-sql"])
        XCTAssertEqual(plan.status, 0, plan.stderr)
        XCTAssertTrue(plan.stdout.contains("snapshot: needed, 50 documents"), plan.stdout)
        XCTAssertTrue(plan.stdout.contains("does not exist; from a sample of 50 documents it would be:"), plan.stdout)
        XCTAssertTrue(plan.stdout.contains("CREATE TABLE") && plan.stdout.contains("\"score\" double precision"), plan.stdout)
        XCTAssertTrue(plan.stdout.contains("statements:") && plan.stdout.contains("DELETE FROM"), plan.stdout)
        let exists = try await connection.query("SELECT count(*)::text FROM information_schema.schemata WHERE schema_name = '\(schema)'").rows[0][0]
        XCTAssertEqual(exists, "0", "plan creates nothing in the target")

        let (process, _) = try startRun(path)
        try await waitFor("snapshot") { self.phase("apps") == "streaming" }
        stop(process)
        _ = try await mongo.bulkWrite(database: database, collection: "apps", [.insert(["_id": 51, "name": "new", "extra": true])])
        let later = try MongoshiftProcess.run(["plan", "--config", path])
        XCTAssertEqual(later.status, 0, later.stderr)
        XCTAssertTrue(later.stdout.contains("snapshot: not needed (complete)"), later.stdout + later.stderr)
        XCTAssertTrue(later.stdout.contains("ALTER TABLE") && later.stdout.contains("\"extra\""), "the new field's column: \(later.stdout)")
        XCTAssertTrue(later.stdout.contains("1 inserts, 0 updates, 0 deletes"), later.stdout)
    }
}
