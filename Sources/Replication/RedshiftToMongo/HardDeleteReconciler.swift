import BSON
import Logging
import PostgresClient

/// Finds Mongo documents whose source rows were hard-deleted (a watermark poll cannot see a row that is gone).
///
/// The key space is cut into ranges of about `rangeRows` keys; each range compares count and key sum on both
/// sides, and only mismatching ranges are drilled into: their keys are listed — Mongo's first, then the
/// source's, so a row inserted meanwhile is never mistaken for a deleted one. The Mongo keys absent from the
/// source go to `DeleteGuard`, which decides what is deleted (two sightings, `max_delete_ratio`). Single integer keys
/// (the common case) go by ranges; other keys (text, dates, composite) by a walk of the target's `_id`s checked
/// against the source page by page, when the target holds more documents than the source has live rows.
struct HardDeleteReconciler {
    let reader: SourceReader
    let applier: MongoApplier
    var rangeRows = 5_000

    private var context: StreamContext { reader.context }
    private var table: SourceTable { reader.table }

    struct Result {
        var rangesChecked = 0
        var rangesMismatched = 0
        /// Target keys absent at the source (at most `limit + 1`: listing stops past the limit).
        var missing: [BSON] = []
        var complete = true
        /// The target's document count the limit is a fraction of.
        var targetCount = 0
        /// The key's Mongo form is not exact (timestamps, floats): nothing was compared.
        var inexactKeys = false
    }

    /// Live rows: not soft-deleted, inside `where:`.
    private var liveCondition: String {
        let conditions = [table.deleteIndex.map { SoftDelete.liveCondition(table.columns[$0]) }, table.filterCondition].compactMap { $0 }
        return conditions.isEmpty ? "TRUE" : conditions.joined(separator: " AND ")
    }

    /// Of `keys` (found missing earlier), those still without a live source row now — asked right before a delete,
    /// so a row re-inserted since the listing keeps its document.
    func stillMissing(_ keys: [BSON]) async throws -> [BSON] {
        let lookup = SourceKeyLookup(table: table, condition: liveCondition)
        let present = try await reader.run { c in try await lookup.present(keys, on: c) }
        return Self.stillMissing(keys, present: present, texts: lookup.texts)
    }

    /// `keys` less those `present`, matched by their source texts: the listing names an integer key as an int64,
    /// the source lookup decodes an `integer` column's as an int32 — BSON equality told them apart, and every
    /// re-inserted row still counted as missing.
    static func stillMissing(_ keys: [BSON], present: Set<BSON>, texts: (BSON) -> [String]?) -> [BSON] {
        let found = Set(present.compactMap(texts))
        return keys.filter { key in texts(key).map { !found.contains($0) } ?? true }
    }

