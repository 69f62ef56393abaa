import BSON
import Foundation
import MongoClient
import PostgresClient
import Replication
import TestSupport
import XCTest

/// "Nothing lost" (docs/RELIABILITY.md) under abuse: while a writer keeps changing the source (inserts, updates, soft and hard
/// deletes, late commits / replaces), the replicator is killed over and over — at every crash point (segment
/// sealed, recorded, target written, checkpoint written, before the spool rename) and by random external
/// `kill -9` — during the snapshot and the tail. Then the writer stops, one clean run converges, and the target
/// must equal the source exactly: zero lost, zero duplicated, zero regressed.
final class CrashStormTests: IntegrationTestCase {
    override var namePrefix: String { "storm" }


    /// Runs the rounds; returns how many ended in a crash (the rest finished their time and were killed anyway).
    func storm(config: String, rounds: Int, rng: inout SeededGenerator) async throws -> Int {
        var crashes = 0
        for round in 0..<rounds {
            let blow = Storm.blow(round: round, using: &rng)
            let (process, base) = try MongoshiftProcess.start(["run", "--config", config], environment: blow.environment)
            running.append(process)
            let limit: TimeInterval
            if case .killAfter(let s) = blow { limit = s } else { limit = Double.random(in: 3...8, using: &rng) }
            let deadline = Date().addingTimeInterval(limit)
            while process.isRunning && Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitPolling()
            XCTAssertEqual(process.terminationReason, .uncaughtSignal, "round \(round) (\(blow)) must end by SIGKILL, not exit:\n"
                           + MongoshiftProcess.output(base).stderr.suffix(2000))
            if MongoshiftProcess.output(base).stderr.contains("crash point") { crashes += 1 }
            try? FileManager.default.removeItem(atPath: base + ".out")
            try? FileManager.default.removeItem(atPath: base + ".err")
        }
        return crashes
    }

    func finalRun(_ config: String, until converged: () async throws -> Bool) async throws {
        let (process, base) = try MongoshiftProcess.start(["run", "--config", config])
        running.append(process)
        let deadline = Date().addingTimeInterval(180)
        var done = false
        while Date() < deadline {
            if try await converged() { done = true; break }
            try await Task.sleep(for: .milliseconds(500))
        }
        kill(process.processIdentifier, SIGTERM)
        process.waitPolling(timeout: 20)
        if !done { print("final run log:\n" + MongoshiftProcess.output(base).stderr.suffix(4000)) }
        XCTAssertEqual(process.terminationStatus, 0, "the final run exits 0 on SIGTERM")
    }

    /// The storm while `write` mutates the source, then one clean run until `compare` finds the target exact;
    /// records the figures (docs/RELIABILITY.md) and returns the last comparison and the crash-point count.
    func stormThenCompare(_ scenario: String, config: String, rounds: Int, rng: inout SeededGenerator,
                          write: @escaping @Sendable (StopSignal) async throws -> Int,
                          compare: () async throws -> (Convergence.Tally, [String])) async throws -> (Convergence.Tally, [String], Int) {
        let stop = StopSignal()
        let writing = Task { try await write(stop) }
        let started = Date()
        let crashes = try await storm(config: config, rounds: rounds, rng: &rng)
        stop.set()
        let writes = try await writing.value
        var tally = Convergence.Tally()
        var reasons: [String] = []
        try await finalRun(config) {
            (tally, reasons) = try await compare()
            return tally.isExact && reasons.isEmpty && tally.checked > 0
        }
        Storm.report(scenario: scenario, rounds: rounds, crashes: crashes, writes: writes, tally: tally,
                     seconds: Date().timeIntervalSince(started))
        return (tally, reasons, crashes)
    }

    // MARK: - Redshift → Mongo

    func testCrashStormRedshiftToMongo() async throws {
        let table = TestServers.uniqueName("storm_orders")
        onTeardown { [connection] in _ = try? await connection?.execute("DROP TABLE IF EXISTS public.\(table)") }
        try await Fixtures.createOrders(connection, table: table, rows: 20_000)
        try await crashStormRedshiftToMongo(table: table, url: pg, dialect: .postgres, rounds: Storm.rounds, rows: 20_000)
    }

