import StateStore
import Changes
import Foundation
import Logging
import MongoClient
import PostgresClient
import Replication
import Spool
import TestSupport
import XCTest

/// A batch replayed after a crash between the target commit and the state update changes nothing: the
/// checkpoint row, locked and compared inside the same transaction, fences it.
final class CheckpointFenceTests: XCTestCase {
    func testReplayedBatchChangesNothing() async throws {
        let (fixture, connection, schema) = try await ApplierFixture.onTestServer("fence", maxAttempts: 2)
        defer { fixture.remove() }
        let applier = fixture.applier
        let segment = ApplierFixture.segment(7, records: 2)
        let changes = [Change(operation: .upsert, key: 1, document: ["_id": 1, "n": 1]),
                       Change(operation: .upsert, key: 2, document: ["_id": 2, "n": 2])]
        let first = try await applier.apply(changes, segment: segment)
        XCTAssertEqual(first.applied, 2)
        // Someone edits the target; a replay of the same batch must not overwrite it.
        try await connection.execute("UPDATE \(schema).apps SET n = 99 WHERE _id = 1")
        let replay = try await applier.apply(changes, segment: segment)
        XCTAssertEqual(replay.applied, 0)
        let n = try await connection.query("SELECT n FROM \(schema).apps WHERE _id = 1").rows[0][0]
        XCTAssertEqual(n, "99", "the replayed batch was fenced")
        let seq = try await connection.query("SELECT seq FROM \(schema).mongoshift_checkpoints WHERE stream LIKE 'apps@%' AND stream NOT LIKE '%#%'").rows[0][0]
        XCTAssertEqual(seq, "7")
        _ = try? await connection.execute("DROP SCHEMA \(schema) CASCADE")
    }
}
