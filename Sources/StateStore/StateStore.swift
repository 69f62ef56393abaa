import Changes
import Foundation
import ShiftCore

/// The durable replication state (docs/ARCHITECTURE.md, "State"): SQLite in WAL mode at `state/state.db` for one
/// worker, or a PostgreSQL schema shared by several. One facade over its parts — `StreamTable` (lifecycle,
/// positions, counters), `SegmentLedger`, `PartitionTable` (snapshot ranges and claims), `LeaseTable`,
/// `ColumnTable` — each write composed here in one transaction. Only this type persists positions.
///
/// Every call runs on the store's own thread; readers in other processes (`lag`) never block the daemon.
public final class StateStore: Sendable {
    public static let schemaVersion = StateMigrations.current
    private let io: IOThread
    private let db: StateDatabase
    /// Where the state lives (a file path, or the redacted PostgreSQL URL).
    public let path: String
    /// This worker (machine + local directory), stable across restarts: owns leases, claims and its segments.
    public let workerID: String
    /// True when several workers may share this store (PostgreSQL): leases expire and others take over.
    public let isShared: Bool
    /// How long a partition claim lasts after its last page (renewed with every page).
    public var claimDuration: Double { 60 }
    /// Identifies this state store for good (created with it): a target's checkpoint rows are keyed by it, so a
    /// fresh state directory (sequences restarting at 1) never mistakes another store's checkpoint for its own.
    public let instanceID: String

    /// The SQLite store in `directory` (created 0700 unless `readOnly`).
    public init(directory: String, readOnly: Bool = false) throws {
        if !readOnly {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            chmod(directory, 0o700)
        }
        path = (directory as NSString).appendingPathComponent("state.db")
        if readOnly && !FileManager.default.fileExists(atPath: path) {
            throw StateStoreError(.missing, "no state database at \(path) (nothing has run yet)")
        }
        let database = try SQLiteStateDatabase(path: path, readOnly: readOnly)
        db = database
        io = IOThread(name: "state")
        isShared = false
        workerID = try Self.loadWorkerID(directory: directory, create: !readOnly)
        do {
            if readOnly {
                try database.execute("PRAGMA query_only=1;")
                _ = try database.query("SELECT count(*) FROM streams")
            } else {
                try database.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
                try StateMigrations.migrate(database)
                _ = try database.query("INSERT INTO meta VALUES ('instance_id', ?) ON CONFLICT DO NOTHING", [.text(UUID().uuidString.lowercased())])
            }
            instanceID = try database.query("SELECT value FROM meta WHERE key = 'instance_id'").first?.first?.text ?? ""
        } catch let error as StateStoreError where error.code == .corrupt {
            throw StateStoreError(.corrupt, "state database \(path) is corrupt: \(error.message)")
        }
    }

