@testable import StateStore
import Changes
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

    func watermark(_ value: String) -> StreamPosition { .watermark(WatermarkPosition(value: value)) }

    func segment(_ store: StateStore, kind: SegmentRecord.Kind = .tail, partition: Int = -1, first: StreamPosition? = nil,
                 last: StreamPosition) async throws -> SegmentRecord {
        let seq = try await store.allocateSequence(stream)
        return SegmentRecord(stream: stream, seq: seq, kind: kind, partition: partition, records: 10, bytes: 100,
                             firstPosition: first, lastPosition: last)
    }

    /// A stream with a lease, as `run` holds it.
    func leasedStream(_ store: StateStore) async throws -> Lease {
        _ = try await store.ensureStream(stream, direction: "redshift_to_mongo")
        let lease = try await store.acquireLease(stream, duration: .seconds(60))
        return try XCTUnwrap(lease)
    }

    func testSegmentsAdvanceExtractThenAppliedPositions() async throws {
        let store = try makeStore()
        let lease = try await leasedStream(store)
        let generation = try await store.extractCursor(stream).generation
        let a = try await segment(store, last: watermark("t1"))
        let b = try await segment(store, first: watermark("t1"), last: watermark("t2"))
        XCTAssertEqual(b.seq, a.seq + 1, "sequences are monotone")
        try await store.recordTailSegment(a, lease: lease, generation: generation)
        try await store.recordTailSegment(b, lease: lease, generation: generation)
        var s = try await store.stream(stream)!
        XCTAssertEqual(s.extractPosition, watermark("t2"))
        XCTAssertNil(s.appliedPosition)
        let pending = try await store.pendingSegments(stream)
        XCTAssertEqual(pending.map(\.seq), [a.seq, b.seq])
        XCTAssertEqual(pending.last?.lastPosition, watermark("t2"), "positions round-trip through the ledger")
        try await store.markApplied(a, applied: 10, staleSkipped: 1, lease: lease)
        s = try await store.stream(stream)!
        XCTAssertEqual(s.appliedPosition, watermark("t1"))
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

    func testPositionWritesAreFencedByLeaseAndGeneration() async throws {
        let store = try makeStore()
        let old = try await leasedStream(store)
        let generation = try await store.extractCursor(stream).generation
        // A takeover (here: the same worker again) raises the epoch: the old holder's writes are refused.
        let acquired = try await store.acquireLease(stream, duration: .seconds(60))
        let current = try XCTUnwrap(acquired)
        let late = try await segment(store, last: watermark("late"))
        await XCTAssertThrowsStateError(.fenced) { try await store.recordTailSegment(late, lease: old, generation: generation) }
        await XCTAssertThrowsStateError(.fenced) { try await store.advanceIdle(self.stream, to: self.watermark("idle"), generation: generation, lease: old) }
        // A rewind (a discarded segment) raises the generation: an extractor that started before is refused.
        let a = try await segment(store, last: watermark("a"))
        try await store.recordTailSegment(a, lease: current, generation: generation)
        try await store.discardSegment(a, lease: current)
        let rewound = try await store.extractCursor(stream)
        XCTAssertGreaterThan(rewound.generation, generation)
        XCTAssertNil(rewound.position, "rewound to the applied position")
        let stale = try await segment(store, first: watermark("a"), last: watermark("b"))
        await XCTAssertThrowsStateError(.rewound) { try await store.recordTailSegment(stale, lease: current, generation: generation) }
        await XCTAssertThrowsStateError(.rewound) { try await store.advanceIdle(self.stream, to: self.watermark("idle"), generation: generation, lease: current) }
        let nothing = try await store.pendingSegments(stream)
        XCTAssertTrue(nothing.isEmpty, "nothing was recorded past the rewind")
        // The current extractor's writes go through; idle advances wait for a drained spool.
        let fresh = try await segment(store, last: watermark("c"))
        try await store.recordTailSegment(fresh, lease: current, generation: rewound.generation)
        let waited = try await store.advanceIdle(stream, to: watermark("d"), generation: rewound.generation, lease: current)
        XCTAssertFalse(waited, "a pending segment holds the idle advance back")
        try await store.markApplied(fresh, applied: 10, staleSkipped: 0, lease: current)
        let advanced = try await store.advanceIdle(stream, to: watermark("d"), generation: rewound.generation, lease: current)
        XCTAssertTrue(advanced)
        let s = try await store.stream(stream)!
        XCTAssertEqual(s.appliedPosition, watermark("d"))
        XCTAssertEqual(s.extractPosition, watermark("d"))
    }

    func testPartitionsAreClaimedOnceAndResumeForTheirClaimer() async throws {
        let store = try makeStore()
        let lease = try await leasedStream(store)
        let parts = (0..<4).map { PartitionState(index: $0, lower: nil, upper: nil) }
        try await store.beginSnapshot(stream, snapshotStart: watermark("s"), tailSeed: watermark("seed"), partitions: parts, lease: lease)
        var claimed: [Int] = []
        while let p = try await store.claimPartition(stream, duration: .seconds(60)) {
            claimed.append(p.index)
            let page = try await segment(store, kind: .snapshot, partition: p.index, last: .snapshotKey(.columns(["k\(p.index)"])))
            try await store.recordSnapshotPage(page)
            if claimed.count > 8 { break }
        }
        XCTAssertEqual(claimed.sorted(), [0, 1, 2, 3], "each partition claimed once")
        // A page that does not continue where its partition stands is refused.
        let gap = try await segment(store, kind: .snapshot, partition: 0, first: .snapshotKey(.columns(["elsewhere"])),
                                    last: .snapshotKey(.columns(["k9"])))
        await XCTAssertThrowsStateError(.rewound) { try await store.recordSnapshotPage(gap) }
        var remaining = try await store.snapshotRemaining(stream)
        XCTAssertEqual(remaining.partitions, 4)
        XCTAssertEqual(remaining.segments, 4)
        // A page's generation is read with the page still recorded: once a reset forgets it, there is none.
        let pages = try await store.pendingSegments(stream)
        let generation = try await store.snapshotGeneration(stream)
        let first = try await store.snapshotGeneration(ifRecorded: pages[0])
        XCTAssertEqual(first, generation)
        for p in 0..<4 { try await store.markPartitionDone(stream, index: p) }
        for seg in try await store.pendingSegments(stream) { try await store.markApplied(seg, applied: 10, staleSkipped: 0, lease: lease) }
        remaining = try await store.snapshotRemaining(stream)
        XCTAssertEqual(remaining.partitions, 0)
        XCTAssertEqual(remaining.segments, 0)
        try await store.completeSnapshot(stream, lease: lease)
        let applied = try await store.snapshotGeneration(ifRecorded: pages[0])
        XCTAssertNil(applied, "an applied page is no longer recorded")
        let s = try await store.stream(stream)!
        XCTAssertEqual(s.lifecycle, .streaming)
        XCTAssertEqual(s.appliedPosition, watermark("seed"), "the tail starts from the seed")
    }

    /// A claim names a worker, not a copier: once a long copy (a whole UNLOAD before its first page) outlived
    /// the claim, the worker's other copier claimed the same partition again and both copied it into one S3
    /// prefix. Partitions copied in this process are excluded, and a copy renews its claim while it runs.
    func testAPartitionBeingCopiedIsNotClaimedAgainAndRenewalsKeepItsClaim() async throws {
        let store = try makeStore()
        let lease = try await leasedStream(store)
        let parts = (0..<3).map { PartitionState(index: $0, lower: nil, upper: nil) }
        try await store.beginSnapshot(stream, snapshotStart: watermark("s"), tailSeed: nil, partitions: parts, lease: lease)
        let first = try await store.claimPartition(stream, duration: .milliseconds(100), excluding: [])
        XCTAssertEqual(first?.index, 0)
        try await Task.sleep(for: .milliseconds(250))
        // The claim expired while partition 0 is still being copied here: the next copier gets partition 1.
        let second = try await store.claimPartition(stream, duration: .milliseconds(100), excluding: [0])
        XCTAssertEqual(second?.index, 1)
        // Renewed, a claim outlives its first duration: nobody (this worker or another) takes it meanwhile.
        try await store.renewClaims(stream, partitions: [0, 1], duration: .seconds(60))
        try await Task.sleep(for: .milliseconds(250))
        let third = try await store.claimPartition(stream, duration: .seconds(60), excluding: [])
        XCTAssertEqual(third?.index, 2)
        let none = try await store.claimPartition(stream, duration: .seconds(60), excluding: [])
        XCTAssertNil(none)
    }

    func testLifecycleRefusesIllegalTransitionsAndResumesFailedStreams() async throws {
        let store = try makeStore()
        let lease = try await leasedStream(store)
        await XCTAssertThrowsStateError(.illegalTransition) { try await store.completeSnapshot(self.stream, lease: lease) }
        try await store.beginSnapshot(stream, snapshotStart: watermark("s"), tailSeed: nil, partitions: [], lease: lease)
        try await store.failStream(stream, reason: "boom")
        var s = try await store.stream(stream)!
        XCTAssertEqual(s.lifecycle, .failed(from: .snapshotting))
        XCTAssertEqual(s.lastError, "boom")
        let resumed = try await store.resumeStream(stream)
        XCTAssertEqual(resumed, .snapshotting, "a failed snapshot resumes as a snapshot, not as a finished one")
        try await store.completeSnapshot(stream, lease: lease)
        try await store.resetStream(stream, lease: lease)
        s = try await store.stream(stream)!
        XCTAssertEqual(s.lifecycle, .new)
        XCTAssertNil(s.extractPosition)
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
        // A former holder meeting a permanent error does not mark the new holder's stream failed.
        await XCTAssertThrowsStateError(.fenced) { try await store.failStream(self.stream, reason: "old worker's error", lease: first!) }
        let phase = try await store.stream(stream)?.lifecycle
        XCTAssertNotEqual(phase.map { if case .failed = $0 { true } else { false } }, true)
        try await store.failStream(stream, reason: "the holder's error", lease: second!)
        let failed = try await store.stream(stream)?.lastError
        XCTAssertEqual(failed, "the holder's error")
    }
}

