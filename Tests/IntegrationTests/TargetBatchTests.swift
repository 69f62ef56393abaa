import BSON
import StateStore
import Changes
import Foundation
import Logging
import PostgresClient
import Replication
import Spool
import TestSupport
import XCTest

/// Batches into a PostgreSQL target: a batch whose schema change failed on the target is retried with its schema
/// change (the applier adopts a batch's learned columns only once the batch is in the target), rows written
/// before a mid-batch change are rewritten to fit it, and upserts replace whole rows with or without a key index.
final class TargetBatchTests: XCTestCase {
    /// More mid-batch schema changes than the applier restarts for (new columns late in the batch, a column
    /// widened from integer to text to nested): every row lands with every value.
    func testSchemaChangesMidBatchKeepEveryRowsValues() async throws {
        let (fixture, connection, schema) = try await ApplierFixture.onTestServer("midbatch")
        defer { fixture.remove() }
        let (applier, segment) = (fixture.applier, { (seq: Int64) in ApplierFixture.segment(seq) })
        var changes: [Change] = []
        for i in 0..<40 {
            var doc: Document = ["_id": .int32(Int32(i)), "n": .int32(Int32(i))]
            if i >= 5 { doc.append("f\(i / 5)", .string("v\(i)")) }       // a new column every 5 documents
            if i == 12 { doc.append("w", .int32(7)) }
            if i == 20 { doc.append("w", .string("seven")) }
            if i == 33 { doc.append("w", .document(["x": 1])) }
            changes.append(Change(operation: .upsert, key: .int32(Int32(i)), document: doc))
        }
        changes.append(Change(operation: .delete, key: .int32(3)))
        let outcome = try await applier.apply(changes, segment: segment(1))
        XCTAssertEqual(outcome.applied, 40)
        let rows = try await connection.query("SELECT _id, n, f1, f7, w::text FROM \(schema).apps ORDER BY _id").rows
        XCTAssertEqual(rows.count, 39, "the delete of 3 applied")
        XCTAssertEqual(rows.map { $0[1] }, rows.map { $0[0] }, "n kept on every row")
        XCTAssertEqual(rows.first { $0[0] == "5" }?[2], "v5")
        XCTAssertEqual(rows.first { $0[0] == "39" }?[3], "v39")
        XCTAssertEqual(rows.first { $0[0] == "12" }?[4], "7")
        XCTAssertEqual(rows.first { $0[0] == "20" }?[4], "\"seven\"")
        XCTAssertEqual(rows.first { $0[0] == "33" }?[4], "{\"x\": 1}")
        XCTAssertEqual(rows.filter { $0[4] != nil }.count, 3)
        let columns = await applier.schema.columns.map(\.name)
        XCTAssertEqual(columns, ["_id", "n", "f1", "f2", "w", "f3", "f4", "f5", "f6", "f7"], "in the order fields were first seen")
        _ = try? await connection.execute("DROP SCHEMA \(schema) CASCADE")
    }

    /// A delete of an `_id` the key column cannot hold (a string or a fractional number against an integer key:
    /// a document the snapshot never copied) matches no row: it is dropped, not written as a key the load refuses —
    /// which failed the whole batch, again on every retry.
    func testDeletesOfKeysTheKeyColumnCannotHoldDoNotFailTheBatch() async throws {
        let (fixture, connection, schema) = try await ApplierFixture.onTestServer("deltype")
        defer { fixture.remove() }
        let applier = fixture.applier
        _ = try await applier.apply([Change(operation: .upsert, key: 1, document: ["_id": 1, "a": 1]),
                                     Change(operation: .upsert, key: 2, document: ["_id": 2, "a": 2])], segment: ApplierFixture.segment(1))
        _ = try await applier.apply([Change(operation: .delete, key: "never-copied"), Change(operation: .delete, key: .double(2.5)),
                                     Change(operation: .delete, key: 2)], segment: ApplierFixture.segment(2))
        let rows = try await connection.query("SELECT _id FROM \(schema).apps ORDER BY _id").rows
        XCTAssertEqual(rows, [["1"]], "the delete the column can hold applied")
        _ = try? await connection.execute("DROP SCHEMA \(schema) CASCADE")
    }

