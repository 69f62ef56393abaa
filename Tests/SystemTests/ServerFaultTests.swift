import Foundation
import MongoClient
import PostgresClient
import Replication
import Spool
import TestSupport
import XCTest

/// Server faults under a running replicator: backends terminated (`pg_terminate_backend`), PostgreSQL killed
/// mid-query, statements cancelled by `statement_timeout`, and a full spool disk. Each must end converged,
/// with nothing lost and no damaged segment. (Mongo restarts and PostgreSQL restarts: RunIntegrationTests.)
final class ServerFaultTests: IntegrationTestCase {
    override var namePrefix: String { "faults" }
    var mounted: String?

    override func setUp() async throws {
        try await super.setUp()
        onTeardown { [unowned self] in if let mounted { _ = Self.shell("umount", [mounted]) } }
    }


    @discardableResult
    static func shell(_ tool: String, _ args: [String]) -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [tool] + args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return -1 }
        p.waitPolling(timeout: 30)
        return p.terminationStatus
    }

    /// Waits for convergence, then records the exact comparison (docs/RELIABILITY.md) under `scenario`.
    func assertConverged(_ scenario: String, faults: Int, started: Date, timeout: TimeInterval = 120,
                         file: StaticString = #filePath, line: UInt = #line) async throws {
        let diffs = try await Convergence.wait(timeout: timeout, pg: connection, table: table, mongo: mongo, database: database)
        XCTAssertEqual(diffs, [], "target must equal source", file: file, line: line)
        let (tally, _) = try await Convergence.compare(pg: connection, table: table, mongo: mongo, database: database, collection: "orders")
        Storm.report(scenario: scenario, rounds: faults, crashes: faults, writes: 0, tally: tally, seconds: Date().timeIntervalSince(started))
    }

    func counters() -> (extracted: Int, applied: Int, phase: String)? { Fixtures.streamCounters(stateDirectory: state, stream: "orders") }

    // MARK: -

    func testTerminatedBackendsDuringSnapshotAndTailAreRetried() async throws {
        try await Fixtures.createOrders(connection, table: table, rows: 20_000)
        let config = try Fixtures.writeConfig(directory: directory, pg: pg, mongo: mongoURL, database: database, table: table,
                                              extra: "    reconcile_every: 2s", defaults: "batch_bytes: 64KiB")
        let started = Date()
        let (process, base) = try startRun(config)
        let terminate = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'mongoshift' AND pid <> pg_backend_pid()"
        var terminated = 0
        // During the snapshot, then during the tail while rows change.
        for round in 0..<16 {
            try await Task.sleep(for: .milliseconds(400))
            terminated += Int(try await connection.query(terminate).rows.first?[0] ?? "0") ?? 0
            if round >= 8 {
                try await connection.execute("UPDATE public.\(table) SET note = 'fault \(round)', updated_at = now() WHERE id % 17 = \(round)")
            }
        }
        XCTAssertGreaterThan(terminated, 3, "backends were terminated")
        try await assertConverged("pg_terminate_backend during snapshot and tail", faults: terminated, started: started)
        XCTAssertTrue(process.isRunning, "terminated connections never stop run")
        XCTAssertTrue(MongoshiftProcess.output(base).stderr.contains("retrying"), "the retries are logged")
        stop(process)
    }

    func testPostgresKilledMidQueryDuringSnapshot() async throws {
        guard DevServers.postgresDirectory != nil else { throw XCTSkip("needs MONGOSHIFT_TEST_PG_DIR (set by ops/test)") }
        try await Fixtures.createOrders(connection, table: table, rows: 20_000)
        // The dev server runs with synchronous_commit=off: flush the WAL, or the immediate stop (a crash) may lose
        // the table itself.
        try await connection.execute("CHECKPOINT")
        let config = try Fixtures.writeConfig(directory: directory, pg: pg, mongo: mongoURL, database: database, table: table,
                                              defaults: "batch_bytes: 64KiB")
        let started = Date()
        let (process, _) = try startRun(config)
        let deadline = Date().addingTimeInterval(60)
        while (counters()?.extracted ?? 0) < 2_000 && Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
        XCTAssertEqual(counters()?.phase, "snapshotting")
        connection = nil
        try DevServers.stopPostgres(immediate: true)
        try await Task.sleep(for: .seconds(3))
        try DevServers.startPostgres()
        connection = try await PostgresConnection.connect(pg)
        try await assertConverged("PostgreSQL killed mid-query (stop -m immediate) during snapshot", faults: 1, started: started)
        XCTAssertTrue(process.isRunning)
        stop(process)
    }

    func testStatementTimeoutsOnTheTargetAreRetried() async throws {
        // Mongo → PostgreSQL with a 1 s statement_timeout on the target; a lock held for 5 s makes the applier's
        // statements time out (SQLSTATE 57014) until it is released.
        _ = try await mongo.bulkWrite(database: database, collection: "apps",
                                      (1...500).map { .insert(["_id": .int32(Int32($0)), "name": .string("app \($0)")]) })
        let target = pg + (pg.contains("?") ? "&" : "?") + "options=-c%20statement_timeout%3D1000"
        let config = try writeStreamsConfig("""
          - name: apps
            from: { collection: apps }
            to: { table: \(table).apps }
        """, target: target, name: "apps.yaml")
        let (process, base) = try startRun(config)
        var diffs = try await TableConvergence.wait(timeout: 60, mongo: mongo, database: database, collection: "apps", pg: connection, table: "\(table).apps")
        XCTAssertEqual(diffs, [])
        let locker = try await PostgresConnection.connect(pg)
        try await locker.execute("BEGIN; LOCK TABLE \(table).apps IN ACCESS EXCLUSIVE MODE")
        _ = try await mongo.bulkWrite(database: database, collection: "apps",
                                      (1...100).map { .update(filter: ["_id": .int32(Int32($0))], update: ["$set": .document(["name": "during lock"])], upsert: false) })
        try await Task.sleep(for: .seconds(5))
        try await locker.execute("COMMIT")
        diffs = try await TableConvergence.wait(timeout: 60, mongo: mongo, database: database, collection: "apps", pg: connection, table: "\(table).apps")
        XCTAssertEqual(diffs, [])
        let log = MongoshiftProcess.output(base).stderr
        XCTAssertTrue(log.contains("57014"), "the statement timeouts were seen and retried:\n\(log.suffix(2000))")
        stop(process)
    }

    /// SIGTERM while a snapshot's copiers wait for spool room (`spool_max_bytes` reached, the target refusing
    /// every write for now): the applier stops at shutdown, so no room would ever come — the copiers' wait never
    /// ended, the snapshot waited for them, and the process hung until killed. It stops now, and exits 0.
    func testSigtermWhileASnapshotWaitsForSpoolRoomExitsCleanly() async throws {
        try await Fixtures.createOrders(connection, table: table, rows: 3_000)
        let config = try Fixtures.writeConfig(directory: directory, pg: pg, mongo: mongoURL, database: database, table: table,
                                              extra: "    spool_max_bytes: 1KiB", defaults: "batch_bytes: 64KiB")
        // Every write to Mongo fails with ShutdownInProgress (transient: retried with backoff, never applied).
        _ = try await mongo.command(["configureFailPoint": "failCommand", "mode": "alwaysOn",
                                     "data": .document(["failCommands": .array(["insert", "update"]), "errorCode": 91])], database: "admin")
        onTeardown { [mongo] in _ = try? await mongo?.command(["configureFailPoint": "failCommand", "mode": "off"], database: "admin") }
        let (process, base) = try startRun(config)
        let deadline = Date().addingTimeInterval(60)
        while !MongoshiftProcess.output(base).stderr.contains("spool full") && Date() < deadline { try await Task.sleep(for: .milliseconds(100)) }
        XCTAssertTrue(MongoshiftProcess.output(base).stderr.contains("spool full"), MongoshiftProcess.output(base).stderr.suffix(2000).description)
        stop(process, within: 10)
    }

    func testFullSpoolDiskPausesExtractionAndRecoversWhenSpaceReturns() async throws {
        // A 2 MiB tmpfs as the spool, nearly filled: segments cannot be written until the filler goes.
        let spool = state + "/spool"
        try FileManager.default.createDirectory(atPath: spool, withIntermediateDirectories: true)
        guard Self.shell("mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", spool]) == 0 else {
            print("skipping: cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN)")
            throw XCTSkip("cannot mount a tmpfs")
        }
        mounted = spool
        let filler = spool + "/filler"
        _ = FileManager.default.createFile(atPath: filler, contents: Data(count: 2 * 1024 * 1024 - 8 * 1024))
        try await Fixtures.createOrders(connection, table: table, rows: 5_000)
        let config = try Fixtures.writeConfig(directory: directory, pg: pg, mongo: mongoURL, database: database, table: table,
                                              defaults: "batch_bytes: 64KiB")
        let started = Date()
        let (process, base) = try startRun(config)
        let deadline = Date().addingTimeInterval(60)
        // Extraction stops before the disk is full (less than two pages free: the applier keeps room to drain);
        // a write that still meets ENOSPC waits the same way.
        while !MongoshiftProcess.output(base).stderr.contains("spool disk") && Date() < deadline { try await Task.sleep(for: .milliseconds(100)) }
        let log = MongoshiftProcess.output(base).stderr
        XCTAssertTrue(log.contains("spool disk nearly full") || (log.contains("spool disk full") && log.contains("No space left on device")),
                      "a clear message with the reason:\n\(log.suffix(2000))")
        try await Task.sleep(for: .seconds(2))
        XCTAssertTrue(process.isRunning, "a full disk pauses, never stops, the stream")
        // Nothing torn: no temp file, and every segment on disk reads back whole.
        let files = try FileManager.default.contentsOfDirectory(atPath: spool + "/orders")
        XCTAssertFalse(files.contains { $0.hasSuffix(".tmp") }, "no temp file left: \(files)")
        for f in files where f.hasSuffix(".seg") {
            XCTAssertNoThrow(try SpoolSegmentReader.read(path: spool + "/orders/" + f), f)
        }
        try FileManager.default.removeItem(atPath: filler)
        try await assertConverged("spool disk full (2 MiB tmpfs), then space returns", faults: 1, started: started)
        XCTAssertTrue(MongoshiftProcess.output(base).stderr.contains("extraction resumed"))
        stop(process)
    }
}