    /// Lists the target's documents whose source rows are gone, stopping once more than `limit(targetCount)`
    /// were found. Deletes nothing.
    func findMissing(limit: (Int) -> Int) async throws -> Result {
        var result = Result()
        result.targetCount = try await applier.client.count(database: applier.database, collection: applier.collection)
        let cap = limit(result.targetCount)
        let live = liveCondition
        guard table.keyIndexes.count == 1, table.hasIntegerKey else {
            try await findMissingByKeys(&result, cap: cap, live: live)
            return result
        }
        let k = SQL.identifier(table.keyNames[0])
        let bounds = try await reader.run { [table] c in
            try await c.query("SELECT min(\(k))::text, max(\(k))::text, count(*)::text FROM \(table.qualifiedName)").rows.first
        }
        let mongoMin = try await mongoEdge(ascending: true), mongoMax = try await mongoEdge(ascending: false)
        let sourceMin = bounds?[0].flatMap { Int64($0) }, sourceMax = bounds?[1].flatMap { Int64($0) }
        guard let lo = [sourceMin, mongoMin].compactMap({ $0 }).min(), let hi = [sourceMax, mongoMax].compactMap({ $0 }).max() else {
            return result
        }
        let rows = max(1, bounds?[2].flatMap { Int($0) } ?? 1)
        let parts = max(1, rows / rangeRows)
        // Ranges of one width, so the source counts a run of them in one query (`ReconcileBuckets`); a key space
        // wider than 64 bits goes range by range, cut in 128-bit arithmetic.
        let buckets = ReconcileBuckets(lo: lo, hi: hi, parts: parts)
        let cuts = buckets == nil ? KeySpace.cuts(from: Int128(lo), to: Int128(hi), parts: parts).map { Int64($0) } : []
        let total = buckets?.count ?? cuts.count + 1
        func edges(_ i: Int) -> (lower: Int64?, upper: Int64) {
            if let buckets { return buckets.bounds(i) }
            return (i == 1 ? nil : cuts[i - 2], i <= cuts.count ? cuts[i - 1] : hi)
        }
        var first = 1
        runs: while first <= total {
            let last = min(total, first + Self.rangesPerQuery - 1)
            // Mongo first, then the source (see above).
            var mongoSides: [(Int, String)] = []
            for i in first...last { mongoSides.append(try await mongoSummary(edges(i).lower, edges(i).upper)) }
            let sourceSides = try await sourceSummaries(first...last, edges: edges, buckets: buckets, k: k, live: live)
            for i in first...last {
                result.rangesChecked += 1
                let mongoSide = mongoSides[i - first], sourceSide = sourceSides[i] ?? (0, "0")
                if mongoSide.0 != sourceSide.0 || mongoSide.1 != sourceSide.1 {
                    result.rangesMismatched += 1
                    result.missing += try await drill(edges(i).lower, edges(i).upper, k: k, live: live)
                    if result.missing.count > cap {
                        result.complete = false
                        break runs
                    }
                }
            }
            first = last + 1
        }
        return result
    }

    /// Ranges whose source side one query counts (ranges of one width) — the result holds a row per range.
    static let rangesPerQuery = 1_000

    /// Count of distinct keys and their sum per range, on the source. Distinct keys: a repeated key (never
    /// enforced on Redshift) has one document. Summed as decimals: Redshift's SUM of a BIGINT is a BIGINT, and
    /// keys near 2^63 overflow it.
    private func sourceSummaries(_ run: ClosedRange<Int>, edges: (Int) -> (lower: Int64?, upper: Int64), buckets: ReconcileBuckets?,
                                 k: String, live: String) async throws -> [Int: (Int, String)] {
        // Through BIGINT: PostgreSQL's oid has no cast to DECIMAL.
        let summary = "count(DISTINCT \(k))::text, coalesce(sum(DISTINCT CAST(CAST(\(k) AS BIGINT) AS DECIMAL(38, 0))), 0)::text"
        guard let buckets else {
            var out: [Int: (Int, String)] = [:]
            for i in run {
                let (condition, params) = Self.range(k, edges(i).lower, edges(i).upper)
                let r = try await reader.run { [table] c in
                    try await c.query("SELECT \(summary) FROM \(table.qualifiedName) WHERE \(condition) AND \(live)", params).rows.first
                }
                out[i] = (Int(r?[0] ?? "0") ?? 0, r?[1] ?? "0")
            }
            return out
        }
        let (condition, params) = Self.range(k, edges(run.lowerBound).lower, edges(run.upperBound).upper)
        let bucket = ReconcileBuckets.sql(k, lo: params.count + 1, width: params.count + 2)
        let rows = try await reader.run { [table] c in
            try await c.query("SELECT (\(bucket))::text, \(summary) FROM \(table.qualifiedName) WHERE \(condition) AND \(live) GROUP BY 1",
                              params + [String(buckets.lo), String(buckets.width)]).rows
        }
        var out: [Int: (Int, String)] = [:]
        for row in rows {
            guard let i = row[0].flatMap({ Int($0) }) else { continue }
            out[i] = (Int(row[1] ?? "0") ?? 0, row[2] ?? "0")
        }
        return out
    }

