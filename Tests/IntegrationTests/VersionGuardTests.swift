import BSON
import Changes
import MongoClient
import PostgresClient
@testable import Replication
import StateStore
import Logging
import Foundation
import Spool
import TestSupport
import XCTest

/// Replaying old changes (an old spool segment, a re-read page, a stalled former lease holder) can never regress a
/// document or undo a delete, and versions of every watermark type always compare.
final class VersionGuardTests: IntegrationTestCase {
    override var namePrefix: String { "guard" }

    func change(_ id: Int, _ version: Int64, _ note: String) -> Change {
        Change(operation: .upsert, key: .int32(Int32(id)),
               document: ["_id": .int32(Int32(id)), "note": .string(note), "_mongoshift": .document(["v": .int64(version)])],
               version: .int64(version))
    }

    func notes(_ applier: MongoApplier) async throws -> [BSON?] {
        try await mongo.findAll(database: applier.database, collection: "docs", sort: ["_id": 1]).map { $0["note"] }
    }

    func testOldSegmentReplayCannotOverwriteNewerDocument() async throws {
        let applier = MongoApplier(client: mongo, database: database, collection: "docs")
        // Newer state first, e.g. applied from the tail.
        let first = try await applier.apply([change(1, 200, "new"), change(2, 200, "new")], mode: .guarded)
        XCTAssertEqual(first.applied, 2)
        // An old segment replayed, in both apply modes.
        let replay = try await applier.apply([change(1, 100, "old")], mode: .guarded)
        XCTAssertEqual(replay.stale, 1)
        XCTAssertEqual(replay.applied, 0)
        let snapshotReplay = try await applier.apply([change(2, 100, "old")], mode: .insertFirst)
        XCTAssertEqual(snapshotReplay.stale, 1)
        // An old delete cannot remove the newer document either.
        _ = try await applier.apply([Change(operation: .delete, key: .int32(1), version: .int64(150))], mode: .guarded)
        let current1 = try await notes(applier)
        XCTAssertEqual(current1, [.string("new"), .string("new")])
        // Equal or newer versions do apply (idempotent replays of the same change included).
        let same = try await applier.apply([change(1, 200, "new"), change(2, 300, "newest")], mode: .guarded)
        XCTAssertEqual(same.applied, 2)
        let current2 = try await notes(applier)
        XCTAssertEqual(current2, [.string("new"), .string("newest")])
    }

    /// Several workers write one collection (the owner, helpers copying partitions, a former owner): whether any
    /// tombstones exist cannot be learnt once. A helper's applier that had seen none skipped the lookup, and its
    /// late page brought back a document another worker's applier had deleted at a newer version.
    func testAnotherWorkersTombstoneStopsALatePage() async throws {
        let helper = MongoApplier(client: mongo, database: database, collection: "docs")
        let owner = MongoApplier(client: mongo, database: database, collection: "docs")
        _ = try await helper.apply([change(1, 10, "page")], mode: .insertFirst)
        _ = try await owner.apply([Change(operation: .delete, key: .int32(2), version: .int64(20))], mode: .guarded)
        let late = try await helper.apply([change(2, 10, "late page")], mode: .insertFirst)
        XCTAssertEqual(late.stale, 1, "the newer delete wins")
        let current = try await notes(helper)
        XCTAssertEqual(current, [.string("page")])
    }

    /// A helper's snapshot page of a plan a reset forgot (or of a partition another worker took over and copied
    /// again) was applied all the same: after `reset --to snapshot` lowered every version, its older row replaced
    /// the document and the new snapshot's page then met it as newer. Pages apply only while still recorded.
    func testASnapshotPageOfAForgottenPlanIsNotApplied() async throws {
        let directory = try TestServers.temporaryDirectory("guard-forgotten")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var config = ReplicationConfig()
        config.stateDirectory = directory
        let stream = StreamConfig(name: "docs", direction: .redshiftToMongo, table: TableName(schema: "public", name: "docs"),
                                  collection: "docs", defaults: config.defaults)
        config.streams = [stream]
        let state = try StateStore(directory: directory)
        _ = try await state.ensureStream("docs", direction: "redshift_to_mongo")
        try await state.beginSnapshot("docs", snapshotStart: .snapshotKey(.columns(["start"])), tailSeed: nil,
                                      partitions: [PartitionState(index: 0, lower: nil, upper: nil)], lease: nil)
        _ = try await state.claimPartition("docs", duration: .seconds(3600))
        var last: StreamPosition?
        func page() async throws -> SegmentRecord {
            let seq = try await state.allocateSequence("docs")
            let page = SegmentRecord(stream: "docs", seq: seq, kind: .snapshot, partition: 0, records: 1, bytes: 0,
                                     firstPosition: last, lastPosition: .snapshotKey(.columns(["k\(seq)"])))
            try await state.recordSnapshotPage(page)
            last = page.lastPosition
            return page
        }
        let context = try StreamContext(config: config, stream: stream, state: state, logger: Logger(label: "test"), progress: nil)
        let target = MongoTarget(applier: MongoApplier(client: mongo, database: database, collection: "docs"), context: context)
        let applied = try await target.apply([change(1, 10, "page")], segment: try await page())
        XCTAssertEqual(applied.applied, 1)
        let late = try await page()
        try await state.resetStream("docs", lease: nil)
        let skipped = try await target.apply([change(2, 10, "late page")], segment: late)
        XCTAssertEqual(skipped.applied, 0)
        let current = try await notes(target.applier)
        XCTAssertEqual(current, [.string("page")], "the forgotten page's row is not written")
    }

