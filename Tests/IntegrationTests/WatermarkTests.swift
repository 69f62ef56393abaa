import BSON
import Foundation
import MongoClient
import PostgresClient
@testable import Replication
import TestSupport
import XCTest

/// Watermarks of every type (issue "Late commits never lost"): lookback re-reads what slipped past every bound and
/// rewrites only what changed, a date watermark is refused with a finer column named, and `check` and `lag` say
/// when an open transaction holds a stream or cannot be seen.
final class WatermarkTests: IntegrationTestCase {
    override var namePrefix: String { "wm" }

    func writeConfig(_ streams: String) throws -> String {
        try writeStreamsConfig(streams, name: "wm.yaml")
    }

    func stream(_ name: String, table: String, watermark: String = "wm", extra: String = "") -> String {
        """
          - name: \(name)
            from: { table: public.\(table) }
            to: { collection: \(name) }
            key: [id]
            watermark: \(watermark)
            safety_lag: 0s
        \(extra)
        """
    }

    /// A `timestamp` (no time zone) watermark holds the wall-clock time of the server's zone when the writers stamp
    /// it with `now()`/`DEFAULT`. Read as UTC, a zone west of UTC put the tail's start hours after every stamp:
    /// the changes made after the snapshot were never tailed. The clock is read in the server's own zone for such
    /// columns.
    func testATimestampWatermarkInTheServersZoneIsTailed() async throws {
        let role = "wm_zone_\(UInt32.random(in: 0...UInt32.max))"
        try await TestServers.createPasswordRole(connection, role, password: "zone-pw-1")
        try await connection.execute("ALTER ROLE \(role) SET timezone = 'America/New_York'")
        onTeardown { [connection] in _ = try? await connection?.execute("DROP OWNED BY \(role); DROP ROLE IF EXISTS \(role)") }
        try await connection.execute("""
            CREATE TABLE public.\(table) (id bigint PRIMARY KEY, note text,
              wm timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'America/New_York'));
            INSERT INTO public.\(table) (id, note) SELECT g, 'initial' FROM generate_series(1, 10) g;
            GRANT SELECT ON public.\(table) TO \(role);
            """)
        var url = URLComponents(string: pg)!
        url.user = role
        url.password = "zone-pw-1"
        let config = try writeStreamsConfig(stream("zoned", table: table), target: url.string!, name: "zone.yaml")
        // `check` says whose zone the stamps are read in (the login's own setting may not be the writers').
        let check = try MongoshiftProcess.run(["check", "--config", config, "--min-oplog-window", "0s"])
        XCTAssertTrue(check.stdout.contains("this login's or database's own TimeZone=America/New_York"), check.stdout)
        let (process, _) = try startRun(config)
        try await waitFor("snapshot") { phase("zoned") == "streaming" }
        try await connection.execute("INSERT INTO public.\(table) (id, note) VALUES (100, 'after the snapshot')")
        try await waitFor("the row written after the snapshot", timeout: 30) {
            try await mongo.count(database: database, collection: "zoned", filter: ["note": "after the snapshot"]) == 1
        }
        stop(process)
    }

    /// Lookback on every watermark type: a row committed with a stamp behind the tail's position (as a commit
    /// invisible to the transaction bound would be) is picked up; re-read rows that did not change are counted as
    /// rescanned, not rewritten.
    func testLookbackOnEveryWatermarkTypeCatchesWhatSlippedPast() async throws {
        let types: [(name: String, sql: String, value: String, behind: String, lookback: String)] = [
            ("ts", "timestamp", "(now() AT TIME ZONE 'UTC')", "(now() AT TIME ZONE 'UTC') - interval '20 seconds'", "1m"),
            ("tstz", "timestamptz", "now()", "now() - interval '20 seconds'", "1m"),
            ("i", "integer", "nextval('public.\(table)_seq')::integer", "(SELECT max(wm) FROM public.\(table)_i) - 5", "100"),
            ("b", "bigint", "nextval('public.\(table)_seq')", "(SELECT max(wm) FROM public.\(table)_b) - 5", "100"),
        ]
        try await connection.execute("CREATE SEQUENCE public.\(table)_seq")
        onTeardown { [connection, table] in _ = try? await connection?.execute("DROP SEQUENCE IF EXISTS public.\(table)_seq CASCADE") }
        var streams = ""
        for t in types {
            try await connection.execute("""
                CREATE TABLE public.\(table)_\(t.name) (id bigint PRIMARY KEY, note text, wm \(t.sql) NOT NULL DEFAULT \(t.value));
                INSERT INTO public.\(table)_\(t.name) (id, note) SELECT g, 'initial' FROM generate_series(1, 30) g;
                """)
            onTeardown { [connection, table] in _ = try? await connection?.execute("DROP TABLE IF EXISTS public.\(table)_\(t.name)") }
            streams += stream(t.name, table: "\(table)_\(t.name)", extra: "    lookback: \(t.lookback)") + "\n"
        }
        let config = try writeConfig(streams)
        let port = TestServers.listenerPort()
        let (process, _) = try startRun(config, arguments: ["--metrics-addr", "127.0.0.1:\(port)"])
        try await waitFor("every snapshot") { types.allSatisfy { phase($0.name) == "streaming" } }
        for t in types {
            // Newer rows move the position on…
            try await connection.execute("INSERT INTO public.\(table)_\(t.name) (id, note) SELECT g, 'newer' FROM generate_series(100, 104) g")
        }
        for t in types {
            try await waitFor("\(t.name): the newer rows") { try await mongo.count(database: database, collection: t.name, filter: ["note": "newer"]) == 5 }
        }
        for t in types {
            // …then a row arrives stamped behind it.
            try await connection.execute("INSERT INTO public.\(table)_\(t.name) (id, note, wm) VALUES (500, 'slipped', \(t.behind))")
        }
        for t in types {
            try await waitFor("\(t.name): the row that slipped past the position, by lookback", timeout: 30) {
                try await mongo.count(database: database, collection: t.name, filter: ["note": "slipped"]) == 1
            }
        }
        try await Task.sleep(for: .seconds(1))
        let metrics = HTTPGet.body(port: port, path: "/metrics") ?? ""
        for t in types {
            let line = metrics.split(separator: "\n").first { $0.hasPrefix("mongoshift_rows_rescanned_total{stream=\"\(t.name)\"}") }
            let rescanned = line.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
            XCTAssertGreaterThan(rescanned, 0, "\(t.name): unchanged rows re-read are counted, not rewritten:\n\(metrics)")
        }
        stop(process)
    }