    /// MongoDB holds one `_id` per numeric value: changes keyed 5 (int32) and 5 (int64) in one batch — a document
    /// deleted and inserted again with the other type, an update whose lookup found the new one — are one row.
    /// Both upserts were staged and inserted: a duplicate key, and the batch failed on every retry.
    func testNumericallyEqualKeysOfDifferentTypesAreOneRowInABatch() async throws {
        let (fixture, connection, schema) = try await ApplierFixture.onTestServer("numkeys")
        defer { fixture.remove() }
        let applier = fixture.applier
        _ = try await applier.apply([Change(operation: .upsert, key: .int32(5), document: ["_id": .int64(5), "v": "first"]),
                                     Change(operation: .upsert, key: .int64(5), document: ["_id": .int64(5), "v": "second"]),
                                     Change(operation: .upsert, key: .int32(6), document: ["_id": .int32(6), "v": "other"])],
                                    segment: ApplierFixture.segment(1))
        let rows = try await connection.query("SELECT _id, v FROM \(schema).apps ORDER BY _id").rows
        XCTAssertEqual(rows, [["5", "second"], ["6", "other"]])
        _ = try? await connection.execute("DROP SCHEMA \(schema) CASCADE")
    }

    /// Upserts replace whole rows and deletes remove them, whether the target has its `_id` primary key (INSERT …
    /// ON CONFLICT) or was created by hand without one, or with one ON CONFLICT cannot use (DEFERRABLE): delete and
    /// re-insert.
    func testUpsertsReplaceWholeRowsWithAndWithoutAKeyIndex() async throws {
        let pg = try TestServers.requirePostgres()
        let connection = try await PostgresConnection.connect(pg)
        for (label, key) in [("upsertpk", nil), ("upsertnopk", ""), ("upsertdefer", "PRIMARY KEY DEFERRABLE INITIALLY DEFERRED")] {
            let schema = TestServers.uniqueName(label)
            if let key {
                try await connection.execute("CREATE SCHEMA \(schema)")
                try await connection.execute("CREATE TABLE \(schema).apps (_id integer NOT NULL \(key), a integer, b varchar(16), _mongoshift_gen bigint)")
            }
            let fixture = try await ApplierFixture(postgres: pg, schema: schema)
            defer { fixture.remove() }
            let (applier, segment) = (fixture.applier, { (seq: Int64) in ApplierFixture.segment(seq) })
            _ = try await applier.apply([Change(operation: .upsert, key: 1, document: ["_id": 1, "a": 1, "b": "x"]),
                                         Change(operation: .upsert, key: 2, document: ["_id": 2, "a": 2, "b": "y"])], segment: segment(1))
            _ = try await applier.apply([Change(operation: .upsert, key: 1, document: ["_id": 1, "a": 10]),
                                         Change(operation: .delete, key: 2),
                                         Change(operation: .upsert, key: 3, document: ["_id": 3, "b": "z"])], segment: segment(2))
            let rows = try await connection.query("SELECT _id, a, b FROM \(schema).apps ORDER BY _id").rows
            XCTAssertEqual(rows, [["1", "10", nil], ["3", nil, "z"]], label)
            _ = try? await connection.execute("DROP SCHEMA \(schema) CASCADE")
        }
    }

