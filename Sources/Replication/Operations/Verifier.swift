import BSON
import Changes
import Foundation
import Logging
import MongoClient
import PostgresClient
import Spool

/// `mongoshift verify`. Redshift → Mongo: the source is read in keyset pages; for each page the count
/// and an order-independent hash (sum of per-document CRC-32C) of the source rows, encoded exactly as the
/// replicator encodes them, are compared with the Mongo documents of those keys; only mismatching pages are
/// drilled into, key by key. A second pass over Mongo's `_id`s finds documents whose rows are gone.
/// `repair` re-copies exactly the differing keys (source wins) and deletes the extra documents.
public struct Verifier: Sendable {
    public struct Report: Sendable {
        public var stream: String
        public var rowsChecked = 0
        public var changed: [BSON] = []
        public var missing: [BSON] = []
        public var extra: [BSON] = []
        public var repaired = 0
        /// Documents beyond the source's live rows that could not be named: a key whose Mongo form is not exact
        /// (timestamps at millisecond precision, floats) cannot be looked up at the source, only counted.
        public var extraUnnamed = 0
        public var differences: Int { changed.count + missing.count + extra.count + extraUnnamed }
    }

    let context: StreamContext
    let redshift: RedshiftEndpoint
    let mongo: MongoEndpoint
    var pageRows = 5_000

    public init(context: StreamContext, redshift: RedshiftEndpoint, mongo: MongoEndpoint) {
        self.context = context
        self.redshift = redshift
        self.mongo = mongo
    }

    public func run(repair: Bool) async throws -> Report {
        context.stream.direction == .mongoToRedshift ? try await runMongoToRedshift(repair: repair) : try await runRedshiftToMongo(repair: repair)
    }

    /// Mongo → Redshift: every document against its row, value by value; repair re-loads the differing documents
    /// and deletes rows whose documents are gone (without touching the checkpoint).
    func runMongoToRedshift(repair: Bool) async throws -> Report {
        var report = Report(stream: context.name)
        let pg = try await PostgresConnection.connect(redshift.url)
        let client = try await MongoClient.connect(url: mongo.url)
        let target = SQL.qualified(schema: context.stream.table.schema, name: context.stream.table.name)
        let result = try await TableComparison.compare(mongo: client, database: mongo.database, collection: context.stream.collection,
                                                       pg: pg, table: target, mapping: context.stream.columns,
                                                       match: context.stream.match, flatten: context.stream.flatten)
        report.rowsChecked = result.checked
        report.changed = result.changed
        report.missing = result.missing
        report.extra = result.extra.map(BSON.string)
        guard repair, result.differences > 0 else { return report }
        let applier = try await RedshiftApplier(context: context, endpoint: redshift, policy: RetryPolicy(maxAttempts: 3))
        let ids = result.changed + result.missing
        var fixes: [Change] = []
        if !ids.isEmpty {
            let docs = try await client.findAll(database: mongo.database, collection: context.stream.collection,
                                                filter: ["_id": .document(["$in": .array(ids)])])
            fixes += docs.map { Change(operation: .upsert, key: $0["_id"] ?? .null, document: context.stream.columns.apply($0)) }
        }
        if !result.extra.isEmpty {
            // Extra rows are named by their _id text; the column type turns the text back into the key.
            let idType = await applier.schema.columns.first?.type ?? .varchar(64)
            for text in result.extra {
                // A text key column reads back its key text; a typed one takes the candidate its type holds.
                let candidates = if case .varchar = idType { KeyText.candidates(text) } else { TableComparison.keyCandidates(text) }
                let key = candidates.first { id in id.withView { KeyText.canHold(idType, $0) } } ?? .string(text)
                fixes.append(Change(operation: .delete, key: key))
            }
        }
        let outcome = try await applier.repair(fixes)
        report.repaired = outcome.applied
        return report
    }

