import Foundation
import MongoClient
import PostgresClient
import TestSupport
import XCTest

/// `mongoshift check` reports every problem in one pass, one line each with its stream.
final class CheckCommandTests: XCTestCase {
    func testEverySeededMisconfigurationHasItsOwnLine() async throws {
        let pg = try TestServers.requirePostgres()
        let mongo = try TestServers.requireMongo()
        let connection = try await PostgresConnection.connect(pg)
        let dups = TestServers.uniqueName("chk_dups"), ok = TestServers.uniqueName("chk_ok")
        try await connection.execute("""
            CREATE TABLE \(dups) (id int, updated_at timestamptz); INSERT INTO \(dups) VALUES (1, now()), (1, now()), (2, NULL);
            CREATE TABLE \(ok) (id int PRIMARY KEY, updated_at timestamptz); CREATE INDEX ON \(ok) (updated_at);
            """)
        let directory = try TestServers.temporaryDirectory("check")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let yaml = """
        state: \(directory)/state
        redshift: { url: "\(pg)", dialect: postgres }
        mongo: { url: "\(mongo)", database: chk }
        streams:
          - { name: missing_table, from: { table: public.nope }, to: { collection: a }, key: [id], watermark: updated_at }
          - { name: missing_key, from: { table: public.\(ok) }, to: { collection: b }, key: [no_such_id], watermark: updated_at }
          - { name: missing_wm, from: { table: public.\(ok) }, to: { collection: c }, key: [id], watermark: no_such_ts }
          - { name: dup_keys, from: { table: public.\(dups) }, to: { collection: d }, key: [id], watermark: updated_at }
          - { name: healthy, from: { table: public.\(ok) }, to: { collection: e }, key: [id], watermark: updated_at }
          - { name: missing_coll, from: { collection: nothere }, to: { table: public.x } }
        """
        try yaml.write(toFile: directory + "/bad.yaml", atomically: true, encoding: .utf8)
        let result = try MongoshiftProcess.run(["check", "--config", directory + "/bad.yaml"])
        XCTAssertEqual(result.status, 1, result.stderr)
        let lines = result.stdout.split(separator: "\n").map(String.init)
        let expected = [
            "missing_table: table public.nope not found",
            "missing_key: key column \"no_such_id\" not found",
            "missing_wm: watermark column \"no_such_ts\" not found",
            "dup_keys: key (id) is not unique",
            "dup_keys: watermark column \"updated_at\" has no index",
            "dup_keys: 1 rows have a NULL watermark",
            "missing_coll: collection chk.nothere not found",
            "mongo: oplog window is",
        ]
        for text in expected {
            XCTAssertEqual(lines.filter { $0.hasPrefix(text) }.count, 1, "expected one line starting \(text):\n\(result.stdout)")
        }
        XCTAssertFalse(lines.contains { $0.hasPrefix("healthy:") }, "a healthy stream reports nothing")

        // Unreachable servers: one line each, secrets redacted.
        let unreachable = """
        state: \(directory)/state2
        redshift: { url: "postgresql://etl:Canary-Pa55@127.0.0.1:1/db", dialect: redshift }
        mongo: { url: "mongodb://u:Canary-Pa55@127.0.0.1:1/?serverSelectionTimeoutMS=300", database: x }
        streams: []
        """
        try unreachable.write(toFile: directory + "/down.yaml", atomically: true, encoding: .utf8)
        let down = try MongoshiftProcess.run(["check", "--config", directory + "/down.yaml"])
        XCTAssertEqual(down.status, 1)
        XCTAssertTrue(down.stdout.contains("redshift: cannot connect") && down.stdout.contains("mongo: cannot connect"), down.stdout)
        XCTAssertFalse((down.stdout + down.stderr).contains("Canary-Pa55"), "passwords never printed")

        // A clean configuration passes.
        let good = """
        state: \(directory)/state3
        redshift: { url: "\(pg)", dialect: postgres }
        mongo: { url: "\(mongo)", database: chk }
        streams:
          - { name: healthy, from: { table: public.\(ok) }, to: { collection: e }, key: [id], watermark: updated_at }
        """
        try good.write(toFile: directory + "/good.yaml", atomically: true, encoding: .utf8)
        let passed = try MongoshiftProcess.run(["check", "--config", directory + "/good.yaml"])
        XCTAssertEqual(passed.status, 0, passed.stdout + passed.stderr)
        try await connection.execute("DROP TABLE IF EXISTS \(dups), \(ok)")
    }