    /// The same storm with `dialect: redshift` through ops/dev-redshift: Redshift's SQL, serializable isolation
    /// (the writer retries its 1023s), informational keys.
    func testCrashStormRedshiftToMongoRedshiftDialect() async throws {
        let (rs, logPath) = try TestServers.requireRedshift()
        let log = StatementLog(path: logPath)
        let offset = log.offset
        let table = TestServers.uniqueName("storm_rs_orders")
        onTeardown { [connection] in _ = try? await connection?.execute("DROP TABLE IF EXISTS public.\(table)") }
        let source = try await PostgresConnection.connect(rs)
        try await Fixtures.createRedshiftOrders(source, table: table, rows: 5_000)
        try await crashStormRedshiftToMongo(table: table, url: rs, dialect: .redshift, rounds: Storm.rounds, rows: 5_000)
        XCTAssertEqual(log.refusals(after: offset), [], "dev-redshift accepted every statement mongoshift sent")
    }

    func crashStormRedshiftToMongo(table: String, url: String, dialect: PostgresWriter.Dialect, rounds: Int, rows: Int) async throws {
        var rng = SeededGenerator()
        print("storm seed: \(rng.seed) (replay with MONGOSHIFT_STORM_SEED)")
        let config = try Fixtures.writeConfig(directory: directory, pg: url, mongo: mongoURL, database: database, table: table,
                                              extra: "    reconcile_every: 2s", defaults: "batch_bytes: 64KiB", dialect: "\(dialect)")
        let writer = PostgresWriter(url: url, table: "public.\(table)", firstNewId: rows + 1, seed: rng.next(), dialect: dialect)
        let (last, reasons, crashes) = try await stormThenCompare("redshift→mongo crash storm (\(dialect))", config: config, rounds: rounds, rng: &rng,
                                                                  write: { try await writer.run(until: $0) }) { [self] in
            try await Convergence.compare(pg: connection, table: table, mongo: mongo, database: database, collection: "orders")
        }
        XCTAssertGreaterThan(last.checked, rows * 95 / 100)
        XCTAssertEqual(last.lost, 0, "lost rows: \(reasons)")
        XCTAssertEqual(last.duplicated, 0)
        XCTAssertEqual(last.regressed, 0, "regressed rows: \(reasons)")
        XCTAssertEqual(reasons, [])
        XCTAssertGreaterThan(crashes, 0, "crash points were reached")
    }

    // MARK: - Mongo → Redshift

    func testCrashStormMongoToRedshift() async throws {
        try await crashStormMongoToRedshift(url: pg, dialect: "postgres", rounds: Storm.rounds)
    }

    func testCrashStormMongoToRedshiftRedshiftDialect() async throws {
        let (rs, logPath) = try TestServers.requireRedshift()
        let log = StatementLog(path: logPath)
        let offset = log.offset
        try await crashStormMongoToRedshift(url: rs, dialect: "redshift", rounds: Storm.rounds)
        XCTAssertEqual(log.refusals(after: offset), [], "dev-redshift accepted every statement mongoshift sent")
    }

    func crashStormMongoToRedshift(url: String, dialect: String, rounds: Int) async throws {
        var rng = SeededGenerator()
        print("storm seed: \(rng.seed) (replay with MONGOSHIFT_STORM_SEED)")
        let schema = TestServers.uniqueName("storm")
        onTeardown { [connection] in _ = try? await connection?.execute("DROP SCHEMA IF EXISTS \(schema) CASCADE") }
        let writer = MongoWriter(url: mongoURL, database: database, collection: "apps", seed: rng.next())
        try await writer.seed(count: 5_000)
        let yaml = """
        state: \(state)
        redshift: { url: "\(url)", dialect: \(dialect) }
        mongo: { url: "\(mongoURL)", database: \(database) }
        defaults: { poll_interval: 200ms, batch_bytes: 64KiB }
        streams:
          - name: apps
            from: { collection: apps }
            to: { table: \(schema).apps }
            partitions: 4
            on_history_lost: fail
        """
        let config = directory + "/config.yaml"
        try yaml.write(toFile: config, atomically: true, encoding: .utf8)
        let (tally, reasons, crashes) = try await stormThenCompare("mongo→redshift crash storm (\(dialect))", config: config, rounds: rounds, rng: &rng,
                                                                   write: { try await writer.run(until: $0) }) { [self] in
            guard let r = try? await TableComparison.compare(mongo: mongo, database: database, collection: "apps", pg: connection,
                                                             table: "\(schema).apps") else { return (Convergence.Tally(), ["table not readable yet"]) }
            let dup: String? = try await connection.query("SELECT count(*) - count(DISTINCT _id) FROM \(schema).apps").rows.first?[0] ?? nil
            var tally = Convergence.Tally()
            tally.checked = r.checked
            tally.lost = r.missing.count
            tally.regressed = r.changed.count + r.extra.count
            tally.duplicated = Int(dup ?? "0") ?? 0
            return (tally, r.reasons)
        }
        XCTAssertGreaterThan(tally.checked, 4_000)
        XCTAssertEqual(tally.lost, 0, "lost rows: \(reasons)")
        XCTAssertEqual(tally.duplicated, 0)
        XCTAssertEqual(tally.regressed, 0, "regressed rows: \(reasons)")
        XCTAssertGreaterThan(crashes, 0, "crash points were reached")
    }
}

