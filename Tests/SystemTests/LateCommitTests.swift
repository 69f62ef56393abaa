import BSON
import Foundation
import MongoClient
import PostgresClient
import TestSupport
import XCTest

/// Issue "Late commits never lost": warehouse loads are long transactions whose rows are stamped at their start
/// and committed minutes later. With the default configuration (safety_lag 60 s) the tail must hold its watermark
/// behind such a transaction, for timestamp and integer watermarks, and deliver its rows once it commits.
final class LateCommitTests: IntegrationTestCase {
    override var namePrefix: String { "late" }

    /// How long the late transaction stays open (the acceptance asks 3 minutes; MONGOSHIFT_LATE_COMMIT_SECONDS
    /// shortens it for local iterations).
    var holdSeconds: Double { Double(ProcessInfo.processInfo.environment["MONGOSHIFT_LATE_COMMIT_SECONDS"] ?? "") ?? 180 }

    /// A two-phase commit (XA, a transaction manager): rows stamped, `PREPARE TRANSACTION`, `COMMIT PREPARED`
    /// later. A prepared transaction has no session, so the transaction bound, which looked for sessions holding
    /// a write lock, did not see it: the tail moved past its stamps and its rows were never read. It holds now.
    func testAPreparedTransactionHoldsTheTailUntilItCommits() async throws {
        try await connection.execute("""
            CREATE TABLE public.\(table) (id bigint PRIMARY KEY, note text, updated_at timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'));
            INSERT INTO public.\(table) (id, note) SELECT g, 'initial' FROM generate_series(1, 10) g;
            """)
        onTeardown { [connection, table] in
            _ = try? await connection?.execute("ROLLBACK PREPARED 'mongoshift-test-\(table)'")
            _ = try? await connection?.execute("DROP TABLE IF EXISTS public.\(table)")
        }
        let config = directory + "/prepared.yaml"
        try """
        state: \(state)
        redshift: { url: "\(pg)", dialect: postgres }
        mongo: { url: "\(mongoURL)", database: \(database) }
        defaults: { poll_interval: 200ms }
        streams:
          - name: ts
            from: { table: public.\(table) }
            to: { collection: ts }
            key: [id]
            watermark: updated_at
            safety_lag: 1s
        """.write(toFile: config, atomically: true, encoding: .utf8)
        let (process, base) = try startRun(config)
        try await waitFor("the snapshot") { phase("ts") == "streaming" }
        let xa = try await PostgresConnection.connect(pg)
        try await xa.execute("BEGIN; INSERT INTO public.\(table) (id, note) VALUES (1001, 'prepared'); PREPARE TRANSACTION 'mongoshift-test-\(table)'")
        // Newer rows commit meanwhile, for longer than safety_lag: without the hold the tail passes the prepared stamps.
        for id in 2001...2010 {
            try await connection.execute("INSERT INTO public.\(table) (id, note) VALUES (\(id), 'later')")
            try await Task.sleep(for: .milliseconds(300))
        }
        try await connection.execute("COMMIT PREPARED 'mongoshift-test-\(table)'")
        try await waitFor("every row", timeout: 30) { try await mongo.count(database: database, collection: "ts") == 21 }
        let log = MongoshiftProcess.output(base).stderr
        stop(process)
        let prepared = try await mongo.count(database: database, collection: "ts", filter: ["_id": .int64(1001)])
        XCTAssertEqual(prepared, 1, log.suffix(2000).description)
    }

    /// An integer watermark taken from a sequence before its row is written: at planning no lock shows the
    /// writer, and a larger value already committed became the tail's seed — the copy, running at once, missed
    /// the row that committed a moment later, and the tail started above it. Planning now waits `safety_lag`
    /// after taking the seed, so such a row is committed before the copy reads its range.
    func testAnIntegerValueTakenBeforePlanningAndCommittedAfterIsCopied() async throws {
        try await connection.execute("""
            CREATE SEQUENCE public.\(table)_seq;
            CREATE TABLE public.\(table) (id bigint PRIMARY KEY, note text, version bigint NOT NULL);
            INSERT INTO public.\(table) SELECT g, 'initial', nextval('public.\(table)_seq') FROM generate_series(1, 10) g;
            """)
        onTeardown { [connection, table] in
            _ = try? await connection?.execute("DROP TABLE IF EXISTS public.\(table); DROP SEQUENCE IF EXISTS public.\(table)_seq")
        }
        let early = try await PostgresConnection.connect(pg)
        try await early.execute("BEGIN")
        let taken = try await early.query("SELECT CAST(nextval('public.\(table)_seq') AS text)").rows.first?.first ?? nil
        XCTAssertEqual(taken, "11")
        try await connection.execute("INSERT INTO public.\(table) VALUES (12, 'later value, committed first', nextval('public.\(table)_seq'))")
        let yaml = """
        state: \(state)
        redshift: { url: "\(pg)", dialect: postgres }
        mongo: { url: "\(mongoURL)", database: \(database) }
        defaults: { poll_interval: 200ms }
        streams:
          - name: int
            from: { table: public.\(table) }
            to: { collection: int }
            key: [id]
            watermark: version
            safety_lag: 3s
        """
        let config = directory + "/seed.yaml"
        try yaml.write(toFile: config, atomically: true, encoding: .utf8)
        let (process, base) = try startRun(config)
        let deadline = Date().addingTimeInterval(30)
        while !MongoshiftProcess.output(base).stderr.contains("waiting safety_lag") && Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
        XCTAssertTrue(MongoshiftProcess.output(base).stderr.contains("waiting safety_lag"), MongoshiftProcess.output(base).stderr.suffix(2000).description)
        try await early.execute("INSERT INTO public.\(table) VALUES (11, 'taken early, committed after planning', 11); COMMIT")
        try await waitFor("the snapshot") { phase("int") == "streaming" }
        try await waitFor("the early row", timeout: 30) { try await mongo.count(database: database, collection: "int", filter: ["_id": .int64(11)]) == 1 }
        stop(process)
    }

