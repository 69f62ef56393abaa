import Changes
import MongoClient
import Replication
import Spool
import TestSupport
import XCTest

/// Replaying old changes (an old spool segment, a re-read page) can never regress a document.
final class VersionGuardTests: XCTestCase {
    func testOldSegmentReplayCannotOverwriteNewerDocument() async throws {
        let client = try MongoClient(url: try TestServers.requireMongo())
        let applier = MongoApplier(client: client, database: TestServers.uniqueName("guard"), collection: "docs")
        func change(_ id: Int, _ version: Int64, _ note: String) -> Change {
            Change(operation: .upsert, key: .int32(Int32(id)),
                   document: ["_id": .int32(Int32(id)), "note": .string(note), "_mongoshift": .document(["v": .datetime(version)])],
                   version: .datetime(version))
        }
        // Newer state first, e.g. applied from the tail.
        let first = try await applier.apply([change(1, 200, "new"), change(2, 200, "new")], insertFirst: false)
        XCTAssertEqual(first.applied, 2)
        // An old segment replayed, in both apply modes.
        let replay = try await applier.apply([change(1, 100, "old")], insertFirst: false)
        XCTAssertEqual(replay.stale, 1)
        XCTAssertEqual(replay.applied, 0)
        let snapshotReplay = try await applier.apply([change(2, 100, "old")], insertFirst: true)
        XCTAssertEqual(snapshotReplay.stale, 1)
        // An old delete cannot remove the newer document either.
        _ = try await applier.apply([Change(operation: .delete, key: .int32(1), version: .datetime(150))], insertFirst: false)
        let docs = try await client.findAll(database: applier.database, collection: "docs", sort: ["_id": 1])
        XCTAssertEqual(docs.map { $0["note"] }, [.string("new"), .string("new")])
        // Equal or newer versions do apply (idempotent replays of the same change included).
        let same = try await applier.apply([change(1, 200, "new"), change(2, 300, "newest")], insertFirst: false)
        XCTAssertEqual(same.applied, 2)
        let after = try await client.findAll(database: applier.database, collection: "docs", sort: ["_id": 1])
        XCTAssertEqual(after.map { $0["note"] }, [.string("new"), .string("newest")])
        try await client.command(["dropDatabase": 1], database: applier.database)
    }
}