    /// A duplicate on another unique index of the target (the user's `{note: 1}`) is no version conflict: it used
    /// to be counted as "stale" and the change dropped without a word. A change that collided only because the
    /// value was still held by a document the same batch moves is written once that one moved; a change that
    /// still collides is dead-lettered naming the index.
    func testADuplicateOnAnotherUniqueIndexIsRetriedThenDeadLetteredNeverCountedStale() async throws {
        let applier = MongoApplier(client: mongo, database: database, collection: "docs")
        let index: Document = ["key": .document(["note": 1]), "name": "note_1", "unique": true]
        _ = try await mongo.command(["createIndexes": "docs", "indexes": .array([.document(index)])], database: database)
        let first = try await applier.apply([change(1, 100, "x"), change(2, 100, "y")], mode: .guarded)
        XCTAssertEqual(first.applied, 2)
        // 1 takes "y" before 2 gives it up (in the bulk's order).
        let moved = try await applier.apply([change(1, 200, "y"), change(2, 200, "z")], mode: .guarded)
        XCTAssertEqual(moved.stale, 0)
        XCTAssertEqual(moved.deadLetters.map(\.reason), [])
        XCTAssertEqual(moved.applied, 2)
        let notesNow = try await notes(applier)
        XCTAssertEqual(notesNow, [.string("y"), .string("z")])
        // A new key with a value another document keeps: in both modes, dead-lettered with the index's name.
        for mode in [MongoApplier.Mode.insertFirst, .guarded] {
            let clash = try await applier.apply([change(3, 300, "z")], mode: mode)
            XCTAssertEqual(clash.stale, 0, "\(mode)")
            XCTAssertEqual(clash.applied, 0, "\(mode)")
            XCTAssertEqual(clash.deadLetters.count, 1, "\(mode)")
            XCTAssertTrue(clash.deadLetters.first?.reason.contains("note_1") ?? false, "\(clash.deadLetters)")
        }
        // Its own version conflicts are still what they were.
        let old = try await applier.apply([change(2, 100, "old")], mode: .guarded)
        XCTAssertEqual(old.stale, 1)
    }

    /// Issue "Nothing lost, nothing stuck" item 7: a delete used to be undone by a late stale upsert (the document
    /// was gone, so nothing guarded its key). Deletes leave version-carrying tombstones.
    func testAStaleUpsertAfterADeleteDoesNotBringTheDocumentBack() async throws {
        let applier = MongoApplier(client: mongo, database: database, collection: "docs")
        _ = try await applier.apply([change(1, 100, "v100"), change(2, 100, "v100")], mode: .insertFirst)
        _ = try await applier.apply([Change(operation: .delete, key: .int32(1), version: .int64(200))], mode: .guarded)
        // A pending older segment (or a stalled former lease holder) delivers the older upsert afterwards.
        let late = try await applier.apply([change(1, 150, "stale")], mode: .guarded)
        XCTAssertEqual(late.stale, 1)
        let lateSnapshot = try await applier.apply([change(1, 100, "stale page")], mode: .insertFirst)
        XCTAssertEqual(lateSnapshot.stale, 1)
        let current3 = try await notes(applier)
        XCTAssertEqual(current3, [.string("v100")], "key 1 stays deleted")
        // The reconciler's hard deletes are tombstoned at the deleted document's version.
        let removed = try await applier.deleteKeys(try await applier.seenDocuments([.int32(2)]))
        XCTAssertEqual(removed, 1)
        let afterReconcile = try await applier.apply([change(2, 100, "replayed")], mode: .guarded)
        XCTAssertEqual(afterReconcile.stale, 1)
        let current4 = try await notes(applier)
        XCTAssertEqual(current4, [])
        // A genuinely newer change (the row re-inserted in the source) does apply.
        let reborn = try await applier.apply([change(1, 300, "reborn")], mode: .guarded)
        XCTAssertEqual(reborn.applied, 1)
        let current5 = try await notes(applier)
        XCTAssertEqual(current5, [.string("reborn")])
        // Tombstones go after their retention.
        let purged = try await applier.purgeTombstones(olderThan: .zero)
        XCTAssertEqual(purged, 2)
    }

