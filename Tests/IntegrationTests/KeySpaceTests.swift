import BSON
import Foundation
import MongoClient
import PostgresClient
import TestSupport
import XCTest

/// Keys of every shape are copied whole: mixed `_id` types (MongoDB compares within one type bracket only),
/// 64-bit keys at the edges of their range, composite keys resuming after a damaged page, and soft-delete columns
/// of every type judged by one rule on both sides (issue "Nothing lost, nothing stuck", items 3 and 9).
final class KeySpaceTests: IntegrationTestCase {
    override var namePrefix: String { "keys" }

    func mongoToTableConfig(partitions: Int) throws -> String {
        let path = try writeStreamsConfig("""
          - name: things
            from: { collection: things }
            to: { table: public.\(table) }
            partitions: \(partitions)
        """, defaults: "poll_interval: 200ms, batch_bytes: 64KiB", name: "things.yaml")
        return path
    }

    func tableIDs() async throws -> Set<String> {
        Set(try await connection.query("SELECT _id FROM public.\(table)").rows.compactMap { $0[0] })
    }

    /// Item 3: numbers of four types, strings, ObjectIds, UUID binaries, dates, subdocuments and booleans in one
    /// collection, cut into several partitions: every document reaches the table.
    func testMixedIDTypesAreCopiedWhole() async throws {
        var docs: [Document] = []
        for i in 0..<60 {
            docs.append(["_id": .int32(Int32(i)), "kind": "int32"])
            docs.append(["_id": .int64(10_000_000_000 + Int64(i)), "kind": "int64"])
            docs.append(["_id": .double(0.5 + Double(i)), "kind": "double"])
            docs.append(["_id": .decimal128(Decimal128("\(1000 + i).25")!), "kind": "decimal"])
            docs.append(["_id": .string("key-\(i)"), "kind": "string"])
            docs.append(["_id": .objectId(ObjectId.generate()), "kind": "objectId"])
            docs.append(["_id": .binary(BSONBinary(subtype: 4, data: (0..<16).map { UInt8(($0 * 7 + i) % 256) })), "kind": "uuid"])
            docs.append(["_id": .datetime(1_700_000_000_000 + Int64(i) * 86_400_000), "kind": "date"])
            docs.append(["_id": .document(["region": "eu", "n": .int32(Int32(i))]), "kind": "subdocument"])
        }
        docs.append(["_id": .bool(false), "kind": "bool"])
        docs.append(["_id": .bool(true), "kind": "bool"])
        _ = try await mongo.bulkWrite(database: database, collection: "things", docs.map { .insert($0) })
        let result = try MongoshiftProcess.run(["snapshot", "--config", try mongoToTableConfig(partitions: 8)])
        XCTAssertEqual(result.status, 0, result.stderr)
        let copied = try await connection.query("SELECT kind, count(*) FROM public.\(table) GROUP BY kind ORDER BY kind").rows
            .map { "\($0[0] ?? "?")=\($0[1] ?? "?")" }
        XCTAssertEqual(copied, ["bool=2", "date=60", "decimal=60", "double=60", "int32=60", "int64=60", "objectId=60", "string=60",
                                "subdocument=60", "uuid=60"], "every type bracket copied whole")
        let verify = try MongoshiftProcess.run(["verify", "--config", try mongoToTableConfig(partitions: 8), "--show", "200"])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
    }