/// Keeps changing a fixture table until stopped: inserts, updates (statement-wide `updated_at` ties), soft
/// deletes and un-deletes, hard deletes, and late commits (a transaction held open 2.5 s — longer than the
/// stream's 1 s safety_lag — while others commit).
/// Returns the number of statements committed.
struct PostgresWriter: Sendable {
    /// The source's SQL: PostgreSQL's, or Redshift's through ops/dev-redshift (`SYSDATE`, the transaction's start,
    /// for `now()`; `VALUES` lists for `generate_series`; `JSON_PARSE` for `jsonb_build_object`).
    enum Dialect: String, CustomStringConvertible {
        case postgres, redshift
        var description: String { rawValue }
        var now: String { self == .postgres ? "now()" : "SYSDATE" }
    }

    let url: String
    let table: String
    let firstNewId: Int
    let seed: UInt64
    var dialect: Dialect = .postgres

    func insert(from first: Int, count: Int) -> String {
        switch dialect {
        case .postgres:
            return """
                INSERT INTO \(table) (id, customer_id, quantity, amount, paid, status, order_date, created_at, updated_at, attrs, note)
                SELECT g, 7, 1, 9.5, false, 'storm', DATE '2024-03-03', now(), now(), jsonb_build_object('i', g), 'inserted'
                FROM generate_series(\(first), \(first + count - 1)) g
                """
        case .redshift:
            return "INSERT INTO \(table) (\(Fixtures.redshiftOrderColumns)) VALUES "
                + (first..<first + count).map { Fixtures.redshiftOrderValues(id: $0, note: "inserted") }.joined(separator: ", ")
        }
    }