    /// Item 4: a `date` watermark cannot order changes within a day: refused, naming a finer column.
    func testDateWatermarksAreRefusedNamingAFinerColumn() async throws {
        try await connection.execute("CREATE TABLE public.\(table) (id bigint PRIMARY KEY, day date, changed_at timestamp)")
        let config = try writeConfig(stream("days", table: table, watermark: "day"))
        let check = try MongoshiftProcess.run(["check", "--config", config])
        XCTAssertEqual(check.status, 1, check.stdout + check.stderr)
        XCTAssertTrue((check.stdout + check.stderr).contains(#"watermark column "day" is a date"#) && (check.stdout + check.stderr).contains("changed_at"),
                      check.stdout + check.stderr)
        let run = try MongoshiftProcess.run(["snapshot", "--config", config])
        XCTAssertEqual(run.status, 2, run.stderr)
    }

    /// Writers stamping another zone than the server's (a client that sets its session's zone: JDBC sends the
    /// JVM's) are named by `redshift.time_zone`; without it their changes after the snapshot were lost.
    func testAConfiguredTimeZoneReadsStampsOfThatZone() async throws {
        try await connection.execute("""
            CREATE TABLE public.\(table) (id bigint PRIMARY KEY, note text,
              wm timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'America/Los_Angeles'));
            INSERT INTO public.\(table) (id, note) SELECT g, 'initial' FROM generate_series(1, 10) g;
            """)
        let config = directory + "/zone.yaml"
        try """
        state: \(state)
        redshift: { url: "\(pg)", dialect: postgres, time_zone: America/Los_Angeles }
        mongo: { url: "\(mongoURL)", database: \(database) }
        defaults: { poll_interval: 200ms }
        streams:
        \(stream("pacific", table: table))
        """.write(toFile: config, atomically: true, encoding: .utf8)
        let (process, _) = try startRun(config)
        try await waitFor("snapshot") { phase("pacific") == "streaming" }
        try await connection.execute("INSERT INTO public.\(table) (id, note) VALUES (100, 'after the snapshot')")
        try await waitFor("the row written after the snapshot", timeout: 30) {
            try await mongo.count(database: database, collection: "pacific", filter: ["note": "after the snapshot"]) == 1
        }
        stop(process)
        // A zone the server does not know: check says so.
        try String(contentsOfFile: config, encoding: .utf8).replacingOccurrences(of: "America/Los_Angeles", with: "Mars/Olympus_Mons")
            .write(toFile: config, atomically: true, encoding: .utf8)
        let check = try MongoshiftProcess.run(["check", "--config", config])
        XCTAssertEqual(check.status, 1, check.stdout + check.stderr)
        XCTAssertTrue(check.stdout.contains("Mars/Olympus_Mons"), check.stdout)
    }

    /// The open-transaction bound looked the table up in `public` whatever the config said: a bare name that the
    /// session's `search_path` resolves to another schema had no writers, ever — late commits went unguarded.
    func testTheTransactionBoundFindsABareTableNameThroughTheSearchPath() async throws {
        let schema = TestServers.uniqueName("hzn")
        onTeardown { [connection] in _ = try? await connection?.execute("DROP SCHEMA IF EXISTS \(schema) CASCADE") }
        try await connection.execute("CREATE SCHEMA \(schema); CREATE TABLE \(schema).\(table) (id bigint PRIMARY KEY, wm timestamptz NOT NULL DEFAULT now())")
        let writer = try await PostgresConnection.connect(pg)
        try await writer.execute("BEGIN; INSERT INTO \(schema).\(table) (id) VALUES (1)")
        let probe = try await PostgresConnection.connect(pg)
        try await probe.execute("SET search_path TO \(schema), public")
        let horizon = try await TransactionHorizon.probe(probe, dialect: .postgres, table: TableName(schema: nil, name: table), maxOf: nil)
        XCTAssertNotNil(horizon.oldestWriter, "the writer of \(schema).\(table), found through search_path")
        try await writer.execute("ROLLBACK")
    }

    /// Only sessions that can write rows hold the tail: a reader that locked rows (`SELECT … FOR UPDATE`, or a
    /// foreign-key check from a child table: RowShareLock) or a vacuum/analyze (ShareUpdateExclusiveLock) stamp
    /// nothing, and they held the tail back for as long as they stayed open — hours for an anti-wraparound vacuum.
    func testSessionsThatCannotWriteRowsDoNotHoldTheTail() async throws {
        try await connection.execute("""
            CREATE TABLE public.\(table) (id bigint PRIMARY KEY, note text, wm timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'));
            INSERT INTO public.\(table) (id, note) SELECT g, 'initial' FROM generate_series(1, 10) g;
            """)
        let config = try writeConfig(stream("readers", table: table))
        let reader = try await PostgresConnection.connect(pg)
        try await reader.execute("BEGIN; SELECT * FROM public.\(table) WHERE id = 1 FOR UPDATE")
        let analyzer = try await PostgresConnection.connect(pg)
        try await analyzer.execute("BEGIN; LOCK TABLE public.\(table) IN SHARE UPDATE EXCLUSIVE MODE")
        try await Task.sleep(for: .seconds(2))
        let check = try MongoshiftProcess.run(["check", "--config", config])
        XCTAssertFalse(check.stdout.contains("holds the watermark back"), check.stdout)
        let (process, _) = try startRun(config)
        try await waitFor("snapshot") { phase("readers") == "streaming" }
        try await connection.execute("INSERT INTO public.\(table) (id, note) VALUES (100, 'while they are open')")
        try await waitFor("the row written while readers are open", timeout: 20) {
            try await mongo.count(database: database, collection: "readers", filter: ["note": "while they are open"]) == 1
        }
        stop(process)
        try await reader.execute("ROLLBACK")
        try await analyzer.execute("ROLLBACK")
    }

    /// `check` says when open transactions of other logins are invisible (and the grant that fixes it), and when
    /// one holds a stream; `lag` names the holding transaction.
    func testCheckAndLagReportAHeldStreamAndInvisibleTransactions() async throws {
        try await connection.execute("""
            CREATE TABLE public.\(table) (id bigint PRIMARY KEY, note text, wm timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'));
            INSERT INTO public.\(table) (id, note) SELECT g, 'initial' FROM generate_series(1, 10) g;
            """)
        let config = try writeConfig(stream("held", table: table))
        XCTAssertEqual(try MongoshiftProcess.run(["snapshot", "--config", config]).status, 0)
        let load = try await PostgresConnection.connect(pg)
        try await load.execute("BEGIN; INSERT INTO public.\(table) (id, note) VALUES (99, 'open')")
        let pid = try await load.query("SELECT pg_backend_pid()::text").rows[0][0]!
        try await Task.sleep(for: .seconds(2))
        let check = try MongoshiftProcess.run(["check", "--config", config])
        XCTAssertEqual(check.status, 1)
        XCTAssertTrue(check.stdout.contains("held: an open transaction writing public.\(table) (pid \(pid)"), check.stdout)
        let lag = try MongoshiftProcess.run(["lag", "--config", config, "--json"])
        XCTAssertTrue(lag.stdout.contains(#""held_by":{"age_seconds""#) && lag.stdout.contains(#""pid":"\#(pid)""#), lag.stdout)
        let table = try MongoshiftProcess.run(["lag", "--config", config, "--table"])
        XCTAssertTrue(table.stdout.contains("pid \(pid)"), table.stdout)
        try await load.execute("ROLLBACK")

        // A login that cannot see other sessions: check names the grant.
        let role = TestServers.uniqueName("blind")
        try await TestServers.createPasswordRole(connection, role, password: "blind-pw")
        onTeardown { [connection] in _ = try? await connection?.execute("DROP OWNED BY \(role); DROP ROLE IF EXISTS \(role)") }
        var url = URLComponents(string: pg)!
        url.user = role
        url.password = "blind-pw"
        let yaml = try String(contentsOfFile: config, encoding: .utf8).replacingOccurrences(of: pg, with: url.string!)
        try yaml.write(toFile: config, atomically: true, encoding: .utf8)
        let blind = try MongoshiftProcess.run(["check", "--config", config])
        XCTAssertTrue(blind.stdout.contains("open transactions of other logins are not visible") && blind.stdout.contains("GRANT pg_read_all_stats TO"),
                      blind.stdout + blind.stderr)
    }
}