    /// Snapshot pages go in by plain INSERT while their keys are new; a page meeting a key the target holds (rows
    /// the tail wrote, a re-snapshot) replaces it by upsert instead of failing, and so do the pages after it.
    func testSnapshotPagesMeetingKeysAlreadyThereReplaceThem() async throws {
        let (fixture, connection, schema) = try await ApplierFixture.onTestServer("snapins")
        defer { fixture.remove() }
        let applier = fixture.applier
        _ = try await applier.apply([Change(operation: .upsert, key: 1, document: ["_id": 1, "a": 1]),
                                     Change(operation: .upsert, key: 2, document: ["_id": 2, "a": 2])],
                                    segment: try await fixture.snapshotPage(partition: 0))
        _ = try await applier.apply([Change(operation: .upsert, key: 3, document: ["_id": 3, "a": 30])], segment: ApplierFixture.segment(2))
        let met = try await applier.apply([Change(operation: .upsert, key: 3, document: ["_id": 3, "a": 3]),
                                           Change(operation: .upsert, key: 4, document: ["_id": 4, "a": 4])],
                                          segment: try await fixture.snapshotPage(partition: 1))
        XCTAssertEqual(met.applied, 2)
        _ = try await applier.apply([Change(operation: .upsert, key: 2, document: ["_id": 2, "a": 20])],
                                    segment: try await fixture.snapshotPage(partition: 0))
        let rows = try await connection.query("SELECT _id, a FROM \(schema).apps ORDER BY _id").rows
        XCTAssertEqual(rows, [["1", "1"], ["2", "20"], ["3", "3"], ["4", "4"]])
        _ = try? await connection.execute("DROP SCHEMA \(schema) CASCADE")
    }

    /// A helper applying a page after the owner reset the stream (its snapshot outlived the oplog, the collection
    /// was replaced) wrote rows older than the new snapshot's start, stamped with the new generation: the new
    /// snapshot's sweep kept them, and a document deleted in between stayed in the table for good.
    func testASnapshotPageOfAForgottenPlanIsNotApplied() async throws {
        let (fixture, connection, schema) = try await ApplierFixture.onTestServer("snapforgot")
        defer { fixture.remove() }
        let applier = fixture.applier
        _ = try await applier.apply([Change(operation: .upsert, key: 1, document: ["_id": 1, "a": 1])],
                                    segment: try await fixture.snapshotPage(partition: 0))
        let late = try await fixture.snapshotPage(partition: 1)
        try await fixture.state.resetStream("apps", lease: nil)
        let outcome = try await applier.apply([Change(operation: .upsert, key: 2, document: ["_id": 2, "a": 2])], segment: late)
        XCTAssertEqual(outcome.applied, 0)
        let rows = try await connection.query("SELECT _id FROM \(schema).apps ORDER BY _id").rows
        XCTAssertEqual(rows, [["1"]], "the forgotten page's row is not written")
        _ = try? await connection.execute("DROP SCHEMA \(schema) CASCADE")
    }

