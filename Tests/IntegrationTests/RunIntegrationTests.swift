import Foundation
import MongoClient
import PostgresClient
import TestSupport
import XCTest

/// `mongoshift run` end to end (issue: Redshift → Mongo): snapshot, then tailing updates, inserts, soft and hard
/// deletes, late commits and watermark ties; crashes; target and source outages.
final class RunIntegrationTests: IntegrationTestCase {
    override var namePrefix: String { "orders" }


    func config(reconcile: String = "2s", batch: String = "256KiB") throws -> String {
        try Fixtures.writeConfig(directory: directory, pg: pg, mongo: mongoURL, database: database, table: table,
                                 extra: "    reconcile_every: \(reconcile)", defaults: "batch_bytes: \(batch)")
    }

    func waitForStreaming() async throws {
        try await waitFor("snapshot to complete") { Fixtures.streamCounters(stateDirectory: state, stream: "orders")?.phase == "streaming" }
    }

    func assertConverged(timeout: TimeInterval = 90, file: StaticString = #filePath, line: UInt = #line) async throws {
        let diffs = try await Convergence.wait(timeout: timeout, pg: connection, table: table, mongo: mongo, database: database)
        XCTAssertEqual(diffs, [], "target must equal source", file: file, line: line)
    }

    // MARK: -

    func testSnapshotThenTailUpdatesInsertsSoftAndHardDeletesLateCommitsAndTies() async throws {
        try await Fixtures.createOrders(connection, table: table, rows: 50_000)
        let process = try startRun(try config()).0
        try await waitForStreaming()
        let t = "public.\(table)"
        // 2,000 updates in several statements (each statement's rows share one updated_at: ties broken by key).
        for start in stride(from: 1, to: 2001, by: 400) {
            try await connection.execute("UPDATE \(t) SET note = 'updated', amount = amount + 1, updated_at = now() WHERE id BETWEEN \(start) AND \(start + 399)")
        }
        // 500 inserts.
        try await connection.execute("""
            INSERT INTO \(t) (id, customer_id, quantity, amount, paid, status, order_date, created_at, updated_at, attrs)
            SELECT g, 1, 2, 3.25, true, 'new', DATE '2024-02-02', now(), now(), '{"new": true}' FROM generate_series(50001, 50500) g
            """)
        // A late commit: its rows carry an updated_at older than rows committed meanwhile (inside safety_lag).
        let late = try await PostgresConnection.connect(pg)
        try await late.execute("BEGIN; UPDATE \(t) SET note = 'late commit', updated_at = now() WHERE id BETWEEN 30001 AND 30050")
        try await connection.execute("UPDATE \(t) SET note = 'meanwhile', updated_at = now() WHERE id BETWEEN 30051 AND 30100")
        try await Task.sleep(for: .milliseconds(600))
        try await late.execute("COMMIT")
        // 300 soft deletes, 200 hard deletes.
        try await connection.execute("UPDATE \(t) SET is_deleted = true, updated_at = now() WHERE id BETWEEN 40001 AND 40300")
        try await connection.execute("DELETE FROM \(t) WHERE id BETWEEN 45001 AND 45200")
        try await assertConverged(timeout: 120)
        stop(process, within: 10)
    }

    /// libmongoc (as Debian builds it) maps its counters from /dev/shm/mongoc-<pid> when the library loads and
    /// removes the file only on a normal exit: every kill -9 used to leave one behind, and a later process given
    /// the same pid printed a warning on stderr.
    func testAKilledRunLeavesNothingInSharedMemory() async throws {
        try await Fixtures.createOrders(connection, table: table, rows: 100)
        let process = try startRun(try config()).0
        try await waitForStreaming()
        let segment = "/dev/shm/mongoc-\(process.processIdentifier)"
        kill(process.processIdentifier, SIGKILL)
        process.waitPolling()
        XCTAssertFalse(FileManager.default.fileExists(atPath: segment), segment)
    }

