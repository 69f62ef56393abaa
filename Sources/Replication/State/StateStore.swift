import Foundation
import MongoClient
import ShiftCore
import SQLiteStore

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
    public enum Status: String, Sendable { case pending, done }
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
    public static let schemaVersion = 1
    private let io: IOThread
    private let db: SQLiteDatabase
    public let path: String
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
        do {
            if !readOnly {
                try db.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
                try Self.migrate(db)
            } else {
                try db.execute("PRAGMA query_only=1;")
                _ = try db.query("SELECT count(*) FROM streams")
            }
            if !readOnly {
                try db.query("INSERT OR IGNORE INTO meta VALUES ('instance_id', ?)", [.text(UUID().uuidString.lowercased())])
            }
            instanceID = try db.query("SELECT value FROM meta WHERE key = 'instance_id'").first?.first?.text ?? ""
        } catch let error as SQLiteError where error.isCorrupt {
            throw SQLiteError(code: error.code, message: "state database \(path) is corrupt: \(error.message)", sql: nil)
        }
    }

    deinit { io.shutdown() }

    static func migrate(_ db: SQLiteDatabase) throws {
        try db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        let current = try db.query("SELECT value FROM meta WHERE key = 'schema_version'").first?.first?.text.flatMap { Int($0) } ?? 0
        if current > schemaVersion {
            throw SQLiteError(code: 1, message: "state database schema \(current) is newer than this mongoshift (\(schemaVersion))", sql: nil)
        }
        if current < 1 {
            try db.transaction {
                try db.execute("""
                CREATE TABLE streams (
                    name TEXT PRIMARY KEY, direction TEXT NOT NULL, phase TEXT NOT NULL,
                    snapshot_start BLOB, extract_position BLOB, applied_position BLOB,
                    rows_extracted INTEGER NOT NULL DEFAULT 0, rows_applied INTEGER NOT NULL DEFAULT 0,
                    rows_deadlettered INTEGER NOT NULL DEFAULT 0, stale_skipped INTEGER NOT NULL DEFAULT 0,
                    last_error TEXT, last_error_at REAL, updated_at REAL NOT NULL, snapshot_completed_at REAL,
                    next_seq INTEGER NOT NULL DEFAULT 1);
                CREATE TABLE partitions (
                    stream TEXT NOT NULL, idx INTEGER NOT NULL, lower BLOB, upper BLOB, last_key BLOB,
                    status TEXT NOT NULL, rows INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (stream, idx));
                CREATE TABLE segments (
                    stream TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, partition INTEGER NOT NULL,
                    records INTEGER NOT NULL, bytes INTEGER NOT NULL, first_pos BLOB NOT NULL, last_pos BLOB NOT NULL,
                    created_at REAL NOT NULL, PRIMARY KEY (stream, seq));
                CREATE TABLE columns (
                    stream TEXT NOT NULL, name TEXT NOT NULL, source_path TEXT NOT NULL, type TEXT NOT NULL,
                    width INTEGER NOT NULL DEFAULT 0, position INTEGER NOT NULL, PRIMARY KEY (stream, name));
                INSERT OR REPLACE INTO meta VALUES ('schema_version', '1');
                """)
            }
        }
    }

    @discardableResult
    private func run<T: Sendable>(_ body: @escaping @Sendable (SQLiteDatabase) throws -> T) async throws -> T {
        try await io.run { [db] in try body(db) }
    }

    private static var now: Double { Date().timeIntervalSince1970 }

    // MARK: streams

    public func ensureStream(_ name: String, direction: String) async throws -> StreamState {
        try await run { db in
            try db.query("INSERT OR IGNORE INTO streams (name, direction, phase, updated_at) VALUES (?, ?, 'new', ?)",
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

    static func loadStream(_ db: SQLiteDatabase, _ name: String) throws -> StreamState? {
        guard let r = try db.query("""
            SELECT name, direction, phase, snapshot_start, extract_position, applied_position, rows_extracted,
                   rows_applied, rows_deadlettered, stale_skipped, last_error, last_error_at, updated_at, snapshot_completed_at
            FROM streams WHERE name = ?
            """, [.text(name)]).first else { return nil }
        func doc(_ v: SQLiteValue) -> Document? { v.blob.flatMap { try? Document(bytes: $0) } }
        func real(_ v: SQLiteValue) -> Double? {
            if case .real(let d) = v { return d }
            if case .integer(let i) = v { return Double(i) }
            return nil
        }
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
            try db.query("SELECT idx, lower, upper, last_key, status, rows FROM partitions WHERE stream = ? ORDER BY idx", [.text(name)]).map { r in
                PartitionState(index: Int(r[0].int ?? 0), lower: r[1].blob.flatMap { try? Document(bytes: $0) },
                               upper: r[2].blob.flatMap { try? Document(bytes: $0) },
                               lastKey: r[3].blob.flatMap { try? Document(bytes: $0) },
                               status: PartitionState.Status(rawValue: r[4].text ?? "") ?? .pending, rows: Int(r[5].int ?? 0))
            }
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
            try db.transaction {
                let seq = try db.query("SELECT next_seq FROM streams WHERE name = ?", [.text(name)]).first?.first?.int ?? 1
                try db.query("UPDATE streams SET next_seq = ? WHERE name = ?", [.integer(seq + 1), .text(name)])
                return seq
            }
        }
    }

    /// Records a durable segment and advances the extract position in one transaction: a snapshot page moves its
    /// partition's last key, a tail segment moves the stream's extract position.
    public func recordSegment(_ segment: SegmentRecord) async throws {
        try await run { db in
            try db.transaction {
                try db.query("""
                    INSERT INTO segments (stream, seq, kind, partition, records, bytes, first_pos, last_pos, created_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """, [.text(segment.stream), .integer(segment.seq), .text(segment.kind.rawValue), .integer(Int64(segment.partition)),
                          .integer(Int64(segment.records)), .integer(Int64(segment.bytes)), .blob(segment.firstPosition.bytes),
                          .blob(segment.lastPosition.bytes), .real(Self.now)])
                switch segment.kind {
                case .snapshot:
                    try db.query("UPDATE partitions SET last_key = ?, rows = rows + ? WHERE stream = ? AND idx = ?",
                                 [.blob(segment.lastPosition.bytes), .integer(Int64(segment.records)), .text(segment.stream), .integer(Int64(segment.partition))])
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
                SELECT stream, seq, kind, partition, records, bytes, first_pos, last_pos FROM segments WHERE stream = ? ORDER BY seq
                """, [.text(name)]).map(Self.segment)
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
            Set(try db.query("SELECT seq FROM segments WHERE stream = ?", [.text(name)]).compactMap { $0[0].int })
        }
    }

    public func spoolBacklog(_ name: String) async throws -> (segments: Int, rows: Int, bytes: Int) {
        try await run { db in
            let r = try db.query("SELECT count(*), coalesce(sum(records), 0), coalesce(sum(bytes), 0) FROM segments WHERE stream = ?", [.text(name)]).first
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