    func testATransactionCommittingThreeMinutesLateIsDeliveredWithTheDefaultConfiguration() async throws {
        try await connection.execute("""
            CREATE TABLE public.\(table)_ts (id bigint PRIMARY KEY, note text, updated_at timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'));
            CREATE SEQUENCE public.\(table)_seq;
            CREATE TABLE public.\(table)_int (id bigint PRIMARY KEY, note text, version bigint NOT NULL DEFAULT nextval('public.\(table)_seq'));
            INSERT INTO public.\(table)_ts (id, note) SELECT g, 'initial' FROM generate_series(1, 50) g;
            INSERT INTO public.\(table)_int (id, note) SELECT g, 'initial' FROM generate_series(1, 50) g;
            """)
        onTeardown { [connection, table] in
            _ = try? await connection?.execute("DROP TABLE IF EXISTS public.\(table)_ts, public.\(table)_int; DROP SEQUENCE IF EXISTS public.\(table)_seq")
        }
        // The default configuration: no safety_lag, no lookback set.
        let yaml = """
        state: \(state)
        redshift: { url: "\(pg)", dialect: postgres }
        mongo: { url: "\(mongoURL)", database: \(database) }
        streams:
          - name: ts
            from: { table: public.\(table)_ts }
            to: { collection: ts }
            key: [id]
            watermark: updated_at
          - name: int
            from: { table: public.\(table)_int }
            to: { collection: int }
            key: [id]
            watermark: version
        """
        let config = directory + "/late.yaml"
        try yaml.write(toFile: config, atomically: true, encoding: .utf8)
        let (process, base) = try startRun(config)
        try await waitFor("both snapshots") { phase("ts") == "streaming" && phase("int") == "streaming" }
        // The load: stamps its rows now (transaction start / sequence values taken now), commits much later.
        let load = try await PostgresConnection.connect(pg)
        try await load.execute("""
            BEGIN;
            INSERT INTO public.\(table)_ts (id, note, updated_at) SELECT g, 'late load', now() AT TIME ZONE 'UTC' FROM generate_series(1001, 1020) g;
            INSERT INTO public.\(table)_int (id, note) SELECT g, 'late load' FROM generate_series(1001, 1020) g;
            """)
        // Meanwhile other sessions keep committing newer rows: the tail must not pass the load's stamps.
        let started = Date()
        var n = 0
        while Date().timeIntervalSince(started) < holdSeconds {
            n += 1
            try await connection.execute("""
                INSERT INTO public.\(table)_ts (id, note) VALUES (\(2000 + n), 'steady');
                INSERT INTO public.\(table)_int (id, note) VALUES (\(2000 + n), 'steady');
                """)
            try await Task.sleep(for: .seconds(5))
        }
        // While it is open, lag names it.
        let lag = try MongoshiftProcess.run(["lag", "--config", config, "--json"])
        XCTAssertTrue(lag.stdout.contains("\"held_by\":{"), lag.stdout)
        try await load.execute("COMMIT")
        for stream in ["ts", "int"] {
            try await waitFor("\(stream): the late load arrives", timeout: 150) {
                try await mongo.count(database: database, collection: stream, filter: ["note": "late load"]) == 20
            }
            let steady = try await mongo.count(database: database, collection: stream, filter: ["note": "steady"])
            try await waitFor("\(stream): every steady row too", timeout: 150) {
                try await mongo.count(database: database, collection: stream, filter: ["note": "steady"]) == n
            }
            _ = steady
        }
        let log = MongoshiftProcess.output(base).stderr
        XCTAssertTrue(log.contains("an open transaction writing the table holds the watermark back"), log.suffix(2000).description)
        stop(process)
    }
}