    /// Keys that are not a single integer: when the target holds more documents than the source has live rows,
    /// walk the target's `_id`s page by page and ask the source which still exist (`SourceKeyLookup`).
    private func findMissingByKeys(_ result: inout Result, cap: Int, live: String) async throws {
        guard SourceKeyLookup.isExact(table) else {
            result.inexactKeys = true
            return
        }
        // Keys, not rows: a NULL key or a repeated one (Redshift enforces no key) has no document of its own.
        let keys = table.keyNames.map(SQL.identifier)
        let sourceCount = try await reader.run { [table] c in
            Int(try await c.query("SELECT CAST(count(*) AS varchar) FROM (SELECT DISTINCT \(keys.joined(separator: ", ")) FROM \(table.qualifiedName) "
                                  + "WHERE \(live) AND \(KeysetQuery.keysNotNull(keys))) d").rows.first?.first??.description ?? "0") ?? 0
        }
        // The target holds every applied live row: no more documents than rows, no document whose row is gone.
        guard result.targetCount > sourceCount else { return }
        let lookup = SourceKeyLookup(table: table, condition: live)
        let walk = TargetKeyWalk(client: applier.client, database: applier.database, collection: applier.collection)
        var missing: [BSON] = []
        var complete = true
        var pages = 0
        try await walk.forEachPage { ids in
            pages += 1
            let present = try await reader.run { c in try await lookup.present(ids, on: c) }
            // By source texts, as `stillMissing` does: an `_id` written before the key column's type changed
            // (an int32 where the column now decodes to int64) is the same row, not a missing one.
            missing += Self.stillMissing(ids, present: present, texts: lookup.texts)
            if missing.count > cap { complete = false; return false }
            return true
        }
        result.rangesChecked = pages
        result.rangesMismatched = missing.isEmpty ? 0 : 1
        result.missing = missing
        result.complete = complete
    }

    /// `k > $1 AND k <= $2` (or only `k <= $1` for the first range).
    static func range(_ k: String, _ lower: Int64?, _ upper: Int64) -> (String, [String?]) {
        guard let lower else { return ("\(k) <= $1", [String(upper)]) }
        return ("\(k) > $1 AND \(k) <= $2", [String(lower), String(upper)])
    }

    static func mongoRange(_ lower: Int64?, _ upper: Int64) -> Document {
        var range: Document = ["$type": "number", "$lte": .int64(upper)]
        if let lower { range.append("$gt", .int64(lower)) }
        return ["_id": .document(range)]
    }

    private func drill(_ lower: Int64?, _ upper: Int64, k: String, live: String) async throws -> [BSON] {
        let inRange = Self.mongoRange(lower, upper)
        let mongoKeys = try await applier.client.findAll(database: applier.database, collection: applier.collection, filter: inRange,
                                                         projection: ["_id": 1]).compactMap { $0["_id"]?.intValue.map(Int64.init) }
        let (condition, params) = Self.range(k, lower, upper)
        let sourceKeys: Set<Int64> = try await reader.run { [table] c in
            Set(try await c.query("SELECT \(k)::text FROM \(table.qualifiedName) WHERE \(condition) AND \(live)", params)
                .rows.compactMap { $0[0].flatMap { Int64($0) } })
        }
        return mongoKeys.filter { !sourceKeys.contains($0) }.map { .int64($0) }
    }

    /// Count and key sum of a range (the sum as decimal text: 64-bit keys overflow a 64-bit sum).
    private func mongoSummary(_ lower: Int64?, _ upper: Int64) async throws -> (Int, String) {
        let reply = try await applier.client.command([
            "aggregate": .string(applier.collection),
            "pipeline": .array([
                .document(["$match": .document(Self.mongoRange(lower, upper))]),
                .document(["$group": .document(["_id": .null, "n": .document(["$sum": 1]),
                                                "s": .document(["$sum": .document(["$toDecimal": "$_id"])])])]),
            ]),
            "cursor": .document([:]),
        ], database: applier.database)
        guard case .array(let batch)? = reply.value(at: "cursor.firstBatch"), case .document(let first)? = batch.first else { return (0, "0") }
        let sum: String = switch first["s"] {
        case .decimal128(let d)?: d.description
        case let other?: other.int64Value.map(String.init) ?? "\(other)"
        case nil: "0"
        }
        return (first["n"]?.intValue ?? 0, sum)
    }

    private func mongoEdge(ascending: Bool) async throws -> Int64? {
        let docs = try await applier.client.findAll(database: applier.database, collection: applier.collection, filter: ["_id": .document(["$type": "number"])],
                                                    sort: ["_id": .int32(ascending ? 1 : -1)], projection: ["_id": 1], limit: 1)
        return docs.first?["_id"]?.int64Value
    }
}
