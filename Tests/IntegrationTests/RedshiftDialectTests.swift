import BSON
import Foundation
import MongoClient
import PostgresClient
import TestSupport
import XCTest

/// `dialect: redshift` end to end against the Redshift stand-in (ops/dev-redshift: Redshift's SQL, limits and
/// refusals, serializable isolation, informational keys), both directions: snapshot and tail with idle periods,
/// soft and hard deletes, schema evolution and widening (VARCHAR, VARBYTE, the `_id` key), oversized values, and
/// `check`, `discover`, `verify`, `lag`. Every statement mongoshift sends must be accepted: each test fails if the
/// stand-in refused one, and the suite prints how many distinct statement shapes it exercised.
final class RedshiftDialectTests: IntegrationTestCase {
    override var namePrefix: String { "rs" }
    var rs = ""
    var log: StatementLog!
    var logOffset: UInt64 = 0
    nonisolated(unsafe) static var shapes = Set<String>()

    override func setUp() async throws {
        try await super.setUp()
        let (url, path) = try TestServers.requireRedshift()
        rs = url
        log = StatementLog(path: path)
        logOffset = log.offset
    }

    override func tearDown() async throws {
        if let log {
            let entries = log.entries(after: logOffset)
            let refused = entries.filter { !$0.ok }
            XCTAssertEqual(refused.map { "\($0.sql.prefix(300)) → \($0.error ?? "")" }, [], "every statement mongoshift sent was accepted")
            Self.shapes.formUnion(entries.map { StatementLog.shape($0.sql) })
            print("redshift dialect: \(entries.count) statements in this test, \(Self.shapes.count) distinct shapes so far")
        }
        try await super.tearDown()
    }

    override class func tearDown() {
        print("redshift dialect: \(shapes.count) distinct statement shapes exercised against ops/dev-redshift")
        super.tearDown()
    }