    /// The race the generation fence closes: a helper's page of the old snapshot passed its check (still recorded)
    /// and was held up (here by the test holding its partition's checkpoint row) while the owner reset the stream and
    /// applied the new snapshot's page for the same key. Before, the stale page then committed over it, under the
    /// old generation, and the new snapshot's sweep deleted the row. Now it is refused and skipped, not an error.
    func testAnOldSnapshotsPageHeldUpPastAResetIsSkipped() async throws {
        let (fixture, connection, schema) = try await ApplierFixture.onTestServer("snapgenrace")
        defer { fixture.remove() }
        _ = try await fixture.applier.apply([Change(operation: .upsert, key: 1, document: ["_id": 1, "a": 1])],
                                            segment: try await fixture.snapshotPage(partition: 0))
        let stale = try await fixture.snapshotPage(partition: 1)
        let helper = try await fixture.anotherWorker()
        let key = try await connection.query("SELECT stream FROM \(schema).mongoshift_checkpoints WHERE stream LIKE 'apps@%' AND stream NOT LIKE '%#%'").rows[0][0]!
        try await connection.query("INSERT INTO \(schema).mongoshift_checkpoints (stream, seq) VALUES ($1, 0)", [key + "#p1"])
        // The partition's row held before the helper starts, so it waits there whatever the timing.
        try await connection.execute("BEGIN")
        _ = try await connection.query("SELECT seq FROM \(schema).mongoshift_checkpoints WHERE stream = $1 FOR UPDATE", [key + "#p1"])
        async let late = helper.apply([Change(operation: .upsert, key: 1, document: ["_id": 1, "a": 5])], segment: stale)
        let generation: Int64
        do {
            try await Self.waitForALockWait(schema: schema)
            generation = try await fixture.replan()
            _ = try await fixture.applier.apply([Change(operation: .upsert, key: 1, document: ["_id": 1, "a": 10])],
                                                segment: try await fixture.snapshotPage(partition: 0))
            try await connection.execute("COMMIT")
        } catch {
            _ = try? await connection.execute("ROLLBACK")
            _ = try? await late
            throw error
        }
        let outcome = try await late
        XCTAssertEqual(outcome.applied, 0, "the old snapshot's page is skipped")
        try await fixture.applier.sweep(olderThan: generation)
        let rows = try await connection.query("SELECT _id, a, _mongoshift_gen FROM \(schema).apps ORDER BY _id").rows
        XCTAssertEqual(rows, [["1", "10", "\(generation)"]], "the new snapshot's row stays")
        _ = try? await connection.execute("DROP SCHEMA \(schema) CASCADE")
    }

    /// The fence's lock: a new snapshot's first page waits for the old snapshot's pages still in their transactions
    /// (here the test's own, holding the fence as a page's transaction does), and what they wrote is overwritten.
    func testANewSnapshotsPageWaitsForTheOldSnapshotsPagesInFlight() async throws {
        let (fixture, connection, schema) = try await ApplierFixture.onTestServer("snapgenwait")
        defer { fixture.remove() }
        _ = try await fixture.applier.apply([Change(operation: .upsert, key: 1, document: ["_id": 1, "a": 1])],
                                            segment: try await fixture.snapshotPage(partition: 0))
        let generation = try await fixture.replan()
        let page = try await fixture.snapshotPage(partition: 0)
        // The fence held shared before the new page starts, as an older page's transaction holds it.
        try await connection.execute("BEGIN")
        let fence = try await connection.query("SELECT seq FROM \(schema).mongoshift_checkpoints WHERE stream LIKE 'apps@%#gen' FOR SHARE").rows
        XCTAssertEqual(fence, [["1"]], "the first snapshot's pages raised the fence to their generation")
        let applier = fixture.applier
        async let newer = applier.apply([Change(operation: .upsert, key: 1, document: ["_id": 1, "a": 10])], segment: page)
        do {
            try await Self.waitForALockWait(schema: schema)
            let during = try await connection.query("SELECT a FROM \(schema).apps WHERE _id = 1").rows
            XCTAssertEqual(during, [["1"]], "the newer generation's page waits for the older one in flight")
            // The older page's write, committed while the newer page waits.
            try await connection.execute("UPDATE \(schema).apps SET a = 5, _mongoshift_gen = 1 WHERE _id = 1")
            try await connection.execute("COMMIT")
        } catch {
            _ = try? await connection.execute("ROLLBACK")
            _ = try? await newer
            throw error
        }
        _ = try await newer
        try await fixture.applier.sweep(olderThan: generation)
        let rows = try await connection.query("SELECT _id, a, _mongoshift_gen FROM \(schema).apps ORDER BY _id").rows
        XCTAssertEqual(rows, [["1", "10", "\(generation)"]], "the newer snapshot's row is what stays")
        _ = try? await connection.execute("DROP SCHEMA \(schema) CASCADE")
    }

