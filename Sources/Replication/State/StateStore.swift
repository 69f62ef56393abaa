import Foundation
import MongoClient
import ShiftCore
import SQLiteStore
import Spool

/// Where a stream stands.
public enum StreamPhase: String, Sendable {
    case new
    case snapshotting
    case streaming
    case failed
}

public struct StreamState: Sendable {
    public var name: String
    public var direction: String
    public var phase: StreamPhase
    /// Source clock at snapshot start (watermark text or cluster time document).
    public var snapshotStart: Document?
    /// Newest source position written to the spool.
    public var extractPosition: Document?
    /// Newest source position applied to the target: restart point of the tailer.
    public var appliedPosition: Document?
    public var rowsExtracted: Int
    public var rowsApplied: Int
    public var rowsDeadLettered: Int
    public var staleSkipped: Int
    public var lastError: String?
    public var lastErrorAt: Double?
    public var updatedAt: Double
    public var snapshotCompletedAt: Double?
}

public struct PartitionState: Sendable, Equatable {
    public enum Status: String, Sendable { case pending, claimed, done }
    public var index: Int
    /// Exclusive lower bound (nil: unbounded), inclusive upper bound (nil: unbounded): `{k: [text...]}` documents.
    public var lower: Document?
    public var upper: Document?
    /// Last key durably spooled; reading resumes after it.
    public var lastKey: Document?
    public var status: Status
    public var rows: Int
}

public struct SegmentRecord: Sendable, Equatable {
    public enum Kind: String, Sendable { case snapshot, tail, repair }
    public var stream: String
    public var seq: Int64
    public var kind: Kind
    /// Snapshot partition the segment belongs to (-1 for tail segments).
    public var partition: Int
    public var records: Int
    public var bytes: Int
    public var firstPosition: Document
    public var lastPosition: Document

    public init(stream: String, seq: Int64, kind: Kind, partition: Int, records: Int, bytes: Int, firstPosition: Document, lastPosition: Document) {
        self.stream = stream
        self.seq = seq
        self.kind = kind
        self.partition = partition
        self.records = records
        self.bytes = bytes
        self.firstPosition = firstPosition
        self.lastPosition = lastPosition
    }
}

/// The durable replication state (DESIGN §8): SQLite in WAL mode at `state/state.db`.
/// Every call runs on the store's own thread; readers in other processes (`lag`) never block the daemon.
public final class StateStore: Sendable {
    public static let schemaVersion = 2
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

    public init(directory: String, readOnly: Bool = false) throws {
        if !readOnly {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            chmod(directory, 0o700)
        }
        path = (directory as NSString).appendingPathComponent("state.db")
        if readOnly && !FileManager.default.fileExists(atPath: path) {
            throw SQLiteError(code: 14, message: "no state database at \(path) (nothing has run yet)", sql: nil)
        }
        db = try SQLiteDatabase(path: path, readOnly: readOnly)
        io = IOThread(name: "state")
        isShared = false
        workerID = try Self.loadWorkerID(directory: directory, create: !readOnly)
        do {
            if !readOnly {
                try db.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
                try Self.migrate(db)
            } else {
                try db.execute("PRAGMA query_only=1;")
                _ = try db.query("SELECT count(*) FROM streams")
            }
            if !readOnly {
                try db.query("INSERT INTO meta VALUES ('instance_id', ?) ON CONFLICT DO NOTHING", [.text(UUID().uuidString.lowercased())])
            }
            instanceID = try db.query("SELECT value FROM meta WHERE key = 'instance_id'").first?.first?.text ?? ""
        } catch let error as SQLiteError where error.isCorrupt {
            throw SQLiteError(code: error.code, message: "state database \(path) is corrupt: \(error.message)", sql: nil)
        }
    }

