import BSON
import Foundation
import Changes
import Logging
import MongoClient
import Spool
import StateStore

/// Applies changes to a Mongo collection with unordered bulk writes, guarded by version (`RowVersion`): a write
/// replaces a document only if the stored `_mongoshift.v` is ≤ the incoming one; otherwise the upsert collides on
/// `_id` (E11000) and the change is counted as stale. Deletes leave version-carrying `Tombstones`, and an upsert
/// not newer than its key's tombstone is stale too. Replays can never regress data or undo a delete.
///
/// Applies and reconcile deletes of one collection run one at a time (`gate`): a tombstone is read and honoured
/// without a delete slipping in between.
public struct MongoApplier: Sendable {
    public let client: MongoClient
    public let database: String
    public let collection: String
    public static let maxDocumentBytes = 16 * 1024 * 1024
    let tombstones: Tombstones
    private let gate = ApplyGate()
    /// `max_writes_per_second` (shared clusters, Cosmos DB): nil = as fast as the server takes them.
    let limiter: WriteRateLimiter?

    public init(client: MongoClient, database: String, collection: String, maxWritesPerSecond: Int? = nil) {
        self.client = client
        self.database = database
        self.collection = collection
        tombstones = Tombstones(client: client, database: database, collection: collection)
        limiter = maxWritesPerSecond.map { WriteRateLimiter(perSecond: $0) }
    }

    /// A bulk write to the collection, paced by `max_writes_per_second` (split into the limiter's chunks). Items
    /// the server throttled (16500) are sent again, alone, after a back-off; after 8 rounds the batch fails with a
    /// transient error, retried whole (it is idempotent) — never dead-lettered.
    func write(_ ops: [WriteOperation]) async throws -> BulkWriteResult {
        var total = BulkWriteResult()
        var pending = Array(ops.indices)
        var round = 0
        while true {
            var throttled: [Int] = []
            var start = 0
            while start < pending.count {
                let indices = Array(pending[start..<min(pending.count, start + (limiter?.chunk ?? pending.count))])
                if let limiter { try await limiter.acquire(indices.count) }
                // The documents come from the row encoder, which validated their text (docs/ARCHITECTURE.md, "Types").
                // (The whole batch at once — the usual case — is passed as it is, not copied.)
                let chunk = indices.count == ops.count ? ops : indices.map { ops[$0] }
                var result = try await client.bulkWrite(database: database, collection: collection, chunk, validation: .skipUTF8)
                // Errors name positions in this bulk: back to positions in `ops`, throttled ones set aside.
                let errors = result.writeErrors
                result.writeErrors = []
                total.append(result, offset: 0)
                for error in errors {
                    if MongoError.isThrottling(error.code) { throttled.append(indices[error.index]) }
                    else { total.writeErrors.append(BulkWriteError(index: indices[error.index], code: error.code, message: error.message)) }
                }
                start += indices.count
            }
            if throttled.isEmpty { return try Self.checkTransientItems(total) }
            if round >= 7 { _ = try Self.checkThrottling(BulkWriteResult(throttled: throttled.count)) }
            try await Task.sleep(for: .milliseconds(Int(min(5_000, 100 * pow(2.0, Double(round))))))
            pending = throttled
            round += 1
        }
    }

    /// The unique index other than `_id`'s that an E11000 message names (`… index: email_1 dup key: …`); nil for
    /// `_id_` or a message naming none (a server that words it differently: taken as the `_id` guard, as before).
    static func otherUniqueIndex(_ message: String) -> String? {
        guard let at = message.range(of: " index: ") else { return nil }
        let name = message[at.upperBound...].prefix { $0 != " " }
        return name.isEmpty || name == "_id_" ? nil : String(name)
    }

    /// A result with items that failed for a passing reason (a shard's primary stepping down, stale routing) is a
    /// transient error: the batch is retried whole (it is idempotent). Dead-lettering them lost their rows — the
    /// position moved past changes the target never took.
    static func checkTransientItems(_ result: BulkWriteResult) throws -> BulkWriteResult {
        if let failed = result.writeErrors.first(where: { MongoError.isTransient(serverCode: $0.code) }) {
            throw MongoError(code: .server, serverCode: failed.code, message: "bulk write item failed for now: \(failed.message)")
        }
        return result
    }

    /// A result with throttled items is a transient error (the batch is retried whole, never dead-lettered).
    static func checkThrottling(_ result: BulkWriteResult) throws -> BulkWriteResult {
        if let throttled = result.writeErrors.first(where: { MongoError.isThrottling($0.code) }) {
            throw MongoError(code: .server, serverCode: throttled.code, message: "throttled by the server: \(throttled.message)")
        }
        return result
    }