    /// `_id`s of different types whose plain texts coincide (5 and "5", an ObjectId and its hex, true and "true",
    /// a date and its text, a subdocument and its JSON, null and "") are different documents: each is its own row
    /// once the key column is text. Their rows merged (one of each pair lost, `verify` flagged it).
    func testIDsOfDifferentTypesWithTheSameTextStayDistinct() async throws {
        let oid = ObjectId.generate()
        let pairs: [(BSON, BSON)] = [
            (.int32(5), "5"), (.int64(10_000_000_000), "10000000000"), (.double(7.5), "7.5"),
            (.decimal128(Decimal128("8.25")!), "8.25"), (.objectId(oid), .string(oid.description)), (.bool(true), "true"),
            (.datetime(1_700_000_000_000), "2023-11-14 22:13:20.000"), (.document(["a": .int32(1)]), #"{"a":1}"#),
            (.null, ""), (.string(#"{"$numberLong":"6"}"#), .int64(6)),
        ]
        let docs: [Document] = pairs.enumerated().flatMap { i, pair in
            [["_id": pair.0, "pair": .int32(Int32(i)), "side": "typed"], ["_id": pair.1, "pair": .int32(Int32(i)), "side": "text"]]
        }
        _ = try await mongo.bulkWrite(database: database, collection: "things", docs.map { .insert($0) })
        let config = try mongoToTableConfig(partitions: 3)
        let snapshot = try MongoshiftProcess.run(["snapshot", "--config", config])
        XCTAssertEqual(snapshot.status, 0, snapshot.stderr)
        let rows = try await connection.query("SELECT count(*), count(DISTINCT _id) FROM public.\(table)").rows[0]
        XCTAssertEqual(rows, ["20", "20"], "every document its own row")
        let verify = try MongoshiftProcess.run(["verify", "--config", config, "--show", "50"])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
        // Changes reach the right row of each pair: the typed one of every pair updated, the text one deleted.
        let (process, _) = try startRun(config)
        try await waitFor("snapshot") { phase("things") == "streaming" }
        _ = try await mongo.bulkWrite(database: database, collection: "things", pairs.flatMap { pair -> [WriteOperation] in
            [.update(filter: ["_id": pair.0], update: ["$set": .document(["side": "typed, updated"])], upsert: false),
             .delete(filter: ["_id": pair.1])]
        })
        try await waitFor("the updates and deletes") {
            try await connection.query("SELECT side, count(*) FROM public.\(table) GROUP BY side").rows.map { $0.compactMap { $0 } } == [["typed, updated", "10"]]
        }
        let after = try MongoshiftProcess.run(["verify", "--config", config, "--show", "50"])
        XCTAssertEqual(after.status, 0, after.stdout + after.stderr)
        stop(process)
    }

    /// A numeric key column becomes text when a string `_id` arrives: the rows already there are converted to the
    /// text the numbers get from then on, so later changes of those documents find their rows (no second row), and
    /// the string "5" does not land on the number 5.
    func testANumericKeyColumnBecomingTextKeepsItsRowsAddressable() async throws {
        _ = try await mongo.bulkWrite(database: database, collection: "things", (1...20).map {
            .insert(["_id": $0 % 2 == 0 ? .int32(Int32($0)) : .int64(Int64($0)), "v": "initial"])
        })
        let config = try mongoToTableConfig(partitions: 2)
        let (process, _) = try startRun(config)
        try await waitFor("snapshot") { phase("things") == "streaming" }
        _ = try await mongo.bulkWrite(database: database, collection: "things", [.insert(["_id": "5", "v": "a string"])])
        try await waitFor("the string row") { try await connection.query("SELECT count(*) FROM public.\(table)").rows[0][0] == "21" }
        _ = try await mongo.bulkWrite(database: database, collection: "things", [
            .update(filter: ["_id": .int64(5)], update: ["$set": .document(["v": "updated"])], upsert: false),
            .update(filter: ["_id": .int32(6)], update: ["$set": .document(["v": "updated"])], upsert: false),
            .delete(filter: ["_id": .int64(7)]),
        ])
        try await waitFor("the changes after the widening") {
            try await connection.query("SELECT count(*) FILTER (WHERE v = 'updated'), count(*) FROM public.\(table)").rows[0] == ["2", "20"]
        }
        let verify = try MongoshiftProcess.run(["verify", "--config", config, "--show", "50"])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
        stop(process)
    }

    /// `verify` on tables with a typed key column (dates, decimals, binaries): the server prints a key otherwise than
    /// it was bound (`…:20` for `…:20.000`), and every row was reported missing and extra — `--repair` then deleted
    /// them all. Keys now match in one form, and repair deletes only the row whose document is gone.
    func testRepairDeletesExtraRowsOfTypedKeyColumns() async throws {
        let kinds: [(String, [BSON], String)] = [
            ("dates", (0..<5).map { .datetime(1_700_000_000_000 + Int64($0) * 1000) }, "'2030-01-01 00:00:00'"),
            ("decimals", (0..<5).map { .decimal128(Decimal128("\($0).50")!) }, "'99.5'"),
            ("uuids", (0..<5).map { i -> BSON in .binary(BSONBinary(subtype: 4, data: [UInt8(i)] + [UInt8](repeating: 7, count: 15))) }, "'\\xffffffffffffffffffffffffffffffff'"),
        ]
        for (kind, ids, extra) in kinds {
            _ = try await mongo.command(["drop": "things"], database: database)
            try await connection.execute("DROP TABLE IF EXISTS public.\(table)")
            try? FileManager.default.removeItem(atPath: state)
            _ = try await mongo.bulkWrite(database: database, collection: "things", ids.map { .insert(["_id": $0, "v": "kept"]) })
            let config = try mongoToTableConfig(partitions: 1)
            let snapshot = try MongoshiftProcess.run(["snapshot", "--config", config])
            XCTAssertEqual(snapshot.status, 0, snapshot.stderr)
            let clean = try MongoshiftProcess.run(["verify", "--config", config])
            XCTAssertEqual(clean.status, 0, "\(kind): \(clean.stdout + clean.stderr)")
            try await connection.execute("INSERT INTO public.\(table) (_id, v) VALUES (\(extra), 'gone')")
            let found = try MongoshiftProcess.run(["verify", "--config", config])
            XCTAssertEqual(found.status, 1, "\(kind): \(found.stdout + found.stderr)")
            let repaired = try MongoshiftProcess.run(["verify", "--config", config, "--repair"])
            let left = try await connection.query("SELECT v, count(*) FROM public.\(table) GROUP BY v").rows
            XCTAssertEqual(left, [["kept", "5"]], "\(kind): \(repaired.stdout + repaired.stderr)")
            let after = try MongoshiftProcess.run(["verify", "--config", config])
            XCTAssertEqual(after.status, 0, "\(kind): \(after.stdout + after.stderr)")
        }
    }

    /// MongoDB takes JavaScript code as an `_id`; no type bracket walks it (comparison ranges over code are not
    /// paged), and such documents were left out of the snapshot without a word. They are counted at planning and
    /// reported (log and dead letter); every other document is copied.
    func testIDsNoBracketCanPageAreReportedNotSilentlySkipped() async throws {
        func code(_ text: String) -> BSON {
            let utf8 = Array(text.utf8) + [0]
            return .opaque(type: 0x0D, bytes: withUnsafeBytes(of: Int32(utf8.count).littleEndian, Array.init) + utf8)
        }
        var docs: [Document] = (0..<20).map { ["_id": .int32(Int32($0)), "kind": "n"] }
        docs.append(["_id": code("function () { return 1 }"), "kind": "code"])
        docs.append(["_id": code("function () { return 2 }"), "kind": "code"])
        _ = try await mongo.bulkWrite(database: database, collection: "things", docs.map { .insert($0) })
        let result = try MongoshiftProcess.run(["snapshot", "--config", try mongoToTableConfig(partitions: 2)])
        XCTAssertEqual(result.status, 0, result.stderr)
        let copied = try await tableIDs()
        XCTAssertEqual(copied.count, 20)
        let deadLetters = (try? String(contentsOfFile: state + "/deadletter/things.jsonl", encoding: .utf8)) ?? ""
        XCTAssertTrue(deadLetters.contains("2 documents have an _id of a type no snapshot range can page"), deadLetters)
        XCTAssertTrue(result.stderr.contains("documents with an _id of a type no snapshot range can page are not copied"), result.stderr)
    }

    /// Item 9: random 64-bit `_id`s including Int64.min and Int64.max, several partitions (the split used to
    /// overflow and trap).
    func testSixtyFourBitMongoIDsSplitWithoutOverflow() async throws {
        var rng = SystemRandomNumberGenerator()
        var ids: Set<Int64> = [.min, .max, 0, -1]
        while ids.count < 500 { ids.insert(Int64.random(in: .min ... .max, using: &rng)) }
        _ = try await mongo.bulkWrite(database: database, collection: "things", ids.map { .insert(["_id": .int64($0), "kind": "n"]) })
        let result = try MongoshiftProcess.run(["snapshot", "--config", try mongoToTableConfig(partitions: 7)])
        XCTAssertEqual(result.status, 0, result.stderr)
        let copied = try await tableIDs()
        XCTAssertEqual(copied, Set(ids.map(String.init)))
    }

    /// Item 9: a source key column holding Int64.min and Int64.max: the snapshot split (`lo - 1`) and the
    /// reconciler's range width (`hi - lo + 1`) used to overflow and trap.
    func testSixtyFourBitSourceKeysSnapshotAndReconcile() async throws {
        try await connection.execute("""
            CREATE TABLE public.\(table) (id bigint PRIMARY KEY, v text, updated_at timestamp NOT NULL DEFAULT now());
            INSERT INTO public.\(table) (id, v) VALUES (-9223372036854775808, 'min'), (9223372036854775807, 'max'), (0, 'zero');
            INSERT INTO public.\(table) (id, v) SELECT g * 36028797018963968, 'g' || g FROM generate_series(-200, 200) g WHERE g <> 0;
            """)
        let config = try writeStreamsConfig("""
          - name: wide
            from: { table: public.\(table) }
            to: { collection: wide }
            key: [id]
            watermark: updated_at
            safety_lag: 1s
            partitions: 6
            reconcile_every: 1s
        """, name: "wide.yaml")
        let (process, _) = try startRun(config)
        try await waitFor("snapshot") { phase("wide") == "streaming" }
        let copied = try await mongo.count(database: database, collection: "wide")
        XCTAssertEqual(copied, 403)
        // Hard deletes at both ends of the key space are found by the reconciler.
        try await connection.execute("DELETE FROM public.\(table) WHERE id IN (-9223372036854775808, 9223372036854775807)")
        try await waitFor("the reconciler to delete both ends") {
            try await mongo.count(database: database, collection: "wide") == 401
        }
        XCTAssertTrue(process.isRunning, "no trap")
        stop(process)
    }

    /// PostgreSQL's own guarantee replaces the snapshot's duplicate and NULL scans only when it covers the key: a
    /// unique index on a key column that may be NULL does not, and its NULL-key rows are still reported.
    func testNullKeysBehindANullableUniqueIndexAreStillReported() async throws {
        try await connection.execute("""
            CREATE TABLE public.\(table) (k integer UNIQUE, v text);
            INSERT INTO public.\(table) VALUES (1, 'a'), (2, 'b'), (NULL, 'no key'), (NULL, 'no key either');
            """)
        let config = try writeStreamsConfig("""
          - name: nullable
            from: { table: public.\(table) }
            to: { collection: nullable }
            key: [k]
        """, name: "nullable.yaml")
        let result = try MongoshiftProcess.run(["snapshot", "--config", config])
        XCTAssertEqual(result.status, 0, result.stderr)
        let copied = try await mongo.count(database: database, collection: "nullable")
        XCTAssertEqual(copied, 2)
        let deadLetters = try String(contentsOfFile: state + "/deadletter/nullable.jsonl", encoding: .utf8)
        XCTAssertTrue(deadLetters.contains("2 source rows have a NULL key"), deadLetters)
    }

    /// A dead letter that cannot be written (here the file's path is a directory; a full or read-only disk alike)
    /// fails the stream with the file named. It was taken for a corrupt spool segment: the snapshot resumed from
    /// the state store at once, forever.
    func testUnwritableDeadLetterFileFailsTheSnapshot() async throws {
        try await connection.execute("""
            CREATE TABLE public.\(table) (k integer UNIQUE, v text);
            INSERT INTO public.\(table) VALUES (1, 'a'), (NULL, 'no key');
            """)
        let config = try writeStreamsConfig("""
          - name: blocked
            from: { table: public.\(table) }
            to: { collection: blocked }
            key: [k]
        """, name: "blocked.yaml")
        try FileManager.default.createDirectory(atPath: state + "/deadletter/blocked.jsonl", withIntermediateDirectories: true)
        let started = Date()
        let result = try MongoshiftProcess.run(["snapshot", "--config", config], timeout: 60)
        XCTAssertEqual(result.status, 4, result.stderr)
        XCTAssertTrue(result.stderr.contains("deadletter/blocked.jsonl"), result.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(started), 30)
    }

    /// The tail, like the snapshot, skips rows with a NULL key and reports them — and a page's worth of them at one
    /// watermark must not stall it: polls used to return only those rows, the cursor could not move past them
    /// (a NULL key is no position) and every later change waited forever, unreported.
    func testNullKeysInTheTailNeitherStallItNorGoUnreported() async throws {
        try await connection.execute("""
            CREATE TABLE public.\(table) (id bigint, v text, updated_at timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'));
            INSERT INTO public.\(table) (id, v) SELECT g, 'initial' FROM generate_series(1, 10) g;
            """)
        let config = try writeStreamsConfig("""
          - name: holes
            from: { table: public.\(table) }
            to: { collection: holes }
            key: [id]
            watermark: updated_at
            safety_lag: 1s
        """, defaults: "poll_interval: 200ms, batch_bytes: 16KiB", name: "holes.yaml")
        let snapshot = try MongoshiftProcess.run(["snapshot", "--config", config])
        XCTAssertEqual(snapshot.status, 0, snapshot.stderr)
        // A failed load: 5,000 rows without a key at one instant (pages here are at most ~1,000 rows), then a good row later.
        try await connection.execute("INSERT INTO public.\(table) (v) SELECT 'no key ' || g FROM generate_series(1, 5000) g")
        try await Task.sleep(for: .milliseconds(50))
        try await connection.execute("INSERT INTO public.\(table) (id, v) VALUES (1000, 'after the hole')")
        let (process, base) = try startRun(config)
        try await waitFor("the row after the NULL keys", timeout: 60) {
            try await mongo.count(database: database, collection: "holes", filter: ["_id": .int64(1000)]) == 1
        }
        let copied = try await mongo.count(database: database, collection: "holes")
        XCTAssertEqual(copied, 11)
        try await waitFor("the NULL keys reported") {
            let letters = (try? String(contentsOfFile: state + "/deadletter/holes.jsonl", encoding: .utf8)) ?? ""
            return letters.contains("5000 source rows have a NULL key (id) and are not tailed")
        }
        let log = MongoshiftProcess.output(base).stderr
        XCTAssertTrue(log.contains("rows with a NULL key cannot be tailed"), log.suffix(2000).description)
        stop(process)
    }

    /// Duplicate keys are reported by the keyset pages that read them, with no scan of the table at planning — also
    /// those a page boundary cuts off (`key > last` skipped them unseen; each full page now reads its last key's rows
    /// back): every extra row reported once, every key copied once.
    func testDuplicatesAcrossPageBoundariesAreEachReportedOnce() async throws {
        try await connection.execute("""
            -- Each key three times: pages of 100 rows cut through them.
            CREATE TABLE public.\(table) (id bigint, v text, updated_at timestamptz NOT NULL DEFAULT now());
            INSERT INTO public.\(table) (id, v) SELECT g / 3, repeat('x', 2000) || g FROM generate_series(0, 2999) g;
            -- And one key over more than two pages.
            INSERT INTO public.\(table) (id, v) SELECT 5000, repeat('y', 2000) || g FROM generate_series(1, 250) g;
            """)
        let config = try writeStreamsConfig("""
          - name: twins
            from: { table: public.\(table) }
            to: { collection: twins }
            key: [id]
            watermark: updated_at
            partitions: 2
        """, defaults: "batch_bytes: 16KiB", name: "twins.yaml")
        let staged = try MongoshiftProcess.run(["snapshot", "--spool-only", "--config", config])
        XCTAssertEqual(staged.status, 0, staged.stderr)
        let segments = try FileManager.default.contentsOfDirectory(atPath: state + "/spool/twins").filter { $0.hasSuffix(".seg") }.count
        XCTAssertGreaterThan(segments, 20, "the pages were cut many times")
        let result = try MongoshiftProcess.run(["snapshot", "--config", config])
        XCTAssertEqual(result.status, 0, result.stderr)
        let copied = try await mongo.count(database: database, collection: "twins")
        XCTAssertEqual(copied, 1001, "every key once")
        let deadLetters = try String(contentsOfFile: state + "/deadletter/twins.jsonl", encoding: .utf8)
            .split(separator: "\n").filter { $0.contains("duplicate key in source") }
        XCTAssertEqual(deadLetters.count, 2000 + 249, "each extra row reported once, wherever the pages were cut")
    }

    /// Item 9: a composite key whose first page was damaged in the spool: the partition used to resume from a
    /// one-column key and index past the end of it.
    func testCompositeKeyResumesAfterADamagedFirstPage() async throws {
        try await connection.execute("""
            CREATE TABLE public.\(table) (region text, n integer, v text, PRIMARY KEY (region, n));
            INSERT INTO public.\(table) SELECT r, g, repeat('x', 200) FROM unnest(ARRAY['eu', 'us', 'ap']) r, generate_series(1, 400) g;
            """)
        let config = try writeStreamsConfig("""
          - name: pairs
            from: { table: public.\(table) }
            to: { collection: pairs }
            partitions: 3
        """, defaults: "batch_bytes: 64KiB", name: "pairs.yaml")
        let staged = try MongoshiftProcess.run(["snapshot", "--spool-only", "--config", config])
        XCTAssertEqual(staged.status, 0, staged.stderr)
        // Every page, so every partition's first page too: all but the first start at a one-column bound.
        let dir = state + "/spool/pairs"
        for name in try FileManager.default.contentsOfDirectory(atPath: dir).filter({ $0.hasSuffix(".seg") }) {
            var bytes = [UInt8](FileManager.default.contents(atPath: dir + "/" + name)!)
            bytes[bytes.count / 2] ^= 0x40
            try Data(bytes).write(to: URL(fileURLWithPath: dir + "/" + name))
        }
        let applied = try MongoshiftProcess.run(["snapshot", "--config", config])
        XCTAssertEqual(applied.status, 0, applied.stderr)
        XCTAssertTrue(applied.stderr.contains("corrupt spool segment"), applied.stderr)
        let copied = try await mongo.count(database: database, collection: "pairs")
        XCTAssertEqual(copied, 1200)
    }

    /// Item 9: soft-delete columns of other types than boolean — smallint (the reconciler's `::boolean` cast used
    /// to fail) and text ('on' was deleted for SQL but live for the encoder) — follow one rule on both sides.
    func testSoftDeleteColumnsOfEveryTypeFollowOneRule() async throws {
        try await connection.execute("""
            CREATE TABLE public.\(table) (id bigint PRIMARY KEY, flag smallint, state text, deleted_at timestamptz, payload jsonb,
                                          updated_at timestamp NOT NULL DEFAULT now());
            INSERT INTO public.\(table) (id, flag, state) SELECT g, 0, 'live' FROM generate_series(1, 100) g;
            """)
        func config(_ name: String, column: String) throws -> String {
            let yaml = """
            state: \(state)
            redshift: { url: "\(pg)", dialect: postgres }
            mongo: { url: "\(mongoURL)", database: \(database) }
            defaults: { poll_interval: 200ms }
            streams:
              - name: \(name)
                from: { table: public.\(table) }
                to: { collection: \(name) }
                key: [id]
                watermark: updated_at
                safety_lag: 1s
                deletes: { column: \(column) }
                reconcile_every: 1s
            """
            let path = directory + "/\(name).yaml"
            try yaml.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        // A `deleted_at` timestamp: any date is deleted (it was silently never deleted, on either side).
        for (name, column, deleted) in [("by_flag", "flag", "flag = 1"), ("by_state", "state", "state = ' On '"),
                                        ("by_time", "deleted_at", "deleted_at = now()")] {
            let (process, base) = try startRun(try config(name, column: column))
            try await waitFor("\(name) snapshot") { phase(name) == "streaming" }
            try await connection.execute("UPDATE public.\(table) SET \(deleted), updated_at = now() WHERE id <= 10")
            try await waitFor("\(name): the 10 soft-deleted rows leave Mongo") {
                try await mongo.count(database: database, collection: name) == 90
            }
            // Several reconcile cycles later nothing flaps back or disappears, and no reconcile failed.
            try await Task.sleep(for: .seconds(3))
            let count = try await mongo.count(database: database, collection: name)
            XCTAssertEqual(count, 90, name)
            XCTAssertEqual(phase(name), "streaming", "\(name): the reconciler never fails the stream")
            XCTAssertFalse(MongoshiftProcess.output(base).stderr.contains("reconcile failed"), MongoshiftProcess.output(base).stderr)
            stop(process)
            try await connection.execute("UPDATE public.\(table) SET flag = 0, state = 'live', deleted_at = NULL, updated_at = now()")
        }
        // A column that cannot say "deleted" is refused up front, naming it.
        let refused = try MongoshiftProcess.run(["snapshot", "--config", try config("by_json", column: "payload")])
        XCTAssertEqual(refused.status, 2, refused.stdout + refused.stderr)
        XCTAssertTrue(refused.stderr.contains("soft-delete column \"payload\" must be"), refused.stderr)
    }
}