    /// An applier's PostgreSQL sessions end a transaction left idle (a frozen worker), so the locks it holds — the
    /// generation fence among them — do not stall the other workers; every new session is set so, reconnects too.
    func testApplierSessionsEndTransactionsLeftIdle() async throws {
        let source = PostgresSource(url: try TestServers.requirePostgres(), sessionSettings: RedshiftApplier.postgresSessionSettings)
        let logger = Logger(label: "test")
        for _ in 0..<2 {
            let values = try await source.run(RetryPolicy(maxAttempts: 1), logger: logger) { c in
                try await c.query("SELECT current_setting('idle_in_transaction_session_timeout'), current_setting('tcp_keepalives_count')").rows
            }
            XCTAssertEqual(values, [["1min", "6"]])
            await source.invalidate()
        }
    }

    /// Until a session is waiting for a lock on the schema's checkpoint table (10 s at most).
    static func waitForALockWait(schema: String) async throws {
        let watcher = try await PostgresConnection.connect(try TestServers.requirePostgres())
        for _ in 0..<200 {
            let waiting = try await watcher.query("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1",
                                                  ["%" + schema + "%mongoshift_checkpoints%"]).rows[0][0]
            if waiting != "0" { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        XCTFail("no session waited for the checkpoint table's lock")
    }

    /// A page recorded under a generation older than the one the target's fence holds, and still recorded (a state
    /// store older than the target: restored from a backup): refused with a reason, the newer rows left as they are.
    func testASnapshotPageOlderThanTheTargetsGenerationIsRefused() async throws {
        let (fixture, connection, schema) = try await ApplierFixture.onTestServer("snapgenold")
        defer { fixture.remove() }
        _ = try await fixture.applier.apply([Change(operation: .upsert, key: 1, document: ["_id": 1, "a": 1])],
                                            segment: try await fixture.snapshotPage(partition: 0))
        let late = try await fixture.snapshotPage(partition: 1)
        // What a newer state of this instance wrote before this one was restored.
        try await connection.execute("UPDATE \(schema).mongoshift_checkpoints SET seq = 2 WHERE stream LIKE 'apps@%#gen'")
        do {
            _ = try await fixture.applier.apply([Change(operation: .upsert, key: 1, document: ["_id": 1, "a": 2])], segment: late)
            XCTFail("a page older than the target's generation was applied")
        } catch let error as ReplicationError {
            XCTAssertEqual(error.code, .configuration)
            XCTAssertTrue(error.message.contains("generation 2"), error.message)
        }
        let rows = try await connection.query("SELECT _id, a FROM \(schema).apps ORDER BY _id").rows
        XCTAssertEqual(rows, [["1", "1"]])
        // The fence outlives the rows: a snapshot planned afresh numbers itself above it.
        try await connection.execute("DELETE FROM \(schema).apps")
        let highest = try await fixture.applier.highestGeneration()
        XCTAssertEqual(highest, 2)
        _ = try? await connection.execute("DROP SCHEMA \(schema) CASCADE")
    }

    /// A snapshot page copied straight into the target relies on the `_id` index to refuse a key already there:
    /// with the index dropped while running, the page is loaded by delete + insert instead — never a second row.
    func testSnapshotPagesAfterTheKeyIndexWasDroppedDoNotDuplicateKeys() async throws {
        let (fixture, connection, schema) = try await ApplierFixture.onTestServer("snapdrop")
        defer { fixture.remove() }
        let applier = fixture.applier
        _ = try await applier.apply([Change(operation: .upsert, key: 1, document: ["_id": 1, "a": 1])],
                                    segment: try await fixture.snapshotPage(partition: 0))
        try await connection.execute("ALTER TABLE \(schema).apps DROP CONSTRAINT apps_pkey")
        _ = try await applier.apply([Change(operation: .upsert, key: 1, document: ["_id": 1, "a": 10]),
                                     Change(operation: .upsert, key: 2, document: ["_id": 2, "a": 2])],
                                    segment: try await fixture.snapshotPage(partition: 1))
        let rows = try await connection.query("SELECT _id, a FROM \(schema).apps ORDER BY _id").rows
        XCTAssertEqual(rows, [["1", "10"], ["2", "2"]], "one row per key")
        _ = try? await connection.execute("DROP SCHEMA \(schema) CASCADE")
    }

    /// The key index dropped while the stream runs (the applier had chosen ON CONFLICT): the batch is loaded the
    /// other way, in the same attempt — the stream does not stop.
    func testADroppedKeyIndexFallsBackToDeleteAndInsert() async throws {
        let (fixture, connection, schema) = try await ApplierFixture.onTestServer("dropkey")
        defer { fixture.remove() }
        let applier = fixture.applier
        _ = try await applier.apply([Change(operation: .upsert, key: 1, document: ["_id": 1, "a": 1])], segment: ApplierFixture.segment(1))
        try await connection.execute("ALTER TABLE \(schema).apps DROP CONSTRAINT apps_pkey")
        let outcome = try await applier.apply([Change(operation: .upsert, key: 1, document: ["_id": 1, "a": 2]),
                                               Change(operation: .upsert, key: 2, document: ["_id": 2, "a": 3])], segment: ApplierFixture.segment(2))
        XCTAssertEqual(outcome.applied, 2)
        let rows = try await connection.query("SELECT _id, a FROM \(schema).apps ORDER BY _id").rows
        XCTAssertEqual(rows, [["1", "2"], ["2", "3"]])
        _ = try? await connection.execute("DROP SCHEMA \(schema) CASCADE")
    }

    func testFailedColumnAddIsSentAgainOnRetry() async throws {
        let (fixture, connection, schema) = try await ApplierFixture.onTestServer("ddlretry")
        defer { fixture.remove() }
        let (applier, segment) = (fixture.applier, { (seq: Int64) in ApplierFixture.segment(seq) })
        let first = try await applier.apply([Change(operation: .upsert, key: 1, document: ["_id": 1, "n": 1])], segment: segment(1))
        XCTAssertEqual(first.applied, 1)

        // The target refuses this table's next ALTER TABLE once (an event trigger standing for a failed DDL statement).
        let trigger = "refuse_\(schema)"
        try await connection.execute("CREATE TABLE \(schema).refuse_ddl (x int)")
        try await connection.execute("INSERT INTO \(schema).refuse_ddl VALUES (1)")
        try await connection.execute("""
            CREATE FUNCTION \(schema).refuse_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF current_query() LIKE '%\(schema)%apps%' AND EXISTS (SELECT 1 FROM \(schema).refuse_ddl) THEN
                DELETE FROM \(schema).refuse_ddl;
                RAISE EXCEPTION 'refused once';
              END IF;
            END $$
            """)
        try await connection.execute("CREATE EVENT TRIGGER \(trigger) ON ddl_command_start WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION \(schema).refuse_ddl()")
        defer { Task { _ = try? await connection.execute("DROP EVENT TRIGGER IF EXISTS \(trigger)") } }

        let widened = [Change(operation: .upsert, key: 2, document: ["_id": 2, "n": 2, "added": "yes"])]
        do {
            _ = try await applier.apply(widened, segment: segment(2))
            XCTFail("the refused ALTER TABLE should have failed the batch")
        } catch {}
        // (The trigger's DELETE was rolled back with its statement: let the retry through.)
        try await connection.execute("DELETE FROM \(schema).refuse_ddl")
        let retried = try await applier.apply(widened, segment: segment(2))
        XCTAssertEqual(retried.applied, 1)
        let added = try await connection.query("SELECT added FROM \(schema).apps WHERE _id = 2").rows.first?.first ?? nil
        XCTAssertEqual(added, "yes")
        try await connection.execute("DROP EVENT TRIGGER IF EXISTS \(trigger)")
        _ = try? await connection.execute("DROP SCHEMA \(schema) CASCADE")
    }
}