    func testDiscoverEmitsAConfigThatCheckAcceptsAndSnapshotRuns() async throws {
        let pg = try TestServers.requirePostgres()
        let mongoURL = try TestServers.requireMongo()
        let connection = try await PostgresConnection.connect(pg)
        let schema = TestServers.uniqueName("disc"), database = TestServers.uniqueName("disc")
        try await connection.execute("CREATE SCHEMA \(schema)")
        try await Fixtures.createOrders(connection, table: "orders_src", rows: 300)
        try await connection.execute("ALTER TABLE public.orders_src SET SCHEMA \(schema)")
        // A table of the same name in another schema: its stream must not target the same collection (the emitted
        // config was refused: one stream per target).
        let twin = schema + "_twin"  // sorts after `schema`: its stream is the numbered one
        try await connection.execute("CREATE SCHEMA \(twin); CREATE TABLE \(twin).orders_src (id bigint PRIMARY KEY, updated_at timestamptz)")
        let mongo = try MongoClient(url: mongoURL)
        _ = try await mongo.bulkWrite(database: database, collection: "events", (1...50).map { .insert(["_id": .int32(Int32($0)), "kind": "click"]) })
        let directory = try TestServers.temporaryDirectory("discover")
        let base = """
        state: \(directory)/state
        lease: 20s
        redshift: { url: "\(pg)", dialect: postgres }
        mongo: { url: "\(mongoURL)", database: \(database) }
        streams: []
        """
        try base.write(toFile: directory + "/base.yaml", atomically: true, encoding: .utf8)
        let emitted = try MongoshiftProcess.run(["discover", "--config", directory + "/base.yaml", "--emit-config"])
        XCTAssertEqual(emitted.status, 0, emitted.stderr)
        XCTAssertTrue(emitted.stdout.contains("lease: 20s"), "the config's own top-level settings are kept:\n\(emitted.stdout)")
        XCTAssertTrue(emitted.stdout.contains("from: { table: \(schema).orders_src }") && emitted.stdout.contains("watermark: updated_at")
                      && emitted.stdout.contains("deletes: { column: is_deleted }") && emitted.stdout.contains("from: { collection: events }"), emitted.stdout)
        try emitted.stdout.write(toFile: directory + "/emitted.yaml", atomically: true, encoding: .utf8)
        // Other tests' tables may exist in the same database: check and snapshot the discovered fixture streams.
        let streams = ["--stream", "orders_src", "--stream", "events_to_redshift"]
        let check = try MongoshiftProcess.run(["check", "--config", directory + "/emitted.yaml", "--min-oplog-window", "0s"] + streams)
        XCTAssertEqual(check.status, 0, check.stdout + check.stderr)
        let snapshot = try MongoshiftProcess.run(["snapshot", "--config", directory + "/emitted.yaml"] + streams)
        XCTAssertEqual(snapshot.status, 0, snapshot.stderr)
        XCTAssertTrue(snapshot.stdout.contains("stream orders_src: snapshot complete, 300 rows") && snapshot.stdout.contains("stream events_to_redshift: snapshot complete, 50 rows"), snapshot.stdout)
        try await connection.execute("DROP SCHEMA \(schema) CASCADE; DROP SCHEMA \(twin) CASCADE; DROP SCHEMA IF EXISTS mongo CASCADE")
        try await mongo.command(["dropDatabase": 1], database: database)
        try? FileManager.default.removeItem(atPath: directory)
    }
}