    /// The PostgreSQL store (`state: postgresql://…`): tables in schema `mongoshift_state`, shared by every worker;
    /// `localDirectory` keeps this worker's identity, spool and dead letters.
    public init(url: String, localDirectory: String, readOnly: Bool = false) throws {
        try FileManager.default.createDirectory(atPath: localDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        path = Redaction.redact(url)
        io = IOThread(name: "state")
        isShared = true
        workerID = try Self.loadWorkerID(directory: localDirectory, create: true)
        let database = try io.runBlocking { try PostgresStateDatabase(url: url, schema: "mongoshift_state") }
        db = database
        instanceID = try io.runBlocking { [db] in
            defer { try? database.migrated() }
            if !readOnly { try Self.migrate(db) }
            if !readOnly {
                try db.query("INSERT INTO meta VALUES ('instance_id', ?) ON CONFLICT DO NOTHING", [.text(UUID().uuidString.lowercased())])
            }
            return try db.query("SELECT value FROM meta WHERE key = 'instance_id'", []).first?.first?.text ?? ""
        }
    }

    /// Opens the store a configuration names: a PostgreSQL URL, else the SQLite file in the state directory.
    public static func open(_ config: ReplicationConfig, readOnly: Bool = false) throws -> StateStore {
        if let url = config.stateURL { return try StateStore(url: url, localDirectory: config.stateDirectory, readOnly: readOnly) }
        return try StateStore(directory: config.stateDirectory, readOnly: readOnly)
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

    deinit { io.shutdown() }

    static func migrate(_ db: StateDatabase) throws {
        let d = db.dialect
        try db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        let current = try db.query("SELECT value FROM meta WHERE key = 'schema_version'", []).first?.first?.text.flatMap { Int($0) } ?? 0
        if current > schemaVersion {
            throw SQLiteError(code: 1, message: "state database schema \(current) is newer than this mongoshift (\(schemaVersion))", sql: nil)
        }
        if current < 1 {
            try db.transaction {
                try db.execute("""
                CREATE TABLE streams (
                    name TEXT PRIMARY KEY, direction TEXT NOT NULL, phase TEXT NOT NULL,
                    snapshot_start \(d.blob), extract_position \(d.blob), applied_position \(d.blob),
                    rows_extracted \(d.integer) NOT NULL DEFAULT 0, rows_applied \(d.integer) NOT NULL DEFAULT 0,
                    rows_deadlettered \(d.integer) NOT NULL DEFAULT 0, stale_skipped \(d.integer) NOT NULL DEFAULT 0,
                    last_error TEXT, last_error_at \(d.real), updated_at \(d.real) NOT NULL, snapshot_completed_at \(d.real),
                    next_seq \(d.integer) NOT NULL DEFAULT 1);
                CREATE TABLE partitions (
                    stream TEXT NOT NULL, idx \(d.integer) NOT NULL, lower \(d.blob), upper \(d.blob), last_key \(d.blob),
                    status TEXT NOT NULL, rows \(d.integer) NOT NULL DEFAULT 0, PRIMARY KEY (stream, idx));
                CREATE TABLE segments (
                    stream TEXT NOT NULL, seq \(d.integer) NOT NULL, kind TEXT NOT NULL, partition \(d.integer) NOT NULL,
                    records \(d.integer) NOT NULL, bytes \(d.integer) NOT NULL, first_pos \(d.blob) NOT NULL, last_pos \(d.blob) NOT NULL,
                    created_at \(d.real) NOT NULL, PRIMARY KEY (stream, seq));
                CREATE TABLE columns (
                    stream TEXT NOT NULL, name TEXT NOT NULL, source_path TEXT NOT NULL, type TEXT NOT NULL,
                    width \(d.integer) NOT NULL DEFAULT 0, position \(d.integer) NOT NULL, PRIMARY KEY (stream, name));
                INSERT INTO meta VALUES ('schema_version', '1') ON CONFLICT (key) DO UPDATE SET value = excluded.value
                """)
            }
        }
        if current < 2 {
            // Version 2: several workers — segments belong to the worker whose spool holds them, partitions are
            // claimed, streams are leased (holder, fencing epoch, expiry).
            try db.transaction {
                try db.execute("""
                ALTER TABLE segments ADD COLUMN worker TEXT NOT NULL DEFAULT '';
                ALTER TABLE partitions ADD COLUMN claimed_by TEXT;
                ALTER TABLE partitions ADD COLUMN claim_expires \(d.real);
                CREATE TABLE leases (
                    stream TEXT PRIMARY KEY, holder TEXT NOT NULL, epoch \(d.integer) NOT NULL,
                    expires_at \(d.real) NOT NULL, heartbeat_at \(d.real) NOT NULL);
                INSERT INTO meta VALUES ('schema_version', '2') ON CONFLICT (key) DO UPDATE SET value = excluded.value
                """)
            }
        }
    }

    @discardableResult
    private func run<T: Sendable>(_ body: @escaping @Sendable (StateDatabase) throws -> T) async throws -> T {
        try await io.run { [db] in try body(db) }
    }

    private static var now: Double { Date().timeIntervalSince1970 }

    // MARK: streams

    public func ensureStream(_ name: String, direction: String) async throws -> StreamState {
        try await run { db in
            try db.query("INSERT INTO streams (name, direction, phase, updated_at) VALUES (?, ?, 'new', ?) ON CONFLICT DO NOTHING",
                         [.text(name), .text(direction), .real(Self.now)])
            return try Self.loadStream(db, name)!
        }
    }

    public func stream(_ name: String) async throws -> StreamState? {
        try await run { db in try Self.loadStream(db, name) }
    }

    public func allStreams() async throws -> [StreamState] {
        try await run { db in
            try db.query("SELECT name FROM streams ORDER BY name").compactMap { try Self.loadStream(db, $0[0].text ?? "") }
        }
    }

    static func loadStream(_ db: StateDatabase, _ name: String) throws -> StreamState? {
        guard let r = try db.query("""
            SELECT name, direction, phase, snapshot_start, extract_position, applied_position, rows_extracted,
                   rows_applied, rows_deadlettered, stale_skipped, last_error, last_error_at, updated_at, snapshot_completed_at
            FROM streams WHERE name = ?
            """, [.text(name)]).first else { return nil }
        func doc(_ v: SQLiteValue) -> Document? { v.blob.flatMap { try? Document(bytes: $0) } }
        let real = Self.real
        return StreamState(name: r[0].text ?? name, direction: r[1].text ?? "", phase: StreamPhase(rawValue: r[2].text ?? "") ?? .new,
                           snapshotStart: doc(r[3]), extractPosition: doc(r[4]), appliedPosition: doc(r[5]),
                           rowsExtracted: Int(r[6].int ?? 0), rowsApplied: Int(r[7].int ?? 0),
                           rowsDeadLettered: Int(r[8].int ?? 0), staleSkipped: Int(r[9].int ?? 0),
                           lastError: r[10].text, lastErrorAt: real(r[11]), updatedAt: real(r[12]) ?? 0,
                           snapshotCompletedAt: real(r[13]))
    }

    /// Starts (or restarts) a snapshot: phase, snapshot start, partitions and the tail's seed position, atomically.
    public func beginSnapshot(_ name: String, snapshotStart: Document, tailSeed: Document?, partitions: [PartitionState]) async throws {
        try await run { db in
            try db.transaction {
                try db.query("DELETE FROM partitions WHERE stream = ?", [.text(name)])
                for p in partitions {
                    try db.query("INSERT INTO partitions (stream, idx, lower, upper, last_key, status, rows) VALUES (?, ?, ?, ?, NULL, 'pending', 0)",
                                 [.text(name), .integer(Int64(p.index)), Self.blob(p.lower), Self.blob(p.upper)])
                }
                try db.query("""
                    UPDATE streams SET phase = 'snapshotting', snapshot_start = ?, extract_position = ?, applied_position = ?,
                        snapshot_completed_at = NULL, updated_at = ? WHERE name = ?
                    """, [Self.blob(snapshotStart), Self.blob(tailSeed), Self.blob(tailSeed), .real(Self.now), .text(name)])
            }
        }
    }

    public func partitions(_ name: String) async throws -> [PartitionState] {
        try await run { db in
            try db.query("SELECT idx, lower, upper, last_key, status, rows FROM partitions WHERE stream = ? ORDER BY idx", [.text(name)]).map(Self.partition)
        }
    }

    public func markPartitionDone(_ name: String, index: Int) async throws {
        try await run { db in
            try db.query("UPDATE partitions SET status = 'done' WHERE stream = ? AND idx = ?", [.text(name), .integer(Int64(index))])
        }
    }

    /// Snapshot complete: the tail takes over from the seed position recorded at `beginSnapshot`.
    public func completeSnapshot(_ name: String) async throws {
        try await run { db in
            try db.query("UPDATE streams SET phase = 'streaming', snapshot_completed_at = ?, updated_at = ? WHERE name = ?",
                         [.real(Self.now), .real(Self.now), .text(name)])
        }
    }

    public func setPhase(_ name: String, _ phase: StreamPhase) async throws {
        try await run { db in
            try db.query("UPDATE streams SET phase = ?, updated_at = ? WHERE name = ?", [.text(phase.rawValue), .real(Self.now), .text(name)])
        }
    }

    public func recordError(_ name: String, _ message: String?) async throws {
        try await run { db in
            try db.query("UPDATE streams SET last_error = ?, last_error_at = ? WHERE name = ?",
                         [message.map { .text(Redaction.redact($0)) } ?? .null, message == nil ? .null : .real(Self.now), .text(name)])
        }
    }

    public func addDeadLetters(_ name: String, count: Int) async throws {
        guard count > 0 else { return }
        try await run { db in
            try db.query("UPDATE streams SET rows_deadlettered = rows_deadlettered + ? WHERE name = ?", [.integer(Int64(count)), .text(name)])
        }
    }

    // MARK: segments

    /// A fresh segment sequence number for the stream (monotone, never reused).
    public func allocateSequence(_ name: String) async throws -> Int64 {
        try await run { db in
            // One statement: concurrent workers never draw the same number.
            try db.query("UPDATE streams SET next_seq = next_seq + 1 WHERE name = ? RETURNING next_seq - 1", [.text(name)]).first?.first?.int ?? 1
        }
    }

    /// Records a durable segment and advances the extract position in one transaction: a snapshot page moves its
    /// partition's last key, a tail segment moves the stream's extract position.
    public func recordSegment(_ segment: SegmentRecord) async throws {
        try await run { db in
            try db.transaction {
                try db.query("""
                    INSERT INTO segments (stream, seq, kind, partition, records, bytes, first_pos, last_pos, created_at, worker)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """, [.text(segment.stream), .integer(segment.seq), .text(segment.kind.rawValue), .integer(Int64(segment.partition)),
                          .integer(Int64(segment.records)), .integer(Int64(segment.bytes)), .blob(segment.firstPosition.bytes),
                          .blob(segment.lastPosition.bytes), .real(Self.now), .text(self.workerID)])
                switch segment.kind {
                case .snapshot:
                    // Each page also renews this worker's claim on the partition.
                    try db.query("UPDATE partitions SET last_key = ?, rows = rows + ?, claim_expires = ? WHERE stream = ? AND idx = ?",
                                 [.blob(segment.lastPosition.bytes), .integer(Int64(segment.records)), .real(Self.now + self.claimDuration),
                                  .text(segment.stream), .integer(Int64(segment.partition))])
                case .tail:
                    try db.query("UPDATE streams SET extract_position = ? WHERE name = ?", [.blob(segment.lastPosition.bytes), .text(segment.stream)])
                case .repair:
                    break
                }
                try db.query("UPDATE streams SET rows_extracted = rows_extracted + ?, updated_at = ? WHERE name = ?",
                             [.integer(Int64(segment.records)), .real(Self.now), .text(segment.stream)])
            }
        }
    }

    public func pendingSegments(_ name: String) async throws -> [SegmentRecord] {
        try await run { db in
            try db.query("""
                SELECT stream, seq, kind, partition, records, bytes, first_pos, last_pos FROM segments WHERE stream = ? AND worker = ? ORDER BY seq
                """, [.text(name), .text(self.workerID)]).map(Self.segment)
        }
    }

    static func segment(_ r: SQLiteRow) -> SegmentRecord {
        SegmentRecord(stream: r[0].text ?? "", seq: r[1].int ?? 0, kind: SegmentRecord.Kind(rawValue: r[2].text ?? "") ?? .tail,
                      partition: Int(r[3].int ?? -1), records: Int(r[4].int ?? 0), bytes: Int(r[5].int ?? 0),
                      firstPosition: (try? Document(bytes: r[6].blob ?? [])) ?? Document(),
                      lastPosition: (try? Document(bytes: r[7].blob ?? [])) ?? Document())
    }

    /// The segment's changes are in the target: forget the segment and, for tail segments, advance the applied
    /// position. Only after this returns may the file be deleted.
    public func markApplied(_ segment: SegmentRecord, applied: Int, staleSkipped: Int) async throws {
        try await run { db in
            try db.transaction {
                try db.query("DELETE FROM segments WHERE stream = ? AND seq = ?", [.text(segment.stream), .integer(segment.seq)])
                if segment.kind == .tail {
                    try db.query("UPDATE streams SET applied_position = ? WHERE name = ?", [.blob(segment.lastPosition.bytes), .text(segment.stream)])
                }
                try db.query("""
                    UPDATE streams SET rows_applied = rows_applied + ?, stale_skipped = stale_skipped + ?, last_error = NULL,
                        updated_at = ? WHERE name = ?
                    """, [.integer(Int64(applied)), .integer(Int64(staleSkipped)), .real(Self.now), .text(segment.stream)])
            }
        }
    }

    /// Moves the applied position without a segment (idle streams: resume tokens age out otherwise).
    public func setAppliedPosition(_ name: String, _ position: Document, alsoExtract: Bool) async throws {
        try await run { db in
            try db.query("UPDATE streams SET applied_position = ?\(alsoExtract ? ", extract_position = ?" : "") , updated_at = ? WHERE name = ?",
                         alsoExtract ? [.blob(position.bytes), .blob(position.bytes), .real(Self.now), .text(name)]
                                     : [.blob(position.bytes), .real(Self.now), .text(name)])
        }
    }

    /// Forgets a segment without applying it (corrupt file): its range is re-extracted from `rewindTo`.
    public func discardSegment(_ segment: SegmentRecord) async throws {
        try await run { db in
            try db.transaction {
                try db.query("DELETE FROM segments WHERE stream = ? AND seq = ?", [.text(segment.stream), .integer(segment.seq)])
                switch segment.kind {
                case .snapshot:
                    // Re-read the partition from before this page; later pages are re-read too (idempotent).
                    try db.query("UPDATE partitions SET last_key = ?, status = 'pending' WHERE stream = ? AND idx = ?",
                                 [.blob(segment.firstPosition.bytes), .text(segment.stream), .integer(Int64(segment.partition))])
                case .tail:
                    try db.query("UPDATE streams SET extract_position = applied_position WHERE name = ?", [.text(segment.stream)])
                    // Later tail segments overlap the re-read range; dropping them keeps the order simple.
                    try db.query("DELETE FROM segments WHERE stream = ? AND kind = 'tail' AND seq > ?", [.text(segment.stream), .integer(segment.seq)])
                case .repair:
                    break
                }
            }
        }
    }

    public func knownSequences(_ name: String) async throws -> Set<Int64> {
        try await run { db in
            Set(try db.query("SELECT seq FROM segments WHERE stream = ? AND worker = ?", [.text(name), .text(self.workerID)]).compactMap { $0[0].int })
        }
    }

    public func spoolBacklog(_ name: String) async throws -> (segments: Int, rows: Int, bytes: Int) {
        try await run { db in
            let r = try db.query("SELECT count(*), coalesce(sum(records), 0), coalesce(sum(bytes), 0) FROM segments WHERE stream = ? AND worker = ?",
                                 [.text(name), .text(self.workerID)]).first
            return (Int(r?[0].int ?? 0), Int(r?[1].int ?? 0), Int(r?[2].int ?? 0))
        }
    }

    /// Resets a stream so the next run snapshots it again (history lost, operator request).
    public func resetStream(_ name: String) async throws {
        try await run { db in
            try db.transaction {
                try db.query("DELETE FROM partitions WHERE stream = ?", [.text(name)])
                try db.query("DELETE FROM segments WHERE stream = ?", [.text(name)])
                try db.query("""
                    UPDATE streams SET phase = 'new', snapshot_start = NULL, extract_position = NULL, applied_position = NULL,
                        snapshot_completed_at = NULL, updated_at = ? WHERE name = ?
                    """, [.real(Self.now), .text(name)])
            }
        }
    }

    // MARK: workers: leases and partition claims

    /// `stream`'s lease: who runs it, under which fencing epoch, until when (seconds since 1970).
    public struct Lease: Sendable, Equatable {
        public var stream: String
        public var holder: String
        public var epoch: Int64
        public var expiresAt: Double
    }

    /// Takes `stream` for this worker if it is free, expired, or already this worker's (a restart). Every
    /// acquisition raises the epoch, fencing whoever held it before. Taking it over from another worker rewinds
    /// the extract position to the applied one and forgets that worker's segments: they are in its spool, gone
    /// with it, so this worker re-extracts from the applied position. nil: another worker holds it.
    public func acquireLease(_ stream: String, duration: Duration) async throws -> Lease? {
        let expires = Self.now + duration.seconds
        // A local store has one worker: an old lease (a crashed run) never blocks the next.
        let stale = isShared ? Self.now : .greatestFiniteMagnitude
        return try await run { [workerID] db in
            try db.transaction {
                let previous = try db.query("SELECT holder FROM leases WHERE stream = ?", [.text(stream)]).first?.first?.text
                guard let epoch = try db.query("""
                    INSERT INTO leases (stream, holder, epoch, expires_at, heartbeat_at) VALUES (?, ?, 1, ?, ?)
                    ON CONFLICT (stream) DO UPDATE SET holder = excluded.holder, epoch = leases.epoch + 1,
                        expires_at = excluded.expires_at, heartbeat_at = excluded.heartbeat_at
                    WHERE leases.holder = excluded.holder OR leases.expires_at < ?
                    RETURNING epoch
                    """, [.text(stream), .text(workerID), .real(expires), .real(Self.now), .real(stale)]).first?.first?.int
                else { return nil }
                if let previous, previous != workerID {
                    try db.query("UPDATE streams SET extract_position = applied_position WHERE name = ?", [.text(stream)])
                    try db.query("DELETE FROM segments WHERE stream = ? AND worker <> ? AND kind <> 'snapshot'", [.text(stream), .text(workerID)])
                }
                return Lease(stream: stream, holder: workerID, epoch: epoch, expiresAt: expires)
            }
        }
    }

    /// Extends this worker's lease; false when it was lost (expired and taken, or a newer epoch exists).
    public func renewLease(_ lease: Lease, duration: Duration) async throws -> Bool {
        try await run { db in
            let updated = try db.query("""
                UPDATE leases SET expires_at = ?, heartbeat_at = ? WHERE stream = ? AND holder = ? AND epoch = ? RETURNING epoch
                """, [.real(Self.now + duration.seconds), .real(Self.now), .text(lease.stream), .text(lease.holder), .integer(lease.epoch)])
            return !updated.isEmpty
        }
    }

    /// Gives the stream up at a clean shutdown, so another worker need not wait for the expiry.
    public func releaseLease(_ lease: Lease) async throws {
        try await run { db in
            try db.query("UPDATE leases SET expires_at = 0 WHERE stream = ? AND holder = ? AND epoch = ?",
                         [.text(lease.stream), .text(lease.holder), .integer(lease.epoch)])
        }
    }

    /// True while `epoch` is the stream's current lease and has not expired: checked before every apply.
    public func holdsLease(_ stream: String, epoch: Int64) async throws -> Bool {
        let now = isShared ? Self.now : -Double.greatestFiniteMagnitude
        return try await run { [workerID] db in
            !(try db.query("SELECT 1 FROM leases WHERE stream = ? AND holder = ? AND epoch = ? AND expires_at >= ?",
                           [.text(stream), .text(workerID), .integer(epoch), .real(now)]).isEmpty)
        }
    }

    public func leases() async throws -> [Lease] {
        try await run { db in
            try db.query("SELECT stream, holder, epoch, expires_at FROM leases ORDER BY stream").map {
                Lease(stream: $0[0].text ?? "", holder: $0[1].text ?? "", epoch: $0[2].int ?? 0, expiresAt: Self.real($0[3]) ?? 0)
            }
        }
    }

    /// Claims the next snapshot partition nobody is copying: pending (resuming at its last page when this worker
    /// copied it before — see `releaseClaims`), or claimed by a worker whose claim expired (that worker's pages
    /// are in its own spool, so the partition starts over). PostgreSQL: `FOR UPDATE SKIP LOCKED`, so workers never wait for
    /// each other. Returns nil when no partition is left to claim.
    public func claimPartition(_ stream: String, duration: Duration) async throws -> PartitionState? {
        let expires = Self.now + duration.seconds
        // (Never this run's own live claims: its extractors would copy a partition twice.)
        let stale = Self.now
        let lock = db.dialect == .postgres ? " FOR UPDATE SKIP LOCKED" : ""
        return try await run { [workerID] db in
            try db.transaction {
                guard let r = try db.query("""
                    UPDATE partitions SET status = 'claimed', claimed_by = ?, claim_expires = ?,
                        last_key = CASE WHEN claimed_by IS NULL OR claimed_by = ? THEN last_key ELSE NULL END,
                        rows = CASE WHEN claimed_by IS NULL OR claimed_by = ? THEN rows ELSE 0 END
                    WHERE stream = ? AND idx = (SELECT idx FROM partitions WHERE stream = ? AND (status = 'pending'
                        OR (status = 'claimed' AND claim_expires < ?)) ORDER BY idx LIMIT 1\(lock))
                    RETURNING idx, lower, upper, last_key, status, rows
                    """, [.text(workerID), .real(expires), .text(workerID), .text(workerID), .text(stream), .text(stream),
                          .real(stale)]).first
                else { return nil }
                let index = r[0].int ?? 0
                // Pages another worker spooled for it are in that worker's spool: forget them.
                try db.query("DELETE FROM segments WHERE stream = ? AND partition = ? AND kind = 'snapshot' AND worker <> ?",
                             [.text(stream), .integer(index), .text(workerID)])
                return Self.partition(r)
            }
        }
    }

    /// At the start of a snapshot run: this worker's claims from an earlier run (a crash) go back to pending,
    /// keeping their last page, so this run (or another worker, starting over) picks them up.
    public func releaseClaims(_ stream: String) async throws {
        try await run { [workerID] db in
            try db.query("UPDATE partitions SET status = 'pending' WHERE stream = ? AND status = 'claimed' AND claimed_by = ?",
                         [.text(stream), .text(workerID)])
        }
    }

    /// Partitions not yet done and snapshot segments not yet applied, over all workers: the snapshot is
    /// complete only when both are zero.
    public func snapshotRemaining(_ stream: String) async throws -> (partitions: Int, segments: Int) {
        try await run { db in
            let p = try db.query("SELECT count(*) FROM partitions WHERE stream = ? AND status <> 'done'", [.text(stream)]).first?.first?.int ?? 0
            let s = try db.query("SELECT count(*) FROM segments WHERE stream = ? AND kind = 'snapshot'", [.text(stream)]).first?.first?.int ?? 0
            return (Int(p), Int(s))
        }
    }

    static func real(_ v: SQLiteValue) -> Double? {
        if case .real(let d) = v { return d }
        if case .integer(let i) = v { return Double(i) }
        return nil
    }

    static func partition(_ r: SQLiteRow) -> PartitionState {
        PartitionState(index: Int(r[0].int ?? 0), lower: r[1].blob.flatMap { try? Document(bytes: $0) },
                       upper: r[2].blob.flatMap { try? Document(bytes: $0) },
                       lastKey: r[3].blob.flatMap { try? Document(bytes: $0) },
                       status: PartitionState.Status(rawValue: r[4].text ?? "") ?? .pending, rows: Int(r[5].int ?? 0))
    }

    // MARK: target schema (Mongo → Redshift)

    public func loadColumns(_ name: String) async throws -> [(name: String, path: String, type: String)] {
        try await run { db in
            try db.query("SELECT name, source_path, type FROM columns WHERE stream = ? ORDER BY position", [.text(name)]).map {
                ($0[0].text ?? "", $0[1].text ?? "", $0[2].text ?? "")
            }
        }
    }

    public func saveColumns(_ name: String, _ columns: [(name: String, path: String, type: String)]) async throws {
        try await run { db in
            try db.transaction {
                try db.query("DELETE FROM columns WHERE stream = ?", [.text(name)])
                for (i, c) in columns.enumerated() {
                    try db.query("INSERT INTO columns (stream, name, source_path, type, position) VALUES (?, ?, ?, ?, ?)",
                                 [.text(name), .text(c.name), .text(c.path), .text(c.type), .integer(Int64(i))])
                }
            }
        }
    }

    public func clearColumns(_ name: String) async throws {
        try await run { db in try db.query("DELETE FROM columns WHERE stream = ?", [.text(name)]) }
    }

    private static func blob(_ d: Document?) -> SQLiteValue { d.map { .blob($0.bytes) } ?? .null }
}