    func testKillNineDuringSnapshotAndDuringTail() async throws {
        try await Fixtures.createOrders(connection, table: table, rows: 20_000)
        let cfg = try config(reconcile: "1s", batch: "64KiB")
        var process = try startRun(cfg).0
        try await waitFor("some snapshot pages applied") { (Fixtures.streamCounters(stateDirectory: state, stream: "orders")?.applied ?? 0) > 1_000 }
        XCTAssertEqual(Fixtures.streamCounters(stateDirectory: state, stream: "orders")?.phase, "snapshotting")
        kill(process.processIdentifier, SIGKILL)
        process.waitPolling()

        process = try startRun(cfg).0
        try await waitForStreaming()
        let t = "public.\(table)"
        try await connection.execute("UPDATE \(t) SET note = 'tail 1', updated_at = now() WHERE id % 7 = 0")
        let applied = Fixtures.streamCounters(stateDirectory: state, stream: "orders")?.applied ?? 0
        try await waitFor("tail changes being applied") { (Fixtures.streamCounters(stateDirectory: state, stream: "orders")?.applied ?? 0) > applied + 200 }
        kill(process.processIdentifier, SIGKILL)
        process.waitPolling()
        try await connection.execute("UPDATE \(t) SET note = 'tail 2', updated_at = now() WHERE id % 11 = 0")
        try await connection.execute("DELETE FROM \(t) WHERE id % 13 = 0")
        // What a crash between writing a segment and recording it leaves behind: removed at the next start.
        let orphan = state + "/spool/orders/00000000000099999999.seg"
        _ = FileManager.default.createFile(atPath: orphan, contents: Data("torn".utf8))
        _ = FileManager.default.createFile(atPath: orphan + ".tmp", contents: Data("torn".utf8))

        process = try startRun(cfg).0
        try await assertConverged()
        XCTAssertFalse(FileManager.default.fileExists(atPath: orphan), "unrecorded segment removed at start")
        XCTAssertFalse(FileManager.default.fileExists(atPath: orphan + ".tmp"))
        stop(process, within: 10)
    }

    func testMongoOutageKeepsSpoolingAndPostgresOutageIsRetried() async throws {
        guard DevServers.mongoDirectory != nil, DevServers.postgresDirectory != nil else {
            throw XCTSkip("needs MONGOSHIFT_TEST_MONGO_DIR / MONGOSHIFT_TEST_PG_DIR (set by ops/test)")
        }
        try await Fixtures.createOrders(connection, table: table, rows: 5_000)
        let process = try startRun(try config(reconcile: "1s")).0
        try await waitForStreaming()
        let t = "public.\(table)"

        // Target down for 20 s while the source keeps changing: extraction goes on into the spool.
        try DevServers.stopMongo()
        let before = Fixtures.streamCounters(stateDirectory: state, stream: "orders")!
        for round in 0..<4 {
            try await connection.execute("UPDATE \(t) SET note = 'outage \(round)', updated_at = now() WHERE id % 5 = \(round)")
            try await Task.sleep(for: .seconds(5))
        }
        let during = Fixtures.streamCounters(stateDirectory: state, stream: "orders")!
        XCTAssertGreaterThan(during.extracted, before.extracted + 3_000, "kept spooling while Mongo was down")
        XCTAssertEqual(during.applied, before.applied, "nothing applied while Mongo was down")
        try DevServers.startMongo()
        mongo = try MongoClient(url: mongoURL)
        let serverLog = (try? String(contentsOfFile: DevServers.mongoDirectory! + "/mongo.log.prev", encoding: .utf8)) ?? "(none)"
        XCTAssertTrue(serverLog.contains("saved "), "the dev server saved its data on SIGTERM:\n\(serverLog)")
        try await assertConverged()

        // Source down: the tailer retries; changes made after it returns arrive.
        connection = nil
        try DevServers.stopPostgres()
        try await Task.sleep(for: .seconds(4))
        try DevServers.startPostgres()
        connection = try await PostgresConnection.connect(pg)
        try await connection.execute("UPDATE \(t) SET note = 'after pg restart', updated_at = now() WHERE id % 3 = 0")
        try await assertConverged()
        XCTAssertTrue(process.isRunning, "outages never stop run")
        stop(process, within: 10)
    }
}
