import BSON
import Foundation
import MongoClient

/// Version-carrying tombstones (`mongoshift_tombstones` in the target database): one document per deleted key,
/// `{_id: {c: collection, k: key}, v: version, at: date}`. A delete leaves one, and an upsert whose version is not
/// newer than its key's tombstone is stale — so a late replay of an older change (a stalled former lease holder,
/// a pending older segment, a re-read page) can never bring a deleted document back. Tombstones older than the
/// retention are purged.
struct Tombstones: Sendable {
    let client: MongoClient
    let database: String
    let collection: String
    static let collectionName = "mongoshift_tombstones"

    private func id(_ key: BSON) -> BSON { .document(["c": .string(collection), "k": key]) }

    /// Whether any tombstone of this collection exists (a fresh target has none: no lookups needed).
    func any() async throws -> Bool {
        !(try await client.findAll(database: database, collection: Self.collectionName, filter: ["_id": ownIDs],
                                   projection: ["_id": 1], limit: 1)).isEmpty
    }

    /// This collection's tombstones as a range of `_id` (documents compare field by field: `c` this collection's,
    /// `k` from MinKey to MaxKey), so the `_id` index answers however many tombstones other collections hold.
    private var ownIDs: BSON {
        .document(["$gte": .document(["c": .string(collection), "k": .minKey]), "$lte": .document(["c": .string(collection), "k": .maxKey])])
    }

    /// The tombstone versions of those of `keys` that have one.
    func versions(of keys: [BSON]) async throws -> [BSON: BSON] {
        var out: [BSON: BSON] = [:]
        for chunk in stride(from: 0, to: keys.count, by: 10_000).map({ Array(keys[$0..<min($0 + 10_000, keys.count)]) }) {
            let docs = try await client.findAll(database: database, collection: Self.collectionName,
                                                filter: ["_id": .document(["$in": .array(chunk.map(id))])])
            for doc in docs {
                if case .document(let key)? = doc["_id"], let k = key["k"], let v = doc["v"] { out[k] = v }
            }
        }
        return out
    }

    /// Records deletes: each key's tombstone keeps the highest version seen.
    func record(_ deletes: [(key: BSON, version: BSON)]) async throws {
        guard !deletes.isEmpty else { return }
        let now = BSON.datetime(Int64(Date().timeIntervalSince1970 * 1000))
        let ops: [WriteOperation] = deletes.map { d in
            .update(filter: ["_id": id(d.key)], update: ["$max": .document(["v": d.version]), "$set": .document(["at": now])], upsert: true)
        }
        let result = try await client.bulkWrite(database: database, collection: Self.collectionName, ops)
        if let error = result.writeErrors.first {
            throw MongoError(code: .server, serverCode: error.code, message: "tombstone: \(error.message)")
        }
    }

    /// Removes tombstones recorded before `cutoff`.
    @discardableResult
    func purge(recordedBefore cutoff: Date) async throws -> Int {
        let reply = try await client.command([
            "delete": .string(Self.collectionName),
            "deletes": .array([.document(["q": .document(["_id": ownIDs,
                                                          "at": .document(["$lt": .datetime(Int64(cutoff.timeIntervalSince1970 * 1000))])]),
                                          "limit": 0])]),
        ], database: database)
        return reply["n"]?.intValue ?? 0
    }

    /// True when `version` is not newer than the tombstone's (both versions of the same encoding). An unversioned
    /// row (no watermark) is never stale: every version is alike, and an un-deleted row could never come back.
    static func isStale(_ version: BSON?, against tombstone: BSON?) -> Bool {
        guard let version, let tombstone, let v = version.int64Value, let t = tombstone.int64Value else { return false }
        return v != RowVersion.unversioned && v <= t
    }
}
