import BSON
import Foundation
import MongoClient
import PostgresClient

/// `mongoshift discover`: what could be replicated, with the facts a stream needs.
public struct Discovery: Sendable {
    public struct Table: Sendable {
        public var name: TableName
        /// nil: the catalog would not say (`estimateNote` tells why).
        public var estimatedRows: Int?
        public var estimateNote: String?
        public var key: [String]
        /// Temporal/integer columns that look like "last modified", best first.
        public var watermarkCandidates: [String]
        public var hasSoftDeleteColumn: String?
    }

    public struct Collection: Sendable {
        public var name: String
        public var count: Int
        /// Top-level fields of a sample with their inferred column types.
        public var fields: [(String, String)]
    }

    let config: ReplicationConfig

    public init(config: ReplicationConfig) { self.config = config }

    public func tables() async throws -> [Table] {
        guard let redshift = config.redshift else { return [] }
        let pg = try await PostgresConnection.connect(redshift.url)
        let rows = try await pg.query("""
            SELECT c.table_schema, c.table_name, c.column_name, c.data_type
            FROM information_schema.columns c JOIN information_schema.tables t
              ON t.table_schema = c.table_schema AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE'
            WHERE c.table_schema NOT IN ('pg_catalog', 'information_schema', 'pg_internal') AND c.table_name NOT LIKE 'mongoshift%'
            ORDER BY c.table_schema, c.table_name, c.ordinal_position
            """).rows
        var order: [TableName] = []
        var columns: [TableName: [(String, String)]] = [:]
        for r in rows {
            let name = TableName(schema: r[0], name: r[1] ?? "")
            if columns[name] == nil { order.append(name) }
            columns[name, default: []].append((r[2] ?? "", r[3] ?? ""))
        }
        // Tables this configuration writes (Mongo → Redshift targets) are not sources to propose.
        let targets = Set(config.streams.filter { $0.direction == .mongoToRedshift }.map { TableName(schema: $0.table.schema ?? "public", name: $0.table.name) })
        var out: [Table] = []
        for name in order where !targets.contains(TableName(schema: name.schema ?? "public", name: name.name)) {
            let cols = columns[name] ?? []
            var key = (try? await SourceTable.declaredPrimaryKey(pg, table: name, dialect: redshift.dialect)) ?? []
            if key.isEmpty, let id = cols.first(where: { $0.0.lowercased() == "id" }) { key = [id.0] }
            var estimate: Int?
            var note: String?
            do {
                estimate = try await Self.estimateRows(pg, name, dialect: redshift.dialect)
            } catch {
                note = redshift.dialect == .redshift
                    ? "row estimates read SVV_TABLE_INFO, which shows other users' tables only to superusers (or with SYSLOG ACCESS UNRESTRICTED and SELECT on the table): \(error)"
                    : "\(error)"
            }
            out.append(Table(name: name, estimatedRows: estimate, estimateNote: note, key: key, watermarkCandidates: Self.rankWatermarks(cols),
                             hasSoftDeleteColumn: cols.first { ["is_deleted", "deleted", "_deleted", "is_removed"].contains($0.0.lowercased()) && $0.1 == "boolean" }?.0))
        }
        return out
    }

    /// Timestamp columns whose names suggest "last changed" rank first; other timestamps follow. (Dates cannot
    /// order changes within a day: not candidates.)
    static func rankWatermarks(_ columns: [(String, String)]) -> [String] {
        let temporal = columns.filter { $0.1.hasPrefix("timestamp") }
        func score(_ name: String) -> Int {
            let n = name.lowercased()
            for (i, hint) in ["updated", "modified", "changed", "last_", "_ts", "_at"].enumerated() where n.contains(hint) { return i }
            return 10
        }
        return temporal.map(\.0).sorted { (score($0), $0) < (score($1), $1) }
    }

    static func estimateRows(_ pg: PostgresConnection, _ name: TableName, dialect: SQLDialect) async throws -> Int? {
        let sql: String = switch dialect {
        case .postgres: "SELECT c.reltuples::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2"
        case .redshift: "SELECT CAST(tbl_rows AS bigint) FROM svv_table_info WHERE \"schema\" = $1 AND \"table\" = $2"
        }
        let rows = try await pg.query(sql, [name.schema ?? "public", name.name]).rows
        // SVV_TABLE_INFO omits empty tables.
        guard let text = rows.first?.first ?? nil else { return dialect == .redshift ? 0 : nil }
        return Int(text)
    }

    public func collections() async throws -> [Collection] {
        guard let endpoint = config.mongo else { return [] }
        let client = try await MongoClient.connect(url: endpoint.url)
        let reply = try await client.command(["listCollections": 1, "nameOnly": true, "authorizedCollections": true], database: endpoint.database)
        guard case .array(let batch)? = reply.value(at: "cursor.firstBatch") else { return [] }
        var out: [Collection] = []
        // Collections this configuration writes (Redshift → Mongo targets, tombstones) are not sources to propose.
        let targets = Set(config.streams.filter { $0.direction == .redshiftToMongo }.map(\.collection) + [Tombstones.collectionName])
        for case .document(let info) in batch {
            guard let name = info["name"]?.stringValue, !name.hasPrefix("system."), !targets.contains(name) else { continue }
            let count = try await client.count(database: endpoint.database, collection: name)
            let sample = try await client.findAll(database: endpoint.database, collection: name, limit: 100)
            var tracker = SchemaTracker(flatten: 1)
            _ = try? tracker.observe(sample)
            out.append(Collection(name: name, count: count, fields: tracker.schema.columns.map { ($0.path, $0.type.sql(config.redshift?.dialect ?? .redshift)) }))
        }
        return out.sorted { $0.name < $1.name }
    }
}