    func runRedshiftToMongo(repair: Bool) async throws -> Report {
        var report = Report(stream: context.name)
        let pg = try await PostgresConnection.connect(redshift.url)
        let client = try await MongoClient.connect(url: mongo.url)
        let applier = MongoApplier(client: client, database: mongo.database, collection: context.stream.collection)
        let table = try await SourceTable.describe(pg, stream: context.stream, dialect: redshift.dialect)
        let encoder = RowEncoder(table: table)
        var fixes: [Change] = []
        var after: [String]?
        var liveRows = 0
        // The newest version before pass 1 reads anything: documents written after it (by `run`, meanwhile) are
        // left out of the count below — they would be taken for documents without rows.
        let headVersion: Int64? = try await {
            guard let w = table.watermarkIndex, !SourceKeyLookup.isExact(table) else { return nil }
            let sql = "SELECT max(\(SQL.identifier(table.columns[w].name)))::text FROM \(table.qualifiedName)"
            guard let text = try await pg.query(sql).rows.first?.first ?? nil else { return nil }
            return Array(text.utf8).withUnsafeBufferPointer { RowVersion.of($0, type: table.columns[w].typeOID) }
        }()
        // Pass 1: every source page against Mongo.
        while true {
            let (sql, params) = KeysetQuery.snapshotPage(table: table, after: after, lower: nil, upper: nil, limit: pageRows)
            let page = try await PageReader.read(pg, sql: sql, params: params, encoder: encoder, stream: context.name,
                                                 reserveBytes: 0, detectDuplicates: false)
            if page.rows == 0 { break }
            let decoded = try SpoolSegmentReader.decode(try page.writer.encode(first: nil, last: nil), path: "verify").changes
            var source: [BSON: Change] = [:]
            for change in decoded { source[change.key] = change }
            let live = decoded.filter { $0.operation == .upsert }
            let keys = decoded.map(\.key)
            let docs = try await client.findAll(database: mongo.database, collection: context.stream.collection,
                                                filter: ["_id": .document(["$in": .array(keys)])])
            var target: [BSON: Document] = [:]
            for doc in docs { if let id = doc["_id"] { target[id] = doc.removing(["_mongoshift"]) } }
            report.rowsChecked += page.rows
            liveRows += Set(live.map(\.key)).count
            let sourceSummary = (live.count, live.reduce(UInt64(0)) { $0 &+ Self.hash($1.document!.removing(["_mongoshift"])) })
            let targetSummary = (target.count, target.values.reduce(UInt64(0)) { $0 &+ Self.hash($1) })
            if sourceSummary != targetSummary {
                // Drill into this page only.
                for change in decoded {
                    let mine = target[change.key]
                    switch change.operation {
                    case .upsert:
                        guard let mine else { report.missing.append(change.key); fixes.append(change); continue }
                        if mine != change.document!.removing(["_mongoshift"]) { report.changed.append(change.key); fixes.append(change) }
                    case .delete:
                        if mine != nil { report.extra.append(change.key); fixes.append(change) }
                    }
                }
            }
            if repair && fixes.count >= 1000 { report.repaired += try await apply(fixes, applier, lookup: nil, pg: pg); fixes = [] }
            after = page.lastKeyText
            if page.rows < pageRows { break }
        }
        // Pass 2: Mongo documents whose source rows are gone (hard deletes not reconciled yet), any key shape whose
        // Mongo form is exact (a timestamp key at millisecond precision would look gone).
        let lookup = SourceKeyLookup(table: table, condition: table.filterCondition)
        if SourceKeyLookup.isExact(table) { try await TargetKeyWalk(client: client, database: mongo.database, collection: context.stream.collection, pageSize: pageRows).forEachPage { ids in
            let present = try await lookup.present(ids, on: pg)
            for id in ids where !present.contains(id) {
                report.extra.append(id)
                fixes.append(Change(operation: .delete, key: id))
            }
            return true
        } } else {
            // Documents whose rows are gone cannot be named: counted. Pass 1 found every live row's document or
            // reported it missing, and named the documents of deleted rows: any surplus has no row. A lower bound
            // while `run` applies changes (documents rewritten since are not counted).
            let filter: Document = headVersion.map { head in
                ["$or": .array([.document(["_mongoshift.v": .document(["$lte": .int64(head)])]),
                                .document(["_mongoshift.v": .document(["$exists": false])])])]
            } ?? [:]
            let documents = try await client.count(database: mongo.database, collection: context.stream.collection, filter: filter)
            report.extraUnnamed = max(0, documents - (liveRows - report.missing.count) - report.extra.count)
        }
        if repair && !fixes.isEmpty { report.repaired += try await apply(fixes, applier, lookup: lookup, pg: pg) }
        return report
    }

    /// Source wins, but never over a newer change: `run` may be applying the stream meanwhile. A row read in
    /// pass 1 replaces (or, soft-deleted, deletes) its document only where that is not newer than the row — the
    /// same version with other content (drift) is repaired. A document whose row pass 2 found gone is deleted only
    /// if the row is still gone now (`lookup`).
    private func apply(_ fixes: [Change], _ applier: MongoApplier, lookup: SourceKeyLookup?, pg: PostgresConnection) async throws -> Int {
        let unversionedDeletes = fixes.filter { $0.operation == .delete && $0.version == nil }.map(\.key)
        var gone = Set<BSON>()
        if let lookup, !unversionedDeletes.isEmpty {
            let present = try await lookup.present(unversionedDeletes, on: pg)
            gone = Set(HardDeleteReconciler.stillMissing(unversionedDeletes, present: present, texts: lookup.texts))
        }
        var ops: [WriteOperation] = []
        for change in fixes {
            switch change.operation {
            case .upsert:
                ops.append(.replace(filter: MongoApplier.guardFilter(key: change.key, version: change.version), replacement: change.document!, upsert: true))
            case .delete where change.version != nil:
                ops.append(.delete(filter: MongoApplier.guardFilter(key: change.key, version: change.version)))
            case .delete:
                if gone.contains(change.key) { ops.append(.delete(filter: ["_id": change.key])) }
            }
        }
        guard !ops.isEmpty else { return 0 }
        let result = try await applier.client.bulkWrite(database: applier.database, collection: applier.collection, ops)
        // A guarded replace that met a newer document tried to insert its key: a duplicate-key error, not a repair.
        return result.inserted + result.upserted + result.modified + result.removed
    }

    static func hash(_ doc: Document) -> UInt64 { UInt64(CRC32C.checksum(doc.bytes)) &* 0x9E37_79B9_7F4A_7C15 }
}
