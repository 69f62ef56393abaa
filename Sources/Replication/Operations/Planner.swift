import BSON
import Changes
import Foundation
import Logging
import MongoClient
import PostgresClient
import StateStore

/// `mongoshift plan` (docs/CONFIG.md, "Plan"): per stream, what `run` would do if it started now — a snapshot or
/// not (estimated rows and size), the DDL it would run on the target, the spool backlog, and what waits at the
/// source since the applied position. Read-only everywhere: SELECTs and finds at the sources and targets, the
/// state store opened read-only.
public enum Planner {
    public struct StreamPlan: Sendable {
        public var stream: String
        public var direction: String
        public var phase = "new"
        public var lines: [String] = []
        /// The statement shapes `run` would send (placeholders for values; credentials redacted).
        public var statements: [String] = []
    }

    public static func plan(config: ReplicationConfig, streams: [StreamConfig], state: StateStore?, logger: Logger) async throws -> [StreamPlan] {
        var out: [StreamPlan] = []
        var pg: PostgresConnection?
        if let redshift = config.redshift { pg = try await PostgresConnection.connect(redshift.url, connectTimeoutSeconds: 10) }
        let mongo = try await MongoClient.connect(optional: config.mongo?.url)
        for stream in streams {
            var plan = StreamPlan(stream: stream.name, direction: stream.direction.rawValue)
            let current = try? await state?.stream(stream.name)
            plan.phase = current?.phase.rawValue ?? "new"
            let snapshotDone = current?.phase == .streaming || (current?.phase == .failed && current?.snapshotCompletedAt != nil)
            if let backlog = try? await state?.spoolBacklog(stream.name), backlog.segments > 0 {
                plan.lines.append("spool backlog: \(backlog.segments) segments, \(backlog.rows) rows, \(Self.bytes(backlog.bytes)) to apply first")
            }
            if let reset = try? await state?.note(.lastReset, stream: stream.name) { plan.lines.append("last reset: \(reset)") }
            switch stream.direction {
            case .redshiftToMongo:
                guard let pg, let mongo, let endpoint = config.mongo, let redshift = config.redshift else { break }
                try await planRedshiftToMongo(&plan, stream: stream, pg: pg, dialect: redshift.dialect, mongo: mongo, database: endpoint.database,
                                              snapshotDone: snapshotDone, applied: current?.appliedPosition?.watermark, s3: redshift.s3 != nil)
            case .mongoToRedshift:
                guard let pg, let mongo, let endpoint = config.mongo, let redshift = config.redshift else { break }
                let stored = (try? await state?.loadColumns(stream.name)) ?? []
                try await planMongoToRedshift(&plan, stream: stream, pg: pg, redshift: redshift, mongo: mongo, database: endpoint.database,
                                              snapshotDone: snapshotDone, applied: current?.appliedPosition?.changeStream, stored: stored)
            }
            out.append(plan)
        }
        return out
    }

    // MARK: Redshift → Mongo

    static func planRedshiftToMongo(_ plan: inout StreamPlan, stream: StreamConfig, pg: PostgresConnection, dialect: SQLDialect, mongo: MongoClient,
                                    database: String, snapshotDone: Bool, applied: WatermarkPosition?, s3: Bool) async throws {
        let table = try await SourceTable.describe(pg, stream: stream, dialect: dialect)
        let existing = try await mongo.count(database: database, collection: stream.collection)
        let collections = try await mongo.command(["listCollections": 1, "filter": .document(["name": .string(stream.collection)]), "nameOnly": true, "authorizedCollections": true],
                                                 database: database)
        let exists = (collections.value(at: "cursor.firstBatch")).map { if case .array(let a) = $0 { return !a.isEmpty }; return false } ?? false
        plan.lines.append(exists ? "target: collection \(database).\(stream.collection) exists, \(existing) documents"
                                 : "target: collection \(database).\(stream.collection) will be created by the first write (documents keyed by _id; no other index)")
        if snapshotDone {
            plan.lines.append("snapshot: not needed (complete)")
        } else {
            let rows = try await Discovery.estimateRows(pg, stream.table, dialect: dialect)
            let size = try? await sourceBytes(pg, stream.table, dialect: dialect)
            let unload = s3 && dialect == .redshift && (stream.extract == .unload || (stream.extract == .auto && (rows ?? 0) >= stream.unloadMinRows))
            plan.lines.append("snapshot: needed, ≈\(rows.map(String.init) ?? "?") rows\(size.map { ", ≈\(Self.bytes($0)) at the source" } ?? "")"
                              + " in \(stream.partitions) partitions, by \(unload ? "UNLOAD" : "keyset SELECT pages")")
        }
        guard table.watermarkName != nil else {
            plan.lines.append("tail: no watermark (snapshot only)")
            return
        }
        if let applied, snapshotDone {
            let waiting = try await waitingRows(pg, table: table, after: applied)
            var text = "waiting at the source since \(applied): \(waiting.rows) changed rows (\(waiting.deletes) deletes"
            if let updates = try await existingKeys(mongo, database: database, collection: stream.collection, keys: waiting.sampleKeys) {
                let upserts = waiting.rows - waiting.deletes
                let sampled = waiting.sampleKeys.count
                let estUpdates = sampled == 0 ? 0 : Int((Double(updates) / Double(sampled) * Double(upserts)).rounded())
                text += ", \(upserts - estUpdates) inserts, \(estUpdates) updates" + (sampled < upserts ? " estimated from \(sampled) keys" : "")
            }
            plan.lines.append(text + ")")
        }
        let page = KeysetQuery.snapshotPage(table: table, after: ["…"], lower: nil, upper: "…", limit: 10_000)
        let poll = KeysetQuery.tailPoll(table: table, castType: table.watermarkKind?.castType ?? "timestamp", afterWatermark: "…", afterKey: ["…"],
                                        upperBound: "…", limit: 10_000)
        plan.statements = [page.sql, poll.sql]
        if stream.lookback != .off {
            plan.statements.append(KeysetQuery.lookbackPage(table: table, castType: table.watermarkKind?.castType ?? "timestamp", lower: "…", upper: "…",
                                                            afterWatermark: "…", afterKey: ["…"], limit: 10_000).sql)
        }
        plan.statements.append("mongo: bulk insert / replace {_id, _mongoshift.v ≤ version} (upsert) / delete into \(database).\(stream.collection); tombstones in \(database).\(Tombstones.collectionName)")
    }