    func run(until stop: StopSignal) async throws -> Int {
        var rng = SeededGenerator(seed: seed)
        let c = try await PostgresConnection.connect(url)
        let late = try await PostgresConnection.connect(url)
        var next = firstNewId
        var writes = 0
        var iteration = 0
        var lateCommit: Task<Void, Error>?
        defer { lateCommit?.cancel() }
        // The rows the open late transaction holds (even ids of one residue mod 89): the other connection leaves
        // them alone meanwhile, so its statements never wait on those row locks.
        var held: Int?
        func free(_ id: Int) -> Bool { held.map { id % 89 != $0 || id % 2 == 1 } ?? true }
        func notHeld() -> String { held.map { " AND NOT (id % 89 = \($0) AND id % 2 = 0)" } ?? "" }
        while !stop.isSet {
            iteration += 1
            let ids = (0..<40).map { _ in Int.random(in: 1..<next, using: &rng) }.filter(free).map(String.init).joined(separator: ",")
            try await write(c, insert(from: next, count: 25))
            next += 25
            try await write(c, "UPDATE \(table) SET amount = amount + 1, note = 'update \(iteration)', updated_at = \(dialect.now) WHERE id IN (\(ids))")
            writes += 2
            switch iteration % 10 {
            case 3:
                try await write(c, "UPDATE \(table) SET is_deleted = true, updated_at = \(dialect.now) WHERE id % 97 = \(Int.random(in: 0..<97, using: &rng)) AND id < \(next)\(notHeld())")
                writes += 1
            case 5:
                let gone = (0..<5).map { _ in Int.random(in: 1..<next, using: &rng) }.filter(free).map(String.init)
                if !gone.isEmpty { try await write(c, "DELETE FROM \(table) WHERE id IN (\(gone.joined(separator: ",")))") }
                writes += 1
            case 7 where lateCommit == nil:
                // A late commit: its rows' updated_at (its start) is older than rows others commit while it stays
                // open, for longer than safety_lag. (Rows of its own — even ids of one residue — so its row locks
                // never block the other connection.)
                let k = iteration % 89
                let open = iteration
                do {
                    held = k
                    try await late.execute("BEGIN; UPDATE \(table) SET note = 'late \(open)', updated_at = \(dialect.now) WHERE id % 89 = \(k) AND id % 2 = 0")
                    lateCommit = Task {
                        try await Task.sleep(for: .milliseconds(2500))
                        // A serialization failure at COMMIT rolls it back: nothing was acknowledged.
                        do { try await late.execute("COMMIT") } catch let e as PostgresError where e.isTransient {}
                    }
                } catch let e as PostgresError where e.isTransient {
                    _ = try? await late.execute("ROLLBACK")
                    held = nil
                }
                try await write(c, "UPDATE \(table) SET note = 'meanwhile \(iteration)', updated_at = \(dialect.now) WHERE id % 89 = \(k) AND id % 2 = 1")
                writes += 2
            case 9:
                try await write(c, "UPDATE \(table) SET is_deleted = false, note = 'undeleted', updated_at = \(dialect.now) WHERE is_deleted AND id % 2 = 0\(notHeld())")
                writes += 1
            default: break
            }
            if let task = lateCommit, iteration % 10 == 6 {
                // Never two at once on its connection; and committed before the writer stops.
                try await task.value
                lateCommit = nil
                held = nil
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        if let task = lateCommit { try await task.value }
        return writes
    }

    /// Serializable isolation (Redshift's 1023, PostgreSQL's 40001) refuses one of two conflicting
    /// transactions; the application runs it again, as a real one must.
    func write(_ c: PostgresConnection, _ sql: String) async throws {
        var attempt = 0
        while true {
            attempt += 1
            do {
                try await c.execute(sql)
                return
            } catch let e as PostgresError where e.isTransient && attempt < 50 {
                _ = try? await c.execute("ROLLBACK")
                try await Task.sleep(for: .milliseconds(20 * attempt))
            }
        }
    }
}

/// Keeps changing a collection until stopped: inserts, `$set`/`$inc`/`$unset` updates, replaces, deletes.
struct MongoWriter: Sendable {
    let url: String
    let database: String
    let collection: String
    let seed: UInt64

    func document(_ i: Int, version: Int) -> Document {
        var doc: Document = ["_id": .int64(Int64(i)), "name": .string("app \(i)"), "version": .int32(Int32(version)),
                             "price": .decimal128(Decimal128("\(i).50")!), "tags": .array([.string("t\(i % 5)")]),
                             "meta": .document(["owner": .string("o\(i % 13)"), "score": .double(Double(i) / 8)])]
        if i % 4 == 0 { doc.append("optional", .bool(true)) }
        return doc
    }

    func seed(count: Int) async throws {
        let client = try MongoClient(url: url)
        for start in stride(from: 1, through: count, by: 1000) {
            _ = try await client.bulkWrite(database: database, collection: collection,
                                           (start..<min(start + 1000, count + 1)).map { .insert(document($0, version: 0)) })
        }
    }

    func run(until stop: StopSignal) async throws -> Int {
        var rng = SeededGenerator(seed: seed)
        let client = try MongoClient(url: url)
        var next = 5_001
        var writes = 0
        var iteration = 0
        while !stop.isSet {
            iteration += 1
            var ops: [WriteOperation] = (next..<next + 20).map { .insert(document($0, version: iteration)) }
            next += 20
            for _ in 0..<30 {
                let id = BSON.int64(Int64(Int.random(in: 1..<next, using: &rng)))
                switch Int.random(in: 0..<10, using: &rng) {
                case 0..<5: ops.append(.update(filter: ["_id": id], update: ["$set": .document(["version": .int32(Int32(iteration))]),
                                                                             "$inc": .document(["meta.score": .double(1)])], upsert: false))
                case 5..<7: ops.append(.update(filter: ["_id": id], update: ["$unset": .document(["optional": .string("")])], upsert: false))
                case 7..<9: ops.append(.replace(filter: ["_id": id], replacement: document(id.intValue ?? 0, version: -iteration), upsert: false))
                default: ops.append(.delete(filter: ["_id": id]))
                }
            }
            _ = try await client.bulkWrite(database: database, collection: collection, ops)
            writes += ops.count
            try await Task.sleep(for: .milliseconds(150))
        }
        return writes
    }
}