    public struct Outcome: Sendable {
        public var applied = 0
        public var stale = 0
        /// Re-read rows that had not changed (lookback): not re-written.
        public var rescanned = 0
        public var deadLetters: [DeadLetterFile.Entry] = []
    }

    /// How a batch is written.
    public enum Mode: Sendable {
        /// Snapshot pages: plain inserts (cheapest), falling back to guarded replaces for keys that exist.
        case insertFirst
        /// Changes: replace when the stored version is older or equal.
        case guarded
        /// Re-reads (lookback): replace only when the stored version is older; an unchanged row is not re-written.
        case rescan
    }

    /// `admit`: asked once the collection's other writes are done, just before this batch's (false: nothing written).
    public func apply(_ changes: [Change], mode: Mode, admit: () async throws -> Bool = { true }) async throws -> Outcome {
        try await gate.serially {
            guard try await admit() else { return Outcome() }
            return try await applyNow(changes, mode: mode)
        }
    }

    private func applyNow(_ changes: [Change], mode: Mode) async throws -> Outcome {
        var outcome = Outcome()
        let latest = changes.latestPerKey()
        // Changes are referred to by position: copying one retains its key, document and version.
        var upserts: [Int] = []
        var deletes: [Int] = []
        upserts.reserveCapacity(latest.count)
        for i in latest.indices {
            if latest[i].operation == .delete { deletes.append(i); continue }
            guard let size = latest[i].document?.byteCount else { continue }
            if size > Self.maxDocumentBytes {
                outcome.deadLetters.append(.init(key: latest[i].key, reason: "document is \(size) bytes, over MongoDB's 16 MiB limit"))
                continue
            }
            upserts.append(i)
        }
        if !upserts.isEmpty, try await gate.mayHaveTombstones({ try await tombstones.any() }) {
            let dead = try await tombstones.versions(of: upserts.map { latest[$0].key })
            let before = upserts.count
            upserts.removeAll { Tombstones.isStale(latest[$0].version, against: dead[latest[$0].key]) }
            outcome.stale += before - upserts.count
        }
        // Deletes first: a value one frees in a unique index of the target is then free for this batch's writes.
        if !deletes.isEmpty {
            // The tombstones first: a crash between the two replays both.
            try await tombstones.record(deletes.compactMap { i in latest[i].version.map { (latest[i].key, $0) } })
            gate.noteTombstones()
            let ops: [WriteOperation] = deletes.map { .delete(filter: Self.guardFilter(key: latest[$0].key, version: latest[$0].version)) }
            let result = try await write(ops)
            for error in result.writeErrors {
                outcome.deadLetters.append(.init(key: latest[deletes[error.index]].key, reason: "mongo \(error.code): \(error.message)"))
            }
            outcome.applied += deletes.count - result.writeErrors.count
        }
        var replaceQueue = upserts
        if mode == .insertFirst && !upserts.isEmpty {
            let result = try await write(upserts.map { .insert(latest[$0].document!) })
            replaceQueue = []
            outcome.applied += result.inserted
            for error in result.writeErrors {
                if error.code == 11000 { replaceQueue.append(upserts[error.index]) }
                else { outcome.deadLetters.append(.init(key: latest[upserts[error.index]].key, reason: "mongo \(error.code): \(error.message)")) }
            }
        }
        // Guarded replaces. A duplicate on `_id` is the version guard's answer (stale); one on another unique index
        // of the target may be a value a later change of this batch frees: those changes go again while a pass
        // writes any of them, then the rest are dead-lettered naming the index — never counted as stale.
        while !replaceQueue.isEmpty {
            let ops: [WriteOperation] = replaceQueue.map {
                .replace(filter: Self.guardFilter(key: latest[$0].key, version: latest[$0].version, strictlyNewer: mode == .rescan),
                         replacement: latest[$0].document!, upsert: true)
            }
            let result = try await write(ops)
            var blocked: [(change: Int, index: String, message: String)] = []
            for error in result.writeErrors {
                let change = replaceQueue[error.index]
                if error.code == 11000, let index = Self.otherUniqueIndex(error.message) { blocked.append((change, index, error.message)) }
                else if error.code == 11000 && mode == .rescan { outcome.rescanned += 1 }
                else if error.code == 11000 { outcome.stale += 1 }
                else { outcome.deadLetters.append(.init(key: latest[change].key, reason: "mongo \(error.code): \(error.message)")) }
            }
            outcome.applied += replaceQueue.count - result.writeErrors.count
            if blocked.count < replaceQueue.count && !blocked.isEmpty {
                replaceQueue = blocked.map(\.change)
                continue
            }
            for b in blocked {
                outcome.deadLetters.append(.init(key: latest[b.change].key,
                                                 reason: "another document holds this value in the target's unique index \(b.index): \(b.message)"))
            }
            break
        }
        return outcome
    }