    struct Waiting { var rows: Int; var deletes: Int; var sampleKeys: [BSON] }

    /// Rows after the applied `(wm, key)` position (the poll's condition without its upper bound), soft deletes
    /// among them, and up to 10,000 of their keys (single-column keys).
    static func waitingRows(_ pg: PostgresConnection, table: SourceTable, after position: WatermarkPosition) async throws -> Waiting {
        let kind = table.watermarkKind ?? .time(withTimeZone: false)
        let wm = SQL.identifier(table.watermarkName!)
        var params: [String?] = [position.value]
        var condition = "\(wm) >= CAST($1 AS \(kind.castType))"
        if let key = position.key, !key.isEmpty {
            let keyTerm = KeysetQuery.keyAfter(table, key: key) { value in
                params.append(value)
                return "$\(params.count)"
            }
            condition = "(\(wm) > CAST($1 AS \(kind.castType)) OR (\(wm) = CAST($1 AS \(kind.castType)) AND \(keyTerm)))"
        }
        if let filter = table.filterCondition { condition += " AND \(filter)" }
        let deleted = table.deleteIndex.map { "NOT (\(SoftDelete.liveCondition(table.columns[$0])))" } ?? "FALSE"
        let counts = try await pg.query("SELECT CAST(count(*) AS varchar), CAST(coalesce(sum(CASE WHEN \(deleted) THEN 1 ELSE 0 END), 0) AS varchar) "
                                        + "FROM \(table.qualifiedName) WHERE \(condition)", params).rows.first
        var waiting = Waiting(rows: Int(counts?[0] ?? "0") ?? 0, deletes: Int(counts?[1] ?? "0") ?? 0, sampleKeys: [])
        if table.keyIndexes.count == 1, waiting.rows > waiting.deletes {
            let k = table.columns[table.keyIndexes[0]]
            let rows = try await pg.query("SELECT \(SQL.identifier(k.name)) FROM \(table.qualifiedName) WHERE \(condition) AND NOT (\(deleted)) "
                                          + "ORDER BY \(wm) LIMIT 10000", params).rows
            waiting.sampleKeys = rows.compactMap { row in
                guard var text = row[0] else { return nil }
                return try? text.withUTF8 { try TextValueDecoder.decode($0, type: k.typeOID, column: k.name) }
            }
        }
        return waiting
    }

    /// How many of `keys` the collection holds (nil: nothing to ask).
    static func existingKeys(_ mongo: MongoClient, database: String, collection: String, keys: [BSON]) async throws -> Int? {
        guard !keys.isEmpty else { return nil }
        var found = 0
        for start in stride(from: 0, to: keys.count, by: 1000) {
            let chunk = Array(keys[start..<min(keys.count, start + 1000)])
            found += try await mongo.count(database: database, collection: collection, filter: ["_id": .document(["$in": .array(chunk)])])
        }
        return found
    }

    static func sourceBytes(_ pg: PostgresConnection, _ table: TableName, dialect: SQLDialect) async throws -> Int? {
        let sql: String = switch dialect {
        case .redshift: "SELECT CAST(size AS bigint) * 1048576 FROM svv_table_info WHERE \"schema\" = $1 AND \"table\" = $2"
        case .postgres: "SELECT pg_total_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2"
        }
        guard let resolved = try await SourceCatalog.resolve(table, on: pg, dialect: dialect) else { return nil }
        return try await pg.query(sql, [resolved.schema, resolved.name]).rows.first?.first?.flatMap { Int($0) }
    }

    // MARK: Mongo → Redshift