    /// The PostgreSQL store (`state: postgresql://…`): tables in schema `mongoshift_state`, shared by every worker;
    /// `localDirectory` keeps this worker's identity, spool and dead letters.
    /// `readOnly` (`lag`, and `reset`'s check that a store exists) creates nothing: no local directory, no schema.
    public init(url: String, localDirectory: String, readOnly: Bool = false) throws {
        if !readOnly {
            try FileManager.default.createDirectory(atPath: localDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        path = Redaction.redact(url)
        io = IOThread(name: "state")
        isShared = true
        workerID = try Self.loadWorkerID(directory: localDirectory, create: !readOnly)
        let database = try io.runBlocking { try PostgresStateDatabase(url: url, schema: "mongoshift_state", createSchema: !readOnly) }
        db = database
        instanceID = try io.runBlocking {
            defer { try? database.migrated() }
            if !readOnly {
                try StateMigrations.migrate(database)
                _ = try database.query("INSERT INTO meta VALUES ('instance_id', ?) ON CONFLICT DO NOTHING", [.text(UUID().uuidString.lowercased())])
            } else if try database.query("SELECT CAST(count(*) AS text) FROM pg_tables WHERE schemaname = 'mongoshift_state' AND tablename = 'meta'")
                        .first?.first?.text == "0" {
                // No worker has written this store yet: as a state directory without its database.
                throw StateStoreError(.missing, "no mongoshift state in \(Redaction.redact(url)) yet (nothing has run)")
            }
            return try database.query("SELECT value FROM meta WHERE key = 'instance_id'").first?.first?.text ?? ""
        }
    }

    /// `<dir>/worker-id`: host name plus a random suffix, written once.
    static func loadWorkerID(directory: String, create: Bool) throws -> String {
        let file = (directory as NSString).appendingPathComponent("worker-id")
        if let text = try? String(contentsOfFile: file, encoding: .utf8), !text.isEmpty {
            return text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let id = "\(ProcessInfo.processInfo.hostName.prefix(40))-\(UUID().uuidString.prefix(8).lowercased())"
        if create { try DurableFile.write(Array((id + "\n").utf8), to: file) }
        return id
    }

    deinit {
        // The database is closed on its own thread (SQLite checkpoints its WAL and fsyncs on close): the last
        // reference goes with this job.
        let db = db
        io.submit { _ = db }
        io.shutdown()
    }

    @discardableResult
    private func run<T: Sendable>(_ body: @escaping @Sendable (Parts) throws -> T) async throws -> T {
        try await io.run { [db, workerID] in try body(Parts(db: db, worker: workerID)) }
    }

    @discardableResult
    private func transaction<T: Sendable>(_ body: @escaping @Sendable (Parts) throws -> T) async throws -> T {
        try await run { parts in try parts.db.transaction { try body(parts) } }
    }

    /// A pragma's value on the store's own connection (SQLite; nil for PostgreSQL): what tests check durability by.
    func pragma(_ name: String) async throws -> String? {
        guard !isShared else { return nil }
        return try await run { parts -> String? in
            guard let value = try parts.db.query("PRAGMA \(name)").first?.first else { return nil }
            return value.text ?? value.int.map { String($0) }
        }
    }

    /// The tables, bound to this store's connection and worker (used on the store's thread only).
    private struct Parts {
        let db: StateDatabase
        let worker: String
        var streams: StreamTable { StreamTable(db: db) }
        var segments: SegmentLedger { SegmentLedger(db: db, worker: worker) }
        var partitions: PartitionTable { PartitionTable(db: db, worker: worker) }
        var leases: LeaseTable { LeaseTable(db: db, worker: worker) }
        var columns: ColumnTable { ColumnTable(db: db) }
    }

    private static var now: Double { StateCodec.now }

    // MARK: streams and their lifecycle

    public func ensureStream(_ name: String, direction: String) async throws -> StreamState {
        try await run { try $0.streams.ensure(name, direction: direction) }
    }

    public func stream(_ name: String) async throws -> StreamState? {
        try await run { try $0.streams.load(name) }
    }

    public func allStreams() async throws -> [StreamState] {
        try await run { parts in try parts.streams.names().compactMap { try parts.streams.load($0) } }
    }

    /// Starts (or re-plans) a snapshot: the lifecycle moves to snapshotting, the captured start and the tail's
    /// seed position are stored, the partitions replace any earlier plan and the snapshot generation moves on (to
    /// at least `generationAtLeast`, what the target has seen) — atomically, under the lease. Returns the generation.
    @discardableResult
    public func beginSnapshot(_ name: String, snapshotStart: StreamPosition, tailSeed: StreamPosition?, partitions: [PartitionState],
                              generationAtLeast: Int64 = 1, lease: Lease?) async throws -> Int64 {
        try await transaction { parts in
            if let lease { try parts.leases.check(lease) }
            try parts.streams.transition(name, .beginSnapshot)
            try parts.partitions.replace(name, with: partitions)
            return try parts.streams.startSnapshot(name, start: snapshotStart, tailSeed: tailSeed, generationAtLeast: generationAtLeast)
        }
    }

    /// The stream's current snapshot generation (0 before its first snapshot).
    public func snapshotGeneration(_ name: String) async throws -> Int64 {
        try await run { try $0.streams.snapshotGeneration(name) }
    }

    /// The stream's snapshot generation as long as `segment` (a snapshot page) is still recorded; nil once a reset
    /// forgot it. One statement, so a reset cannot fall between the two reads: a page applied late by a helper —
    /// after the plan it was copied under was forgotten — is not applied.
    public func snapshotGeneration(ifRecorded segment: SegmentRecord) async throws -> Int64? {
        try await run { parts in
            try parts.db.query("SELECT s.snapshot_generation FROM streams s JOIN segments g ON g.stream = s.name WHERE s.name = ? AND g.seq = ?",
                               [.text(segment.stream), .integer(segment.seq)]).first?.first?.int
        }
    }

    /// Snapshot complete: the tail takes over from the seed position recorded at `beginSnapshot`.
    public func completeSnapshot(_ name: String, lease: Lease?) async throws {
        try await transaction { parts in
            if let lease { try parts.leases.check(lease) }
            try parts.streams.transition(name, .completeSnapshot)
            try parts.streams.markSnapshotComplete(name)
        }
    }

    /// A new run picks the stream up where it stood (a failed stream returns to its phase before the failure).
    @discardableResult
    public func resumeStream(_ name: String) async throws -> StreamLifecycle.State {
        try await transaction { try $0.streams.transition(name, .resume) }
    }

    /// Stops the stream on a permanent error, with the reason — under `lease` (`.fenced` when another worker took
    /// the stream meanwhile: its stream is not this worker's to mark failed).
    public func failStream(_ name: String, reason: String, lease: Lease? = nil) async throws {
        try await transaction { parts in
            if let lease { try parts.leases.check(lease) }
            try parts.streams.recordError(name, reason)
            try parts.streams.transition(name, .fail)
        }
    }

    /// Forgets the stream's positions, partitions and segments (history lost, operator reset): the next run
    /// snapshots it again.
    public func resetStream(_ name: String, lease: Lease?) async throws {
        try await transaction { parts in
            if let lease { try parts.leases.check(lease) }
            try parts.streams.transition(name, .reset)
            try Self.forgetPositions(parts, name)
        }
    }

    /// Partitions, segments and positions gone; the extract generation moves on.
    private static func forgetPositions(_ parts: Parts, _ name: String) throws {
        try parts.partitions.deleteAll(name)
        try parts.segments.deleteAll(name)
        try parts.streams.clearPositions(name)
        try writeNote(parts.db, .positionColumns, name, nil)
    }

    /// Operator reset to a position (`reset --to now|time:|token:|watermark:`): the stream tails from `position`,
    /// with no snapshot; pending segments and partitions are forgotten (their spool files go at the next start)
    /// and the extract generation moves on. `note` (who, when, what) is kept for `lag`. Under `lease`.
    public func repositionStream(_ name: String, to position: StreamPosition, note: String, lease: Lease) async throws {
        try await transaction { parts in
            try parts.leases.check(lease)
            try parts.streams.transition(name, .reposition)
            try Self.forgetPositions(parts, name)
            try parts.streams.setExtractPosition(name, position)
            try parts.streams.setAppliedPosition(name, position)
            try parts.streams.markSnapshotComplete(name)
            try parts.streams.recordError(name, nil)
            try Self.writeNote(parts.db, .lastReset, name, note)
        }
    }

    /// Operator reset to a new snapshot (`reset --to snapshot`), noted for `lag`. Under `lease`.
    public func resetStream(_ name: String, note: String, lease: Lease) async throws {
        try await transaction { parts in
            try parts.leases.check(lease)
            try parts.streams.transition(name, .reset)
            try Self.forgetPositions(parts, name)
            try parts.streams.recordError(name, nil)
            try Self.writeNote(parts.db, .lastReset, name, note)
        }
    }

    /// A stream's note of `kind` (shown by `lag` and `check`), nil when there is none.
    public func note(_ kind: StreamNote, stream name: String) async throws -> String? {
        try await run { try $0.db.query("SELECT value FROM meta WHERE key = ?", [.text(kind.key(name))]).first?.first?.text }
    }

    /// Sets (or with nil, clears) a stream's note of `kind`.
    public func setNote(_ kind: StreamNote, stream name: String, _ text: String?) async throws {
        try await run { try Self.writeNote($0.db, kind, name, text) }
    }

    private static func writeNote(_ db: StateDatabase, _ kind: StreamNote, _ name: String, _ text: String?) throws {
        if let text {
            _ = try db.query("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", [.text(kind.key(name)), .text(text)])
        } else {
            _ = try db.query("DELETE FROM meta WHERE key = ?", [.text(kind.key(name))])
        }
    }

    public func recordError(_ name: String, _ message: String?) async throws {
        try await run { try $0.streams.recordError(name, message) }
    }

    public func addDeadLetters(_ name: String, count: Int) async throws {
        guard count > 0 else { return }
        try await run { try $0.streams.addDeadLetters(name, count: count) }
    }

    // MARK: extraction and the segment ledger

    /// Where a tail extractor starts, and the generation its segments must be recorded under.
    public func extractCursor(_ name: String) async throws -> ExtractCursor {
        try await run { try $0.streams.cursor(name) }
    }

    /// A fresh segment sequence number for the stream (monotone, never reused).
    public func allocateSequence(_ name: String) async throws -> Int64 {
        try await run { try $0.streams.allocateSequence(name) }
    }

    /// Numbers the stream's next segments after `seq` (a sequence its target has applied); true when the counter
    /// was behind it.
    public func raiseSequence(_ name: String, above seq: Int64) async throws -> Bool {
        try await run { try $0.streams.raiseSequence(name, above: seq) }
    }

    /// Records a durable tail (or lookback repair) segment; a tail segment also moves the extract position.
    /// Compare-and-set: refused (`.fenced`) when the lease was lost, and (`.rewound`) when the extract position
    /// was rewound since the extractor started at `generation`.
    public func recordTailSegment(_ segment: SegmentRecord, lease: Lease, generation: Int64) async throws {
        precondition(segment.kind != .snapshot, "snapshot pages are recorded with recordSnapshotPage")
        try await transaction { parts in
            try parts.leases.check(lease)
            try parts.streams.checkGeneration(segment.stream, generation)
            try parts.segments.insert(segment)
            if segment.kind == .tail { try parts.streams.setExtractPosition(segment.stream, segment.lastPosition) }
            try parts.streams.countExtracted(segment.stream, records: segment.records)
        }
    }

    /// Records a durable snapshot page: the partition's last key moves (compare-and-set on this worker's claim
    /// and the key the page starts from) and the claim is renewed.
    public func recordSnapshotPage(_ segment: SegmentRecord) async throws {
        precondition(segment.kind == .snapshot, "tail segments are recorded with recordTailSegment")
        let expires = Self.now + claimDuration
        try await transaction { parts in
            try parts.partitions.recordPage(segment.stream, partition: segment.partition, first: segment.firstPosition?.snapshotKey,
                                            last: segment.lastPosition?.snapshotKey, rows: segment.records, claimExpires: expires)
            try parts.segments.insert(segment)
            try parts.streams.countExtracted(segment.stream, records: segment.records)
        }
    }

    public func pendingSegments(_ name: String) async throws -> [SegmentRecord] {
        try await run { try $0.segments.pending(name) }
    }

    /// The segment's changes are in the target: forget it and, for a tail segment, move the applied position —
    /// under the lease for tail and repair segments. Only after this returns may the file be deleted.
    public func markApplied(_ segment: SegmentRecord, applied: Int, staleSkipped: Int, lease: Lease?) async throws {
        try await transaction { parts in
            if segment.kind != .snapshot, let lease { try parts.leases.check(lease) }
            guard try parts.segments.delete(segment) else { return }
            if segment.kind == .tail { try parts.streams.setAppliedPosition(segment.stream, segment.lastPosition) }
            try parts.streams.countApplied(segment.stream, applied: applied, stale: staleSkipped)
        }
    }

    /// An idle source moved on without changes (a change stream's postBatchResumeToken): both positions move to
    /// `position`, so a quiet stream never falls off the oplog. The apply side calls this once the spool is
    /// drained; it does nothing (false) when a segment is pending, and is refused when the lease was lost or the
    /// extract position was rewound since `generation`.
    @discardableResult
    public func advanceIdle(_ name: String, to position: StreamPosition, generation: Int64, lease: Lease) async throws -> Bool {
        try await transaction { parts in
            try parts.leases.check(lease)
            try parts.streams.checkGeneration(name, generation)
            guard try parts.segments.backlog(name).segments == 0 else { return false }
            try parts.streams.setExtractPosition(name, position)
            try parts.streams.setAppliedPosition(name, position)
            return true
        }
    }

    /// Forgets a segment without applying it (a corrupt file): its range is re-extracted. A tail segment rewinds
    /// the extract position to the applied one (raising the generation, so the running extractor can record
    /// nothing more) and drops the later tail segments; a snapshot page makes its partition copied again from its
    /// start (its other pages are applied as well: applies are idempotent).
    public func discardSegment(_ segment: SegmentRecord, lease: Lease?) async throws {
        try await transaction { parts in
            if segment.kind != .snapshot, let lease { try parts.leases.check(lease) }
            try parts.segments.delete(segment)
            switch segment.kind {
            case .snapshot:
                try parts.partitions.rewindToStart(segment.stream, partition: segment.partition)
            case .tail, .repair:
                try parts.streams.rewindExtract(segment.stream)
                try parts.segments.deleteTail(segment.stream, after: segment.seq)
            }
        }
    }

    public func knownSequences(_ name: String) async throws -> Set<Int64> {
        try await run { try $0.segments.known(name) }
    }

    public func spoolBacklog(_ name: String) async throws -> SpoolBacklog {
        try await run { try $0.segments.backlog(name) }
    }

    // MARK: snapshot partitions

    public func partitions(_ name: String) async throws -> [PartitionState] {
        try await run { try $0.partitions.all(name) }
    }

    /// Claims the next snapshot partition nobody is copying (see `PartitionTable.claimNext`); another worker's
    /// pages of it are forgotten (they are in that worker's spool). nil when none is left to claim.
    public func claimPartition(_ name: String, duration: Duration, excluding: Set<Int> = []) async throws -> PartitionState? {
        let expires = Self.now + duration.seconds
        return try await transaction { parts in
            guard let partition = try parts.partitions.claimNext(name, expires: expires, excluding: excluding) else { return nil }
            try parts.segments.forgetOtherWorkersPages(name, partition: partition.index)
            return partition
        }
    }

    /// Extends this worker's claims on the partitions its copiers are copying.
    public func renewClaims(_ name: String, partitions: Set<Int>, duration: Duration) async throws {
        let expires = Self.now + duration.seconds
        try await run { try $0.partitions.renewClaims(name, partitions: partitions, expires: expires) }
    }

    /// At the start of a snapshot run: this worker's claims from an earlier run (a crash) go back to pending,
    /// keeping their last page, so this run (or another worker, starting over) picks them up.
    public func releaseClaims(_ name: String) async throws {
        try await run { try $0.partitions.releaseClaims(name) }
    }

    public func markPartitionDone(_ name: String, index: Int) async throws {
        try await run { try $0.partitions.markDone(name, partition: index) }
    }

    /// Partitions not yet done and snapshot pages not yet applied, over all workers: the snapshot is complete
    /// only when both are zero.
    /// Pages other workers spooled and never applied (they left: their spools are gone with them): their
    /// partitions are copied again — rewound to their start, the pages forgotten. Returns those partitions.
    public func reclaimOtherWorkersPages(_ name: String) async throws -> [Int] {
        try await transaction { parts in
            let partitions = try parts.segments.otherWorkersPagePartitions(name)
            for partition in partitions {
                try parts.segments.forgetOtherWorkersPages(name, partition: partition)
                try parts.partitions.rewindToStart(name, partition: partition)
            }
            return partitions
        }
    }

    public func snapshotRemaining(_ name: String) async throws -> (partitions: Int, segments: Int) {
        try await run { parts in (try parts.partitions.notDone(name), try parts.segments.snapshotPagesPending(name)) }
    }

    // MARK: leases

    /// Takes `stream` for this worker if it is free, expired, or already this worker's (a restart). Every
    /// acquisition raises the epoch, fencing whoever held it before. Taking it over from another worker rewinds
    /// the extract position to the applied one and forgets that worker's tail segments: they are in its spool,
    /// gone with it, so this worker re-extracts from the applied position. nil: another worker holds it.
    public func acquireLease(_ stream: String, duration: Duration) async throws -> Lease? {
        let expires = Self.now + duration.seconds
        // A local store has one worker: an old lease (a crashed run) never blocks the next.
        let stale = isShared ? Self.now : .greatestFiniteMagnitude
        return try await transaction { parts in
            guard let (lease, previous) = try parts.leases.acquire(stream, expires: expires, staleBefore: stale) else { return nil }
            if let previous, previous != lease.holder {
                try parts.streams.rewindExtract(stream)
                try parts.segments.forgetOtherWorkersTail(stream)
            }
            return lease
        }
    }

    /// Extends this worker's lease; false when it was lost (expired and taken, or a newer epoch exists).
    public func renewLease(_ lease: Lease, duration: Duration) async throws -> Bool {
        let expires = Self.now + duration.seconds
        return try await run { try $0.leases.renew(lease, expires: expires) }
    }

    /// Gives the stream up at a clean shutdown, so another worker need not wait for the expiry.
    public func releaseLease(_ lease: Lease) async throws {
        try await run { try $0.leases.release(lease) }
    }

    /// True while `epoch` is the stream's current lease and has not expired: checked before every apply.
    public func holdsLease(_ stream: String, epoch: Int64) async throws -> Bool {
        let notExpiredAt = isShared ? Self.now : -Double.greatestFiniteMagnitude
        return try await run { try $0.leases.holds(stream, epoch: epoch, notExpiredAt: notExpiredAt) }
    }

    public func leases() async throws -> [Lease] {
        try await run { try $0.leases.all() }
    }

    // MARK: target schema (Mongo → Redshift)

    public func loadColumns(_ name: String) async throws -> [StoredColumn] {
        try await run { try $0.columns.load(name) }
    }

    public func saveColumns(_ name: String, _ columns: [StoredColumn]) async throws {
        try await transaction { try $0.columns.save(name, columns) }
    }

    public func clearColumns(_ name: String) async throws {
        try await run { try $0.columns.clear(name) }
    }
}
