import BSON
import PostgresClient
@testable import Replication
import XCTest

/// The hard-delete guard: deletes only keys missing on two cycles `grace` apart, and nothing when a cycle finds
/// more than `max_delete_ratio` of the target missing.
final class DeleteGuardTests: XCTestCase {
    let keys: [BSON] = (1...5).map { .int64($0) }

    func testAKeyIsDeletedOnlyOnItsSecondSightingAfterTheGrace() {
        var guardian = DeleteGuard(maxRatio: 0.1, graceSeconds: 60)
        XCTAssertEqual(guardian.decide(missing: [keys[0], keys[1]], complete: true, targetCount: 100, now: 1000), .delete([], waiting: 2))
        XCTAssertEqual(guardian.decide(missing: [keys[0], keys[1]], complete: true, targetCount: 100, now: 1030), .delete([], waiting: 2),
                       "seen again, but sooner than the grace")
        // keys[1] came back (re-inserted): forgotten; keys[2] is new.
        XCTAssertEqual(guardian.decide(missing: [keys[0], keys[2]], complete: true, targetCount: 100, now: 1060), .delete([keys[0]], waiting: 1))
        XCTAssertEqual(guardian.decide(missing: [keys[1], keys[2]], complete: true, targetCount: 100, now: 1200), .delete([keys[2]], waiting: 1),
                       "keys[1] starts over: its first sighting was forgotten when it came back")
    }

    func testZeroGraceStillNeedsTwoCycles() {
        var guardian = DeleteGuard(maxRatio: 0.5, graceSeconds: 0)
        XCTAssertEqual(guardian.decide(missing: [keys[0]], complete: true, targetCount: 10, now: 5), .delete([], waiting: 1))
        XCTAssertEqual(guardian.decide(missing: [keys[0]], complete: true, targetCount: 10, now: 5), .delete([keys[0]], waiting: 0))
    }

    func testTooManyMissingRefusesAndKeepsWhatItKnew() {
        var guardian = DeleteGuard(maxRatio: 0.1, graceSeconds: 0)
        XCTAssertEqual(guardian.limit(targetCount: 49), 4)
        _ = guardian.decide(missing: [keys[0]], complete: true, targetCount: 49, now: 1)
        XCTAssertEqual(guardian.decide(missing: keys, complete: true, targetCount: 49, now: 2), .refuse(missing: 5, limit: 4))
        XCTAssertEqual(guardian.decide(missing: [keys[0]], complete: false, targetCount: 1000, now: 3), .refuse(missing: 1, limit: 100),
                       "a listing cut short is a refusal whatever its length")
        XCTAssertEqual(guardian.decide(missing: [keys[0]], complete: true, targetCount: 49, now: 4), .delete([keys[0]], waiting: 0),
                       "a refusal forgets nothing: the first sighting still counts")
        XCTAssertEqual(DeleteGuard(maxRatio: 0, graceSeconds: 0).limit(targetCount: 1_000_000), 0)
        XCTAssertEqual(DeleteGuard(maxRatio: 0.1, graceSeconds: 0).limit(targetCount: 5), 1, "a small collection can still lose a row")
    }

    /// A key whose Mongo form is not exact (timestamps to the millisecond, floats) would make rows look gone: such
    /// keys are not reconciled by lookup at all.
    func testOnlyExactKeysAreLookedUp() {
        func table(_ types: [UInt32]) -> SourceTable {
            SourceTable(name: TableName(schema: nil, name: "t"), columns: types.enumerated().map { PostgresColumn(name: "k\($0.offset)", typeOID: $0.element, typeModifier: -1) },
                        keyIndexes: Array(types.indices), watermarkIndex: nil, deleteIndex: nil)
        }
        XCTAssertTrue(SourceKeyLookup.isExact(table([PostgresType.text, PostgresType.int8, PostgresType.date, PostgresType.numeric])))
        XCTAssertFalse(SourceKeyLookup.isExact(table([PostgresType.text, PostgresType.timestamp])))
        XCTAssertFalse(SourceKeyLookup.isExact(table([PostgresType.float8])))
    }
}


/// The reconciler's last look before a delete: keys found missing (listed as int64) against the rows the source
/// has now (decoded by column type: int32 for an `integer` key).
final class StillMissingTests: XCTestCase {
    func testARowReinsertedSinceTheListingKeepsItsDocumentWhateverTheIntegerType() {
        let texts: (BSON) -> [String]? = { $0.intValue.map { [String($0)] } }
        let missing = HardDeleteReconciler.stillMissing([.int64(5), .int64(6)], present: [.int32(5)], texts: texts)
        XCTAssertEqual(missing, [.int64(6)], "5 is back at the source: not deleted")
    }

    /// A table without a watermark versions every row alike: a tombstone cannot tell an older change from a newer
    /// one, and used to keep an un-deleted row out of every later snapshot.
    func testUnversionedRowsAreNeverStale() {
        let unversioned = BSON.int64(Int64.min)
        XCTAssertFalse(Tombstones.isStale(unversioned, against: unversioned))
        XCTAssertTrue(Tombstones.isStale(.int64(5), against: .int64(5)))
        XCTAssertFalse(Tombstones.isStale(.int64(6), against: .int64(5)))
    }
}