    static func planMongoToRedshift(_ plan: inout StreamPlan, stream: StreamConfig, pg: PostgresConnection, redshift: RedshiftEndpoint,
                                    mongo: MongoClient, database: String, snapshotDone: Bool, applied: ChangeStreamPosition?,
                                    stored: [StoredColumn]) async throws {
        let sql = TargetSQL(dialect: redshift.dialect, table: stream.table)
        let catalog = try await pg.query(sql.catalogColumns(), sql.catalogParameters).rows
        let documents = try await mongo.count(database: database, collection: stream.collection, filter: stream.match?.document ?? Document())
        if snapshotDone {
            plan.lines.append("snapshot: not needed (complete)")
        } else {
            plan.lines.append("snapshot: needed, \(documents) documents\(stream.match == nil ? "" : " matching match:") in \(stream.partitions) partitions")
        }
        // The columns a sample of the collection implies, against what the target has (or the stored schema).
        let sample = try await mongo.findAll(database: database, collection: stream.collection, filter: stream.match?.document ?? Document(),
                                             sort: ["$natural": -1], limit: 1000).map(stream.columns.apply)
        let known = stored.compactMap { c in ColumnType(persisted: c.type).map { TableSchema.Column(name: c.name, path: c.path, type: $0) } }
        var tracker = SchemaTracker(schema: TableSchema(columns: known), flatten: stream.flatten, maxNameBytes: ColumnNaming.maxBytes(redshift.dialect))
        let changes = (try? tracker.observe(sample)) ?? []
        if catalog.isEmpty {
            plan.lines.append("target: table \(stream.table) does not exist; from a sample of \(sample.count) documents it would be:")
            plan.lines += [sql.createSchema(), sql.createTable(tracker.schema), sql.createCheckpoints()].compactMap { $0 }.map { "  " + $0 }
        } else {
            plan.lines.append("target: table \(stream.table) exists (\(catalog.count) columns)")
            let ddl = changes.map { change -> String in
                switch change {
                case .addColumn(let c): sql.addColumn(c)
                case .widenColumn(let c, let from): "widen \(c.name) from \(from) to \(c.type)"
                }
            }
            if !ddl.isEmpty {
                plan.lines.append("schema changes a sample of \(sample.count) documents implies:")
                plan.lines += ddl.map { "  " + $0 }
            }
        }
        if let applied, snapshotDone {
            plan.lines.append("waiting at the source since \(applied): " + (await waitingEvents(mongo, database: database, collection: stream.collection, after: applied)
                ?? "unknown (the change stream cannot be opened at the applied position: history lost?)"))
        }
        let schema = tracker.schema
        plan.statements = sql.createStage(schema)
        if redshift.dialect == .redshift && redshift.s3 != nil && stream.load != .insert {
            plan.statements.append("COPY \(sql.stage) (…) FROM 's3://\(redshift.s3!.bucket)/\(redshift.s3!.prefix)…/manifest' <authorization> FORMAT AS JSON 'auto' ZSTD MANIFEST …")
        } else if redshift.dialect == .postgres {
            plan.statements.append(sql.copyStage(schema))
        } else {
            plan.statements.append(sql.insertStage(schema, rows: 1))
        }
        plan.statements += [sql.deleteChanged(), sql.insertUpserts(schema), sql.advanceCheckpoint()]
    }

    /// Inserts, updates, deletes waiting after `position`, read from the change stream itself (read-only) up to
    /// the server's present, at most 100,000 events or 10 s; nil when the stream cannot be opened there.
    static func waitingEvents(_ mongo: MongoClient, database: String, collection: String, after position: ChangeStreamPosition) async -> String? {
        guard let now = try? await ClusterClock.now(mongo, database: database),
              let changes = try? await mongo.watch(database: database, collection: collection, options: position.watchOptions) else { return nil }
        var counts: [String: Int] = [:]
        var total = 0
        let deadline = ContinuousClock.now + .seconds(10)
        reading: while total < 100_000 && ContinuousClock.now < deadline {
            guard let batch = try? await changes.nextBatch(maxEvents: 10_000, maxWait: .milliseconds(300)) else { return nil }
            if batch.events.isEmpty { break }
            for event in batch.events {
                if case .timestamp(let t)? = event["clusterTime"], t > now { break reading }
                counts[event["operationType"]?.stringValue ?? "other", default: 0] += 1
                total += 1
            }
        }
        let complete = total < 100_000 && ContinuousClock.now < deadline
        let updates = (counts["update"] ?? 0) + (counts["replace"] ?? 0)
        return "\(complete ? "" : "at least ")\(counts["insert"] ?? 0) inserts, \(updates) updates, \(counts["delete"] ?? 0) deletes"
            + (counts.keys.contains { !["insert", "update", "replace", "delete"].contains($0) } ? " (and collection events: drop/rename)" : "")
    }

    static func bytes(_ n: Int) -> String {
        n >= 1 << 30 ? String(format: "%.1f GiB", Double(n) / Double(1 << 30)) : n >= 1 << 20 ? String(format: "%.1f MiB", Double(n) / Double(1 << 20))
            : n >= 1 << 10 ? String(format: "%.1f KiB", Double(n) / 1024) : "\(n) B"
    }
}
