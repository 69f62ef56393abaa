import Foundation
import MongoClient
import PostgresClient
@testable import Replication
import TestSupport
import XCTest

/// One suite, two engines: every test runs against the SQLite store and the PostgreSQL store.
class StateStoreSuite: XCTestCase {
    var directories: [String] = []

    /// A store for a worker with its own local directory (nil: a new worker).
    func makeStore(worker: String? = nil) throws -> StateStore { throw XCTSkip("the engine-specific subclasses run this suite") }

    func localDirectory(_ worker: String?) throws -> String {
        let dir = NSTemporaryDirectory() + "statestore-" + (worker ?? UUID().uuidString)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        directories.append(dir)
        return dir
    }

    override func tearDown() {
        for d in directories { try? FileManager.default.removeItem(atPath: d) }
    }

    let stream = TestServers.uniqueName("s")

    func segment(_ store: StateStore, kind: SegmentRecord.Kind = .tail, partition: Int = -1, last: String) async throws -> SegmentRecord {
        let seq = try await store.allocateSequence(stream)
        return SegmentRecord(stream: stream, seq: seq, kind: kind, partition: partition, records: 10, bytes: 100,
                             firstPosition: ["w": "a"], lastPosition: ["w": .string(last)])
    }

    func testSegmentsAdvanceExtractThenAppliedPositions() async throws {
        let store = try makeStore()
        _ = try await store.ensureStream(stream, direction: "redshift_to_mongo")
        let a = try await segment(store, last: "t1")
        let b = try await segment(store, last: "t2")
        XCTAssertEqual(b.seq, a.seq + 1, "sequences are monotone")
        try await store.recordSegment(a)
        try await store.recordSegment(b)
        var s = try await store.stream(stream)!
        XCTAssertEqual(s.extractPosition, ["w": "t2"])
        XCTAssertNil(s.appliedPosition)
        let pending = try await store.pendingSegments(stream).map(\.seq)
        XCTAssertEqual(pending, [a.seq, b.seq])
        try await store.markApplied(a, applied: 10, staleSkipped: 1)
        s = try await store.stream(stream)!
        XCTAssertEqual(s.appliedPosition, ["w": "t1"])
        XCTAssertEqual(s.rowsApplied, 10)
        XCTAssertEqual(s.staleSkipped, 1)
        XCTAssertEqual(s.rowsExtracted, 20)
        let backlog = try await store.spoolBacklog(stream)
        XCTAssertEqual(backlog.segments, 1)
        XCTAssertEqual(backlog.bytes, 100)
        try await store.recordError(stream, "boom at postgresql://u:secret@h/db")
        let lastError = try await store.stream(stream)?.lastError
        XCTAssertEqual(lastError, "boom at postgresql://u:***@h/db")
    }

    func testPartitionsAreClaimedOnceAndResumeForTheirClaimer() async throws {
        let store = try makeStore()
        _ = try await store.ensureStream(stream, direction: "redshift_to_mongo")
        let parts = (0..<4).map { PartitionState(index: $0, lower: nil, upper: nil, lastKey: nil, status: .pending, rows: 0) }
        try await store.beginSnapshot(stream, snapshotStart: ["w": "s"], tailSeed: ["w": "seed"], partitions: parts)
        var claimed: [Int] = []
        while let p = try await store.claimPartition(stream, duration: .seconds(60)) {
            claimed.append(p.index)
            let page = try await segment(store, kind: .snapshot, partition: p.index, last: "k\(p.index)")
            try await store.recordSegment(page)
            if claimed.count > 8 { break }
        }
        XCTAssertEqual(claimed.sorted(), [0, 1, 2, 3], "each partition claimed once")
        var remaining = try await store.snapshotRemaining(stream)
        XCTAssertEqual(remaining.partitions, 4)
        XCTAssertEqual(remaining.segments, 4)
        for p in 0..<4 { try await store.markPartitionDone(stream, index: p) }
        for seg in try await store.pendingSegments(stream) { try await store.markApplied(seg, applied: 10, staleSkipped: 0) }
        remaining = try await store.snapshotRemaining(stream)
        XCTAssertEqual(remaining.partitions, 0)
        XCTAssertEqual(remaining.segments, 0)
    }