    /// A reconcile delete used to remove the document by key alone: a row inserted again after the source confirmed
    /// its key gone, and applied by the tail before the delete, lost its document for good (the tail was past it).
    func testAReconcileDeleteSparesADocumentRewrittenAfterItsKeyWasFoundMissing() async throws {
        let applier = MongoApplier(client: mongo, database: database, collection: "docs")
        _ = try await applier.apply([change(1, 100, "gone"), change(2, 100, "back")], mode: .insertFirst)
        let seen = try await applier.seenDocuments([.int32(1), .int32(2)])
        XCTAssertEqual(seen.count, 2)
        // Between the source's confirmation and the delete, row 2 is inserted again and the tail applies it.
        let reinserted = try await applier.apply([change(2, 300, "reinserted")], mode: .guarded)
        XCTAssertEqual(reinserted.applied, 1)
        let removed = try await applier.deleteKeys(seen)
        XCTAssertEqual(removed, 1)
        let left = try await notes(applier)
        XCTAssertEqual(left, [.string("reinserted")])
    }

    /// Item 6: rows whose watermark was NULL at snapshot used to get a date version; for integer watermarks every
    /// later version was of another type, never passed the guard, and the row never updated again. Per watermark
    /// type, NULL-at-snapshot rows and ordinary rows both follow later updates. (`date` watermarks are refused:
    /// `WatermarkTests.testDateWatermarksAreRefusedNamingAFinerColumn`.)
    func testVersionsCompareForEveryWatermarkType() async throws {
        let types: [(name: String, sql: String, initial: String, later: String)] = [
            ("ts", "timestamp", "now() AT TIME ZONE 'UTC' - interval '1 hour'", "now() AT TIME ZONE 'UTC'"),
            ("tstz", "timestamptz", "now() - interval '1 hour'", "now()"),
            ("i", "integer", "g", "1000 + id::integer"), ("b", "bigint", "g", "5000000000 + id"),
        ]
        var streams = ""
        for t in types {
            try await connection.execute("""
                CREATE TABLE public.\(table)_\(t.name) (id bigint PRIMARY KEY, wm \(t.sql), note text);
                INSERT INTO public.\(table)_\(t.name) SELECT g, CASE WHEN g % 2 = 0 THEN NULL ELSE \(t.initial) END, 'initial'
                FROM generate_series(1, 20) g;
                """)
            onTeardown { [connection, table] in _ = try? await connection?.execute("DROP TABLE IF EXISTS public.\(table)_\(t.name)") }
            streams += """

              - name: \(t.name)
                from: { table: public.\(table)_\(t.name) }
                to: { collection: \(t.name) }
                key: [id]
                watermark: wm
                safety_lag: 0s
            """
        }
        let yaml = """
        state: \(state)
        redshift: { url: "\(pg)", dialect: postgres }
        mongo: { url: "\(mongoURL)", database: \(database) }
        defaults: { poll_interval: 200ms }
        streams:\(streams)
        """
        let config = directory + "/types.yaml"
        try yaml.write(toFile: config, atomically: true, encoding: .utf8)
        let (process, _) = try startRun(config)
        try await waitFor("every snapshot") { types.allSatisfy { phase($0.name) == "streaming" } }
        try await Task.sleep(for: .seconds(1))
        for t in types {
            try await connection.execute("UPDATE public.\(table)_\(t.name) SET note = 'updated', wm = \(t.later)")
        }
        for t in types {
            try await waitFor("\(t.sql): every row, NULL-at-snapshot ones included, follows the update", timeout: 30) {
                let updated = try await mongo.count(database: database, collection: t.name, filter: ["note": "updated"])
                return updated == 20
            }
        }
        stop(process)
    }
}