    func config(_ streams: String, extra: String = "") throws -> String {
        let yaml = """
        state: \(state)
        redshift: { url: "\(rs)", dialect: redshift }
        mongo: { url: "\(mongoURL)", database: \(database) }
        defaults: { poll_interval: 200ms, batch_bytes: 256KiB }
        \(extra)
        streams:
        \(streams)
        """
        let path = directory + "/redshift.yaml"
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    // MARK: Redshift → Mongo

    /// Hard deletes among 64-bit keys near 2^63 (snowflake-style ids): the reconciler's per-range sum of the keys
    /// overflowed Redshift's BIGINT SUM (22003) and failed the stream for good.
    func testRedshiftToMongoReconcilesKeysNearTheTopOfBigint() async throws {
        let source = try await PostgresConnection.connect(rs)
        try await source.execute("""
            CREATE TABLE public.\(table) (id bigint NOT NULL, note varchar(16), updated_at timestamp NOT NULL, PRIMARY KEY (id));
            INSERT INTO public.\(table) SELECT 9000000000000000000 + g, 'n', GETDATE() FROM generate_series(1, 40) g;
            """)
        let cfg = try config("""
          - name: big
            from: { table: public.\(table) }
            to: { collection: big }
            watermark: updated_at
            safety_lag: 1s
            reconcile_every: 1s
        """)
        let (process, _) = try startRun(cfg)
        try await waitFor("snapshot") { phase("big") == "streaming" }
        try await source.execute("DELETE FROM public.\(table) WHERE id IN (9000000000000000001, 9000000000000000002)")
        try await waitFor("the reconciler to delete both rows", timeout: 60) {
            try await mongo.count(database: database, collection: "big") == 38
        }
        XCTAssertEqual(phase("big"), "streaming", "the stream goes on")
        stop(process)
    }

    /// The reconciler counted and summed each 5,000-key range in a query of its own: on Redshift, which has no
    /// index, every one scanned the key column — 20,000 scans per cycle for 100M rows. A run of ranges of one
    /// width is now counted in one GROUP BY query.
    func testTheReconcilerCountsARunOfRangesInOneSourceQuery() async throws {
        let source = try await PostgresConnection.connect(rs)
        try await source.execute("""
            CREATE TABLE public.\(table) (id bigint NOT NULL, note varchar(16), updated_at timestamp NOT NULL, PRIMARY KEY (id));
            INSERT INTO public.\(table) SELECT g, 'n', GETDATE() FROM generate_series(1, 30000) g;
            """)
        let cfg = try config("""
          - name: ranges
            from: { table: public.\(table) }
            to: { collection: ranges }
            watermark: updated_at
            safety_lag: 1s
            reconcile_every: 1s
        """)
        let (process, _) = try startRun(cfg)
        try await waitFor("snapshot") { phase("ranges") == "streaming" }
        // Deletes in three of the six ranges.
        try await source.execute("DELETE FROM public.\(table) WHERE id IN (7, 12345, 29999)")
        try await waitFor("the reconciler to delete the three rows", timeout: 60) {
            try await mongo.count(database: database, collection: "ranges") == 29_997
        }
        stop(process)
        let statements = log.entries(after: logOffset).map(\.sql).filter { $0.contains(table) }
        let cycles = statements.filter { $0.hasPrefix("SELECT min(") }.count
        let summaries = statements.filter { $0.contains("count(DISTINCT") }.count
        XCTAssertGreaterThan(cycles, 0)
        // One summary query per cycle for the six ranges, not one per range (the last cycle may be cut short by the stop).
        XCTAssertTrue(summaries == cycles || summaries == cycles - 1, "\(summaries) summaries in \(cycles) cycles:\n\(statements.joined(separator: "\n"))")
    }

    /// Redshift compares VARCHAR ignoring trailing blanks ('b' = 'b '): keys that differ only in them tie in `ORDER
    /// BY key`, and a page or poll ending at one of them made the next (`key > 'b'`) skip the others — they were
    /// dead-lettered as duplicates although MongoDB keeps them apart. The table is made on the stand-in's backend
    /// with an ICU collation that compares as Redshift does here (the stand-in itself refuses COLLATE, as Redshift).
    func testKeysDifferingOnlyInTrailingBlanksAreAllCopiedAndTailed() async throws {
        try await connection.execute("CREATE COLLATION IF NOT EXISTS public.ms_blank_insensitive (provider = icu, locale = 'und-u-ka-shifted', deterministic = false)")
        try await connection.execute("CREATE TABLE public.\(table) (k varchar(16) COLLATE public.ms_blank_insensitive NOT NULL, note varchar(16), updated_at timestamp NOT NULL)")
        // 127 keys sort before the tie: the first page (128 rows with `batch_bytes: 16KiB`) ends inside it.
        try await connection.execute("""
            INSERT INTO public.\(table) SELECT 'a' || lpad(g::text, 3, '0'), 'n', timestamp '2026-01-01' FROM generate_series(1, 127) g;
            INSERT INTO public.\(table) VALUES ('b', 'one', timestamp '2026-01-01'), ('b ', 'two', timestamp '2026-01-01'),
                                               ('b  ', 'three', timestamp '2026-01-01'), ('c', 'n', timestamp '2026-01-01');
            """)
        let cfg = try config("""
          - name: blanks
            from: { table: public.\(table) }
            to: { collection: blanks }
            key: [k]
            watermark: updated_at
            safety_lag: 1s
            partitions: 1
            batch_bytes: 16KiB
        """)
        let (process, _) = try startRun(cfg)
        try await waitFor("snapshot") { phase("blanks") == "streaming" }
        for key in ["b", "b ", "b  "] {
            let copies = try await mongo.count(database: database, collection: "blanks", filter: ["_id": .string(key)])
            XCTAssertEqual(copies, 1, "key '\(key)' copied")
        }
        // The tail: 130 rows stamped alike (one statement), the tie where the first poll (128 rows) ends.
        try await connection.execute("""
            INSERT INTO public.\(table) SELECT k, 'n', date_trunc('second', timezone('UTC', now())) FROM (
              SELECT 'd' || lpad(g::text, 3, '0') AS k FROM generate_series(1, 127) g UNION ALL SELECT 'e' UNION ALL SELECT 'e ' UNION ALL SELECT 'e  ') s
            """)
        try await waitFor("the tail", timeout: 60) { try await mongo.count(database: database, collection: "blanks", filter: ["_id": .string("e  ")]) == 1 || phase("blanks") != "streaming" }
        let total = try await mongo.count(database: database, collection: "blanks")
        XCTAssertEqual(total, 261, "every key kept apart")
        stop(process)
        let letters = (try? String(contentsOfFile: state + "/deadletter/blanks.jsonl", encoding: .utf8)) ?? ""
        XCTAssertEqual(letters, "", "nothing dead-lettered")
    }

    /// Redshift prints floats with `extra_float_digits` 0 by default — 15 significant digits for DOUBLE, 6 for
    /// REAL — so 0.1 + 0.2 arrived as 0.3 and REAL 1234567 as 1234570, in Mongo and in `verify`'s comparison alike.
    /// Every session now asks for the digits that read back exactly; a REAL is read as the REAL it is.
    func testFloatsArriveWithEveryDigit() async throws {
        let source = try await PostgresConnection.connect(rs)
        try await source.execute("""
            CREATE TABLE public.\(table) (id integer NOT NULL, d double precision, r real, updated_at timestamp NOT NULL, PRIMARY KEY (id));
            INSERT INTO public.\(table) VALUES (1, 0.1::float8 + 0.2, 1234567, GETDATE()), (2, 1e-300, 0.1, GETDATE()), (3, 123456789.123456789, 16777216, GETDATE()),
                                                (4, 0, 10.3255415, GETDATE());
            """)
        let cfg = try config("""
          - name: floats
            from: { table: public.\(table) }
            to: { collection: floats }
            watermark: updated_at
            safety_lag: 1s
        """)
        let (process, _) = try startRun(cfg)
        try await waitFor("snapshot") { phase("floats") == "streaming" }
        let docs = try await mongo.findAll(database: database, collection: "floats", sort: ["_id": 1])
        XCTAssertEqual(docs.map { $0["d"] }, [.double(0.1 + 0.2), .double(1e-300), .double(123456789.123456789), .double(0)])
        // 10.3255415 needs 9 digits: Redshift's 8 digits of a REAL (`10.325541`) would name another REAL.
        XCTAssertEqual(docs.map { $0["r"] }, [.double(1234567), .double(0.1), .double(16777216), .double(Double("\(Float(10.3255415))")!)],
                       "a REAL as its shortest decimal, read exactly")
        stop(process)
        let verify = try MongoshiftProcess.run(["verify", "--config", cfg])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
    }

    func testRedshiftToMongoSnapshotTailIdleDeletesAndOperations() async throws {
        // A table made the Redshift way: informational key, SUPER, VARBYTE, no index.
        let source = try await PostgresConnection.connect(rs)
        try await source.execute("""
            CREATE TABLE public.\(table) (id bigint NOT NULL, customer_id integer, amount decimal(12,2), note varchar(64),
              attrs super, payload varbyte, is_deleted boolean DEFAULT false, updated_at timestamp NOT NULL, PRIMARY KEY (id));
            INSERT INTO public.\(table) SELECT g, g % 7, g * 1.25, 'row ' || g, JSON_PARSE('{"g": ' || g || '}'), FROM_HEX('0a0b'), false, GETDATE()
            FROM generate_series(1, 400) g;
            """)
        let cfg = try config("""
          - name: orders
            from: { table: public.\(table) }
            to: { collection: orders }
            watermark: updated_at
            safety_lag: 1s
            deletes: { column: is_deleted }
            reconcile_every: 1s
            partitions: 3
        """)
        let check = try MongoshiftProcess.run(["check", "--config", cfg])
        XCTAssertTrue(check.stdout.contains("has no index / sort key"), "Redshift tables have no index:\n\(check.stdout)")
        let (process, _) = try startRun(cfg)
        try await waitFor("snapshot") { phase("orders") == "streaming" }
        // Idle: the tail polls an unchanged table for a while (the first idle poll used to fail on Redshift).
        try await Task.sleep(for: .seconds(3))
        XCTAssertEqual(phase("orders"), "streaming")
        try await source.execute("UPDATE public.\(table) SET note = 'changed', updated_at = GETDATE() WHERE id <= 50")
        try await source.execute("UPDATE public.\(table) SET is_deleted = true, updated_at = GETDATE() WHERE id BETWEEN 51 AND 60")
        try await source.execute("DELETE FROM public.\(table) WHERE id BETWEEN 61 AND 65")
        try await source.execute("INSERT INTO public.\(table) SELECT g, 1, 1.00, 'new', JSON_PARSE('[1,2]'), FROM_HEX('ff'), false, GETDATE() FROM generate_series(1001, 1020) g")
        try await waitFor("convergence") {
            let (tally, reasons) = try await Convergence.compare(pg: connection, table: table, mongo: mongo, database: database, collection: "orders")
            return tally.isExact && reasons.isEmpty
        }
        let lag = try MongoshiftProcess.run(["lag", "--config", cfg, "--json"])
        XCTAssertEqual(lag.status, 0, lag.stderr)
        XCTAssertTrue(lag.stdout.contains(#""phase":"streaming""#), lag.stdout)
        stop(process)
        let verify = try MongoshiftProcess.run(["verify", "--config", cfg])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
        let discover = try MongoshiftProcess.run(["discover", "--config", cfg])
        XCTAssertEqual(discover.status, 0, discover.stderr)
        XCTAssertTrue(discover.stdout.contains(table) && discover.stdout.contains("key=id"), discover.stdout)
    }

    /// Issue "A local Redshift…" fix 5: `check` reads sort keys of schemas that are not on the search_path (and
    /// reports a failed lookup instead of calling it fine); `discover` lists empty tables with 0 rows.
    func testCheckSeesSortKeysOutsideTheSearchPathAndDiscoverListsEmptyTables() async throws {
        let source = try await PostgresConnection.connect(rs)
        let ns = table + "_src"
        onTeardown { [rs] in
            let c = try? await PostgresConnection.connect(rs)
            _ = try? await c?.execute("DROP SCHEMA IF EXISTS \(ns) CASCADE")
        }
        try await source.execute("""
            CREATE SCHEMA \(ns);
            CREATE TABLE \(ns).sorted (id bigint NOT NULL, updated_at timestamp NOT NULL, PRIMARY KEY (id)) SORTKEY (updated_at);
            CREATE TABLE \(ns).unsorted (id bigint NOT NULL, updated_at timestamp NOT NULL, PRIMARY KEY (id));
            CREATE TABLE \(ns).empty (id bigint NOT NULL, updated_at timestamp NOT NULL, PRIMARY KEY (id));
            INSERT INTO \(ns).sorted SELECT g, GETDATE() FROM generate_series(1, 10) g;
            INSERT INTO \(ns).unsorted SELECT g, GETDATE() FROM generate_series(1, 10) g;
            """)
        let cfg = try config("""
          - name: sorted
            from: { table: \(ns).sorted }
            to: { collection: sorted }
            watermark: updated_at
          - name: unsorted
            from: { table: \(ns).unsorted }
            to: { collection: unsorted }
            watermark: updated_at
        """)
        let check = try MongoshiftProcess.run(["check", "--config", cfg])
        let lines = check.stdout.split(separator: "\n").filter { $0.contains("has no index / sort key") || $0.contains("cannot tell") }
        XCTAssertEqual(lines.count, 1, check.stdout)
        XCTAssertTrue(lines.first?.contains("unsorted") ?? false, check.stdout)
        let discover = try MongoshiftProcess.run(["discover", "--config", cfg])
        XCTAssertEqual(discover.status, 0, discover.stderr)
        XCTAssertTrue(discover.stdout.contains("\(ns).empty  rows≈0"), discover.stdout)
    }

    // MARK: Mongo → Redshift

    /// `_id`s of different types with the same plain text are rows of their own on Redshift too (MERGE and the
    /// staged rows match on the key text), and a delete reaches only its own row.
    func testMongoToRedshiftIDsOfDifferentTypesWithTheSameTextStayDistinct() async throws {
        let oid = ObjectId.generate()
        let pairs: [(BSON, BSON)] = [(.int32(5), "5"), (.objectId(oid), .string(oid.description)), (.bool(true), "true"),
                                     (.document(["a": .int32(1)]), #"{"a":1}"#), (.null, "")]
        _ = try await mongo.bulkWrite(database: database, collection: "things", pairs.flatMap { pair -> [WriteOperation] in
            [.insert(["_id": pair.0, "side": "typed"]), .insert(["_id": pair.1, "side": "text"])]
        })
        let cfg = try config("""
          - name: things
            from: { collection: things }
            to: { table: \(table).things }
        """)
        let (process, _) = try startRun(cfg)
        try await waitFor("snapshot") { phase("things") == "streaming" }
        let copied = try await connection.query("SELECT count(*), count(DISTINCT _id) FROM \(table).things").rows[0]
        XCTAssertEqual(copied, ["10", "10"])
        _ = try await mongo.bulkWrite(database: database, collection: "things", pairs.map { .delete(filter: ["_id": $0.1]) })
        let diffs = try await TableConvergence.wait(timeout: 60, mongo: mongo, database: database, collection: "things", pg: connection,
                                                    table: "\(table).things")
        XCTAssertEqual(diffs, [])
        let left = try await connection.query("SELECT side, count(*) FROM \(table).things GROUP BY side").rows
        XCTAssertEqual(left, [["typed", "5"]])
        stop(process)
    }

    /// Redshift folds identifiers to lower case, quoted ones too (`enable_case_sensitive_identifier` off): the
    /// configuration's `Things` is `things` in the catalog. Looked up as written, the table's columns were never
    /// found: the second start added `_mongoshift_gen` again (42701) and the stream failed for good.
    func testMixedCaseTableNamesAreFoldedAsRedshiftFoldsThem() async throws {
        _ = try await mongo.bulkWrite(database: database, collection: "things", (1...3).map { .insert(["_id": .int32(Int32($0)), "n": .int32(Int32($0))]) })
        let cfg = try config("""
          - name: things
            from: { collection: things }
            to: { table: \(table).Things }
        """)
        var (process, _) = try startRun(cfg)
        try await waitFor("snapshot") { phase("things") == "streaming" }
        stop(process)
        (process, _) = try startRun(cfg)
        _ = try await mongo.bulkWrite(database: database, collection: "things", [.insert(["_id": 4, "n": 4])])
        let diffs = try await TableConvergence.wait(timeout: 60, mongo: mongo, database: database, collection: "things", pg: connection,
                                                    table: "\(table).things")
        XCTAssertEqual(diffs, [])
        XCTAssertEqual(phase("things"), "streaming")
        stop(process)
    }

    func testMongoToRedshiftSchemaEvolutionWideningAndLimits() async throws {
        let ids = (0..<200).map { _ in ObjectId.generate() }
        _ = try await mongo.bulkWrite(database: database, collection: "apps", ids.enumerated().map { i, id in
            .insert(["_id": .objectId(id), "name": .string("app \(i)"), "qty": .int32(Int32(i)), "meta": .document(["n": .int32(Int32(i))]),
                     "blob": .binary(BSONBinary(subtype: 0, data: [UInt8(i % 256)]))])
        })
        let cfg = try config("""
          - name: apps
            from: { collection: apps }
            to: { table: \(table).apps }
            partitions: 2
        """)
        let (process, base) = try startRun(cfg)
        try await waitFor("snapshot") { phase("apps") == "streaming" }
        try await Task.sleep(for: .seconds(2))  // idle
        _ = try await mongo.bulkWrite(database: database, collection: "apps", [
            // VARCHAR growth in place, int → bigint → double (column swap), a new field.
            .update(filter: ["_id": .objectId(ids[0])], update: ["$set": .document(["name": .string(String(repeating: "n", count: 300)),
                                                                                      "qty": .int64(10_000_000_000), "added": "yes"])], upsert: false),
            .update(filter: ["_id": .objectId(ids[1])], update: ["$set": .document(["qty": .double(2.5)])], upsert: false),
            // A binary value between 64,000 and 1,024,000 bytes: the VARBYTE column widens.
            .update(filter: ["_id": .objectId(ids[2])], update: ["$set": .document(["blob": .binary(BSONBinary(subtype: 0, data: [UInt8](repeating: 7, count: 100_000)))])], upsert: false),
            // A string over 65,535 bytes inside a SUPER value: dead-lettered, the batch goes on.
            .update(filter: ["_id": .objectId(ids[3])], update: ["$set": .document(["meta": .document(["long": .string(String(repeating: "x", count: 70_000))])])], upsert: false),
            .delete(filter: ["_id": .objectId(ids[4])]),
        ])
        // A string _id: the key column widens from char(24): the table is rebuilt (Redshift alters no key column).
        _ = try await mongo.bulkWrite(database: database, collection: "apps", [.insert(["_id": "a-string-key", "name": "stringly", "qty": 1])])
        let diffs = try await TableConvergence.wait(timeout: 90, mongo: mongo, database: database, collection: "apps", pg: connection,
                                                    table: "\(table).apps", excluding: [#"{"$oid":"\#(ids[3].description)"}"#])  // key text, once the key column is text
        XCTAssertEqual(diffs, [])
        let letters = try String(contentsOfFile: state + "/deadletter/apps.jsonl", encoding: .utf8)
        XCTAssertTrue(letters.contains(ids[3].description) && letters.contains("65535"), letters)
        let logText = MongoshiftProcess.output(base).stderr
        XCTAssertTrue(logText.contains("rebuilt the target table to widen its key column"), logText.suffix(3000).description)
        let key = try await connection.query("SELECT data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'apps' AND column_name = '_id'",
                                             [table]).rows.first?.first ?? nil
        XCTAssertEqual(key, "character varying")
        stop(process)
        let verify = try MongoshiftProcess.run(["verify", "--config", cfg])
        XCTAssertTrue(verify.stdout.contains("1 differences") || verify.status == 0, verify.stdout)
    }

    /// Issue "A local Redshift…" fix 2: concurrent applies into one schema (two streams, their snapshot pages and
    /// tails at once) queue on the checkpoint LOCK instead of failing with 1023.
    func testConcurrentStreamsIntoOneSchemaDoNotConflict() async throws {
        for name in ["a", "b"] {
            _ = try await mongo.bulkWrite(database: database, collection: name, (1...300).map { .insert(["_id": .int32(Int32($0)), "v": .int32(Int32($0))]) })
        }
        let cfg = try config("""
          - name: a
            from: { collection: a }
            to: { table: \(table).a }
            partitions: 3
          - name: b
            from: { collection: b }
            to: { table: \(table).b }
            partitions: 3
        """, extra: "")
        let (process, base) = try startRun(cfg)
        try await waitFor("both snapshots") { phase("a") == "streaming" && phase("b") == "streaming" }
        for round in 0..<5 {
            for name in ["a", "b"] {
                _ = try await mongo.bulkWrite(database: database, collection: name, (1...300).map {
                    .update(filter: ["_id": .int32(Int32($0))], update: ["$set": .document(["v": .int32(Int32(round))])], upsert: false)
                })
            }
        }
        for name in ["a", "b"] {
            let diffs = try await TableConvergence.wait(timeout: 60, mongo: mongo, database: database, collection: name, pg: connection, table: "\(table).\(name)")
            XCTAssertEqual(diffs, [], name)
        }
        XCTAssertFalse(MongoshiftProcess.output(base).stderr.contains("Serializable isolation violation"), "no serialization conflict")
        stop(process)
    }
}