    func testLeaseEpochsFenceEarlierHolders() async throws {
        let store = try makeStore()
        _ = try await store.ensureStream(stream, direction: "redshift_to_mongo")
        let first = try await store.acquireLease(stream, duration: .seconds(30))
        XCTAssertNotNil(first)
        let renewed = try await store.renewLease(first!, duration: .seconds(30))
        XCTAssertTrue(renewed)
        let holds = try await store.holdsLease(stream, epoch: first!.epoch)
        XCTAssertTrue(holds)
        // The same worker again (a restart): a new epoch, and the old one is fenced.
        let second = try await store.acquireLease(stream, duration: .seconds(30))
        XCTAssertEqual(second?.epoch, first!.epoch + 1)
        let oldHolds = try await store.holdsLease(stream, epoch: first!.epoch)
        XCTAssertFalse(oldHolds)
        let oldRenews = try await store.renewLease(first!, duration: .seconds(30))
        XCTAssertFalse(oldRenews)
        let newHolds = try await store.holdsLease(stream, epoch: second!.epoch)
        XCTAssertTrue(newHolds)
        let holder = try await store.leases().first { $0.stream == stream }?.holder
        XCTAssertEqual(holder, store.workerID)
    }
}

final class SQLiteStateStoreTests: StateStoreSuite {
    override func makeStore(worker: String? = nil) throws -> StateStore {
        let store = try StateStore(directory: try localDirectory(worker))
        XCTAssertFalse(store.isShared)
        return store
    }

    func testWorkerIdentitySurvivesReopening() throws {
        let dir = try localDirectory("same")
        let first = try StateStore(directory: dir).workerID
        XCTAssertEqual(try StateStore(directory: dir).workerID, first, "a restarted worker is the same worker")
    }
}

final class PostgresStateStoreTests: StateStoreSuite {
    var url = ""

    override func setUp() async throws {
        url = try TestServers.requirePostgres()
    }

    override func makeStore(worker: String? = nil) throws -> StateStore {
        let store = try StateStore(url: url, localDirectory: try localDirectory(worker))
        XCTAssertTrue(store.isShared)
        return store
    }

    func testAnotherWorkerTakesAnExpiredLeaseAndClaimsAreSkipLocked() async throws {
        let a = try makeStore(worker: "a-\(UUID().uuidString)")
        let b = try makeStore(worker: "b-\(UUID().uuidString)")
        XCTAssertNotEqual(a.workerID, b.workerID)
        _ = try await a.ensureStream(stream, direction: "mongo_to_redshift")
        let held = try await a.acquireLease(stream, duration: .seconds(1))
        XCTAssertNotNil(held)
        let refused = try await b.acquireLease(stream, duration: .seconds(1))
        XCTAssertNil(refused, "held by a live worker")
        // A tail segment of A's, recorded but not applied: B cannot have it (A's spool).
        let page = try await segment(a, last: "t9")
        try await a.recordSegment(page)
        try await Task.sleep(for: .milliseconds(1300))
        let taken = try await b.acquireLease(stream, duration: .seconds(30))
        XCTAssertEqual(taken?.epoch, held!.epoch + 1, "taken over after expiry, with a newer epoch")
        let aRenews = try await a.renewLease(held!, duration: .seconds(30))
        XCTAssertFalse(aRenews, "A learns it lost the lease")
        let aHolds = try await a.holdsLease(stream, epoch: held!.epoch)
        XCTAssertFalse(aHolds, "A is fenced")
        let aPending = try await a.pendingSegments(stream)
        XCTAssertTrue(aPending.isEmpty, "A's unapplied segments were forgotten at the takeover")
        let bExtract = try await b.stream(stream)?.extractPosition
        XCTAssertNil(bExtract, "B re-extracts from the applied position")

        // Two workers claim concurrently: every partition exactly once.
        let parts = (0..<8).map { PartitionState(index: $0, lower: nil, upper: nil, lastKey: nil, status: .pending, rows: 0) }
        try await b.beginSnapshot(stream, snapshotStart: ["w": "s"], tailSeed: nil, partitions: parts)
        @Sendable func claimAll(_ store: StateStore, _ stream: String) async throws -> [Int] {
            var got: [Int] = []
            while let p = try await store.claimPartition(stream, duration: .seconds(60)) { got.append(p.index) }
            return got
        }
        let name = stream
        async let fromA = claimAll(a, name)
        async let fromB = claimAll(b, name)
        let (ga, gb) = try await (fromA, fromB)
        XCTAssertEqual((ga + gb).sorted(), Array(0..<8), "A \(ga) B \(gb)")
        XCTAssertTrue(Set(ga).isDisjoint(with: gb))
    }
}
