import BSON
import Foundation
import MongoClient
import PostgresClient
import TestSupport
import XCTest

/// `mongoshift reset`: moves exactly the position asked (and nothing else), refuses while a worker holds the
/// stream or without confirmation, and the next run tails from there; `lag` shows the last reset.
final class ResetTests: IntegrationTestCase {
    override var namePrefix: String { "reset" }

    func lagStream(_ config: String, _ name: String) throws -> [String: Any] {
        let result = try MongoshiftProcess.run(["lag", "--config", config, "--json", "--stream", name])
        let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        return try XCTUnwrap((json?["streams"] as? [[String: Any]])?.first, result.stdout + result.stderr)
    }

    /// A reset where no state exists (a relative `state:` read from another directory) said "never run → …", exit
    /// 0, and created an empty store the daemon never reads. Refused, naming the path; nothing created.
    func testResetWithoutStateIsRefusedAndCreatesNothing() async throws {
        try await Fixtures.createOrders(connection, table: table, rows: 10)
        let config = try Fixtures.writeConfig(directory: directory, pg: pg, mongo: mongoURL, database: database, table: table)
        let reset = try MongoshiftProcess.run(["reset", "--config", config, "--stream", "orders", "--to", "now", "--yes"])
        XCTAssertEqual(reset.status, 1, reset.stdout + reset.stderr)
        XCTAssertTrue(reset.stderr.contains("no state database at \(directory)/state"), reset.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/state"), "nothing created")
    }

    func testRedshiftStreamResetToAWatermarkReplaysFromThereOnly() async throws {
        try await Fixtures.createOrders(connection, table: table, rows: 200)
        try await connection.execute("UPDATE public.\(table) SET updated_at = TIMESTAMPTZ '2026-01-01 00:00:00+00' + id * INTERVAL '1 second', note = 'n' || id")
        let config = try Fixtures.writeConfig(directory: directory, pg: pg, mongo: mongoURL, database: database, table: table)
        XCTAssertEqual(try MongoshiftProcess.run(["snapshot", "--config", config]).status, 0)
        let before = try lagStream(config, "orders")["applied_position"] as? String
        // The target drifts (someone edited documents by hand): ids 151… no longer match their rows.
        _ = try await mongo.bulkWrite(database: database, collection: "orders",
                                      (151...200).map { .update(filter: ["_id": .int64(Int64($0))], update: ["$set": .document(["note": "drift"])], upsert: false) })

        // Without a terminal and without --yes: refused, nothing changed.
        let unconfirmed = try MongoshiftProcess.run(["reset", "--config", config, "--stream", "orders", "--to", "watermark:2026-01-01 00:02:30+00"])
        XCTAssertEqual(unconfirmed.status, 2, unconfirmed.stderr)
        XCTAssertTrue(unconfirmed.stderr.contains("--yes"), unconfirmed.stderr)
        XCTAssertEqual(try lagStream(config, "orders")["applied_position"] as? String, before)

        let bad = try MongoshiftProcess.run(["reset", "--config", config, "--stream", "orders", "--to", "watermark:not a time", "--yes"])
        XCTAssertEqual(bad.status, 1, bad.stderr)
        XCTAssertTrue(bad.stderr.contains("is not a value of updated_at"), bad.stderr)
        let wrongKind = try MongoshiftProcess.run(["reset", "--config", config, "--stream", "orders", "--to", "time:2026-01-01T00:00:00Z", "--yes"])
        XCTAssertEqual(wrongKind.status, 1, wrongKind.stderr)
        XCTAssertEqual(try lagStream(config, "orders")["applied_position"] as? String, before)

        let reset = try MongoshiftProcess.run(["reset", "--config", config, "--stream", "orders", "--to", "watermark:2026-01-01 00:02:30+00", "--yes"])
        XCTAssertEqual(reset.status, 0, reset.stderr)
        let after = try lagStream(config, "orders")
        XCTAssertEqual(after["phase"] as? String, "streaming")
        XCTAssertTrue((after["applied_position"] as? String)?.hasPrefix("2026-01-01 00:02:30") ?? false, "\(after)")
        XCTAssertTrue((after["last_reset"] as? String)?.contains("--to watermark:2026-01-01 00:02:30+00") ?? false, "\(after)")
        let drifted = try await mongo.count(database: database, collection: "orders", filter: ["note": "drift"])
        XCTAssertEqual(drifted, 50, "reset changes the position only, never the target")

        // The next run re-reads rows after 00:02:30 (ids 151…200): the drift is repaired, nothing before is touched.
        let (process, _) = try startRun(config)
        try await waitFor("replay from the reset point", timeout: 60) {
            (try? await self.mongo.count(database: self.database, collection: "orders", filter: ["note": "drift"])) == 0
        }
        stop(process)
        let (tally, reasons) = try await Convergence.compare(pg: connection, table: table, mongo: mongo, database: database, collection: "orders")
        XCTAssertTrue(tally.isExact && reasons.isEmpty, "\(tally) \(reasons)")
    }

    func testResetIsRefusedWhileAWorkerRunsTheStreamAndToSnapshotCopiesAgain() async throws {
        try await Fixtures.createOrders(connection, table: table, rows: 100)
        let config = try Fixtures.writeConfig(directory: directory, pg: pg, mongo: mongoURL, database: database, table: table)
        let (process, _) = try startRun(config)
        try await waitFor("streaming") { self.phase("orders") == "streaming" }
        let refused = try MongoshiftProcess.run(["reset", "--config", config, "--stream", "orders", "--to", "snapshot", "--yes"])
        XCTAssertEqual(refused.status, 1, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("stream orders is running on"), refused.stderr)
        XCTAssertEqual(phase("orders"), "streaming")
        // A second writer in the same state directory is refused outright (it took the lease back and forth, and
        // each start removed the other's unrecorded segments).
        let second = try MongoshiftProcess.run(["snapshot", "--config", config])
        XCTAssertEqual(second.status, 2, second.stderr)
        XCTAssertTrue(second.stderr.contains("in use by another mongoshift process (pid \(process.processIdentifier), mongoshift run)"), second.stderr)
        stop(process)

        // A tombstone left by an earlier delete (a hard-delete reconcile, say) of a row that is back at the source
        // with the same version (restored from a backup): the new snapshot copies it all the same.
        _ = try await mongo.bulkWrite(database: database, collection: "mongoshift_tombstones", [
            .insert(["_id": .document(["c": "orders", "k": .int64(5)]), "v": .int64(Int64.max - 1), "at": .datetime(0)]),
        ])
        let reset = try MongoshiftProcess.run(["reset", "--config", config, "--stream", "orders", "--to", "snapshot", "--yes"])
        XCTAssertEqual(reset.status, 0, reset.stderr)
        XCTAssertEqual(phase("orders"), "new", "the next run snapshots again")
        _ = try await mongo.command(["drop": "orders"], database: database)
        let snapshot = try MongoshiftProcess.run(["snapshot", "--config", config])
        XCTAssertEqual(snapshot.status, 0, snapshot.stderr)
        let copied = try await mongo.count(database: database, collection: "orders")
        XCTAssertEqual(copied, 100)
    }

    /// The table restored from a backup (older `updated_at`, older contents): the documents' versions are ahead of
    /// every row, so the new snapshot's writes met the version guard and were counted stale — the collection kept
    /// the newer contents for good. `reset --to snapshot` makes the next snapshot the authority on every document.
    func testResetToSnapshotCopiesRowsWhoseVersionsWentBackwards() async throws {
        try await Fixtures.createOrders(connection, table: table, rows: 50)
        try await connection.execute("UPDATE public.\(table) SET updated_at = TIMESTAMPTZ '2026-06-01 00:00:00+00', note = 'newer'")
        let config = try Fixtures.writeConfig(directory: directory, pg: pg, mongo: mongoURL, database: database, table: table)
        XCTAssertEqual(try MongoshiftProcess.run(["snapshot", "--config", config]).status, 0)
        try await connection.execute("UPDATE public.\(table) SET updated_at = TIMESTAMPTZ '2026-01-01 00:00:00+00', note = 'restored'")
        let reset = try MongoshiftProcess.run(["reset", "--config", config, "--stream", "orders", "--to", "snapshot", "--yes"])
        XCTAssertEqual(reset.status, 0, reset.stderr)
        let snapshot = try MongoshiftProcess.run(["snapshot", "--config", config])
        XCTAssertEqual(snapshot.status, 0, snapshot.stderr)
        let stale = try await mongo.count(database: database, collection: "orders", filter: ["note": "newer"])
        XCTAssertEqual(stale, 0, "every document is the restored row")
        let (tally, reasons) = try await Convergence.compare(pg: connection, table: table, mongo: mongo, database: database, collection: "orders")
        XCTAssertTrue(tally.isExact && reasons.isEmpty, "\(tally) \(reasons)")
    }

    /// A stream's positions are `(watermark, key)` values of the columns it was started with: after the config
    /// names another watermark (or key) they would be read as values of the new one (a timestamp bound cast to a
    /// number, keys compared with another column). A start is refused, naming both and the reset to run.
    func testAChangedWatermarkOrKeyIsRefusedUntilTheStreamIsReset() async throws {
        try await Fixtures.createOrders(connection, table: table, rows: 20)
        let config = try Fixtures.writeConfig(directory: directory, pg: pg, mongo: mongoURL, database: database, table: table)
        XCTAssertEqual(try MongoshiftProcess.run(["snapshot", "--config", config]).status, 0)
        let yaml = try String(contentsOfFile: config, encoding: .utf8)
        try yaml.replacingOccurrences(of: "watermark: updated_at", with: "watermark: created_at").write(toFile: config, atomically: true, encoding: .utf8)
        let refused = try MongoshiftProcess.run(["snapshot", "--config", config])
        XCTAssertEqual(refused.status, 2, "a configuration error: \(refused.stderr)")
        XCTAssertTrue(refused.stderr.contains("watermark updated_at") && refused.stderr.contains("watermark created_at")
                      && refused.stderr.contains("mongoshift reset --stream orders --to snapshot"), refused.stderr)
        let reset = try MongoshiftProcess.run(["reset", "--config", config, "--stream", "orders", "--to", "snapshot", "--yes"])
        XCTAssertEqual(reset.status, 0, reset.stderr)
        let again = try MongoshiftProcess.run(["snapshot", "--config", config])
        XCTAssertEqual(again.status, 0, again.stderr)
    }

    func testMongoStreamResetToAClusterTimeReplaysTheChangesAfterIt() async throws {
        let schema = TestServers.uniqueName("rst")
        onTeardown { [connection] in _ = try? await connection?.execute("DROP SCHEMA IF EXISTS \(schema) CASCADE") }
        _ = try await mongo.bulkWrite(database: database, collection: "apps", (1...20).map { .insert(["_id": .int32(Int32($0)), "v": 1]) })
        let path = try writeStreamsConfig("""
          - { name: apps, from: { collection: apps }, to: { table: \(schema).apps } }
        """)
        let (first, _) = try startRun(path)
        try await waitFor("snapshot") { self.phase("apps") == "streaming" }
        // A cluster time between the snapshot and ten inserts.
        let reply = try await mongo.command(["ping": 1], database: database)
        guard case .timestamp(let mark)? = reply["operationTime"] else { return XCTFail("no operationTime") }
        try await Task.sleep(for: .milliseconds(1100))
        _ = try await mongo.bulkWrite(database: database, collection: "apps", (21...30).map { .insert(["_id": .int32(Int32($0)), "v": 2]) })
        try await waitFor("inserts applied") {
            (try? await self.connection.query("SELECT count(*) FROM \(schema).apps").rows.first?.first ?? nil) == "30"
        }
        stop(first)
        // The target loses the inserted rows (a bad manual fix): resume from the mark instead of re-copying all.
        try await connection.execute("DELETE FROM \(schema).apps WHERE _id > 20")
        let iso = ISODate.format(seconds: Int64(mark.seconds))
        let reset = try MongoshiftProcess.run(["reset", "--config", path, "--stream", "apps", "--to", "time:\(iso)", "--yes"])
        XCTAssertEqual(reset.status, 0, reset.stderr)
        XCTAssertTrue(reset.stdout.contains("cluster time \(iso)"), reset.stdout)
        let lag = try lagStream(path, "apps")
        XCTAssertTrue((lag["last_reset"] as? String)?.contains("--to time:\(iso)") ?? false, "\(lag)")
        let (second, _) = try startRun(path)
        try await waitFor("replayed from the cluster time") {
            (try? await self.connection.query("SELECT count(*) FROM \(schema).apps").rows.first?.first ?? nil) == "30"
        }
        stop(second)
        let token = try MongoshiftProcess.run(["reset", "--config", path, "--stream", "apps", "--to", "token:zz", "--yes"])
        XCTAssertEqual(token.status, 2, "a malformed token is a usage error: \(token.stderr)")
    }
}
