import BSON
import Changes
import Logging
import MongoClient
import Spool
import StateStore

/// Applies changes to a Mongo collection with unordered bulk writes, guarded by version: a write replaces a
/// document only if the stored `_mongoshift.v` is ≤ the incoming one; otherwise the upsert collides on `_id`
/// (E11000) and the change is counted as stale. Replays can never regress data.
public struct MongoApplier: Sendable {
    public let client: MongoClient
    public let database: String
    public let collection: String
    public static let maxDocumentBytes = 16 * 1024 * 1024

    public init(client: MongoClient, database: String, collection: String) {
        self.client = client
        self.database = database
        self.collection = collection
    }

    public struct Outcome: Sendable {
        public var applied = 0
        public var stale = 0
        public var deadLetters: [DeadLetterFile.Entry] = []
    }

    /// `insertFirst`: snapshot mode — plain inserts (cheapest), falling back to guarded replaces for keys that exist.
    public func apply(_ changes: [Change], insertFirst: Bool) async throws -> Outcome {
        var outcome = Outcome()
        let latest = changes.latestPerKey()
        var upserts: [Change] = []
        var deletes: [Change] = []
        for change in latest {
            if change.operation == .delete { deletes.append(change); continue }
            guard let doc = change.document else { continue }
            if doc.byteCount > Self.maxDocumentBytes {
                outcome.deadLetters.append(.init(key: change.key, reason: "document is \(doc.byteCount) bytes, over MongoDB's 16 MiB limit"))
                continue
            }
            upserts.append(change)
        }
        var replaceQueue = upserts
        if insertFirst && !upserts.isEmpty {
            let result = try await client.bulkWrite(database: database, collection: collection, upserts.map { .insert($0.document!) })
            replaceQueue = []
            outcome.applied += result.inserted
            for error in result.writeErrors {
                if error.code == 11000 { replaceQueue.append(upserts[error.index]) }
                else { outcome.deadLetters.append(.init(key: upserts[error.index].key, reason: "mongo \(error.code): \(error.message)")) }
            }
        }
        if !replaceQueue.isEmpty {
            let ops: [WriteOperation] = replaceQueue.map {
                .replace(filter: Self.guardFilter(key: $0.key, version: $0.version), replacement: $0.document!, upsert: true)
            }
            let result = try await client.bulkWrite(database: database, collection: collection, ops)
            var failed = Set<Int>()
            for error in result.writeErrors {
                failed.insert(error.index)
                if error.code == 11000 { outcome.stale += 1 }
                else { outcome.deadLetters.append(.init(key: replaceQueue[error.index].key, reason: "mongo \(error.code): \(error.message)")) }
            }
            outcome.applied += replaceQueue.count - failed.count
        }
        if !deletes.isEmpty {
            let ops: [WriteOperation] = deletes.map { .delete(filter: Self.guardFilter(key: $0.key, version: $0.version)) }
            let result = try await client.bulkWrite(database: database, collection: collection, ops)
            for error in result.writeErrors {
                outcome.deadLetters.append(.init(key: deletes[error.index].key, reason: "mongo \(error.code): \(error.message)"))
            }
            outcome.applied += deletes.count - result.writeErrors.count
        }
        return outcome
    }

    /// Unconditional deletes (hard-delete reconcile: the key is gone from the source).
    public func deleteKeys(_ keys: [BSON]) async throws -> Int {
        let result = try await client.bulkWrite(database: database, collection: collection,
                                                keys.map { .delete(filter: ["_id": $0]) })
        return result.removed
    }

    /// `{_id: k, $or: [{_mongoshift.v: {$lte: v}}, {_mongoshift.v: {$exists: false}}]}`
    public static func guardFilter(key: BSON, version: BSON?) -> Document {
        guard let version else { return ["_id": key] }
        return [
            "_id": key,
            "$or": .array([
                .document(["_mongoshift.v": .document(["$lte": version])]),
                .document(["_mongoshift.v": .document(["$exists": false])]),
            ]),
        ]
    }
}

/// Mongo as a change target: snapshot pages insert first; everything else goes through the version guard.
struct MongoTarget: ChangeTarget {
    let applier: MongoApplier

    func apply(_ changes: [Change], segment: SegmentRecord) async throws -> ApplyOutcome {
        let o = try await applier.apply(changes, insertFirst: segment.kind == .snapshot)
        return ApplyOutcome(applied: o.applied, stale: o.stale, deadLetters: o.deadLetters)
    }
}