final class SQLiteStateStoreTests: StateStoreSuite {
    override func makeStore(worker: String? = nil) throws -> StateStore {
        let store = try StateStore(directory: try localDirectory(worker))
        XCTAssertFalse(store.isShared)
        return store
    }

    /// The spool is fsynced before the state records it; the state's commit must be as durable. With
    /// `synchronous=NORMAL` a power cut could take back a recorded segment and its sequence number, and a Mongo →
    /// Redshift batch re-extracted under the reused number (holding more changes) would meet the target's
    /// checkpoint fence and be skipped as applied.
    func testCommitsAreDurableAcrossPowerLoss() async throws {
        let store = try StateStore(directory: try localDirectory("durable"))
        let journal = try await store.pragma("journal_mode")
        let synchronous = try await store.pragma("synchronous")
        XCTAssertEqual(journal, "wal")
        XCTAssertEqual(synchronous, "2", "synchronous=FULL: every commit fsyncs the WAL")
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

    /// A state server that restarts or fails over drops the store's session: the store connects again on the next
    /// call (the call that met the loss fails as transient, and the caller's retry goes through). It used to keep
    /// the dead connection: every call failed until the process was restarted, while the worker looked healthy.
    func testTheStoreConnectsAgainAfterItsSessionIsLost() async throws {
        let store = try makeStore()
        _ = try await store.ensureStream(stream, direction: "redshift_to_mongo")
        let admin = try await PostgresConnection.connect(url)
        let killed = try await admin.query("SELECT CAST(count(pg_terminate_backend(pid)) AS text) FROM pg_stat_activity WHERE application_name = 'mongoshift-state' AND pid <> pg_backend_pid()")
        XCTAssertNotEqual(killed.rows.first?.first ?? nil, "0", "the store's session was found")
        let name = stream
        let sequence = try await RetryPolicy(initialDelay: .milliseconds(50), maxAttempts: 5).run { try await store.allocateSequence(name) }
        XCTAssertGreaterThan(sequence, 0)
        let again = try await store.stream(stream)
        XCTAssertNotNil(again, "later calls use the new session")
    }

    /// A store no worker has written yet reads as "nothing has run" (`lag` lists every stream as new), as a state
    /// directory without its database does — not as an unreadable store.
    func testAStoreNoWorkerWroteIsMissingForReaders() async throws {
        let name = TestServers.uniqueName("emptystate")
        let admin = try await PostgresConnection.connect(url)
        try await admin.execute("CREATE DATABASE \(name)")
        defer { Task { _ = try? await admin.execute("DROP DATABASE IF EXISTS \(name)") } }
        guard let slash = url.lastIndex(of: "/") else { return XCTFail(url) }
        let empty = String(url[..<slash]) + "/\(name)"
        XCTAssertThrowsError(try StateStore(url: empty, localDirectory: try localDirectory("reader"), readOnly: true)) { error in
            XCTAssertEqual((error as? StateStoreError)?.code, .missing, "\(error)")
        }
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
        let page = try await segment(a, last: watermark("t9"))
        try await a.recordTailSegment(page, lease: held!, generation: try await a.extractCursor(stream).generation)
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
        let parts = (0..<8).map { PartitionState(index: $0, lower: nil, upper: nil) }
        try await b.beginSnapshot(stream, snapshotStart: watermark("s"), tailSeed: nil, partitions: parts, lease: taken)
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

/// Asserts that `body` throws a `StateStoreError` with `code`.
func XCTAssertThrowsStateError(_ code: StateStoreError.Code, file: StaticString = #filePath, line: UInt = #line,
                               _ body: () async throws -> Void) async {
    do {
        try await body()
        XCTFail("expected a \(code) error", file: file, line: line)
    } catch let error as StateStoreError {
        XCTAssertEqual(error.code, code, "\(error)", file: file, line: line)
    } catch {
        XCTFail("expected a \(code) error, got \(error)", file: file, line: line)
    }
}