    /// A document the hard-delete reconcile found without a source row, with the version it had then (nil:
    /// unversioned).
    public struct SeenDocument: Sendable {
        public var key: BSON
        public var version: BSON?
        public init(key: BSON, version: BSON?) {
            self.key = key
            self.version = version
        }
    }

    /// The target's documents with these keys and their versions now: read before the source confirms the rows
    /// gone, so a delete can spare a document rewritten since (`deleteKeys`).
    public func seenDocuments(_ keys: [BSON]) async throws -> [SeenDocument] {
        try await gate.serially {
            let docs = try await client.findAll(database: database, collection: collection,
                                                filter: ["_id": .document(["$in": .array(keys)])], projection: ["_mongoshift.v": 1])
            return docs.compactMap { doc in doc["_id"].map { SeenDocument(key: $0, version: doc.value(at: "_mongoshift.v")) } }
        }
    }

    /// Deletes of keys gone from the source (hard-delete reconcile), each only while its document still has the
    /// version it had before the source was asked — a row inserted again meanwhile, and applied by the tail, keeps
    /// its document — and tombstoned at that version, so an older change replayed later cannot bring it back.
    public func deleteKeys(_ seen: [SeenDocument]) async throws -> Int {
        guard !seen.isEmpty else { return 0 }
        return try await gate.serially {
            try await tombstones.record(seen.map { ($0.key, $0.version ?? .int64(RowVersion.unversioned)) })
            gate.noteTombstones()
            let result = try await write(seen.map { document in
                let version: BSON = document.version ?? .document(["$exists": false])
                return .delete(filter: ["_id": document.key, "_mongoshift.v": version])
            })
            return result.removed
        }
    }

    /// Removes tombstones older than `retention`.
    public func purgeTombstones(olderThan retention: Duration) async throws -> Int {
        try await tombstones.purge(recordedBefore: Date().addingTimeInterval(-retention.seconds))
    }

    /// `{_id: k, $or: [{_mongoshift.v: {$lte: v}}, {_mongoshift.v: {$not: {$type: "number"}}}]}`: replaces an older
    /// (`strictlyNewer`: `$lt`) or unversioned document. (Versions written by mongoshift before they were int64
    /// everywhere — dates — are not numbers: they are replaced once, by a version of the current encoding.)
    public static func guardFilter(key: BSON, version: BSON?, strictlyNewer: Bool = false) -> Document {
        guard let version else { return ["_id": key] }
        return [
            "_id": key,
            "$or": .array([
                .document(["_mongoshift.v": .document([strictlyNewer ? "$lt" : "$lte": version])]),
                .document(["_mongoshift.v": .document(["$not": .document(["$type": "number"])])]),
            ]),
        ]
    }
}

/// Mongo as a change target: snapshot pages insert first; everything else goes through the version guard.
struct MongoTarget: ChangeTarget {
    let applier: MongoApplier
    let context: StreamContext

    func apply(_ changes: [Change], segment: SegmentRecord) async throws -> ApplyOutcome {
        let mode: MongoApplier.Mode = switch segment.kind {
        case .snapshot: .insertFirst
        case .tail: .guarded
        case .repair: .rescan
        }
        let o = try await applier.apply(changes, mode: mode) { [context] in
            guard segment.kind == .snapshot, try await context.state.snapshotGeneration(ifRecorded: segment) == nil else { return true }
            // A page of a plan a reset forgot, or of a partition taken over from a stalled worker and copied again:
            // its rows may be older than what the target holds now (a reset lowered every version).
            context.logger.notice("snapshot page of a forgotten plan not applied", metadata: ["segment": "\(segment.seq)"])
            return false
        }
        return ApplyOutcome(applied: o.applied, stale: o.stale, rescanned: o.rescanned, deadLetters: o.deadLetters)
    }
}

private extension BulkWriteResult {
    /// A result standing for `throttled` items the server kept refusing.
    init(throttled: Int) {
        self.init()
        writeErrors = [BulkWriteError(index: 0, code: 16500, message: "\(throttled) operations still throttled after 8 rounds")]
    }
}

