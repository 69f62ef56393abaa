import StateStore
import Changes
import BSON
import Foundation
import Logging
import MongoClient
import PostgresClient
@testable import Replication
import Spool
import TestSupport
import XCTest

/// Several `mongoshift run` workers sharing streams through a PostgreSQL state store (issue: scale-out): leases
/// give each stream one owner, a dead worker's streams move to the others, a snapshot's partitions are shared,
/// and a worker whose lease was taken cannot apply.
final class ScaleOutTests: IntegrationTestCase {
    override var namePrefix: String { "scale" }
    var stateDB = ""
    var workers: [Process] = []
    var tables: [String] = []

    override func setUp() async throws {
        try await super.setUp()
        stateDB = TestServers.uniqueName("scalestate")
        try await connection.execute("CREATE DATABASE \(stateDB)")
        onTeardown { [unowned self] in
            for p in workers where p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitPolling() }
            for t in tables { _ = try? await connection?.execute("DROP TABLE IF EXISTS public.\(t)") }
            _ = try? await connection?.execute("DROP DATABASE IF EXISTS \(stateDB) WITH (FORCE)")
        }
    }

    var stateURL: String {
        var url = URLComponents(string: pg)!
        url.path = "/" + stateDB
        return url.string!
    }

    func config(streams: [(name: String, table: String)], partitions: Int = 2, parallelism: Int = 2, safetyLag: String = "60s") throws -> String {
        var yaml = """
        state: \(stateURL)
        local_dir: ${MONGOSHIFT_WORKER_DIR}
        lease: 3s
        redshift: { url: "\(pg)", dialect: postgres }
        mongo: { url: "\(mongoURL)", database: \(database) }
        defaults: { poll_interval: 200ms, batch_bytes: 64KiB, parallelism: \(parallelism) }
        streams:

        """
        for s in streams {
            yaml += """
              - name: \(s.name)
                from: { table: public.\(s.table) }
                to: { collection: \(s.name) }
                key: [id]
                watermark: updated_at
                safety_lag: \(safetyLag)
                partitions: \(partitions)

            """
        }
        let path = directory + "/config.yaml"
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Issue "Nothing lost, nothing stuck" items 2 and 8: a worker stalled past its lease (a frozen VM, a long
    /// pause) used to record its in-flight segment after the takeover — moving the new holder's extract position
    /// past rows nobody would apply — and, refused at apply, to mark the stream failed for the whole cluster. Here
    /// worker 1 stops itself (SIGSTOP, heartbeats included) right after sealing a tail segment and before recording
    /// it; worker 2 takes over and goes on; worker 1 resumes. Its record is refused (compare-and-set on holder and
    /// epoch), it drops the stream and competes again; nothing is lost and the stream stays healthy.
    func testAWorkerStalledPastItsLeaseIsFencedAndNothingIsLost() async throws {
        let table = TestServers.uniqueName("stall")
        tables.append(table)
        try await Fixtures.createOrders(connection, table: table, rows: 300)
        let streams = [(name: "s0", table: table)]
        let cfg = try config(streams: streams, safetyLag: "1s")
        let (a, aBase) = try startWorker(cfg, 1, environment: ["MONGOSHIFT_STOP_AT": "tail.sealed"])
        let state = try await PostgresConnection.connect(stateURL)
        try await waitFor("worker 1 owns the stream") { (try? await owners(state))?["s0"] == workerID(1) }
        try await waitFor("the snapshot") { try await converged(streams) }
        let (_, bBase) = try startWorker(cfg, 2)
        addTeardownBlock {
            print("worker 1 log tail:\n" + MongoshiftProcess.output(aBase).stderr.split(separator: "\n").suffix(25).joined(separator: "\n"))
            print("worker 2 log tail:\n" + MongoshiftProcess.output(bBase).stderr.split(separator: "\n").suffix(25).joined(separator: "\n"))
        }
        func insert(_ range: ClosedRange<Int>) async throws {
            try await connection.execute("""
                INSERT INTO public.\(table) (id, customer_id, quantity, amount, paid, status, order_date, created_at, updated_at)
                SELECT g, 1, 1, 1, true, 'new', current_date, now(), now() FROM generate_series(\(range.lowerBound), \(range.upperBound)) g
                """)
        }
        try await insert(1001...1050)
        try await waitFor("worker 1 to stop between sealing and recording a tail segment") { Self.isStopped(a.processIdentifier) }
        try await waitFor("worker 2 takes the stream over") { try await owners(state)["s0"] == workerID(2) }
        try await insert(1051...1100)
        try await waitFor("worker 2 to apply the new rows") { try await converged(streams) }
        kill(a.processIdentifier, SIGCONT)
        try await insert(1101...1150)
        try await waitFor("exact convergence after worker 1 resumed", timeout: 40) { try await converged(streams) }
        try await Task.sleep(for: .seconds(2))
        let stillConverged = try await converged(streams)
        XCTAssertTrue(stillConverged, "worker 1's late record moved nothing")
        let phase = try await state.query("SELECT phase FROM mongoshift_state.streams WHERE name = 's0'").rows.first?.first ?? nil
        XCTAssertEqual(phase, "streaming", "a fenced worker does not fail the stream for everyone")
        let aLog = MongoshiftProcess.output(aBase).stderr, bLog = MongoshiftProcess.output(bBase).stderr
        XCTAssertTrue(aLog.contains("lease lost"), "worker 1 learnt it lost the stream:\n\(aLog.suffix(3000))")
        XCTAssertFalse((aLog + bLog).contains("stream failed"), aLog.suffix(3000).description)
        XCTAssertTrue(a.isRunning, "worker 1 keeps running and competes again")
        let owner = try await owners(state)["s0"]
        XCTAssertEqual(owner, workerID(2))
    }

    static func isStopped(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        return stat[stat.index(close, offsetBy: 2)] == "T"
    }

    func startWorker(_ config: String, _ n: Int, environment: [String: String] = [:]) throws -> (Process, String) {
        let (p, base) = try MongoshiftProcess.start(["run", "--config", config, "--metrics-addr", "off"],
                                                    environment: environment.merging(["MONGOSHIFT_WORKER_DIR": directory + "/worker\(n)"]) { $1 })
        workers.append(p)
        return (p, base)
    }

    /// Live leases: stream → holder.
    func owners(_ state: PostgresConnection) async throws -> [String: String] {
        let rows = try await state.query("SELECT stream, holder FROM mongoshift_state.leases WHERE expires_at > extract(epoch FROM clock_timestamp())")
        return Dictionary(uniqueKeysWithValues: rows.rows.map { ($0[0]!, $0[1]!) })
    }

    func workerID(_ n: Int) -> String {
        ((try? String(contentsOfFile: directory + "/worker\(n)/worker-id", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func converged(_ streams: [(name: String, table: String)]) async throws -> Bool {
        for s in streams {
            let (tally, reasons) = try await Convergence.compare(pg: connection, table: s.table, mongo: mongo, database: database, collection: s.name)
            if !tally.isExact || !reasons.isEmpty { return false }
        }
        return true
    }

    // MARK: -

    func testThreeWorkersOwnSixStreamsOnceAndTakeOverFromAKilledOne() async throws {
        var streams: [(name: String, table: String)] = []
        for i in 0..<6 {
            let table = TestServers.uniqueName("scale\(i)")
            tables.append(table)
            try await Fixtures.createOrders(connection, table: table, rows: 300)
            streams.append(("s\(i)", table))
        }
        let cfg = try config(streams: streams, partitions: 1, parallelism: 1)
        var logs: [String] = []
        for n in 0..<3 {
            logs.append(try startWorker(cfg, n).1)
            try await Task.sleep(for: .milliseconds(300))
        }
        let state = try await PostgresConnection.connect(stateURL)
        try await waitFor("every stream owned") { try await owners(state).count == 6 }
        try await waitFor("all streams converged") { try await converged(streams) }
        var owned = try await owners(state)
        XCTAssertEqual(Set(owned.keys), Set(streams.map(\.name)), "each stream has one owner")
        // No stream ran on two workers: each stream's "lease acquired" appears in exactly one worker's log.
        for s in streams {
            let runners = logs.filter { base in
                MongoshiftProcess.output(base).stderr.split(separator: "\n").contains { $0.contains("lease acquired") && $0.contains("\"stream\": \"\(s.name)\"") }
            }
            XCTAssertEqual(runners.count, 1, "stream \(s.name) ran on \(runners.count) workers")
        }

        // Kill -9 the worker owning the most streams; its streams must move within lease (3 s) + 5 s and converge.
        let ids = (0..<3).map(workerID)
        let victim = (0..<3).max { a, b in owned.values.filter { $0 == ids[a] }.count < owned.values.filter { $0 == ids[b] }.count }!
        let moved = owned.filter { $0.value == ids[victim] }.map(\.key)
        XCTAssertFalse(moved.isEmpty)
        kill(workers[victim].processIdentifier, SIGKILL)
        workers[victim].waitPolling()
        let killedAt = Date()
        for s in streams {
            try await connection.execute("UPDATE public.\(s.table) SET note = 'after the kill', updated_at = now() WHERE id % 3 = 0")
        }
        try await waitFor("the dead worker's streams to move", timeout: 30) {
            owned = try await owners(state)
            return moved.allSatisfy { owned[$0] != nil && owned[$0] != ids[victim] }
        }
        let takeover = Date().timeIntervalSince(killedAt)
        print("scale-out: \(moved.count) streams moved in \(String(format: "%.1f", takeover)) s")
        XCTAssertLessThanOrEqual(takeover, 3 + 5, "within lease expiry + 5 s")
        try await waitFor("convergence after the takeover") { try await converged(streams) }
        for (i, p) in workers.enumerated() where i != victim {
            kill(p.processIdentifier, SIGTERM)
            p.waitPolling(timeout: 30)
            XCTAssertEqual(p.terminationStatus, 0)
        }
    }

    func testTwoWorkersShareAFourPartitionSnapshotEachPartitionCopiedOnce() async throws {
        let table = TestServers.uniqueName("scalebig")
        tables.append(table)
        try await Fixtures.createOrders(connection, table: table, rows: 60_000)
        let cfg = try config(streams: [("big", table)], partitions: 4, parallelism: 1)
        _ = try startWorker(cfg, 0)
        _ = try startWorker(cfg, 1)
        let state = try await PostgresConnection.connect(stateURL)
        try await waitFor("the snapshot to complete", timeout: 300) {
            (try? await state.query("SELECT phase FROM mongoshift_state.streams WHERE name = 'big'"))?.rows.first?[0] == "streaming"
        }
        let extracted = try await state.query("SELECT rows_extracted FROM mongoshift_state.streams WHERE name = 'big'").rows[0][0]
        XCTAssertEqual(extracted, "60000", "every row extracted once: no partition copied twice")
        let claimers = try await state.query("SELECT idx, claimed_by FROM mongoshift_state.partitions WHERE stream = 'big' ORDER BY idx").rows
        XCTAssertEqual(claimers.count, 4)
        XCTAssertEqual(Set(claimers.compactMap { $0[1] }).count, 2, "both workers copied partitions: \(claimers)")
        try await waitFor("convergence") { try await converged([("big", table)]) }
        for p in workers { kill(p.processIdentifier, SIGTERM); p.waitPolling(timeout: 30) }
    }

    /// A worker that copied partitions and left with their pages unapplied (`snapshot --spool-only`, a scale-down,
    /// a lost disk): the pages are in its spool, gone with it, and their partitions marked done. The owner waited
    /// for them forever — the snapshot never completed, the tail never started. It now copies those partitions
    /// again once the pages have not moved for a claim's duration.
    func testPagesLeftInAGoneWorkersSpoolAreCopiedAgain() async throws {
        let table = TestServers.uniqueName("scalegone")
        tables.append(table)
        try await Fixtures.createOrders(connection, table: table, rows: 20_000)
        let cfg = try config(streams: [("gone", table)], partitions: 4, parallelism: 2)
        let spooled = try MongoshiftProcess.run(["snapshot", "--config", cfg, "--spool-only"],
                                                environment: ["MONGOSHIFT_WORKER_DIR": directory + "/worker9"])
        XCTAssertEqual(spooled.status, 0, spooled.stderr)
        try? FileManager.default.removeItem(atPath: directory + "/worker9")
        _ = try startWorker(cfg, 0)
        let state = try await PostgresConnection.connect(stateURL)
        try await waitFor("the snapshot to complete without the gone worker's pages", timeout: 120) {
            (try? await state.query("SELECT phase FROM mongoshift_state.streams WHERE name = 'gone'"))?.rows.first?[0] == "streaming"
        }
        try await waitFor("convergence") { try await converged([("gone", table)]) }
        for p in workers { kill(p.processIdentifier, SIGTERM); p.waitPolling(timeout: 30) }
    }

    func testAFencedWorkersLateApplyIsRejected() async throws {
        // Two workers' contexts on one PostgreSQL store, applying one Mongo → PostgreSQL stream's tail.
        let schema = TestServers.uniqueName("fence")
        defer { Task { [connection] in _ = try? await connection?.execute("DROP SCHEMA IF EXISTS \(schema) CASCADE") } }
        var config = ReplicationConfig()
        config.stateURL = stateURL
        config.redshift = RedshiftEndpoint(url: pg)
        config.redshift?.dialect = .postgres
        let stream = StreamConfig(name: "apps", direction: .mongoToRedshift, table: TableName(schema: schema, name: "apps"),
                                  collection: "apps", defaults: config.defaults)
        config.streams = [stream]
        func context(_ worker: String) async throws -> StreamContext {
            var c = config
            c.stateDirectory = directory + "/" + worker
            return try StreamContext(config: c, stream: stream, state: try await StateStore.open(c), logger: Logger(label: worker), progress: nil)
        }
        var a = try await context("a"), b = try await context("b")
        _ = try await a.state.ensureStream("apps", direction: "mongo_to_redshift")
        a.lease = try await a.state.acquireLease("apps", duration: .seconds(1))
        XCTAssertNotNil(a.lease)
        let applierA = try await RedshiftApplier(context: a, endpoint: config.redshift!, policy: RetryPolicy(maxAttempts: 1))
        func batch(_ state: StateStore, _ name: String) async throws -> ([Change], SegmentRecord) {
            let seq = try await state.allocateSequence("apps")
            let doc: Document = ["_id": .int32(1), "name": .string(name)]
            return ([Change(operation: .upsert, key: .int32(1), document: doc)],
                    SegmentRecord(stream: "apps", seq: seq, kind: .tail, partition: -1, records: 1, bytes: 1, firstPosition: nil, lastPosition: .changeStream(ChangeStreamPosition(resumeToken: ["n": .string(name)]))))
        }
        let (c1, s1) = try await batch(a.state, "from A")
        _ = try await applierA.apply(c1, segment: s1)
        // A stalls past its lease; B takes the stream over and applies.
        try await Task.sleep(for: .milliseconds(1300))
        b.lease = try await b.state.acquireLease("apps", duration: .seconds(30))
        XCTAssertEqual(b.lease?.epoch, a.lease!.epoch + 1)
        let applierB = try await RedshiftApplier(context: b, endpoint: config.redshift!, policy: RetryPolicy(maxAttempts: 1))
        let (c2, s2) = try await batch(b.state, "from B")
        _ = try await applierB.apply(c2, segment: s2)
        // A's late apply: refused by the lease check, and by the target's checkpoint even without it.
        do {
            try await a.assertLease()
            XCTFail("the lease check must refuse A")
        } catch let e as ReplicationError {
            XCTAssertEqual(e.code, .fenced)
        }
        let (c3, s3) = try await batch(a.state, "late from A")
        do {
            _ = try await applierA.apply(c3, segment: s3)
            XCTFail("the checkpoint fence must refuse A")
        } catch let e as ReplicationError {
            XCTAssertEqual(e.code, .fenced, "\(e)")
        }
        let name = try await connection.query("SELECT name FROM \(schema).apps WHERE _id = 1").rows.first?[0]
        XCTAssertEqual(name, "from B", "the new owner's write stands")
    }
}
